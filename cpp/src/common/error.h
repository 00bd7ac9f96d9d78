// The one exception type inside the core; the C API turns it into a status and a message.
#pragma once

#include <stdexcept>
#include <string>

#include "libfraud/fraud.h"

namespace libfraud {

class FraudError : public std::runtime_error {
public:
    FraudError(fraud_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    fraud_status status() const noexcept { return status_; }

private:
    fraud_status status_;
};

}  // namespace libfraud
