// The built-in decision record sink (fraud.h fraud_engine_set_decision_log): JSON Lines appended
// to a file, one object per decided event, one write() per call.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>

#include "libfraud/fraud.h"

namespace libfraud {

class Model;

class DecisionLog {
public:
    // Opens (creates 0600) path for appending; FraudError(IO_ERROR) naming it otherwise.
    explicit DecisionLog(const std::string& path);
    ~DecisionLog();
    DecisionLog(const DecisionLog&) = delete;
    DecisionLog& operator=(const DecisionLog&) = delete;

    // The records of one call, formatted with the champion's rule codes and feature names (and
    // the challenger's rule codes), in one write(). Never throws: false and *error on failure.
    bool write(const fraud_decision_record* records, size_t n, const Model& champion, const Model* challenger,
               std::string* error);
    const std::string& path() const { return path_; }

private:
    std::string path_;
    int fd_ = -1;
    std::mutex mutex_;  // one call's lines at a time, even should a write() come back short
};

// One record as its JSON line (with the newline) appended to out: the format the log writes.
void append_decision_json(std::string& out, const fraud_decision_record& r, const Model& champion,
                          const Model* challenger);

}  // namespace libfraud
