#include "explain/shap_file.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "common/error.h"
#include "engine/sealed_file.h"

namespace libfraud {
namespace {

constexpr char kMagic[8] = {'L', 'F', 'S', 'H', 'A', 'P', '1', '\0'};
constexpr uint32_t kVersion = 1;
// Bounds that keep a corrupt header from asking for absurd allocations; real models are far below.
constexpr uint64_t kMaxNodes = uint64_t{1} << 31;
constexpr uint64_t kMaxDepth = 64;
constexpr uint64_t kHeaderBytes = 56;
// cover, value (f64), feature, left, right (i32), threshold (f32), default_left (u8).
constexpr uint64_t kBytesPerNode = 8 + 8 + 4 + 4 + 4 + 4 + 1;

class Reader {
public:
    Reader(const std::string& path, std::string bytes) : path_(path), bytes_(std::move(bytes)) {}

    template <typename T>
    T scalar() {
        T v;
        take(&v, sizeof v);
        return v;
    }
    template <typename T>
    std::vector<T> array(uint64_t n) {
        std::vector<T> v(n);
        take(v.data(), n * sizeof(T));
        return v;
    }
    size_t size() const { return bytes_.size(); }
    void expect_end() const {
        if (at_ != bytes_.size())
            fail(std::to_string(bytes_.size() - at_) + " bytes after the last table (a different layout)");
    }
    [[noreturn]] void fail(const std::string& what) const {
        throw FraudError(FRAUD_STATUS_LOAD_ERROR, "TreeSHAP tables " + path_ + ": " + what);
    }

private:
    void take(void* out, size_t n) {
        if (bytes_.size() - at_ < n) fail("truncated: " + std::to_string(bytes_.size()) + " bytes");
        std::memcpy(out, bytes_.data() + at_, n);
        at_ += n;
    }
    std::string path_;
    std::string bytes_;
    size_t at_ = 0;
};

// Magic, version, sizes that add up to the bytes' length exactly, then tree_shap_validate.
ShapTablesFile parse_shap_tables(const std::string& path, std::string bytes) {
    Reader r(path, std::move(bytes));
    char magic[8];
    for (char& c : magic) c = r.scalar<char>();
    if (std::memcmp(magic, kMagic, sizeof magic) != 0) r.fail("not a libfraud TreeSHAP tables file");
    const auto version = r.scalar<uint32_t>();
    if (version != kVersion)
        r.fail("version " + std::to_string(version) + "; this libfraud reads version " + std::to_string(kVersion));
    r.scalar<uint32_t>();  // reserved
    const auto n_trees = r.scalar<uint64_t>();
    const auto n_nodes = r.scalar<uint64_t>();
    ShapTablesFile f;
    f.num_features = r.scalar<uint64_t>();
    f.max_depth = r.scalar<uint64_t>();
    f.expected_value = r.scalar<double>();
    if (n_trees == 0 || n_nodes < n_trees || n_nodes > kMaxNodes || f.max_depth > kMaxDepth ||
        f.num_features == 0 || f.num_features > kMaxNodes || !std::isfinite(f.expected_value))
        r.fail("implausible header: " + std::to_string(n_trees) + " trees, " + std::to_string(n_nodes) +
               " nodes, " + std::to_string(f.num_features) + " features, depth " + std::to_string(f.max_depth));
    // The exact length before any allocation: a header may not ask for memory the file lacks.
    const uint64_t expected = kHeaderBytes + 8 * (n_trees + 1) + kBytesPerNode * n_nodes;
    if (r.size() != expected)
        r.fail(std::to_string(r.size()) + " bytes where the header's " + std::to_string(n_trees) + " trees and " +
               std::to_string(n_nodes) + " nodes take " + std::to_string(expected));
    f.tree_offsets = r.array<int64_t>(n_trees + 1);
    f.cover = r.array<double>(n_nodes);
    f.value = r.array<double>(n_nodes);
    f.feature = r.array<int32_t>(n_nodes);
    f.left = r.array<int32_t>(n_nodes);
    f.right = r.array<int32_t>(n_nodes);
    f.threshold = r.array<float>(n_nodes);
    f.default_left = r.array<uint8_t>(n_nodes);
    r.expect_end();
    try {
        tree_shap_validate(f.view(), n_nodes);
    } catch (const FraudError& e) {
        r.fail(e.what());
    }
    return f;
}

}  // namespace

TreeShapTables ShapTablesFile::view() const {
    TreeShapTables t;
    t.feature = feature.data();
    t.threshold = threshold.data();
    t.left = left.data();
    t.right = right.data();
    t.default_left = default_left.data();
    t.cover = cover.data();
    t.value = value.data();
    t.tree_offsets = tree_offsets.data();
    t.n_trees = tree_offsets.size() - 1;
    t.num_features = num_features;
    t.max_depth = max_depth;
    t.expected_value = expected_value;
    return t;
}

ShapTablesFile read_shap_tables(const std::string& path, const std::string& expected_sha256) {
    std::string bytes;
    try {
        bytes = SealedFile(path, expected_sha256).bytes();  // the very bytes hashed are parsed
    } catch (const FraudError& e) {
        if (e.status() == FRAUD_STATUS_BUNDLE_CHECKSUM) throw;  // altered: the bundle's fault
        throw FraudError(FRAUD_STATUS_LOAD_ERROR, "TreeSHAP tables " + std::string(e.what()));
    }
    return parse_shap_tables(path, std::move(bytes));
}

}  // namespace libfraud
