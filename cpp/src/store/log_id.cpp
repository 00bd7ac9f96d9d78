#include "store/log_id.h"

#include <openssl/rand.h>

#include "common/error.h"

namespace libfraud {

LogId LogId::random() {
    LogId id;
    do {
        if (RAND_bytes(id.bytes, sizeof id.bytes) != 1) {
            throw FraudError(FRAUD_STATUS_INTERNAL, "OpenSSL: RAND_bytes failed to make a state log id");
        }
    } while (id.none());
    return id;
}

bool LogId::none() const {
    for (uint8_t b : bytes)
        if (b) return false;
    return true;
}

std::string LogId::hex() const {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (uint8_t b : bytes) {
        s += digits[b >> 4];
        s += digits[b & 15];
    }
    return s;
}

}  // namespace libfraud
