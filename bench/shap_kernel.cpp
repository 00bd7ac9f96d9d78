// Times explain/tree_shap against explain/fast_tree_shap on tables and rows that
// bench/shap_kernel.py writes to a directory (raw little-endian arrays, meta.txt); one thread, each
// row timed alone after a warm-up pass. Prints one JSON object. Built by shap_kernel.py.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "explain/fast_tree_shap.h"
#include "explain/tree_shap.h"

using namespace libfraud;
using Clock = std::chrono::steady_clock;

template <typename T>
std::vector<T> load(const std::string& dir, const char* name) {
    std::ifstream in(dir + "/" + name, std::ios::binary | std::ios::ate);
    const auto size = static_cast<size_t>(in.tellg());
    std::vector<T> v(size / sizeof(T));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(size));
    return v;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: shap_kernel DIR RECURSIVE_ROWS TABLE_ROWS\n");
        return 2;
    }
    const std::string dir = argv[1];
    const size_t recursive_rows = std::stoul(argv[2]);
    const size_t table_rows = std::stoul(argv[3]);
    size_t num_features = 0, max_depth = 0;
    double expected = 0;
    std::ifstream(dir + "/meta.txt") >> num_features >> max_depth >> expected;

    const auto feature = load<int32_t>(dir, "feature");
    const auto threshold = load<float>(dir, "threshold");
    const auto left = load<int32_t>(dir, "left");
    const auto right = load<int32_t>(dir, "right");
    const auto default_left = load<uint8_t>(dir, "default_left");
    const auto cover = load<double>(dir, "cover");
    const auto value = load<double>(dir, "value");
    const auto offsets = load<int64_t>(dir, "tree_offsets");
    const auto rows = load<float>(dir, "rows");
    TreeShapTables t{feature.data(), threshold.data(), left.data(), right.data(),
                     default_left.data(), cover.data(), value.data(), offsets.data(),
                     offsets.size() - 1, num_features, max_depth, expected};
    tree_shap_validate(t, feature.size());
    const size_t n_rows = rows.size() / num_features;

    const size_t predicted = fast_tree_shap_bytes(t);
    auto start = Clock::now();
    const auto fast = FastTreeShap::build(t, std::numeric_limits<size_t>::max());
    const double build_s = seconds_since(start);

    std::vector<double> scratch(tree_shap_scratch_size(max_depth));
    std::vector<double> fast_scratch(fast->scratch_size());
    std::vector<double> want(num_features + 1), got(num_features + 1);
    // Warm-up, untimed: the timed rows once through the tables (and a few through the recursion).
    for (size_t i = 0; i < table_rows; ++i) {
        fast->contributions(&rows[(i % n_rows) * num_features], got.data(), fast_scratch.data());
    }
    for (size_t i = 0; i < std::min<size_t>(n_rows, 5); ++i) {
        tree_shap(t, &rows[i * num_features], want.data(), scratch.data());
    }

    std::vector<double> fast_us, recursive_us;
    for (size_t i = 0; i < table_rows; ++i) {
        const float* x = &rows[(i % n_rows) * num_features];
        start = Clock::now();
        fast->contributions(x, got.data(), fast_scratch.data());
        fast_us.push_back(seconds_since(start) * 1e6);
    }
    double worst = 0;
    for (size_t i = 0; i < recursive_rows; ++i) {
        const float* x = &rows[(i % n_rows) * num_features];
        start = Clock::now();
        tree_shap(t, x, want.data(), scratch.data());
        recursive_us.push_back(seconds_since(start) * 1e6);
        fast->contributions(x, got.data(), fast_scratch.data());
        for (size_t k = 0; k <= num_features; ++k) {
            worst = std::max(worst, std::abs(got[k] - want[k]));
        }
    }
    std::printf("{\"recursive_us\": %.2f, \"tables_us\": %.2f, \"build_ms\": %.1f, \"bytes\": %zu, "
                "\"bytes_predicted\": %zu, \"max_abs_diff\": %.3g, \"recursive_rows\": %zu, "
                "\"table_rows\": %zu}\n",
                median(recursive_us), median(fast_us), build_s * 1e3, fast->bytes(), predicted,
                worst, recursive_rows, table_rows);
    return 0;
}
