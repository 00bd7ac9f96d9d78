#include "store/state_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "common/error.h"
#include "store/snapshot.h"
#include "store/validate.h"

namespace libfraud {
namespace {

constexpr char kLogMagic[8] = {'L', 'F', 'R', 'D', 'S', 'L', 'O', 'G'};
constexpr uint32_t kLogVersion = 1;
constexpr size_t kLogHeaderBytes = 56;
constexpr uint32_t kRecordMagic = 0x4345524C;  // "LREC" little-endian
constexpr size_t kRecordHeaderBytes = 48;

[[noreturn]] void log_fail(const std::string& path, const std::string& what) {
    throw FraudError(FRAUD_STATUS_IO_ERROR, "state log " + path + ": " + what);
}

std::string errno_text() { return std::strerror(errno); }

bool file_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

template <class T>
T get(const unsigned char* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

void record_digest(uint32_t n, uint64_t first_seq, const unsigned char* payload, size_t bytes,
                   uint8_t out[32]) {
    Sha256 h;
    h.update(&n, sizeof n);
    h.update(&first_seq, sizeof first_seq);
    h.update(payload, bytes);
    h.finish(out);
}

// Whether a whole, checksummed record starts at p (with `avail` bytes from p to the end of file).
// Sets n and first_seq when it does.
bool record_ok(const unsigned char* p, uint64_t avail, uint32_t& n, uint64_t& first_seq) {
    if (avail < kRecordHeaderBytes || get<uint32_t>(p) != kRecordMagic) return false;
    n = get<uint32_t>(p + 4);
    first_seq = get<uint64_t>(p + 8);
    if (n == 0 || (avail - kRecordHeaderBytes) / sizeof(fraud_txn) < n) return false;
    uint8_t d[32];
    record_digest(n, first_seq, p + kRecordHeaderBytes, n * sizeof(fraud_txn), d);
    return std::memcmp(d, p + 16, 32) == 0;
}

struct Scan {
    uint64_t base_seq = 0;
    uint64_t valid_end = 0;  // offset after the last valid record
    uint64_t next_seq = 0;
    uint64_t torn_bytes = 0;
};

std::vector<unsigned char> read_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) log_fail(path, "cannot open: " + errno_text());
    std::vector<unsigned char> data;
    unsigned char buf[1 << 16];
    for (;;) {
        const ssize_t r = ::read(fd, buf, sizeof buf);
        if (r < 0) {
            if (errno == EINTR) continue;
            const std::string e = errno_text();
            ::close(fd);
            log_fail(path, "read failed: " + e);
        }
        if (r == 0) break;
        data.insert(data.end(), buf, buf + r);
    }
    ::close(fd);
    return data;
}

// Checks the whole log; calls on_record(offset, first_seq, txns, n) for each valid record.
Scan scan_log(const std::string& path,
              const std::function<void(uint64_t, uint64_t, const fraud_txn*, size_t)>& on_record) {
    const std::vector<unsigned char> data = read_file(path);
    if (data.size() < kLogHeaderBytes) {
        log_fail(path, "truncated header: " + std::to_string(data.size()) + " bytes, need " +
                           std::to_string(kLogHeaderBytes));
    }
    const unsigned char* h = data.data();
    if (std::memcmp(h, kLogMagic, 8) != 0) log_fail(path, "wrong magic: not a libfraud state log");
    if (get<uint32_t>(h + 8) != kLogVersion) {
        log_fail(path, "format version " + std::to_string(get<uint32_t>(h + 8)) +
                           ", this library reads " + std::to_string(kLogVersion));
    }
    uint8_t d[32];
    {
        Sha256 s;
        s.update(h, 24);
        s.finish(d);
    }
    if (get<uint32_t>(h + 12) != kLogHeaderBytes || std::memcmp(d, h + 24, 32) != 0) {
        log_fail(path, "corrupt header (checksum mismatch)");
    }
    Scan scan;
    scan.base_seq = scan.next_seq = get<uint64_t>(h + 16);
    uint64_t off = kLogHeaderBytes;
    std::vector<fraud_txn> txns;
    while (off < data.size()) {
        uint32_t n = 0;
        uint64_t first = 0;
        if (!record_ok(data.data() + off, data.size() - off, n, first)) {
            // Torn tail, unless a valid record follows (then this one was damaged in place).
            for (uint64_t p = off + 1; p + kRecordHeaderBytes <= data.size(); ++p) {
                uint32_t n2 = 0;
                uint64_t f2 = 0;
                if (get<uint32_t>(data.data() + p) == kRecordMagic &&
                    record_ok(data.data() + p, data.size() - p, n2, f2)) {
                    log_fail(path, "corrupt record at offset " + std::to_string(off) +
                                       " (a valid record follows at offset " + std::to_string(p) +
                                       "): refusing to skip acknowledged transactions");
                }
            }
            scan.torn_bytes = data.size() - off;
            break;
        }
        if (first != scan.next_seq) {
            log_fail(path, "record at offset " + std::to_string(off) + " starts at sequence " +
                               std::to_string(first) + ", expected " + std::to_string(scan.next_seq));
        }
        if (on_record) {
            txns.resize(n);
            std::memcpy(txns.data(), data.data() + off + kRecordHeaderBytes, n * sizeof(fraud_txn));
            on_record(off, first, txns.data(), n);
        }
        scan.next_seq += n;
        off += kRecordHeaderBytes + static_cast<uint64_t>(n) * sizeof(fraud_txn);
    }
    scan.valid_end = off > data.size() ? data.size() : off;
    if (scan.torn_bytes) scan.valid_end = data.size() - scan.torn_bytes;
    return scan;
}

void write_all_at(int fd, const unsigned char* p, size_t n, uint64_t off, const std::string& path) {
    while (n > 0) {
        const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
        if (w < 0) {
            if (errno == EINTR) continue;
            log_fail(path, "write failed: " + errno_text());
        }
        p += w;
        n -= static_cast<size_t>(w);
        off += static_cast<uint64_t>(w);
    }
}

// A log holding only its header, put in place atomically (temp, fsync, rename, dir fsync).
void write_fresh_log(const std::string& dir, const std::string& path, uint64_t base_seq) {
    unsigned char h[kLogHeaderBytes];
    std::memcpy(h, kLogMagic, 8);
    std::memcpy(h + 8, &kLogVersion, 4);
    const uint32_t hb = kLogHeaderBytes;
    std::memcpy(h + 12, &hb, 4);
    std::memcpy(h + 16, &base_seq, 8);
    {
        Sha256 s;
        s.update(h, 24);
        s.finish(h + 24);
    }
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) log_fail(tmp, "cannot create: " + errno_text());
    try {
        write_all_at(fd, h, sizeof h, 0, tmp);
        if (::fsync(fd) != 0) log_fail(tmp, "fsync failed: " + errno_text());
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) log_fail(path, "rename failed: " + errno_text());
    fsync_dir(dir);
}

}  // namespace

std::string snapshot_path(const std::string& dir) { return dir + "/store.snapshot"; }
std::string log_path(const std::string& dir) { return dir + "/store.log"; }

std::unique_ptr<StateLog> StateLog::open(const std::string& dir, bool fsync_every_append) {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        throw FraudError(FRAUD_STATUS_IO_ERROR, "state dir " + dir + ": cannot create: " + errno_text());
    }
    std::unique_ptr<StateLog> log(new StateLog());
    log->dir_ = dir;
    log->path_ = log_path(dir);
    log->fsync_ = fsync_every_append;
    const std::string snap = snapshot_path(dir);
    const uint64_t snapshot_total = file_exists(snap) ? snapshot_appended_total(snap) : 0;
    bool stale = false;
    if (file_exists(log->path_)) {
        // A log wholly behind the snapshot (a crash between the snapshot's rename and the log's
        // reset): its records are all in the snapshot; new ones must be numbered after it, or a
        // restore would skip them as "already in the snapshot".
        stale = scan_log(log->path_, nullptr).next_seq < snapshot_total;
    }
    if (file_exists(log->path_) && !stale) {
        const Scan scan = scan_log(log->path_, nullptr);
        log->next_seq_ = scan.next_seq;
        log->end_ = scan.valid_end;
        log->reopen_for_append();
        if (scan.torn_bytes) {  // cut the torn tail, so new records follow the last valid one
            if (::ftruncate(log->fd_, static_cast<off_t>(scan.valid_end)) != 0 || ::fsync(log->fd_) != 0) {
                log_fail(log->path_, "cannot cut the torn tail: " + errno_text());
            }
        }
    } else {
        log->next_seq_ = snapshot_total;
        write_fresh_log(dir, log->path_, log->next_seq_);
        log->end_ = kLogHeaderBytes;
        log->reopen_for_append();
    }
    return log;
}

StateLog::~StateLog() {
    if (fd_ >= 0) ::close(fd_);
}

void StateLog::reopen_for_append() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) log_fail(path_, "cannot open for append: " + errno_text());
}

void StateLog::append(const fraud_txn* txns, size_t n) {
    if (n == 0) return;
    if (failed_) log_fail(path_, "an earlier fsync failed; reopen the log before appending");
    if (!txns) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "txns is NULL with n = " + std::to_string(n));
    if (n > (UINT32_MAX - kRecordHeaderBytes) / sizeof(fraud_txn)) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "batch too large for one log record");
    }
    const auto count = static_cast<uint32_t>(n);
    const size_t payload = n * sizeof(fraud_txn);
    std::vector<unsigned char> rec(kRecordHeaderBytes + payload);
    std::memcpy(rec.data(), &kRecordMagic, 4);
    std::memcpy(rec.data() + 4, &count, 4);
    std::memcpy(rec.data() + 8, &next_seq_, 8);
    std::memcpy(rec.data() + kRecordHeaderBytes, txns, payload);
    record_digest(count, next_seq_, rec.data() + kRecordHeaderBytes, payload, rec.data() + 16);
    try {
        write_all_at(fd_, rec.data(), rec.size(), end_, path_);
    } catch (...) {
        // A partial record must not stay: a later record after it would make it look like
        // corruption rather than a torn tail.
        if (::ftruncate(fd_, static_cast<off_t>(end_)) != 0) failed_ = true;
        throw;
    }
    if (fsync_ && ::fdatasync(fd_) != 0) {
        failed_ = true;  // after a failed fsync the page cache may have dropped the data
        log_fail(path_, "fdatasync failed: " + errno_text());
    }
    end_ += rec.size();
    next_seq_ += n;
}

void StateLog::reset() {
    write_fresh_log(dir_, path_, next_seq_);
    end_ = kLogHeaderBytes;
    failed_ = false;
    reopen_for_append();
}

RestoreStats restore_state(const std::string& dir, TemporalStore& store) {
    RestoreStats stats;
    const std::string snap = snapshot_path(dir);
    const std::string log = log_path(dir);
    TemporalStore fresh(store.config());
    if (file_exists(snap)) {
        fresh = read_snapshot(snap, store.config());
        stats.snapshot_loaded = true;
        stats.snapshot_transactions = fresh.size();
    }
    if (file_exists(log)) {
        const Scan scan = scan_log(log, [&](uint64_t off, uint64_t first, const fraud_txn* txns, size_t n) {
            const uint64_t have = fresh.appended_total();
            if (first + n <= have) {  // logged before the snapshot was taken, not yet reset
                stats.log_skipped += n;
                return;
            }
            if (first != have) {
                log_fail(log, "record at offset " + std::to_string(off) + " starts at sequence " +
                                  std::to_string(first) + " but the store (snapshot) is at " +
                                  std::to_string(have) + ": transactions are missing");
            }
            try {
                validate_for_append(fresh, txns, n);
            } catch (const FraudError& e) {
                log_fail(log, "record at offset " + std::to_string(off) + ": replay refused: " + e.what());
            }
            for (size_t i = 0; i < n; ++i) fresh.append(txns[i]);
            ++stats.log_records;
            stats.log_transactions += n;
        });
        if (scan.base_seq > fresh.appended_total()) {
            log_fail(log, "starts at sequence " + std::to_string(scan.base_seq) + " but the snapshot ends at " +
                              std::to_string(fresh.appended_total()) + " (snapshot missing or stale)");
        }
        stats.torn_tail_bytes = scan.torn_bytes;
    }
    store = std::move(fresh);
    return stats;
}

}  // namespace libfraud
