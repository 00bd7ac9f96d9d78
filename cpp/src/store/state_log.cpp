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
constexpr uint32_t kLogVersion = 2;
constexpr size_t kLogHeaderBytes = 88;
constexpr size_t kLogDigestedBytes = 56;   // magic .. layout digest, covered by the header digest
constexpr uint32_t kRecordMagic = 0x4345524C;  // "LREC" little-endian: events
constexpr uint32_t kLabelMagic = 0x42414C4C;   // "LLAB": labels (do not advance the sequence)
constexpr size_t kRecordHeaderBytes = 48;
constexpr size_t kLabelBytes = 24;

void layout_digest(const StoreLayout& layout, uint8_t out[32]) {
    const std::string key = layout.key();
    Sha256 s;
    s.update(key.data(), key.size());
    s.finish(out);
}

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
// Sets n, first_seq, whether it holds labels, and its size when it does.
bool record_ok(const unsigned char* p, uint64_t avail, size_t event_bytes, uint32_t& n, uint64_t& first_seq,
               bool& labels, uint64_t& bytes) {
    if (avail < kRecordHeaderBytes) return false;
    const uint32_t magic = get<uint32_t>(p);
    if (magic != kRecordMagic && magic != kLabelMagic) return false;
    labels = magic == kLabelMagic;
    const size_t each = labels ? kLabelBytes : event_bytes;
    n = get<uint32_t>(p + 4);
    first_seq = get<uint64_t>(p + 8);
    if (n == 0 || (avail - kRecordHeaderBytes) / each < n) return false;
    bytes = kRecordHeaderBytes + uint64_t{n} * each;
    uint8_t d[32];
    record_digest(n, first_seq, p + kRecordHeaderBytes, n * each, d);
    if (labels) d[0] ^= 0x5a;  // a label record's digest differs from an event record's over the same bytes
    return std::memcmp(d, p + 16, 32) == 0;
}

size_t event_bytes(const RowLayout& l) { return 8 * (3 + size_t(l.E) + l.N + l.C); }

void encode_event(const RowLayout& l, const fraud_event& ev, unsigned char* p) {
    auto put = [&](const void* v) {
        std::memcpy(p, v, 8);
        p += 8;
    };
    put(&ev.event_id);
    put(&ev.time_ms);
    put(&ev.amount);
    for (uint32_t e = 0; e < l.E; ++e) put(&ev.entity_id[e]);
    for (uint32_t i = 0; i < l.N; ++i) put(&ev.numeric[i]);
    for (uint32_t i = 0; i < l.C; ++i) put(&ev.categorical[i]);
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

// Decoded events of a record: the arrays fraud_event points into.
struct DecodedEvents {
    std::vector<fraud_event> events;
    std::vector<int64_t> entities, categorical;
    std::vector<double> numeric;
    void decode(const RowLayout& l, const unsigned char* p, size_t n) {
        events.resize(n);
        entities.resize(n * l.E);
        numeric.resize(n * l.N);
        categorical.resize(n * l.C);
        for (size_t i = 0; i < n; ++i) {
            fraud_event& ev = events[i];
            ev.event_id = get<int64_t>(p);
            ev.time_ms = get<int64_t>(p + 8);
            ev.amount = get<double>(p + 16);
            p += 24;
            for (uint32_t e = 0; e < l.E; ++e, p += 8) entities[i * l.E + e] = get<int64_t>(p);
            for (uint32_t k = 0; k < l.N; ++k, p += 8) numeric[i * l.N + k] = get<double>(p);
            for (uint32_t k = 0; k < l.C; ++k, p += 8) categorical[i * l.C + k] = get<int64_t>(p);
            ev.entity_id = entities.data() + i * l.E;
            ev.numeric = l.N ? numeric.data() + i * l.N : nullptr;
            ev.categorical = l.C ? categorical.data() + i * l.C : nullptr;
        }
    }
};

using OnEvents = std::function<void(uint64_t, uint64_t, const fraud_event*, size_t)>;
using OnLabels = std::function<void(uint64_t, const fraud_label*, size_t)>;

// Checks the whole log; calls on_events(offset, first_seq, events, n) / on_labels(offset, labels,
// n) for each valid record, in order.
Scan scan_log(const std::string& path, const StoreLayout& layout, const OnEvents& on_events,
              const OnLabels& on_labels) {
    const RowLayout rl(layout.schema);
    const size_t each = event_bytes(rl);
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
        s.update(h, kLogDigestedBytes);
        s.finish(d);
    }
    if (get<uint32_t>(h + 12) != kLogHeaderBytes || std::memcmp(d, h + kLogDigestedBytes, 32) != 0) {
        log_fail(path, "corrupt header (checksum mismatch)");
    }
    uint8_t want[32];
    layout_digest(layout, want);
    if (std::memcmp(want, h + 24, 32) != 0) log_fail(path, "written for another schema or feature layout");
    Scan scan;
    scan.base_seq = scan.next_seq = get<uint64_t>(h + 16);
    uint64_t off = kLogHeaderBytes;
    DecodedEvents decoded;
    std::vector<fraud_label> labels;
    while (off < data.size()) {
        uint32_t n = 0;
        uint64_t first = 0, bytes = 0;
        bool is_labels = false;
        if (!record_ok(data.data() + off, data.size() - off, each, n, first, is_labels, bytes)) {
            // Torn tail, unless a valid record follows (then this one was damaged in place).
            for (uint64_t p = off + 1; p + kRecordHeaderBytes <= data.size(); ++p) {
                uint32_t n2 = 0;
                uint64_t f2 = 0, b2 = 0;
                bool l2 = false;
                const uint32_t m = get<uint32_t>(data.data() + p);
                if ((m == kRecordMagic || m == kLabelMagic) &&
                    record_ok(data.data() + p, data.size() - p, each, n2, f2, l2, b2)) {
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
        const unsigned char* payload = data.data() + off + kRecordHeaderBytes;
        if (is_labels) {
            if (on_labels) {
                labels.resize(n);
                for (uint32_t i = 0; i < n; ++i) {
                    const unsigned char* q = payload + i * kLabelBytes;
                    labels[i] = fraud_label{get<int64_t>(q), get<int64_t>(q + 8), get<int32_t>(q + 16), get<int32_t>(q + 20)};
                }
                on_labels(off, labels.data(), n);
            }
        } else {
            if (on_events) {
                decoded.decode(rl, payload, n);
                on_events(off, first, decoded.events.data(), n);
            }
            scan.next_seq += n;
        }
        off += bytes;
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
void write_fresh_log(const std::string& dir, const std::string& path, uint64_t base_seq, const StoreLayout& layout) {
    unsigned char h[kLogHeaderBytes];
    std::memcpy(h, kLogMagic, 8);
    std::memcpy(h + 8, &kLogVersion, 4);
    const uint32_t hb = kLogHeaderBytes;
    std::memcpy(h + 12, &hb, 4);
    std::memcpy(h + 16, &base_seq, 8);
    layout_digest(layout, h + 24);
    {
        Sha256 s;
        s.update(h, kLogDigestedBytes);
        s.finish(h + kLogDigestedBytes);
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

std::unique_ptr<StateLog> StateLog::open(const std::string& dir, bool fsync_every_append, const StoreLayout& layout) {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        throw FraudError(FRAUD_STATUS_IO_ERROR, "state dir " + dir + ": cannot create: " + errno_text());
    }
    std::unique_ptr<StateLog> log(new StateLog());
    log->dir_ = dir;
    log->path_ = log_path(dir);
    log->fsync_ = fsync_every_append;
    log->layout_ = layout;
    const std::string snap = snapshot_path(dir);
    const uint64_t snapshot_total = file_exists(snap) ? snapshot_appended_total(snap) : 0;
    bool stale = false;
    if (file_exists(log->path_)) {
        // A log wholly behind the snapshot (a crash between the snapshot's rename and the log's
        // reset): its records are all in the snapshot; new ones must be numbered after it, or a
        // restore would skip them as "already in the snapshot".
        stale = scan_log(log->path_, layout, nullptr, nullptr).next_seq < snapshot_total;
    }
    if (file_exists(log->path_) && !stale) {
        const Scan scan = scan_log(log->path_, layout, nullptr, nullptr);
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
        write_fresh_log(dir, log->path_, log->next_seq_, layout);
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

void StateLog::append(const fraud_event* events, size_t n) {
    if (n == 0) return;
    if (!events) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "events is NULL with n = " + std::to_string(n));
    const RowLayout rl(layout_.schema);
    const size_t each = event_bytes(rl);
    if (n > (UINT32_MAX - kRecordHeaderBytes) / each) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "batch too large for one log record");
    std::vector<unsigned char> rec(kRecordHeaderBytes + n * each);
    for (size_t i = 0; i < n; ++i) encode_event(rl, events[i], rec.data() + kRecordHeaderBytes + i * each);
    write_record(kRecordMagic, n, std::move(rec));
    next_seq_ += n;
}

void StateLog::append_labels(const fraud_label* labels, size_t n) {
    if (n == 0) return;
    if (!labels) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "labels is NULL with n = " + std::to_string(n));
    if (n > (UINT32_MAX - kRecordHeaderBytes) / kLabelBytes) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "batch too large for one log record");
    std::vector<unsigned char> rec(kRecordHeaderBytes + n * kLabelBytes);
    for (size_t i = 0; i < n; ++i) {
        unsigned char* q = rec.data() + kRecordHeaderBytes + i * kLabelBytes;
        std::memcpy(q, &labels[i].event_id, 8);
        std::memcpy(q + 8, &labels[i].label_time_ms, 8);
        std::memcpy(q + 16, &labels[i].label, 4);
        std::memcpy(q + 20, &labels[i].reserved, 4);
    }
    write_record(kLabelMagic, n, std::move(rec));
}

void StateLog::write_record(uint32_t magic, size_t n, std::vector<unsigned char> rec) {
    if (failed_) log_fail(path_, "an earlier fsync failed; reopen the log before appending");
    const auto count = static_cast<uint32_t>(n);
    std::memcpy(rec.data(), &magic, 4);
    std::memcpy(rec.data() + 4, &count, 4);
    std::memcpy(rec.data() + 8, &next_seq_, 8);
    record_digest(count, next_seq_, rec.data() + kRecordHeaderBytes, rec.size() - kRecordHeaderBytes, rec.data() + 16);
    if (magic == kLabelMagic) rec[16] ^= 0x5a;
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
}

void StateLog::reset() {
    write_fresh_log(dir_, path_, next_seq_, layout_);
    end_ = kLogHeaderBytes;
    failed_ = false;
    reopen_for_append();
}

RestoreStats restore_state(const std::string& dir, TemporalStore& store) {
    RestoreStats stats;
    const std::string snap = snapshot_path(dir);
    const std::string log = log_path(dir);
    TemporalStore fresh(store.layout(), store.config());
    if (file_exists(snap)) {
        fresh = read_snapshot(snap, store.layout(), store.config());
        stats.snapshot_loaded = true;
        stats.snapshot_transactions = fresh.size();
    }
    if (file_exists(log)) {
        auto on_labels = [&](uint64_t off, const fraud_label* labels, size_t n) {
            // A label record may predate the snapshot (which then holds it) or name an event
            // evicted since: what can apply is applied, the rest was already applied or is gone.
            for (size_t i = 0; i < n; ++i) {
                uint32_t row;
                if (!fresh.find_event(labels[i].event_id, &row)) continue;
                try {
                    validate_labels(fresh, &labels[i], 1);
                } catch (const FraudError& e) {
                    log_fail(log, "label record at offset " + std::to_string(off) + ": replay refused: " + e.what());
                }
                fresh.apply_label(row, labels[i].label, labels[i].label_time_ms);
            }
            ++stats.log_label_records;
        };
        const Scan scan = scan_log(log, store.layout(), [&](uint64_t off, uint64_t first, const fraud_event* txns, size_t n) {
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
        }, on_labels);
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
