// Replaces global operator new to count heap allocations, so a test can check that a hot path
// allocates nothing after warm-up. Include from exactly one file per test program.
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

// Atomic: a test may allocate from several threads (test_decisions; TSan would flag a plain long).
inline std::atomic<long> g_allocations{0};

void* operator new(std::size_t n) {
    ++g_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
