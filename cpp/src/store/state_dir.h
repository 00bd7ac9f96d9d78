// A state directory (fraud_engine_params.state_dir): its files, and which of them hold the store.
//
//   store.snapshot   the store at sequence T (its appended_total; snapshot.h), naming the log that
//                    follows it by id
//   store.log        every acknowledged batch after T (log_format.h): the log the snapshot names,
//                    whose header carries that id and base_seq T
//   store.log.next   a new log while a snapshot is being taken (StateLog::snapshot)
//   store.log.quarantine-<unix ms>   bytes of a corrupt last record, moved out of the log when
//                    the caller allowed it (Recovery); kept for whoever investigates, never read
//
// Taking a snapshot (StateLog::snapshot), in this order, each step durable (fsync'd, and its
// directory entry too) before the next: (1) store.log.next, empty, with a new id and base T;
// (2) store.snapshot naming that id (temp file, rename); (3) store.log.next renamed over
// store.log. A crash before (2)'s rename leaves the old snapshot and its log, plus a stray
// store.log.next that nothing names (removed on open); after it, the new snapshot and the log it
// names under the name store.log.next (the rotation is finished on open). So a snapshot on disk
// always has the log it names on disk, and a log is legitimately absent only in a new directory
// (no snapshot either) or beside a snapshot written outside a state directory (no log named).
// Anything else is refused, naming the gap: the named log missing, or store.log being another
// log (an older one, or another directory's), or starting elsewhere than the snapshot's sequence.
// What no snapshot can know: a log cut back (or replaced by an older copy of itself) after its
// snapshot looks like a log that ended there; a torn tail is dropped as a crash mid-append.
#pragma once

#include <string>

#include "store/snapshot.h"
#include "store/temporal_store.h"

namespace libfraud {

std::string snapshot_path(const std::string& dir);  // dir + "/store.snapshot"
std::string log_path(const std::string& dir);       // dir + "/store.log"
std::string next_log_path(const std::string& dir);  // dir + "/store.log.next"
bool path_exists(const std::string& path);

// What the caller allows when the directory is not as a clean shutdown leaves it.
struct Recovery {
    // A damaged LAST record of the log (every byte present, checksum wrong: a bit flip or an
    // overwrite, not a crash) is an error unless this is set; then restore_state skips it and
    // StateLog::open moves its bytes to store.log.quarantine-<unix ms> (logged, WARN) and cuts
    // the log there. A damaged record with good records after it is refused either way.
    bool quarantine_corrupt_tail = false;
};

struct StateFiles {
    std::string log;           // the log after the snapshot; empty: none (see above when that is fine)
    bool log_is_next = false;  // it is store.log.next: a snapshot stopped between steps (2) and (3)
    bool stray_next = false;   // store.log.next exists and nothing names it: stopped before (2)
};

// Which file is the log that follows `snapshot` (nullptr: dir has none), from the log headers
// (checked against layout). Throws FraudError(IO_ERROR) naming the gap when the log the snapshot
// names is missing or replaced, or when a log starts after the snapshot's (or, without a
// snapshot, after the start of time: store.snapshot is missing).
StateFiles find_state_files(const std::string& dir, const StoreLayout& layout, const SnapshotInfo* snapshot);

}  // namespace libfraud
