// bytes -> a fraud_txn batch (the payments preset's record) -> the validation path, twice:
//  1. the core, on a fresh store of the payments layout per input: validate_fields /
//     validate_for_append, append, the payments features of every transaction (a FeaturePlan
//     compiled from the preset's spec, or from one the input's header shapes), then labels
//     derived from the batch (validate_labels, apply_label) and the label-aware features;
//  2. the C API, on an engine opened from a stand-in bundle of the payments preset (fake_trees.c):
//     fraud_engine_score / _features on a fixed store, the same through the _events functions
//     (bitwise the same), and (flag bit 2) score_and_ingest + ingest + label on a fresh engine,
//     checking statuses and the all-or-nothing promise; plus the entry points that need no engine.
// Input: a 40-byte header (missing bytes read as 0), then 64-byte fraud_txn records (at most 64).
// The format is the one of format version 1 (fraud_txn is kept as the payments preset's record), so
// the saved regression inputs still replay.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/sha256.h"
#include "features/features.h"
#include "fuzz_util.h"
#include "libfraud/fraud.h"
#include "payments.h"
#include "store/temporal_store.h"
#include "store/validate.h"

namespace {


struct Header {
    uint8_t flags;            // bit 0 clamp fields into their domain, 1 sort by time, 2 engine ingest,
                              // 3 unique txn ids, 4 use the spec shaped below, 5 store retention,
                              // 6-7 per-entity cap - 1
    uint8_t num_windows;      // bits 0-1: 1..3 of windows_ms; bits 2-7: retention in minutes
    uint16_t struct_size;     // fraud_engine_params.struct_size for the ingest engine (0 = default)
    uint32_t max_scan;
    int64_t windows_ms[3];
    int64_t distinct_window_ms;
};
static_assert(sizeof(Header) == 40, "header layout");
static_assert(sizeof(fraud_txn) == 64, "fraud_txn layout");

constexpr size_t kMaxTxns = 64;

// Field values near the interesting ones: small id spaces so entities repeat, absent ids, bounds,
// an amount of 0 (legal), missing codes (-1).
void clamp_fields(fraud_txn& t) {
    if (!std::isfinite(t.amount) || t.amount < 0) {
        uint64_t bits;
        std::memcpy(&bits, &t.amount, sizeof bits);
        t.amount = static_cast<double>(bits % 100000) / 100.0;
    }
    for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) {
        const uint64_t u = static_cast<uint64_t>(t.entity_id[e]);
        const bool optional = e == FRAUD_ENTITY_DEVICE || e == FRAUD_ENTITY_IP;
        t.entity_id[e] = optional ? static_cast<int64_t>(u % 9) - 1 : static_cast<int64_t>(u % 8);
    }
    t.country = static_cast<int32_t>(static_cast<uint32_t>(t.country) % 12) - 1;
    t.mcc = static_cast<int32_t>(static_cast<uint32_t>(t.mcc) % 40) - 1;
}

// Labels from the batch itself: event i's label is its country % 3 (2 is invalid), known from its
// time + (mcc % 7) - 2 ms (before the event for two values), for every other record; an id the
// store may not hold when the record's merchant is odd.
std::vector<fraud_label> labels_of(const fraud_txn* txns, size_t n) {
    std::vector<fraud_label> v;
    for (size_t i = 0; i < n; i += 2) {
        fraud_label l{};
        // (Wrapping: an id of INT64_MAX + 1 is the harness's overflow, not the core's.)
        const uint64_t other = (txns[i].entity_id[FRAUD_ENTITY_MERCHANT] & 1) && i % 4 == 2 ? 1 : 0;
        l.event_id = static_cast<int64_t>(static_cast<uint64_t>(txns[i].txn_id) + other);
        l.label = static_cast<int32_t>(static_cast<uint32_t>(txns[i].country) % 3);
        const int64_t delta = static_cast<int64_t>(static_cast<uint32_t>(txns[i].mcc) % 7) - 2;
        l.label_time_ms = txns[i].timestamp_ms > INT64_MAX - 4 || txns[i].timestamp_ms < INT64_MIN + 4
                              ? txns[i].timestamp_ms
                              : txns[i].timestamp_ms + delta;
        v.push_back(l);
    }
    return v;
}

bool label_refusal(fraud_status s) {
    return s == FRAUD_STATUS_UNKNOWN_EVENT || s == FRAUD_STATUS_INVALID_LABEL || s == FRAUD_STATUS_LABEL_CONFLICT;
}

std::string g_dir;
std::unique_ptr<libfraud::FeaturePlan> g_default_features;
std::unique_ptr<libfraud::FeaturePlan> g_label_features;
fraud_engine* g_engine = nullptr;  // read-only after init: score and features only
size_t g_num_features = 0;

std::string label_spec() {
    return R"({"format": "libfraud-features", "version": 1, "max_scan": 8, "features": [
        {"name": "a", "kind": "label", "entity": "card", "agg": "fraud_count", "window_ms": 3600000},
        {"name": "b", "kind": "label", "entity": "device", "agg": "fraud_rate", "window_ms": 86400000, "offset_ms": 600000},
        {"name": "c", "kind": "label", "entity": "merchant", "agg": "labelled_count", "window_ms": 9223372036854775807,
         "offset_ms": 9223372036854775807}]})";
}

// <dir>/bundle: the payments preset's schema and features, trees/model.so = fake_trees.so,
// checksummed.
std::string make_bundle(const std::string& dir, const libfraud::FeaturePlan& plan) {
    const std::string bundle = dir + "/bundle";
    mkdir(bundle.c_str(), 0755);
    mkdir((bundle + "/trees").c_str(), 0755);
    const std::string so = libfraud_fuzz::read_file(LIBFRAUD_FUZZ_TREES);
    libfraud_fuzz::write_file(bundle + "/trees/model.so", so);
    std::string order;
    for (const std::string& name : plan.names()) order += (order.empty() ? "\"" : ", \"") + name + "\"";
    const std::string manifest =
        // Version 2: no calibration section (version 3 is a calibrated bundle; export/BUNDLE.md).
        "{\"format\": \"libfraud-bundle\", \"format_version\": " + std::to_string(FRAUD_BUNDLE_FORMAT_VERSION_MIN) +
        ", \"schema\": " + payments::schema_json() + ", \"features\": {\"spec\": " + payments::spec_json() +
        ", \"order\": [" + order +
        "]}, \"model\": {\"artifact\": \"trees\"}, \"threshold\": 0.5, \"artifacts\": [{\"name\": "
        "\"trees\", \"path\": \"trees/model.so\", \"target\": \"tl2cgen-c-shared\", \"sha256\": \"" +
        libfraud::sha256_file_hex(bundle + "/trees/model.so") + "\", \"size\": " + std::to_string(so.size()) + "}]}";
    libfraud_fuzz::write_file(bundle + "/manifest.json", manifest);
    return bundle;
}

// The stand-in bundle always opens; only a bad params->struct_size may refuse it.
fraud_engine* open_engine(const fraud_engine_params* params) {
    fraud_engine* engine = nullptr;
    const fraud_status s = fraud_engine_open((g_dir + "/bundle").c_str(), params, &engine);
    if (s != FRAUD_STATUS_OK) {
        FUZZ_CHECK(engine == nullptr);
        FUZZ_CHECK(s == FRAUD_STATUS_INVALID_ARGUMENT && params != nullptr);
        return nullptr;
    }
    return engine;
}

// The core on a fresh store: the first half of the batch appended (when valid), the whole batch
// featurized against it, then the second half appended; then the batch's labels. Returns the
// status validate_labels gave them (OK when applied).
fraud_status fuzz_core(const payments::Events& txns, const libfraud::FeaturePlan& features, uint8_t flags,
                       uint8_t num_windows, const std::vector<fraud_label>& labels) {
    const libfraud::Schema& schema = payments::schema();
    const size_t n = txns.size();
    bool fields_ok = true;
    try {
        libfraud::validate_fields(schema, txns.data(), n);
    } catch (const libfraud::FraudError& e) {
        FUZZ_CHECK(e.status() == FRAUD_STATUS_INVALID_TRANSACTION);
        fields_ok = false;
    }
    bool each_ok = true;
    for (size_t i = 0; i < n; ++i) each_ok = each_ok && libfraud::field_error(schema, txns[i]).empty();
    FUZZ_CHECK(each_ok == fields_ok);

    libfraud::StoreConfig store_config;  // flag bit 5: retention and a per-entity cap (eviction)
    if (flags & 32) {
        store_config.retention_ms = int64_t{num_windows >> 2} * 60000;
        store_config.max_history_per_entity = 1u + (flags >> 6);
    }
    libfraud::TemporalStore store(payments::layout(), store_config);
    std::vector<float> row(std::max(features.size(), g_label_features->size()));
    const size_t halves[2][2] = {{0, n / 2}, {n / 2, n}};
    for (const auto& half : halves) {
        const fraud_event* batch = txns.data() + half[0];
        const size_t count = half[1] - half[0];
        try {
            libfraud::validate_for_append(store, batch, count);
        } catch (const libfraud::FraudError& e) {
            FUZZ_CHECK(e.status() == FRAUD_STATUS_INVALID_TRANSACTION ||
                       e.status() == FRAUD_STATUS_OUT_OF_ORDER ||
                       e.status() == FRAUD_STATUS_DUPLICATE_TRANSACTION);
            continue;  // all or nothing: nothing of this half is appended
        }
        for (size_t i = 0; i < count; ++i) store.append(batch[i]);
        // Features need validated fields (their precondition); scoring in the past is fine.
        if (!fields_ok) continue;
        for (size_t i = 0; i < n; ++i) features.compute(store, txns[i], row.data());
    }
    FUZZ_CHECK(store.size() <= n);

    // Labels: all or nothing; applied, each labelled event holds its label (the first one's time).
    const uint64_t labelled_before = store.labelled();
    fraud_status status = FRAUD_STATUS_OK;
    try {
        libfraud::validate_labels(store, labels.data(), labels.size());
    } catch (const libfraud::FraudError& e) {
        FUZZ_CHECK(label_refusal(e.status()));
        status = e.status();
    }
    if (status == FRAUD_STATUS_OK) {
        uint64_t applied = 0;
        for (const fraud_label& l : labels) {
            uint32_t r = 0;
            FUZZ_CHECK(store.find_event(l.event_id, &r));
            applied += store.apply_label(r, l.label, l.label_time_ms) ? 1 : 0;
            // (A repeat of a stored label keeps the first label time, so only the label is checked.)
            FUZZ_CHECK(store.event(r).label() == l.label && store.event(r).label_time_ms() >= store.event(r).time_ms());
        }
        FUZZ_CHECK(store.labelled() == labelled_before + applied);
    } else {
        FUZZ_CHECK(store.labelled() == labelled_before);
    }
    if (fields_ok)
        for (size_t i = 0; i < n; ++i) g_label_features->compute(store, txns[i], row.data());
    return status;
}

// The C API: all-or-nothing batches, statuses that agree with the core's validation.
void fuzz_c_api(const fraud_txn* txns, const payments::Events& events, size_t n, const Header& h, bool fields_ok,
                const std::vector<fraud_label>& labels, fraud_status core_label_status) {
    std::vector<float> scores(n + 1, -1.0f), scores_ev(n + 1, -1.0f);
    size_t num_features = 0;
    FUZZ_CHECK(fraud_engine_num_features(g_engine, &num_features) == FRAUD_STATUS_OK);
    FUZZ_CHECK(num_features == g_num_features);
    std::vector<float> rows(n * num_features + 1), rows_ev(n * num_features + 1);

    fraud_status s = fraud_engine_score(g_engine, txns, n, scores.data());
    FUZZ_CHECK(s == (fields_ok ? FRAUD_STATUS_OK : FRAUD_STATUS_INVALID_TRANSACTION));
    if (s == FRAUD_STATUS_OK)
        for (size_t i = 0; i < n; ++i) FUZZ_CHECK(scores[i] >= 0.0f && scores[i] <= 1.0f);
    else
        FUZZ_CHECK(fraud_last_error()[0] != '\0');
    // The fraud_txn functions are the _events functions on the payments layout: the same answers.
    FUZZ_CHECK(fraud_engine_score_events(g_engine, events.data(), n, scores_ev.data()) == s);
    if (s == FRAUD_STATUS_OK) FUZZ_CHECK(std::memcmp(scores.data(), scores_ev.data(), n * sizeof(float)) == 0);
    s = fraud_engine_features(g_engine, txns, n, rows.data());
    FUZZ_CHECK(s == (fields_ok ? FRAUD_STATUS_OK : FRAUD_STATUS_INVALID_TRANSACTION));
    FUZZ_CHECK(fraud_engine_features_events(g_engine, events.data(), n, rows_ev.data()) == s);
    if (s == FRAUD_STATUS_OK)
        FUZZ_CHECK(std::memcmp(rows.data(), rows_ev.data(), n * num_features * sizeof(float)) == 0);

    if (!(h.flags & 4)) return;
    fraud_engine_params params = fraud_engine_default_params();
    if (h.struct_size != 0) params.struct_size = h.struct_size;
    fraud_engine* engine = open_engine(&params);
    if (engine == nullptr) return;  // a bad struct_size
    uint64_t size_before = 0, size_after = 0;
    int64_t wm_before = 0, wm_after = 0;
    const size_t halves[2][2] = {{0, n / 2}, {n / 2, n}};
    for (int k = 0; k < 2; ++k) {
        const fraud_txn* batch = txns + halves[k][0];
        const size_t count = halves[k][1] - halves[k][0];
        FUZZ_CHECK(fraud_engine_store_size(engine, &size_before, &wm_before) == FRAUD_STATUS_OK);
        s = k == 0 ? fraud_engine_score_and_ingest(engine, batch, count, scores.data())
                   : fraud_engine_ingest(engine, batch, count);
        FUZZ_CHECK(fraud_engine_store_size(engine, &size_after, &wm_after) == FRAUD_STATUS_OK);
        if (s == FRAUD_STATUS_OK) {
            FUZZ_CHECK(size_after == size_before + count);
        } else {
            FUZZ_CHECK(s == FRAUD_STATUS_INVALID_TRANSACTION || s == FRAUD_STATUS_OUT_OF_ORDER ||
                       s == FRAUD_STATUS_DUPLICATE_TRANSACTION || s == FRAUD_STATUS_OUT_OF_RETENTION);
            FUZZ_CHECK(size_after == size_before && wm_after == wm_before);  // all or nothing
        }
    }
    // Labels: all or nothing, counted; with no retention in the core run, the engine's store is
    // the core's, so the two agree on the status.
    fraud_engine_stats before{}, after{};
    before.struct_size = after.struct_size = sizeof before;
    FUZZ_CHECK(fraud_engine_get_stats(engine, &before) == FRAUD_STATUS_OK);
    s = fraud_engine_label(engine, labels.data(), labels.size());
    const bool has_message = fraud_last_error()[0] != '\0';
    FUZZ_CHECK(fraud_engine_get_stats(engine, &after) == FRAUD_STATUS_OK);
    if (s == FRAUD_STATUS_OK) {
        FUZZ_CHECK(after.store_labels == before.store_labels + (after.labels_applied - before.labels_applied));
        FUZZ_CHECK(after.labels_applied - before.labels_applied <= labels.size());
    } else {
        FUZZ_CHECK(label_refusal(s));
        FUZZ_CHECK(after.store_labels == before.store_labels && after.labels_applied == before.labels_applied);
        FUZZ_CHECK(after.labels_rejected == before.labels_rejected + labels.size());
        FUZZ_CHECK(has_message);
    }
    if (!(h.flags & 32)) FUZZ_CHECK(s == core_label_status);
    fraud_engine_free(engine);
}

// Entry points that need no bundle: NULL handles and arguments, any status value, hashing.
void fuzz_no_engine(const fraud_txn* txns, const payments::Events& events, size_t n, const Header& h,
                    const uint8_t* data, size_t size) {
    // Only the enum's values: a value outside 0..15 would be UB in this C++ harness already.
    FUZZ_CHECK(fraud_status_name(static_cast<fraud_status>(h.max_scan % 16)) != nullptr);
    float score = 0.0f;
    FUZZ_CHECK(fraud_engine_ingest(nullptr, txns, n) == FRAUD_STATUS_INVALID_ARGUMENT);
    FUZZ_CHECK(fraud_engine_score(nullptr, txns, n, &score) == FRAUD_STATUS_INVALID_ARGUMENT);
    FUZZ_CHECK(fraud_engine_score_and_ingest(nullptr, txns, n, &score) == FRAUD_STATUS_INVALID_ARGUMENT);
    FUZZ_CHECK(fraud_engine_features(nullptr, txns, n, &score) == FRAUD_STATUS_INVALID_ARGUMENT);
    FUZZ_CHECK(fraud_engine_ingest_events(nullptr, events.data(), n) == FRAUD_STATUS_INVALID_ARGUMENT);
    FUZZ_CHECK(fraud_engine_score_events(nullptr, events.data(), n, &score) == FRAUD_STATUS_INVALID_ARGUMENT);
    FUZZ_CHECK(fraud_engine_label(nullptr, nullptr, 0) == FRAUD_STATUS_INVALID_ARGUMENT);
    FUZZ_CHECK(fraud_engine_store_size(nullptr, nullptr, nullptr) == FRAUD_STATUS_INVALID_ARGUMENT);
    FUZZ_CHECK(fraud_last_error()[0] != '\0');
    if (n > 0) {  // a batch with no output buffer
        FUZZ_CHECK(fraud_engine_score(g_engine, txns, n, nullptr) == FRAUD_STATUS_INVALID_ARGUMENT);
        FUZZ_CHECK(fraud_engine_score_events(g_engine, events.data(), n, nullptr) == FRAUD_STATUS_INVALID_ARGUMENT);
    }
    // The ids of strings: any bytes, never negative, a pure function.
    const int64_t id = fraud_hash_id(reinterpret_cast<const char*>(data), size);
    FUZZ_CHECK(id >= 0 && id == fraud_hash_id(reinterpret_cast<const char*>(data), size));
    fraud_engine_free(nullptr);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    g_dir = libfraud_fuzz::make_temp_dir("fuzz-txn");
    g_default_features = std::make_unique<libfraud::FeaturePlan>(payments::plan());
    g_label_features = std::make_unique<libfraud::FeaturePlan>(payments::schema(), label_spec(), "fuzz: ");
    g_label_features->bind(payments::layout());
    g_num_features = g_default_features->size();
    make_bundle(g_dir, *g_default_features);
    setenv("LIBFRAUD_FUZZ_NUM_FEATURE", std::to_string(g_num_features).c_str(), 1);
    g_engine = open_engine(nullptr);
    if (g_engine == nullptr) {
        std::fprintf(stderr, "fuzz harness: cannot open the stand-in bundle: %s\n", fraud_last_error());
        std::abort();
    }
    // A fixed past for the read-only engine: 3 cards, 2 devices, around t = 1e12 ms.
    std::vector<fraud_txn> history;
    for (int64_t i = 0; i < 32; ++i) {
        fraud_txn t{};
        t.txn_id = -1 - i;  // negative ids: inputs that reuse them still score (no duplicate check)
        t.timestamp_ms = 1000000000000 + i * 600000;
        t.amount = 5.0 + static_cast<double>(i);
        t.entity_id[FRAUD_ENTITY_CARD] = i % 3;
        t.entity_id[FRAUD_ENTITY_DEVICE] = i % 4 == 0 ? FRAUD_ENTITY_ABSENT : i % 2;
        t.entity_id[FRAUD_ENTITY_MERCHANT] = i % 5;
        t.entity_id[FRAUD_ENTITY_IP] = FRAUD_ENTITY_ABSENT;
        t.country = 250;
        t.mcc = 5411;
        history.push_back(t);
    }
    if (fraud_engine_ingest(g_engine, history.data(), history.size()) != FRAUD_STATUS_OK) {
        std::fprintf(stderr, "fuzz harness: cannot ingest the fixed history: %s\n", fraud_last_error());
        std::abort();
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Header h{};
    std::memcpy(&h, data, size < sizeof h ? size : sizeof h);
    const size_t body = size > sizeof h ? size - sizeof h : 0;
    const size_t n = std::min(body / sizeof(fraud_txn), kMaxTxns);
    // A heap copy of exactly n records, so ASan sees any read past the batch.
    std::unique_ptr<fraud_txn[]> txns(n ? new fraud_txn[n] : nullptr);
    if (n) std::memcpy(txns.get(), data + sizeof h, n * sizeof(fraud_txn));
    for (size_t i = 0; i < n; ++i) {
        if (h.flags & 1) clamp_fields(txns[i]);
        if (h.flags & 8) txns[i].txn_id = static_cast<int64_t>(i);
    }
    if (h.flags & 2)
        std::sort(txns.get(), txns.get() + n,
                  [](const fraud_txn& a, const fraud_txn& b) { return a.timestamp_ms < b.timestamp_ms; });
    const payments::Events events(txns.get(), n);

    // Flag bit 4: the payments features over the header's windows, distinct window and max_scan
    // (what FeatureConfig held in format version 1); a spec the compiler refuses is BUNDLE_INVALID.
    std::unique_ptr<libfraud::FeaturePlan> custom;
    if (h.flags & 16) {
        const std::vector<int64_t> windows(h.windows_ms, h.windows_ms + 1 + (h.num_windows & 3) % 3);
        try {
            custom = std::make_unique<libfraud::FeaturePlan>(
                payments::schema(), payments::spec_json(h.max_scan, windows, h.distinct_window_ms), "fuzz: ");
            custom->bind(payments::layout());
        } catch (const libfraud::FraudError& e) {
            FUZZ_CHECK(e.status() == FRAUD_STATUS_BUNDLE_INVALID);
            custom.reset();
        }
    }
    const std::vector<fraud_label> labels = labels_of(txns.get(), n);
    const fraud_status core_label_status =
        fuzz_core(events, custom ? *custom : *g_default_features, h.flags, h.num_windows, labels);

    bool fields_ok = true;
    for (size_t i = 0; i < n; ++i) fields_ok = fields_ok && libfraud::field_error(payments::schema(), events[i]).empty();
    fuzz_c_api(txns.get(), events, n, h, fields_ok, labels, core_label_status);
    fuzz_no_engine(txns.get(), events, n, h, data, size);
    return 0;
}
