// The identity of one state log file: 128 random bits, written in the log's header when the file
// is created and in the snapshot it follows, so a missing or replaced log is noticed (state_log.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace libfraud {

struct LogId {
    uint8_t bytes[16] = {};

    // A fresh id from the OS's random source (OpenSSL's RAND_bytes); never all zero.
    static LogId random();
    // All zero: "no log" (a snapshot written outside a state directory names none).
    bool none() const;
    std::string hex() const;  // 32 lowercase hex digits, for messages
    bool operator==(const LogId& o) const { return std::memcmp(bytes, o.bytes, sizeof bytes) == 0; }
    bool operator!=(const LogId& o) const { return !(*this == o); }
};

}  // namespace libfraud
