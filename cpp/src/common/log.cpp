#include "common/log.h"

#include <atomic>
#include <mutex>

namespace libfraud {
namespace {

struct Sink {
    fraud_log_fn fn = nullptr;
    void* user_data = nullptr;
};

std::mutex sink_mutex;
Sink sink;
// Checked without the lock, so a disabled level costs one atomic load.
std::atomic<int> min_level{FRAUD_LOG_ERROR + 1};

}  // namespace

void set_log_callback(fraud_log_fn fn, void* user_data, fraud_log_level level) {
    std::lock_guard<std::mutex> lock(sink_mutex);
    sink = Sink{fn, user_data};
    min_level.store(fn ? static_cast<int>(level) : FRAUD_LOG_ERROR + 1);
}

bool log_enabled(fraud_log_level level) { return static_cast<int>(level) >= min_level.load(std::memory_order_relaxed); }

void log(fraud_log_level level, const std::string& message) {
    if (!log_enabled(level)) return;
    Sink current;
    {
        std::lock_guard<std::mutex> lock(sink_mutex);
        current = sink;
    }
    if (current.fn) current.fn(level, message.c_str(), current.user_data);
}

}  // namespace libfraud
