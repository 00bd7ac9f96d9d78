// Recent per-transaction scoring latencies, for the p50/p99 a switch reads from its counters.
// Writers never block: a fixed ring of relaxed atomics; a reader copies it and sorts the copy.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

namespace libfraud {

class LatencyWindow {
public:
    static constexpr size_t kSize = 4096;

    void record(uint64_t ns) {
        const uint64_t i = next_.fetch_add(1, std::memory_order_relaxed);
        ring_[i % kSize].store(ns, std::memory_order_relaxed);
    }

    // {p50, p99} in microseconds of the last kSize records; {0, 0} when none.
    std::array<double, 2> percentiles_us() const {
        const uint64_t n = std::min<uint64_t>(next_.load(std::memory_order_relaxed), kSize);
        if (n == 0) return {0.0, 0.0};
        std::vector<uint64_t> copy(n);
        for (uint64_t i = 0; i < n; ++i) copy[i] = ring_[i].load(std::memory_order_relaxed);
        std::sort(copy.begin(), copy.end());
        auto at = [&](double q) { return static_cast<double>(copy[static_cast<size_t>(q * (n - 1))]) / 1e3; };
        return {at(0.50), at(0.99)};
    }

private:
    std::array<std::atomic<uint64_t>, kSize> ring_{};
    std::atomic<uint64_t> next_{0};
};

}  // namespace libfraud
