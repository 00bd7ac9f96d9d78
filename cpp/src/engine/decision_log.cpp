#include "engine/decision_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "engine/model.h"

namespace libfraud {
namespace {

const char* decision_name(int32_t d) {
    switch (d) {
        case FRAUD_DECISION_ALLOW: return "allow";
        case FRAUD_DECISION_REVIEW: return "review";
        case FRAUD_DECISION_DECLINE: return "decline";
    }
    return nullptr;
}

void append_string(std::string& out, const char* s) {
    out.push_back('"');
    for (; *s; ++s) {
        const unsigned char c = static_cast<unsigned char>(*s);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c < 0x20) {
            static const char* hex = "0123456789abcdef";
            out += "\\u00";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    out.push_back('"');
}

// Shortest decimal that reads back as the same value (std::to_chars); null for NaN and +/-inf.
template <class T>
void append_number(std::string& out, T v) {
    if (!std::isfinite(v)) {
        out += "null";
        return;
    }
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

void append_int(std::string& out, int64_t v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

void append_hits(std::string& out, uint64_t hits, const Model& model) {
    out.push_back('[');
    const DecisionPolicy& policy = model.decision_policy();
    bool first = true;
    for (size_t i = 0; i < policy.rule_count() && i < 64; ++i) {
        if (!(hits >> i & 1)) continue;
        if (!first) out.push_back(',');
        first = false;
        append_int(out, policy.rule(i).code);
    }
    out.push_back(']');
}

void append_decision(std::string& out, int32_t d) {
    const char* name = decision_name(d);
    if (name) append_string(out, name);
    else out += "null";
}

}  // namespace

void append_decision_json(std::string& out, const fraud_decision_record& r, const Model& champion,
                          const Model* challenger) {
    const fraud_outcome& o = r.outcome;
    out += "{\"event_id\":";
    append_int(out, r.event_id);
    out += ",\"time_ms\":";
    append_int(out, r.time_ms);
    out += ",\"decided_at_ms\":";
    append_int(out, r.decided_at_ms);
    out += ",\"bundle_sha256\":";
    append_string(out, r.bundle_sha256);
    out += ",\"score\":";
    append_number(out, o.score);
    out += ",\"decision\":";
    append_decision(out, o.decision);
    out += ",\"rule_hits\":";
    append_hits(out, o.rule_hits, champion);
    out += ",\"reasons\":[";
    const Explainer* explainer = champion.explainer();
    const std::vector<std::string>& features = champion.feature_names();
    for (size_t j = 0; j < r.n_reasons; ++j) {
        const fraud_reason& reason = r.reasons[j];
        if (j) out.push_back(',');
        out += "{\"code\":";
        append_int(out, reason.code);
        out += ",\"name\":";
        if (explainer && reason.family >= 0 && static_cast<size_t>(reason.family) < explainer->num_families())
            append_string(out, explainer->family(static_cast<size_t>(reason.family)).name.c_str());
        else
            out += "null";
        out += ",\"contribution\":";
        append_number(out, reason.contribution);
        out += ",\"feature\":";
        if (reason.feature >= 0 && static_cast<size_t>(reason.feature) < features.size())
            append_string(out, features[static_cast<size_t>(reason.feature)].c_str());
        else
            out += "null";
        out += ",\"value\":";
        append_number(out, reason.value);
        out.push_back('}');
    }
    out += "],\"latency_us\":";
    append_number(out, r.latency_us);
    if (challenger && r.challenger_sha256) {
        out += ",\"challenger_sha256\":";
        append_string(out, r.challenger_sha256);
        out += ",\"challenger_score\":";
        append_number(out, o.challenger_score);
        out += ",\"challenger_decision\":";
        append_decision(out, o.challenger_decision);
        out += ",\"challenger_rule_hits\":";
        append_hits(out, o.challenger_rule_hits, *challenger);
    }
    out += "}\n";
}

DecisionLog::DecisionLog(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd_ < 0)
        throw FraudError(FRAUD_STATUS_IO_ERROR,
                         "decision log " + path + ": cannot open for appending: " + std::strerror(errno));
}

DecisionLog::~DecisionLog() {
    if (fd_ >= 0) ::close(fd_);
}

bool DecisionLog::write(const fraud_decision_record* records, size_t n, const Model& champion,
                        const Model* challenger, std::string* error) {
    thread_local std::string text;  // keeps its capacity: no allocation once a thread has warmed up
    text.clear();
    for (size_t i = 0; i < n; ++i) append_decision_json(text, records[i], champion, challenger);
    std::lock_guard<std::mutex> lock(mutex_);
    const char* p = text.data();
    size_t left = text.size();
    while (left > 0) {
        const ssize_t wrote = ::write(fd_, p, left);
        if (wrote < 0 && errno == EINTR) continue;
        if (wrote <= 0) {
            *error = "decision log " + path_ + ": write failed: " + std::strerror(wrote < 0 ? errno : EIO);
            return false;
        }
        p += wrote;
        left -= static_cast<size_t>(wrote);
    }
    return true;
}

}  // namespace libfraud
