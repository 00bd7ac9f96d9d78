// Recovery: a state directory's snapshot, then its log, replayed into a store (state_dir.h).
#pragma once

#include <cstdint>
#include <string>

#include "store/state_dir.h"
#include "store/temporal_store.h"

namespace libfraud {

struct RestoreStats {
    bool snapshot_loaded = false;
    uint64_t snapshot_transactions = 0;  // retained transactions read from the snapshot
    uint64_t log_records = 0;            // records replayed
    uint64_t log_transactions = 0;       // transactions replayed from the log
    uint64_t log_skipped = 0;            // log transactions already in the snapshot
    uint64_t log_label_records = 0;      // label records replayed
    uint64_t torn_tail_bytes = 0;        // bytes after the last valid record, dropped (a crash mid-append)
    uint64_t corrupt_tail_bytes = 0;     // a damaged last record and what follows, skipped (Recovery allowed it)
};

// Loads dir's snapshot (if any) and replays the log that follows it (if any; store.log, or
// store.log.next after a snapshot stopped midway) through validate_for_append + append into a
// fresh store with store's config; moves it into `store` only when everything succeeded. Reads
// only: changes no file. Throws FraudError(IO_ERROR) for a bad snapshot, a missing or replaced
// log, or a damaged record (naming the file, the offset, the sequence and what is wrong), or the
// validation error of a replayed batch.
RestoreStats restore_state(const std::string& dir, TemporalStore& store, const Recovery& recovery = {});

}  // namespace libfraud
