// The C++ tests' checks: plain programs (no framework) that count, print "N passed, N failed"
// last, and exit non-zero on any failure.
#pragma once

#include <cstdio>
#include <string>

#include "common/error.h"

inline int g_passed = 0;
inline int g_failed = 0;

#define CHECK(cond)                                                     \
    do {                                                                \
        if (cond) {                                                     \
            ++g_passed;                                                 \
        } else {                                                        \
            ++g_failed;                                                 \
            std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                               \
    } while (0)

// Checks that fn throws FraudError with this status and a message containing needle.
template <class Fn>
inline void check_throws(Fn fn, fraud_status status, const std::string& needle, int line) {
    try {
        fn();
    } catch (const libfraud::FraudError& e) {
        const bool ok = e.status() == status && std::string(e.what()).find(needle) != std::string::npos;
        if (ok) {
            ++g_passed;
        } else {
            ++g_failed;
            std::printf("FAIL line %d: status %d message \"%s\", wanted status %d containing \"%s\"\n",
                        line, e.status(), e.what(), status, needle.c_str());
        }
        return;
    }
    ++g_failed;
    std::printf("FAIL line %d: no FraudError (wanted \"%s\")\n", line, needle.c_str());
}
#define CHECK_THROWS(expr, status, needle) check_throws([&] { expr; }, status, needle, __LINE__)

// The last line ctest's log shows; the exit status.
inline int report_checks() {
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
