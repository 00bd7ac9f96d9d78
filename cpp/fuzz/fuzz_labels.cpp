// bytes -> a stream of appends, labels and probes on a store of two entity types -> the label path:
// validate_for_append / append, validate_labels / apply_label, and the label-aware features
// (kind `label`: fraud_count, labelled_count, fraud_rate over windows with offsets, max_scan), each
// probe checked exactly against a plain model of the stream kept by the target: a probe at t counts
// only the labels known strictly before t (label_time < t) of events stored strictly before
// t - offset, among the window's max_scan most recent. Every refusal is checked against the model
// too (unknown event, label not 0/1, label time before its event, conflicts; out of order
// appends), and a refused batch changes nothing. Anything else is a finding.
// Input: a 20-byte header (u8 max_scan - 1 (mod 16), u8 feature count - 1 (mod 4), 2 bytes unused,
// then 4 x {u8 entity (bit 0) and agg (the rest, mod 3), u8 window in quarter hours - 1 (mod 96),
// u8 offset in half hours (mod 8), u8 unused}), then up to 96 12-byte ops: u8 kind (mod 6: 0-1
// append, 2 a label, 3 a batch of two labels, 4-5 a probe), u8 entity ids (bits 0-1 customer,
// bit 2 terminal absent, bits 3-4 terminal), i16 time step (appends: minutes, mod 240, a step back
// is out of order; probes: quarter minutes, past or future), u32 a, u32 b (which event, label,
// label delay).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.h"
#include "features/features.h"
#include "fuzz_util.h"
#include "schema/schema.h"
#include "store/temporal_store.h"
#include "store/validate.h"

namespace {

constexpr size_t kHeaderBytes = 20;
constexpr size_t kOpBytes = 12;
constexpr size_t kMaxOps = 96;
constexpr int64_t kMinute = 60000;
const char* const kAggs[] = {"fraud_count", "labelled_count", "fraud_rate"};

struct LabelFeature {
    int entity, agg;  // agg: index in kAggs
    int64_t window_ms, offset_ms;
};

// The model's view of a stored event.
struct Stored {
    int64_t id, time;
    int64_t entity[2];
    int label = -1;
    int64_t label_time = INT64_MAX;
};

const libfraud::Schema& schema() {
    static const libfraud::Schema s = [] {
        libfraud::Schema x;
        x.name = "labels";
        x.entities = {"customer", "terminal"};
        x.entity_required = {true, false};
        x.entity_strings = {false, false};
        return x;
    }();
    return s;
}

std::string spec_of(uint32_t max_scan, const std::vector<LabelFeature>& features) {
    std::string out = "{\"format\": \"libfraud-features\", \"version\": 1, \"max_scan\": " + std::to_string(max_scan) +
                      ", \"features\": [";
    for (size_t i = 0; i < features.size(); ++i) {
        const LabelFeature& f = features[i];
        out += std::string(i ? ", " : "") + "{\"name\": \"f" + std::to_string(i) + "\", \"kind\": \"label\", \"entity\": \"" +
               schema().entities[f.entity] + "\", \"agg\": \"" + kAggs[f.agg] + "\", \"window_ms\": " +
               std::to_string(f.window_ms) + ", \"offset_ms\": " + std::to_string(f.offset_ms) + "}";
    }
    return out + "]}";
}

// What export/SCHEMA.md says a label feature is, computed the plain way from the model.
float expected(const LabelFeature& f, uint32_t max_scan, const std::vector<Stored>& stored, int64_t t, const int64_t* ids) {
    const int64_t id = ids[f.entity];
    if (id < 0) return NAN;  // absent entity
    std::vector<const Stored*> history, window;  // the entity's events before t, in store order
    for (const Stored& s : stored)
        if (s.entity[f.entity] == id && s.time < t) history.push_back(&s);
    if (history.empty()) return f.agg == 2 ? NAN : 0.0f;
    for (const Stored* s : history)
        if (s->time >= t - f.offset_ms - f.window_ms && s->time < t - f.offset_ms) window.push_back(s);
    const size_t scanned = std::min<size_t>(window.size(), max_scan);
    uint64_t fraud = 0, labelled = 0;
    for (size_t k = window.size() - scanned; k < window.size(); ++k) {
        if (window[k]->label < 0 || window[k]->label_time >= t) continue;
        ++labelled;
        fraud += static_cast<uint64_t>(window[k]->label);
    }
    if (f.agg == 0) return static_cast<float>(fraud);
    if (f.agg == 1) return static_cast<float>(labelled);
    return scanned == 0 ? NAN : static_cast<float>(static_cast<double>(fraud) / static_cast<double>(scanned));
}

bool same(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// The status the model expects for a label batch, and (when OK) what it does.
fraud_status model_labels(const std::vector<Stored>& stored, const fraud_label* labels, size_t n) {
    for (size_t k = 0; k < n; ++k) {
        const fraud_label& l = labels[k];
        if (l.label != 0 && l.label != 1) return FRAUD_STATUS_INVALID_LABEL;
        auto it = std::find_if(stored.begin(), stored.end(), [&](const Stored& s) { return s.id == l.event_id; });
        if (it == stored.end()) return FRAUD_STATUS_UNKNOWN_EVENT;
        if (l.label_time_ms < it->time) return FRAUD_STATUS_INVALID_LABEL;
        if (it->label >= 0 && it->label != l.label) return FRAUD_STATUS_LABEL_CONFLICT;
        for (size_t j = 0; j < k; ++j)
            if (labels[j].event_id == l.event_id && labels[j].label != l.label) return FRAUD_STATUS_LABEL_CONFLICT;
    }
    return FRAUD_STATUS_OK;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < kHeaderBytes) return 0;
    const uint32_t max_scan = 1u + data[0] % 16;
    const size_t num_features = 1u + data[1] % 4;
    std::vector<LabelFeature> features;
    for (size_t i = 0; i < num_features; ++i) {
        const uint8_t* f = data + 4 + 4 * i;
        features.push_back({f[0] & 1, (f[0] >> 1) % 3, (1 + f[1] % 96) * 15 * kMinute, (f[2] % 8) * 30 * kMinute});
    }
    libfraud::FeaturePlan plan(schema(), spec_of(max_scan, features), "fuzz_labels: ");
    plan.bind(plan.store_layout());
    libfraud::TemporalStore store(plan.store_layout());
    std::vector<Stored> model;
    std::vector<float> out(plan.size());

    int64_t now = 1700000000000;
    int64_t next_id = 1;
    const size_t ops = std::min((size_t{size} - kHeaderBytes) / kOpBytes, kMaxOps);
    for (size_t k = 0; k < ops; ++k) {
        const uint8_t* op = data + kHeaderBytes + k * kOpBytes;
        int16_t step;
        uint32_t a, b;
        std::memcpy(&step, op + 2, 2);
        std::memcpy(&a, op + 4, 4);
        std::memcpy(&b, op + 8, 4);
        const int64_t ids[2] = {(op[1] & 3), (op[1] & 4) ? -1 : ((op[1] >> 3) & 3)};
        const uint8_t kind = op[0] % 6;
        if (kind <= 1) {
            // An event `step` minutes from now (a step back is refused as out of order).
            fraud_event ev{};
            ev.event_id = (a & 7) == 0 && next_id > 1 ? next_id - 1 : next_id;  // now and then a duplicate id
            ev.time_ms = now + int64_t{step % 240} * kMinute;
            ev.amount = 1.0;
            ev.entity_id = ids;
            const bool in_order = ev.time_ms >= now || model.empty();
            const bool duplicate = std::any_of(model.begin(), model.end(), [&](const Stored& s) { return s.id == ev.event_id; });
            fraud_status got = FRAUD_STATUS_OK;
            try {
                libfraud::validate_for_append(store, &ev, 1);
            } catch (const libfraud::FraudError& e) {
                got = e.status();
            }
            const fraud_status want = duplicate ? FRAUD_STATUS_DUPLICATE_TRANSACTION
                                      : in_order ? FRAUD_STATUS_OK : FRAUD_STATUS_OUT_OF_ORDER;
            // Both refusals may apply to one event; either answer names a real fault then.
            FUZZ_CHECK(got == want || (duplicate && !in_order && got == FRAUD_STATUS_OUT_OF_ORDER));
            if (got != FRAUD_STATUS_OK) continue;
            store.append(ev);
            model.push_back({ev.event_id, ev.time_ms, {ids[0], ids[1]}});
            now = ev.time_ms;
            next_id = std::max(next_id, ev.event_id + 1);
        } else if (kind <= 3) {
            // One or two labels for stored (or unknown) events, known some minutes after the event
            // (or, for a few, before it: refused).
            fraud_label batch[2]{};
            const size_t n = kind == 2 ? 1 : 2;
            for (size_t j = 0; j < n; ++j) {
                const uint32_t v = j == 0 ? a : b;
                fraud_label& l = batch[j];
                l.event_id = model.empty() || (v & 31) == 31 ? 999999 : model[(v >> 5) % model.size()].id;
                l.label = (v >> 16) % 7 == 6 ? 2 : static_cast<int32_t>((v >> 16) & 1);
                auto it = std::find_if(model.begin(), model.end(), [&](const Stored& s) { return s.id == l.event_id; });
                const int64_t base = it == model.end() ? now : it->time;
                l.label_time_ms = base + (static_cast<int64_t>((v >> 20) % 600) - 10) * kMinute;
            }
            const fraud_status want = model_labels(model, batch, n);
            fraud_status got = FRAUD_STATUS_OK;
            try {
                libfraud::validate_labels(store, batch, n);
            } catch (const libfraud::FraudError& e) {
                got = e.status();
            }
            FUZZ_CHECK(got == want);
            if (got != FRAUD_STATUS_OK) continue;
            for (size_t j = 0; j < n; ++j) {
                uint32_t row = 0;
                FUZZ_CHECK(store.find_event(batch[j].event_id, &row));
                store.apply_label(row, batch[j].label, batch[j].label_time_ms);
                for (Stored& s : model)
                    if (s.id == batch[j].event_id && s.label < 0) {  // a repeat keeps the first time
                        s.label = batch[j].label;
                        s.label_time = batch[j].label_time_ms;
                    }
            }
        } else {
            // A probe: the features of an event at `step` minutes from now (past or future), not stored.
            fraud_event ev{};
            ev.event_id = -1;
            ev.time_ms = now + int64_t{step} * kMinute / 4;
            ev.amount = 1.0;
            ev.entity_id = ids;
            plan.compute(store, ev, out.data());
            for (size_t i = 0; i < features.size(); ++i) {
                const float want = expected(features[i], max_scan, model, ev.time_ms, ids);
                if (!same(out[i], want)) {
                    std::fprintf(stderr, "feature %zu (%s of %s, window %lld ms, offset %lld ms): core %g, model %g\n", i,
                                 kAggs[features[i].agg], schema().entities[features[i].entity].c_str(),
                                 static_cast<long long>(features[i].window_ms),
                                 static_cast<long long>(features[i].offset_ms), out[i], want);
                    FUZZ_CHECK(same(out[i], want));
                }
            }
        }
    }
    FUZZ_CHECK(store.size() == model.size());
    return 0;
}
