#include "store/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "common/error.h"
#include "store/validate.h"

namespace libfraud {
namespace {

constexpr size_t kHeaderBytes = 56;
constexpr size_t kFixedBytes = 72;
constexpr size_t kDroppedBytes = 24;
constexpr uint64_t kMaxLayoutKey = 1u << 20;

[[noreturn]] void io_fail(const std::string& path, const std::string& what) {
    throw FraudError(FRAUD_STATUS_IO_ERROR, "snapshot " + path + ": " + what);
}

std::string errno_text() { return std::strerror(errno); }

template <class T>
void put(std::vector<unsigned char>& b, const T& v) {
    const auto* p = reinterpret_cast<const unsigned char*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
}

template <class T>
T get(const unsigned char* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

void write_all(int fd, const unsigned char* p, size_t n, const std::string& path) {
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            io_fail(path, "write failed: " + errno_text());
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
}

// Reads exactly n bytes, hashing them; a short read means the file changed under us.
class Reader {
public:
    Reader(int fd, const std::string& path, Sha256* hash) : fd_(fd), path_(path), hash_(hash) {}
    void read(unsigned char* p, size_t n) {
        unsigned char* const start = p;
        const size_t total = n;
        while (n > 0) {
            const ssize_t r = ::read(fd_, p, n);
            if (r < 0) {
                if (errno == EINTR) continue;
                io_fail(path_, "read failed: " + errno_text());
            }
            if (r == 0) io_fail(path_, "truncated: file ended early");
            p += r;
            n -= static_cast<size_t>(r);
        }
        if (hash_) hash_->update(start, total);
    }

private:
    int fd_;
    const std::string& path_;
    Sha256* hash_;
};

std::string dir_of(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1) {
        EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
        throw FraudError(FRAUD_STATUS_INTERNAL, "OpenSSL: cannot initialise SHA-256");
    }
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::update(const void* data, size_t n) {
    if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, n) != 1) {
        throw FraudError(FRAUD_STATUS_INTERNAL, "OpenSSL: SHA-256 update failed");
    }
}

void Sha256::finish(uint8_t out[32]) {
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out, &len) != 1 || len != 32) {
        throw FraudError(FRAUD_STATUS_INTERNAL, "OpenSSL: SHA-256 final failed");
    }
}

void fsync_dir(const std::string& dir) {
    Fd d;
    d.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d.fd < 0 || ::fsync(d.fd) != 0) {
        throw FraudError(FRAUD_STATUS_IO_ERROR, "directory " + dir + ": fsync failed: " + errno_text());
    }
}

void write_snapshot(const TemporalStore& store, const std::string& path, const LogId& next_log) {
    write_snapshot_file(store, path, next_log);
    fsync_dir(dir_of(path));
}

void write_snapshot_file(const TemporalStore& store, const std::string& path, const LogId& next_log) {
    const std::string tmp = path + ".tmp";
    Fd f;
    f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f.fd < 0) io_fail(tmp, "cannot create: " + errno_text());
    try {
        std::vector<unsigned char> buf;
        buf.reserve(1 << 20);
        buf.resize(kHeaderBytes);  // filled in last, once the digest is known
        Sha256 hash;
        uint64_t payload = 0;
        auto flush = [&](size_t keep_from) {
            hash.update(buf.data() + keep_from, buf.size() - keep_from);
            payload += buf.size() - keep_from;
            write_all(f.fd, buf.data(), buf.size(), tmp);
            buf.clear();
        };
        std::vector<unsigned char> dropped;
        uint64_t n_dropped = 0;
        store.for_each_entity_dropped([&](size_t type, int64_t id, uint64_t count) {
            put(dropped, static_cast<uint32_t>(type));
            put(dropped, uint32_t{0});
            put(dropped, id);
            put(dropped, count);
            ++n_dropped;
        });
        const std::string key = store.layout().key();
        const StoreConfig& c = store.config();
        put(buf, c.retention_ms);
        put(buf, c.max_history_per_entity);
        put(buf, uint32_t{0});
        put(buf, store.watermark_ms());
        put(buf, store.evicted());
        put(buf, store.appended_total());
        put(buf, n_dropped);
        put(buf, static_cast<uint64_t>(store.size()));
        buf.insert(buf.end(), next_log.bytes, next_log.bytes + sizeof next_log.bytes);
        put(buf, static_cast<uint64_t>(key.size()));
        buf.insert(buf.end(), key.begin(), key.end());
        buf.insert(buf.end(), dropped.begin(), dropped.end());
        flush(kHeaderBytes);
        const RowLayout& rl = store.rows();
        const uint32_t E = rl.E, N = rl.N, C = rl.C;
        for (size_t k = 0; k < store.size(); ++k) {
            const EventRow r = store.event(store.row_at(k));
            put(buf, r.event_id());
            put(buf, r.time_ms());
            put(buf, r.amount());
            put(buf, r.label_time_ms());
            for (uint32_t e = 0; e < E; ++e) put(buf, r.entity(e));
            for (uint32_t i = 0; i < N; ++i) put(buf, r.numeric(i));
            for (uint32_t i = 0; i < C; ++i) put(buf, r.categorical(i));
            for (uint32_t e = 0; e < E; ++e) put(buf, r.degree_before(e));
            put(buf, r.history_mask());
            put(buf, static_cast<int32_t>(r.label()));
            if (buf.size() >= (1u << 20)) flush(0);
        }
        if (!buf.empty()) flush(0);
        uint8_t digest[32];
        hash.finish(digest);
        std::vector<unsigned char> header;
        header.insert(header.end(), kSnapshotMagic, kSnapshotMagic + 8);
        put(header, kSnapshotVersion);
        put(header, static_cast<uint32_t>(kHeaderBytes));
        put(header, payload);
        header.insert(header.end(), digest, digest + 32);
        if (::pwrite(f.fd, header.data(), header.size(), 0) != static_cast<ssize_t>(header.size())) {
            io_fail(tmp, "header write failed: " + errno_text());
        }
        if (::fsync(f.fd) != 0) io_fail(tmp, "fsync failed: " + errno_text());
        const int fd = f.fd;
        f.fd = -1;
        if (::close(fd) != 0) io_fail(tmp, "close failed: " + errno_text());
        if (::rename(tmp.c_str(), path.c_str()) != 0) {
            io_fail(path, "rename from " + tmp + " failed: " + errno_text());
        }
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
}

namespace {

struct Opened {
    Fd f;
    uint64_t payload = 0;
    uint8_t digest[32];
};

void open_and_check_header(const std::string& path, Opened& o) {
    o.f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (o.f.fd < 0) io_fail(path, "cannot open: " + errno_text());
    struct stat st;
    if (::fstat(o.f.fd, &st) != 0) io_fail(path, "cannot stat: " + errno_text());
    const auto size = static_cast<uint64_t>(st.st_size);
    if (size < kHeaderBytes + kFixedBytes) {
        io_fail(path, "truncated: " + std::to_string(size) + " bytes, header and fixed part need " +
                          std::to_string(kHeaderBytes + kFixedBytes));
    }
    unsigned char h[kHeaderBytes];
    Reader(o.f.fd, path, nullptr).read(h, kHeaderBytes);
    if (std::memcmp(h, kSnapshotMagic, 8) != 0) io_fail(path, "wrong magic: not a libfraud snapshot");
    const auto version = get<uint32_t>(h + 8);
    if (version != kSnapshotVersion) {
        io_fail(path, "format version " + std::to_string(version) + ", this library reads " +
                          std::to_string(kSnapshotVersion));
    }
    if (get<uint32_t>(h + 12) != kHeaderBytes) {
        io_fail(path, "header size " + std::to_string(get<uint32_t>(h + 12)) + ", expected " +
                          std::to_string(kHeaderBytes));
    }
    o.payload = get<uint64_t>(h + 16);
    if (o.payload != size - kHeaderBytes) {
        io_fail(path, (o.payload > size - kHeaderBytes ? "truncated: " : "trailing bytes: ") +
                          std::string("header says ") + std::to_string(o.payload) +
                          " payload bytes, file has " + std::to_string(size - kHeaderBytes));
    }
    std::memcpy(o.digest, h + 24, 32);
}

}  // namespace

SnapshotInfo read_snapshot_info(const std::string& path) {
    Opened o;
    open_and_check_header(path, o);
    unsigned char fx[kFixedBytes];
    Reader(o.f.fd, path, nullptr).read(fx, kFixedBytes);
    SnapshotInfo info;
    info.appended_total = get<uint64_t>(fx + 32);
    std::memcpy(info.log.bytes, fx + 56, sizeof info.log.bytes);
    return info;
}

namespace {
size_t row_bytes(const RowLayout& l) { return 8 * (4 + l.E + l.N + l.C) + 4 * l.E + 8; }
}  // namespace

namespace {

// wanted: the config of the store to build; nullptr = the snapshot's own.
TemporalStore read_impl(const std::string& path, const StoreLayout& layout, const StoreConfig* wanted,
                        SnapshotInfo* info) {
    Opened o;
    open_and_check_header(path, o);
    Sha256 hash;
    Reader in(o.f.fd, path, &hash);
    unsigned char fx[kFixedBytes];
    in.read(fx, kFixedBytes);
    StoreConfig snap;
    snap.retention_ms = get<int64_t>(fx);
    snap.max_history_per_entity = get<uint32_t>(fx + 8);
    const auto watermark = get<int64_t>(fx + 16);
    const auto evicted = get<uint64_t>(fx + 24);
    const auto appended_total = get<uint64_t>(fx + 32);
    const auto n_dropped = get<uint64_t>(fx + 40);
    const auto n_rows = get<uint64_t>(fx + 48);
    uint64_t body = o.payload - kFixedBytes;
    if (body < 8) io_fail(path, "truncated: no schema key");
    unsigned char kl[8];
    in.read(kl, 8);
    const auto key_len = get<uint64_t>(kl);
    body -= 8;
    if (key_len > kMaxLayoutKey || key_len > body) io_fail(path, "corrupt: schema key of " + std::to_string(key_len) + " bytes");
    std::string key(key_len, '\0');
    in.read(reinterpret_cast<unsigned char*>(key.data()), key_len);
    body -= key_len;
    if (key != layout.key()) {
        std::string shown;  // the key as read may be damaged: printable ASCII only in the message
        for (unsigned char c : key.substr(0, 512)) shown += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
        io_fail(path, "written for another schema or feature layout (" + shown + "), this engine's is " + layout.key());
    }
    const RowLayout rl(layout.schema);
    const size_t kRowBytes = row_bytes(rl);
    if (n_dropped > body / kDroppedBytes || n_rows > body / kRowBytes ||
        n_dropped * kDroppedBytes + n_rows * kRowBytes != body) {
        io_fail(path, "corrupt: " + std::to_string(n_dropped) + " entity counts and " + std::to_string(n_rows) +
                          " rows do not fill the " + std::to_string(body) + " bytes after the schema key");
    }
    if (snap.retention_ms < 0) io_fail(path, "corrupt: negative retention_ms");
    // Every transaction ever appended is either retained (a row) or evicted; the log's numbering
    // continues from appended_total, so a wrong total would make replay skip acknowledged records.
    if (evicted > appended_total || appended_total - evicted != n_rows) {
        io_fail(path, "corrupt: appended_total " + std::to_string(appended_total) + " is not rows " +
                          std::to_string(n_rows) + " + evicted " + std::to_string(evicted));
    }
    TemporalStore store(layout, wanted ? *wanted : snap);
    const uint32_t E = rl.E, N = rl.N, C = rl.C;
    try {
        for (uint64_t i = 0; i < n_dropped; ++i) {
            unsigned char b[kDroppedBytes];
            in.read(b, kDroppedBytes);
            const auto type = get<uint32_t>(b);
            const auto id = get<int64_t>(b + 8);
            if (type >= E || id < 0) {
                io_fail(path, "corrupt: entity count " + std::to_string(i) + " has entity type " +
                                  std::to_string(type) + ", id " + std::to_string(id));
            }
            store.restore_entity_dropped(type, id, get<uint64_t>(b + 16));
        }
        store.reserve(n_rows);  // n_rows matches the payload's size (checked above)
        std::vector<int64_t> ents(E), cats(C);
        std::vector<double> nums(N);
        std::vector<uint32_t> deg(E);
        std::vector<unsigned char> chunk;
        int64_t last_ts = INT64_MIN;
        for (uint64_t i = 0; i < n_rows;) {
            const uint64_t m = std::min<uint64_t>(n_rows - i, 8192);
            chunk.resize(m * kRowBytes);
            in.read(chunk.data(), chunk.size());
            for (uint64_t j = 0; j < m; ++j, ++i) {
                const unsigned char* r = chunk.data() + j * kRowBytes;
                fraud_event t{get<int64_t>(r), get<int64_t>(r + 8), get<double>(r + 16), ents.data(), nums.data(), cats.data()};
                const auto label_time = get<int64_t>(r + 24);
                const unsigned char* p = r + 32;
                for (uint32_t e = 0; e < E; ++e, p += 8) ents[e] = get<int64_t>(p);
                for (uint32_t k = 0; k < N; ++k, p += 8) nums[k] = get<double>(p);
                for (uint32_t k = 0; k < C; ++k, p += 8) cats[k] = get<int64_t>(p);
                for (uint32_t e = 0; e < E; ++e, p += 4) deg[e] = get<uint32_t>(p);
                const auto mask = get<uint32_t>(p);
                const auto label = get<int32_t>(p + 4);
                std::string err = field_error(layout.schema, t);
                if (err.empty() && t.time_ms < last_ts) err = "time_ms out of order";
                if (err.empty() && t.time_ms > watermark) err = "time_ms after the watermark";
                if (err.empty() && store.contains_event_id(t.event_id)) err = "duplicate event_id";
                for (uint32_t e = 0; e < E && err.empty(); ++e) {
                    if ((mask & (1u << e)) && ents[e] < 0) err = "history mask names an absent entity";
                }
                if (err.empty() && (mask >> E) != 0) err = "history mask has unknown bits";
                if (err.empty() && (label < -1 || label > 1)) err = "label is not -1, 0 or 1";
                if (err.empty() && label >= 0 && label_time < t.time_ms) err = "label time before the event";
                if (err.empty() && label < 0 && label_time != INT64_MAX) err = "label time without a label";
                if (!err.empty()) {
                    io_fail(path, "corrupt: row " + std::to_string(i) + " (event_id=" +
                                      std::to_string(t.event_id) + "): " + err);
                }
                last_ts = t.time_ms;
                store.restore_append(t, deg.data(), mask, label, label_time);
            }
        }
        uint8_t digest[32];
        hash.finish(digest);
        if (std::memcmp(digest, o.digest, 32) != 0) io_fail(path, "checksum mismatch: SHA-256 of the payload differs");
        store.restore_finish(watermark, evicted, appended_total);
        if (info) {
            info->appended_total = appended_total;
            std::memcpy(info->log.bytes, fx + 56, sizeof info->log.bytes);
        }
    } catch (const FraudError& e) {
        const std::string what = e.what();
        if (what.rfind("snapshot ", 0) == 0) throw;
        io_fail(path, "corrupt: " + what);
    }
    return store;
}

}  // namespace

TemporalStore read_snapshot(const std::string& path, const StoreLayout& layout) {
    return read_impl(path, layout, nullptr, nullptr);
}

TemporalStore read_snapshot(const std::string& path, const StoreLayout& layout, const StoreConfig& config,
                            SnapshotInfo* info) {
    return read_impl(path, layout, &config, info);
}

}  // namespace libfraud
