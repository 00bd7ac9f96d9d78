// The one exception type inside the core; the C API turns it into a status and a message.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "libfraud/fraud.h"

namespace libfraud {

// Messages stay readable and bounded whatever a hostile input holds (a 2e6-element array or a
// 50 MB name would otherwise be copied into every message about it).
inline constexpr size_t kMaxMessage = 2000;

// text cut to at most `limit` bytes, never inside a UTF-8 sequence (a message crosses into Python
// as str), with the full length noted.
inline std::string bounded(std::string text, size_t limit) {
    if (text.size() <= limit) return text;
    const size_t full = text.size();
    size_t cut = limit;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
    return text + "... (" + std::to_string(full) + " characters)";
}

class FraudError : public std::runtime_error {
public:
    FraudError(fraud_status status, const std::string& message)
        : std::runtime_error(bounded(message, kMaxMessage)), status_(status) {}
    fraud_status status() const noexcept { return status_; }

private:
    fraud_status status_;
};

}  // namespace libfraud
