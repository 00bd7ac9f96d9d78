// Snapshots of the temporal store: the retained transactions and the state that makes features
// after a restore bitwise equal to the store's before it. Written atomically (temp file, fsync,
// rename, directory fsync); read all-or-nothing (a fresh store, returned only when every check
// passed).
//
// Format (version 2; integers and doubles in host byte order, little-endian on every supported
// platform):
//   header, 56 bytes:
//     0  char[8]  magic "LFRDSNAP"
//     8  u32      format version (1)
//     12 u32      header bytes (56)
//     16 u64      payload bytes (the rest of the file)
//     24 u8[32]   SHA-256 of the payload
//   payload:
//     fixed, 56 bytes: i64 retention_ms, u32 max_history_per_entity, u32 reserved (0),
//                      i64 watermark_ms, u64 evicted, u64 appended_total, u64 n_bases, u64 n_rows
//                      (n_bases is now n_dropped)
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

#include "store/temporal_store.h"

namespace libfraud {

inline constexpr char kSnapshotMagic[8] = {'L', 'F', 'R', 'D', 'S', 'N', 'A', 'P'};
inline constexpr uint32_t kSnapshotVersion = 2;

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

// Writes the store to `path` atomically: path + ".tmp", fsync, rename, fsync of the directory.
// Throws FraudError(IO_ERROR) naming the file and the failed step; `path` is then untouched.
void write_snapshot(const TemporalStore& store, const std::string& path);

// Reads the snapshot at `path` into a fresh store of `layout` with `config` (the snapshot's own
// config when omitted; a tighter config evicts what it no longer retains). Throws FraudError(IO_ERROR) naming
// the file and what is wrong (missing, truncated, wrong magic or version, checksum mismatch, a bad
// record); nothing is half-loaded since the store is returned only on success.
TemporalStore read_snapshot(const std::string& path, const StoreLayout& layout);
TemporalStore read_snapshot(const std::string& path, const StoreLayout& layout, const StoreConfig& config);

// The appended_total recorded in a snapshot's fixed section, read WITHOUT verifying the checksum
// (the state log uses it to number its records after the snapshot; restore verifies).
uint64_t snapshot_appended_total(const std::string& path);

// fsync of a directory (after a rename or a create in it). Throws FraudError(IO_ERROR).
void fsync_dir(const std::string& dir);

}  // namespace libfraud
