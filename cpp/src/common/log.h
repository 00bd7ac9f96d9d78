// The library never prints: messages go to the caller's fraud_log_fn (fraud_set_log_callback).
#pragma once

#include <string>

#include "libfraud/fraud.h"

namespace libfraud {

void set_log_callback(fraud_log_fn fn, void* user_data, fraud_log_level min_level);
bool log_enabled(fraud_log_level level);
void log(fraud_log_level level, const std::string& message);

}  // namespace libfraud
