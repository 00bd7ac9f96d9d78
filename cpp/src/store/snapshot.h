// Snapshots of the temporal store: the retained transactions and the state that makes features
// after a restore bitwise equal to the store's before it. Written atomically (temp file, fsync,
// rename, directory fsync); read all-or-nothing (a fresh store, returned only when every check
// passed).
//
// Format (version 3; integers and doubles in host byte order, little-endian on every supported
// platform). Versions 1 and 2 are refused by number (2 named no log: a deleted log went unnoticed).
//   header, 56 bytes:
//     0  char[8]  magic "LFRDSNAP"
//     8  u32      format version (3)
//     12 u32      header bytes (56)
//     16 u64      payload bytes (the rest of the file)
//     24 u8[32]   SHA-256 of the payload
//   payload:
//     fixed, 72 bytes: i64 retention_ms, u32 max_history_per_entity, u32 reserved (0),
//                      i64 watermark_ms, u64 evicted, u64 appended_total, u64 n_dropped, u64 n_rows,
//                      u8[16] log id: the log that holds the transactions after this snapshot (its
//                      header carries the id and base_seq = appended_total; state_log.h); all zero
//                      in a snapshot written outside a state directory, which names no log
//     u64 key bytes, then the store layout's key (StoreLayout::key: schema and history fields);
//       a store of another layout refuses the snapshot
//     n_dropped x 24 bytes: u32 entity type, u32 0, i64 entity id, u64 events dropped from the
//       front of its history (block boundaries of the range aggregates depend on it)
//     n_rows rows, in table (append) order: i64 event_id, i64 time_ms, f64 amount,
//       i64 label_time_ms (INT64_MAX: unlabelled), i64 entity ids [E], f64 numeric [N],
//       i64 categorical [C], u32 degrees_before [E], u32 history mask (bit e: still in entity
//       type e's history), i32 label (-1 unlabelled)
// Why SHA-256 and not CRC32C: OpenSSL is already linked and verified, it catches every
// corruption (a CRC misses some multi-bit patterns), and at >1 GB/s it is noise next to the disk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "store/log_id.h"
#include "store/temporal_store.h"

namespace libfraud {

inline constexpr char kSnapshotMagic[8] = {'L', 'F', 'R', 'D', 'S', 'N', 'A', 'P'};
inline constexpr uint32_t kSnapshotVersion = 3;

// SHA-256 through OpenSSL's EVP interface, fed in pieces.
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(const void* data, size_t n);
    void finish(uint8_t out[32]);

private:
    void* ctx_;  // EVP_MD_CTX*
};

// What a snapshot says about the log after it.
struct SnapshotInfo {
    uint64_t appended_total = 0;  // the log after it starts at this sequence
    LogId log;                    // the log it names; none: written outside a state directory
};

// Writes the store to `path` atomically: path + ".tmp", fsync, rename, fsync of the directory.
// next_log: the log that follows it (StateLog::snapshot); none outside a state directory.
// Throws FraudError(IO_ERROR) naming the file and the failed step; `path` is then untouched.
void write_snapshot(const TemporalStore& store, const std::string& path, const LogId& next_log = LogId{});
// The same up to the rename, without the directory's fsync: for a caller that must know whether
// the rename happened (it did when this returns; it did not when this throws).
void write_snapshot_file(const TemporalStore& store, const std::string& path, const LogId& next_log);

// Reads the snapshot at `path` into a fresh store of `layout` with `config` (the snapshot's own
// config when omitted; a tighter config evicts what it no longer retains). Throws FraudError(IO_ERROR) naming
// the file and what is wrong (missing, truncated, wrong magic or version, checksum mismatch, a bad
// record); nothing is half-loaded since the store is returned only on success.
// `info`, when given, receives what the verified snapshot says about its log.
TemporalStore read_snapshot(const std::string& path, const StoreLayout& layout);
TemporalStore read_snapshot(const std::string& path, const StoreLayout& layout, const StoreConfig& config,
                            SnapshotInfo* info = nullptr);

// What a snapshot's fixed section says about its log, read WITHOUT verifying the checksum (to put
// a directory in order after restore_state verified it).
SnapshotInfo read_snapshot_info(const std::string& path);

// fsync of a directory (after a rename or a create in it). Throws FraudError(IO_ERROR).
void fsync_dir(const std::string& dir);

}  // namespace libfraud
