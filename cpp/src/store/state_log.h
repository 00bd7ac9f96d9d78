// The writer of a state directory (state_dir.h): the append-only log of every acknowledged batch
// (format: log_format.h), and snapshots, each with the new log that follows it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "libfraud/fraud.h"
#include "store/log_id.h"
#include "store/restore.h"
#include "store/state_dir.h"
#include "store/temporal_store.h"

namespace libfraud {

// Single-threaded: the engine calls it under its exclusive lock.
class StateLog {
public:
    // Opens dir for appending once restore_state(dir, restored, recovery) has filled `restored`
    // (the log must continue at its appended_total: INVALID_ARGUMENT otherwise). Creates dir and a
    // log when there are none, and first puts the directory in order: finishes a snapshot that
    // stopped after its rename, removes a store.log.next nothing names, cuts a torn tail, moves a
    // damaged last record to a quarantine file when recovery allows it (logged, WARN), and re-takes
    // a snapshot that names no log, so that from then on a lost log is noticed. A missing or
    // replaced log, or damage, throws FraudError(IO_ERROR) naming the file and offset.
    static std::unique_ptr<StateLog> open(const std::string& dir, bool fsync_every_append, const TemporalStore& restored,
                                          const Recovery& recovery = {});
    ~StateLog();
    StateLog(const StateLog&) = delete;
    StateLog& operator=(const StateLog&) = delete;

    // Appends one record of the n transactions (validated by the caller). Before it returns the
    // record is written (and fdatasync'd when fsync_every_append); on failure the log is cut back
    // to its previous end and FraudError(IO_ERROR) is thrown. n == 0 does nothing.
    void append(const fraud_event* events, size_t n);
    // The same for n validated labels.
    void append_labels(const fraud_label* labels, size_t n);
    // A snapshot of `store` (the store this log follows: at next_seq()) and a new, empty log that
    // it names, in the order state_dir.h describes. When it throws, either nothing changed (the
    // old snapshot and log still hold) or, past the snapshot's rename, appends are refused until
    // the directory is opened again (which finishes the rotation).
    void snapshot(const TemporalStore& store);
    // appended_total of the store after everything in the log: the next record's first_seq.
    uint64_t next_seq() const { return next_seq_; }
    uint64_t bytes() const { return end_; }
    const LogId& id() const { return id_; }
    // Where open() moved a damaged last record; empty when it did not.
    const std::string& quarantine_file() const { return quarantine_file_; }

    // Tests only: called at each step of snapshot() (1: store.log.next written, 2: the snapshot
    // renamed, 3: its rename fsync'd, 4: store.log.next renamed to store.log), so a test can stop
    // the process there (fork, _exit) or fail the step (throw). nullptr: none.
    static void set_snapshot_step_hook(void (*hook)(int step));

private:
    StateLog() = default;
    void reopen_for_append();
    void write_record(const std::vector<unsigned char>& rec);
    void quarantine_tail(uint64_t from, const std::string& what);

    std::string dir_, path_;
    StoreLayout layout_;
    bool fsync_ = false;
    int fd_ = -1;
    LogId id_;
    uint64_t end_ = 0;
    uint64_t next_seq_ = 0;
    std::string quarantine_file_;
    // Set when appending must stop: an fsync failed (the file's state is unknown; a snapshot
    // supersedes it), or a snapshot stopped past its rename (only reopening finishes it).
    std::string refuse_appends_;
    bool refuse_snapshots_ = false;
};

}  // namespace libfraud
