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
constexpr size_t kFixedBytes = 56;
constexpr size_t kBaseBytes = 32;
constexpr size_t kRowBytes = 84;
static_assert(sizeof(fraud_txn) == 64, "fraud_txn is 64 bytes");

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

void write_snapshot(const TemporalStore& store, const std::string& path) {
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
        std::vector<unsigned char> bases;
        uint64_t n_bases = 0;
        store.for_each_entity_base([&](fraud_entity type, int64_t id, double base, double base_sq) {
            put(bases, static_cast<int32_t>(type));
            put(bases, uint32_t{0});
            put(bases, id);
            put(bases, base);
            put(bases, base_sq);
            ++n_bases;
        });
        const StoreConfig& c = store.config();
        put(buf, c.retention_ms);
        put(buf, c.max_history_per_entity);
        put(buf, uint32_t{0});
        put(buf, store.watermark_ms());
        put(buf, store.evicted());
        put(buf, store.appended_total());
        put(buf, n_bases);
        put(buf, static_cast<uint64_t>(store.size()));
        buf.insert(buf.end(), bases.begin(), bases.end());
        flush(kHeaderBytes);
        for (size_t k = 0; k < store.size(); ++k) {
            const uint32_t row = store.row_at(k);
            put(buf, store.txn(row));
            const uint32_t* d = store.degrees_before(row);
            for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) put(buf, d[e]);
            put(buf, store.history_mask_at(k));
            buf.insert(buf.end(), 3, 0);
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
    fsync_dir(dir_of(path));
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

uint64_t snapshot_appended_total(const std::string& path) {
    Opened o;
    open_and_check_header(path, o);
    unsigned char fx[kFixedBytes];
    Reader(o.f.fd, path, nullptr).read(fx, kFixedBytes);
    return get<uint64_t>(fx + 32);
}

namespace {

// wanted: the config of the store to build; nullptr = the snapshot's own.
TemporalStore read_impl(const std::string& path, const StoreConfig* wanted) {
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
    const auto n_bases = get<uint64_t>(fx + 40);
    const auto n_rows = get<uint64_t>(fx + 48);
    const uint64_t body = o.payload - kFixedBytes;
    if (n_bases > body / kBaseBytes || n_rows > body / kRowBytes ||
        n_bases * kBaseBytes + n_rows * kRowBytes != body) {
        io_fail(path, "corrupt: " + std::to_string(n_bases) + " bases and " + std::to_string(n_rows) +
                          " rows do not fill the " + std::to_string(body) + " bytes after the fixed part");
    }
    if (snap.retention_ms < 0) io_fail(path, "corrupt: negative retention_ms");
    // Every transaction ever appended is either retained (a row) or evicted; the log's numbering
    // continues from appended_total, so a wrong total would make replay skip acknowledged records.
    if (evicted > appended_total || appended_total - evicted != n_rows) {
        io_fail(path, "corrupt: appended_total " + std::to_string(appended_total) + " is not rows " +
                          std::to_string(n_rows) + " + evicted " + std::to_string(evicted));
    }
    TemporalStore store(wanted ? *wanted : snap);
    try {
        for (uint64_t i = 0; i < n_bases; ++i) {
            unsigned char b[kBaseBytes];
            in.read(b, kBaseBytes);
            const auto type = get<int32_t>(b);
            const auto id = get<int64_t>(b + 8);
            if (type < 0 || type >= FRAUD_ENTITY_COUNT || id < 0) {
                io_fail(path, "corrupt: base " + std::to_string(i) + " has entity type " +
                                  std::to_string(type) + ", id " + std::to_string(id));
            }
            store.restore_entity_base(static_cast<fraud_entity>(type), id, get<double>(b + 16),
                                      get<double>(b + 24));
        }
        std::vector<unsigned char> chunk;
        int64_t last_ts = INT64_MIN;
        for (uint64_t i = 0; i < n_rows;) {
            const uint64_t m = std::min<uint64_t>(n_rows - i, 8192);
            chunk.resize(m * kRowBytes);
            in.read(chunk.data(), chunk.size());
            for (uint64_t j = 0; j < m; ++j, ++i) {
                const unsigned char* r = chunk.data() + j * kRowBytes;
                fraud_txn t;
                std::memcpy(&t, r, sizeof t);
                uint32_t deg[FRAUD_ENTITY_COUNT];
                std::memcpy(deg, r + 64, sizeof deg);
                const uint8_t mask = r[80];
                std::string err = field_error(t);
                if (err.empty() && t.timestamp_ms < last_ts) err = "timestamp_ms out of order";
                if (err.empty() && t.timestamp_ms > watermark) err = "timestamp_ms after the watermark";
                if (err.empty() && store.contains_txn_id(t.txn_id)) err = "duplicate txn_id";
                for (int e = 0; e < FRAUD_ENTITY_COUNT && err.empty(); ++e) {
                    if ((mask & (1u << e)) && t.entity_id[e] < 0) err = "history mask names an absent entity";
                }
                if (err.empty() && (mask >> FRAUD_ENTITY_COUNT) != 0) err = "history mask has unknown bits";
                if (!err.empty()) {
                    io_fail(path, "corrupt: row " + std::to_string(i) + " (txn_id=" +
                                      std::to_string(t.txn_id) + "): " + err);
                }
                last_ts = t.timestamp_ms;
                store.restore_append(t, deg, mask);
            }
        }
        uint8_t digest[32];
        hash.finish(digest);
        if (std::memcmp(digest, o.digest, 32) != 0) io_fail(path, "checksum mismatch: SHA-256 of the payload differs");
        store.restore_finish(watermark, evicted, appended_total);
    } catch (const FraudError& e) {
        const std::string what = e.what();
        if (what.rfind("snapshot ", 0) == 0) throw;
        io_fail(path, "corrupt: " + what);
    }
    return store;
}

}  // namespace

TemporalStore read_snapshot(const std::string& path) { return read_impl(path, nullptr); }

TemporalStore read_snapshot(const std::string& path, const StoreConfig& config) {
    return read_impl(path, &config);
}

}  // namespace libfraud
