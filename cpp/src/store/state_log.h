// The append-only log of transactions ingested since the last snapshot, and recovery: snapshot,
// then log, replayed into a store.
//
// Files in the state directory: "store.snapshot" (snapshot.h) and "store.log":
//   header, 88 bytes: char[8] magic "LFRDSLOG", u32 format version (2), u32 header bytes (88),
//     u64 base_seq (the store's appended_total when the log was reset), u8[32] SHA-256 of the
//     store layout's key (a log of another schema is refused), u8[32] SHA-256 of the 56 bytes
//     before it.
//   records, back to back: u32 magic, u32 n (>= 1), u64 first_seq (appended_total before the
//     record), u8[32] SHA-256 of (n, first_seq, payload) (first byte xor 0x5a for labels), payload:
//     "LREC" 0x4345524C: n events, each i64 event_id, i64 time_ms, f64 amount, i64 entity ids [E],
//       f64 numeric [N], i64 categorical [C] (host byte order);
//     "LLAB" 0x42414C4C: n labels, each i64 event_id, i64 label_time_ms, i32 label, i32 0; label
//       records do not advance the sequence.
// A record is written by one append() before it returns, so a crash can leave at most a torn
// TAIL: a bad record with no valid record after it. Recovery drops it (open() truncates it); a bad
// record followed by a valid one is corruption and is refused, as is a gap in the sequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "libfraud/fraud.h"
#include "store/temporal_store.h"

namespace libfraud {

std::string snapshot_path(const std::string& dir);  // dir + "/store.snapshot"
std::string log_path(const std::string& dir);       // dir + "/store.log"

// Single-threaded: the engine calls it under its exclusive lock.
class StateLog {
public:
    // Opens (creating dir and the log when missing) for appending. An existing log is checked:
    // a torn tail is truncated away; corruption throws FraudError(IO_ERROR) naming the offset.
    // A new log continues the numbering of the snapshot in dir, if any.
    static std::unique_ptr<StateLog> open(const std::string& dir, bool fsync_every_append, const StoreLayout& layout);
    ~StateLog();
    StateLog(const StateLog&) = delete;
    StateLog& operator=(const StateLog&) = delete;

    // Appends one record of the n transactions (validated by the caller). Before it returns the
    // record is written (and fdatasync'd when fsync_every_append); on failure the log is cut back
    // to its previous end and FraudError(IO_ERROR) is thrown. n == 0 does nothing.
    void append(const fraud_event* events, size_t n);
    // The same for n validated labels.
    void append_labels(const fraud_label* labels, size_t n);
    // After a snapshot of the store: atomically replaces the log with an empty one that starts at
    // the current sequence number.
    void reset();
    // appended_total of the store after everything in the log: the next record's first_seq.
    uint64_t next_seq() const { return next_seq_; }
    uint64_t bytes() const { return end_; }

private:
    StateLog() = default;
    void reopen_for_append();
    void write_record(uint32_t magic, size_t n, std::vector<unsigned char> rec);

    std::string dir_, path_;
    StoreLayout layout_;
    bool fsync_ = false;
    int fd_ = -1;
    uint64_t end_ = 0;
    uint64_t next_seq_ = 0;
    bool failed_ = false;  // an fsync failed: the file's state is unknown, refuse further appends
};

struct RestoreStats {
    bool snapshot_loaded = false;
    uint64_t snapshot_transactions = 0;  // retained transactions read from the snapshot
    uint64_t log_records = 0;            // records replayed
    uint64_t log_transactions = 0;       // transactions replayed from the log
    uint64_t log_skipped = 0;            // log transactions already in the snapshot
    uint64_t log_label_records = 0;      // label records replayed
    uint64_t torn_tail_bytes = 0;        // bytes after the last valid record, dropped
};

// Loads dir's snapshot (if any) and replays its log (if any) through validate_for_append + append
// into a fresh store with store's config; moves it into `store` only when everything succeeded.
// Throws FraudError(IO_ERROR) for a bad snapshot or a corrupt log (naming the file, the offset and
// what is wrong), or the validation error of a replayed batch.
RestoreStats restore_state(const std::string& dir, TemporalStore& store);

}  // namespace libfraud
