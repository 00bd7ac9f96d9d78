#include "store/log_format.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "store/snapshot.h"

namespace libfraud {
namespace {

constexpr char kLogMagic[8] = {'L', 'F', 'R', 'D', 'S', 'L', 'O', 'G'};
constexpr size_t kLogDigestedBytes = 72;  // magic .. layout digest, covered by the header digest
constexpr uint32_t kRecordMagic = 0x4345524C;  // "LREC" little-endian: events
constexpr uint32_t kLabelMagic = 0x42414C4C;   // "LLAB": labels (do not advance the sequence)
constexpr size_t kRecordFixedBytes = 16;       // magic, n, first_seq: what the header check covers
constexpr size_t kLabelBytes = 24;

std::string errno_text() { return std::strerror(errno); }

template <class T>
T get(const unsigned char* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

void layout_digest(const StoreLayout& layout, uint8_t out[32]) {
    const std::string key = layout.key();
    Sha256 s;
    s.update(key.data(), key.size());
    s.finish(out);
}

void header_check(const unsigned char* rec, uint8_t out[8]) {
    uint8_t d[32];
    Sha256 h;
    h.update(rec, kRecordFixedBytes);
    h.finish(d);
    std::memcpy(out, d, 8);
}

void record_digest(const unsigned char* rec, const unsigned char* payload, size_t bytes, uint8_t out[32]) {
    Sha256 h;
    h.update(rec, kRecordFixedBytes);
    h.update(payload, bytes);
    h.finish(out);
}

size_t event_bytes(const RowLayout& l) { return 8 * (3 + size_t(l.E) + l.N + l.C); }

std::vector<unsigned char> sealed(uint32_t magic, size_t n, uint64_t first_seq, std::vector<unsigned char> rec) {
    const auto count = static_cast<uint32_t>(n);
    std::memcpy(rec.data(), &magic, 4);
    std::memcpy(rec.data() + 4, &count, 4);
    std::memcpy(rec.data() + 8, &first_seq, 8);
    header_check(rec.data(), rec.data() + 16);
    record_digest(rec.data(), rec.data() + kRecordHeaderBytes, rec.size() - kRecordHeaderBytes, rec.data() + 24);
    return rec;
}

enum class Found { Record, Torn, Damaged };

struct RecordAt {
    uint32_t n = 0;
    uint64_t first_seq = 0, bytes = 0;
    bool labels = false;
    std::string why;  // when damaged
};

// What starts at p, `avail` bytes before the end of the file: a whole record; the prefix of one
// that a crash cut short (fewer bytes than its header, or than the payload its intact header
// announces); or damaged bytes, which no append ever wrote.
Found record_at(const unsigned char* p, uint64_t avail, size_t each_event, RecordAt& r) {
    if (avail < kRecordHeaderBytes) return Found::Torn;
    uint8_t check[8];
    header_check(p, check);
    if (std::memcmp(check, p + 16, 8) != 0) {
        r.why = "its header is damaged (header checksum mismatch)";
        return Found::Damaged;
    }
    const uint32_t magic = get<uint32_t>(p);
    r.n = get<uint32_t>(p + 4);
    r.first_seq = get<uint64_t>(p + 8);
    if ((magic != kRecordMagic && magic != kLabelMagic) || r.n == 0) {
        r.why = "its header is not a record's (type " + std::to_string(magic) + ", count " + std::to_string(r.n) + ")";
        return Found::Damaged;
    }
    r.labels = magic == kLabelMagic;
    const size_t each = r.labels ? kLabelBytes : each_event;
    if ((avail - kRecordHeaderBytes) / each < r.n) return Found::Torn;
    r.bytes = kRecordHeaderBytes + uint64_t{r.n} * each;
    uint8_t d[32];
    record_digest(p, p + kRecordHeaderBytes, r.n * each, d);
    if (std::memcmp(d, p + 24, 32) != 0) {
        r.why = "all its " + std::to_string(r.bytes) + " bytes are present but their checksum does not match";
        return Found::Damaged;
    }
    return Found::Record;
}

std::vector<unsigned char> read_whole(const std::string& path) {
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

LogHeader check_header(const std::string& path, const unsigned char* h, size_t size, const StoreLayout& layout) {
    if (size < kLogHeaderBytes) {
        log_fail(path, "truncated header: " + std::to_string(size) + " bytes, need " + std::to_string(kLogHeaderBytes));
    }
    if (std::memcmp(h, kLogMagic, 8) != 0) log_fail(path, "wrong magic: not a libfraud state log");
    if (get<uint32_t>(h + 8) != kLogVersion) {
        log_fail(path, "format version " + std::to_string(get<uint32_t>(h + 8)) + ", this library reads " +
                           std::to_string(kLogVersion));
    }
    uint8_t d[32];
    Sha256 s;
    s.update(h, kLogDigestedBytes);
    s.finish(d);
    if (get<uint32_t>(h + 12) != kLogHeaderBytes || std::memcmp(d, h + kLogDigestedBytes, 32) != 0) {
        log_fail(path, "corrupt header (checksum mismatch)");
    }
    uint8_t want[32];
    layout_digest(layout, want);
    if (std::memcmp(want, h + 40, 32) != 0) log_fail(path, "written for another schema or feature layout");
    LogHeader out;
    out.base_seq = get<uint64_t>(h + 16);
    std::memcpy(out.id.bytes, h + 24, 16);
    return out;
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

}  // namespace

void log_fail(const std::string& path, const std::string& what) {
    throw FraudError(FRAUD_STATUS_IO_ERROR, "state log " + path + ": " + what);
}

void write_log_file(const std::string& dir, const std::string& path, const LogHeader& header, const StoreLayout& layout) {
    unsigned char h[kLogHeaderBytes];
    std::memcpy(h, kLogMagic, 8);
    std::memcpy(h + 8, &kLogVersion, 4);
    const uint32_t hb = kLogHeaderBytes;
    std::memcpy(h + 12, &hb, 4);
    std::memcpy(h + 16, &header.base_seq, 8);
    std::memcpy(h + 24, header.id.bytes, 16);
    layout_digest(layout, h + 40);
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
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string e = errno_text();
        ::unlink(tmp.c_str());
        log_fail(path, "rename from " + tmp + " failed: " + e);
    }
    fsync_dir(dir);
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

LogHeader read_log_header(const std::string& path, const StoreLayout& layout) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) log_fail(path, "cannot open: " + errno_text());
    unsigned char h[kLogHeaderBytes];
    size_t got = 0;
    while (got < sizeof h) {
        const ssize_t r = ::read(fd, h + got, sizeof h - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += static_cast<size_t>(r);
    }
    ::close(fd);
    return check_header(path, h, got, layout);
}

std::vector<unsigned char> event_record(const RowLayout& l, const fraud_event* events, size_t n, uint64_t first_seq) {
    const size_t each = event_bytes(l);
    if (n > (UINT32_MAX - kRecordHeaderBytes) / each) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "batch too large for one log record");
    std::vector<unsigned char> rec(kRecordHeaderBytes + n * each);
    unsigned char* p = rec.data() + kRecordHeaderBytes;
    auto put = [&](const void* v) {
        std::memcpy(p, v, 8);
        p += 8;
    };
    for (size_t i = 0; i < n; ++i) {
        const fraud_event& ev = events[i];
        put(&ev.event_id);
        put(&ev.time_ms);
        put(&ev.amount);
        for (uint32_t e = 0; e < l.E; ++e) put(&ev.entity_id[e]);
        for (uint32_t k = 0; k < l.N; ++k) put(&ev.numeric[k]);
        for (uint32_t k = 0; k < l.C; ++k) put(&ev.categorical[k]);
    }
    return sealed(kRecordMagic, n, first_seq, std::move(rec));
}

std::vector<unsigned char> label_record(const fraud_label* labels, size_t n, uint64_t first_seq) {
    if (n > (UINT32_MAX - kRecordHeaderBytes) / kLabelBytes) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "batch too large for one log record");
    std::vector<unsigned char> rec(kRecordHeaderBytes + n * kLabelBytes);
    for (size_t i = 0; i < n; ++i) {
        unsigned char* q = rec.data() + kRecordHeaderBytes + i * kLabelBytes;
        std::memcpy(q, &labels[i].event_id, 8);
        std::memcpy(q + 8, &labels[i].label_time_ms, 8);
        std::memcpy(q + 16, &labels[i].label, 4);
        std::memcpy(q + 20, &labels[i].reserved, 4);
    }
    return sealed(kLabelMagic, n, first_seq, std::move(rec));
}

LogScan scan_log(const std::string& path, const StoreLayout& layout, bool allow_corrupt_tail,
                 const OnEvents& on_events, const OnLabels& on_labels) {
    const RowLayout rl(layout.schema);
    const size_t each = event_bytes(rl);
    const std::vector<unsigned char> data = read_whole(path);
    LogScan scan;
    scan.header = check_header(path, data.data(), data.size(), layout);
    scan.next_seq = scan.header.base_seq;
    uint64_t off = kLogHeaderBytes;
    DecodedEvents decoded;
    std::vector<fraud_label> labels;
    while (off < data.size()) {
        RecordAt r;
        const Found found = record_at(data.data() + off, data.size() - off, each, r);
        if (found == Found::Torn) {
            scan.torn_bytes = data.size() - off;
            break;
        }
        if (found == Found::Damaged) {
            const std::string where = "corrupt record at offset " + std::to_string(off) + " (sequence " +
                                      std::to_string(scan.next_seq) + "): " + r.why;
            for (uint64_t p = off + 1; p + kRecordHeaderBytes <= data.size(); ++p) {
                RecordAt later;
                const uint32_t m = get<uint32_t>(data.data() + p);
                if ((m == kRecordMagic || m == kLabelMagic) &&
                    record_at(data.data() + p, data.size() - p, each, later) == Found::Record) {
                    log_fail(path, where + "; a valid record follows at offset " + std::to_string(p) +
                                       ": refusing to skip acknowledged transactions");
                }
            }
            if (!allow_corrupt_tail) {
                log_fail(path, where + "; it is the last record, but not a torn write (a crash leaves fewer bytes "
                                       "than a record, with its header intact): its transactions may have been "
                                       "acknowledged. To open without them, allow the quarantine of a corrupt log "
                                       "tail (fraud_engine_params.quarantine_corrupt_log_tail), which keeps the " +
                                       std::to_string(data.size() - off) + " bytes in a quarantine file");
            }
            scan.corrupt_bytes = data.size() - off;
            scan.corrupt_what = where;
            break;
        }
        if (r.first_seq != scan.next_seq) {
            log_fail(path, "record at offset " + std::to_string(off) + " starts at sequence " +
                               std::to_string(r.first_seq) + ", expected " + std::to_string(scan.next_seq));
        }
        const unsigned char* payload = data.data() + off + kRecordHeaderBytes;
        if (r.labels) {
            if (on_labels) {
                labels.resize(r.n);
                for (uint32_t i = 0; i < r.n; ++i) {
                    const unsigned char* q = payload + i * kLabelBytes;
                    labels[i] = fraud_label{get<int64_t>(q), get<int64_t>(q + 8), get<int32_t>(q + 16), get<int32_t>(q + 20)};
                }
                on_labels(off, labels.data(), r.n);
            }
        } else {
            if (on_events) {
                decoded.decode(rl, payload, r.n);
                on_events(off, r.first_seq, decoded.events.data(), r.n);
            }
            scan.next_seq += r.n;
        }
        off += r.bytes;
    }
    scan.valid_end = off;
    return scan;
}

}  // namespace libfraud
