// The bytes of store.log (and of store.log.next, a log being put in place by a snapshot): its
// header, its records, and the check of a whole file that tells a torn tail from corruption.
//
// Format (version 3; host byte order, little-endian on every supported platform). Versions 1 and 2
// are refused by number (2 had no log id, and a damaged last record passed for a torn one).
//   header, 104 bytes: char[8] magic "LFRDSLOG", u32 format version (3), u32 header bytes (104),
//     u64 base_seq (the sequence the log starts at: the store's appended_total when it was
//     created), u8[16] log id (random; the snapshot it follows names it, snapshot.h), u8[32]
//     SHA-256 of the store layout's key (a log of another schema is refused), u8[32] SHA-256 of
//     the 72 bytes before it.
//   records, back to back, each a 56-byte header then a payload:
//     u32 magic, u32 n (>= 1), u64 first_seq (appended_total before the record),
//     u8[8] the first 8 bytes of SHA-256 of the 16 bytes before them (the record header's check),
//     u8[32] SHA-256 of (the first 16 bytes, the payload);
//     "LREC" 0x4345524C: n events, each i64 event_id, i64 time_ms, f64 amount, i64 entity ids [E],
//       f64 numeric [N], i64 categorical [C];
//     "LLAB" 0x42414C4C: n labels, each i64 event_id, i64 label_time_ms, i32 label, i32 0; label
//       records do not advance the sequence.
// A record is written by one append() before it returns, so a crash (kill -9) can leave at most
// a TORN TAIL: a prefix of the last record, fewer bytes than it holds. Its own header check tells
// that apart from a DAMAGED record: a prefix of 56 bytes or more has an intact header, and a
// record whose header holds is torn only when the file ends before its n payload entries do. A
// damaged record (header check or checksum wrong with every byte present) held acknowledged
// transactions and is an error, wherever it is; only when it is the last record may the caller
// allow it to be quarantined (state_dir.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "libfraud/fraud.h"
#include "store/log_id.h"
#include "store/temporal_store.h"

namespace libfraud {

inline constexpr uint32_t kLogVersion = 3;
inline constexpr size_t kLogHeaderBytes = 104;
inline constexpr size_t kRecordHeaderBytes = 56;

struct LogHeader {
    LogId id;
    uint64_t base_seq = 0;
};

[[noreturn]] void log_fail(const std::string& path, const std::string& what);  // FraudError(IO_ERROR)

// A log holding only its header, put at `path` atomically (path.tmp, fsync, rename, fsync of dir).
void write_log_file(const std::string& dir, const std::string& path, const LogHeader& header, const StoreLayout& layout);

// pwrite of all n bytes at off (retrying short writes); throws IO_ERROR naming path.
void write_all_at(int fd, const unsigned char* p, size_t n, uint64_t off, const std::string& path);

// The header of the log at path, checked (magic, version, checksum, layout); throws IO_ERROR.
LogHeader read_log_header(const std::string& path, const StoreLayout& layout);

// Records, ready to write: header and checksums filled in. Sizes are checked (INVALID_ARGUMENT).
std::vector<unsigned char> event_record(const RowLayout& rows, const fraud_event* events, size_t n, uint64_t first_seq);
std::vector<unsigned char> label_record(const fraud_label* labels, size_t n, uint64_t first_seq);

struct LogScan {
    LogHeader header;
    uint64_t valid_end = 0;      // offset after the last good record
    uint64_t next_seq = 0;       // the sequence after the last good record
    uint64_t torn_bytes = 0;     // a torn tail after valid_end (a crash mid-append)
    uint64_t corrupt_bytes = 0;  // a damaged last record and what follows it, when allowed
    std::string corrupt_what;    // then: offset, sequence and what is wrong, for a log line
};

using OnEvents = std::function<void(uint64_t offset, uint64_t first_seq, const fraud_event*, size_t)>;
using OnLabels = std::function<void(uint64_t offset, const fraud_label*, size_t)>;

// Checks the whole log; calls on_events / on_labels (either may be empty) for each good record,
// in order. Throws IO_ERROR naming the file, the offset and the sequence for a damaged record,
// unless it is the last one and allow_corrupt_tail (then it is reported in corrupt_bytes), and
// for a gap in the sequence.
LogScan scan_log(const std::string& path, const StoreLayout& layout, bool allow_corrupt_tail,
                 const OnEvents& on_events, const OnLabels& on_labels);

}  // namespace libfraud
