// bytes -> a declared schema and a feature spec (the manifest's `schema` and `features.spec`,
// export/SCHEMA.md) -> parse_schema_json and FeaturePlan, then, on what they accept, a store of
// the plan's layout fed with events and labels made for that schema, checking the point-in-time
// promise itself: an event's features computed when it is served (before it is stored, with only
// the labels known by then applied) are bitwise the features a replay computes at the end, with
// every later event and label in the store. A FraudError(BUNDLE_INVALID) is the expected answer
// to a bad schema or spec, with a bounded message; anything else is a finding.
// Input: u8 flags (bit 0: schema from the input, else the payments preset's; bit 1: spec from the
// input, else the preset's), u8 event count (at most 24), then 16 bytes per event (u32 time step,
// u32 entity bits, u16 amount, u16 numeric, u8 categorical bits, u8 label, u16 label delay),
// then the text: the schema, a NUL, the spec (either one only when the flags take it from the
// input). make_seeds.py writes valid pairs of every kind of feature to start from.
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
#include "payments.h"
#include "schema/schema.h"
#include "store/temporal_store.h"
#include "store/validate.h"

namespace {

constexpr size_t kMaxEvents = 24;
constexpr size_t kEventBytes = 16;
// Every message is cut to about this (engine/manifest.cpp: 2,000 characters and a note of the
// full length); a longer one means some value reached a message uncut.
constexpr size_t kMaxMessage = 2100;

struct EventBytes {
    uint32_t step, entity_bits;
    uint16_t amount, numeric;
    uint8_t categorical_bits, label;
    uint16_t label_delay;
};
static_assert(sizeof(EventBytes) == kEventBytes, "event layout");

// One event's storage: fraud_event points into these.
struct OwnedEvent {
    fraud_event ev{};
    std::vector<int64_t> entities, categorical;
    std::vector<double> numeric;
    int label = -1;  // 0/1 when a label for it arrives
    int64_t label_time = 0;
};

// Events of the schema: few ids per entity (so histories meet), optional entities absent now and
// then, numeric values with NaN (missing), categorical codes with -1 (missing), times that repeat.
std::vector<OwnedEvent> make_events(const libfraud::Schema& s, const uint8_t* data, size_t count) {
    std::vector<OwnedEvent> out(count);
    int64_t t = 1700000000000;
    for (size_t i = 0; i < count; ++i) {
        EventBytes b;
        std::memcpy(&b, data + i * kEventBytes, kEventBytes);
        OwnedEvent& o = out[i];
        t += b.step % 5 == 0 ? 0 : static_cast<int64_t>(b.step % (3 * 86400000u));
        for (size_t e = 0; e < s.num_entities(); ++e) {
            const uint32_t bits = (b.entity_bits >> (2 * (e % 16))) & 3;
            const bool absent = !s.entity_required[e] && ((b.entity_bits >> 31) & 1) && bits == 3;
            o.entities.push_back(absent ? -1 : static_cast<int64_t>(bits));
        }
        for (size_t k = 0; k < s.num_numeric(); ++k)
            o.numeric.push_back(b.numeric == 0xffff ? NAN : static_cast<double>(static_cast<int16_t>(b.numeric + k)) / 8.0);
        for (size_t k = 0; k < s.num_categorical(); ++k)
            o.categorical.push_back(static_cast<int64_t>((b.categorical_bits >> (k % 4)) % 4) - 1);
        o.ev.event_id = static_cast<int64_t>(i) + 1;
        o.ev.time_ms = t;
        o.ev.amount = s.has_amount ? b.amount / 4.0 : 0.0;
        o.ev.entity_id = o.entities.empty() ? nullptr : o.entities.data();
        o.ev.numeric = o.numeric.empty() ? nullptr : o.numeric.data();
        o.ev.categorical = o.categorical.empty() ? nullptr : o.categorical.data();
        if (b.label < 128) {
            o.label = b.label & 1;
            o.label_time = t + b.label_delay * int64_t{60000};
        }
    }
    return out;
}

void check_message(const libfraud::FraudError& e) {
    FUZZ_CHECK(e.status() == FRAUD_STATUS_BUNDLE_INVALID);
    FUZZ_CHECK(std::strlen(e.what()) <= kMaxMessage);
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Serve each event (features, then store it), applying each label once the stream has passed its
// label time; then replay every event against the final store: the two must agree bit for bit.
void serve_and_replay(const libfraud::Schema& schema, const libfraud::FeaturePlan& plan, std::vector<OwnedEvent>& events) {
    libfraud::TemporalStore store(plan.store_layout());
    const size_t width = plan.size();
    std::vector<std::vector<float>> served(events.size());
    std::vector<size_t> pending;  // events with a label that has not arrived yet
    auto deliver_labels_before = [&](int64_t t) {
        for (size_t p = 0; p < pending.size();) {
            const OwnedEvent& o = events[pending[p]];
            if (o.label_time >= t) {
                ++p;
                continue;
            }
            const fraud_label l{o.ev.event_id, o.label_time, o.label, 0};
            libfraud::validate_labels(store, &l, 1);  // a stored event, 0/1, after its time: valid
            uint32_t row = 0;
            FUZZ_CHECK(store.find_event(l.event_id, &row));
            store.apply_label(row, l.label, l.label_time_ms);
            pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(p));
        }
    };
    std::vector<bool> stored(events.size(), false);
    for (size_t i = 0; i < events.size(); ++i) {
        OwnedEvent& o = events[i];
        if (!libfraud::field_error(schema, o.ev).empty()) continue;
        deliver_labels_before(o.ev.time_ms);
        served[i].assign(width, 0.0f);
        plan.compute(store, o.ev, served[i].data());
        bool accepted = true;  // valid fields, a new id, in time order
        try {
            libfraud::validate_for_append(store, &o.ev, 1);
        } catch (const libfraud::FraudError&) {
            accepted = false;
        }
        FUZZ_CHECK(accepted);
        store.append(o.ev);
        stored[i] = true;
        if (o.label >= 0) pending.push_back(i);
    }
    deliver_labels_before(INT64_MAX);
    std::vector<float> replayed(width);
    for (size_t i = 0; i < events.size(); ++i) {
        if (!stored[i]) continue;
        plan.compute(store, events[i].ev, replayed.data());
        FUZZ_CHECK(bitwise_equal(served[i], replayed));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const uint8_t flags = data[0];
    const size_t count = std::min<size_t>(data[1], kMaxEvents);
    const size_t header = 2 + count * kEventBytes;
    if (size < header) return 0;
    const std::string text(reinterpret_cast<const char*>(data + header), size - header);
    const size_t nul = text.find('\0');
    const std::string first = text.substr(0, nul), second = nul == std::string::npos ? "" : text.substr(nul + 1);
    const std::string schema_json = (flags & 1) ? first : payments::schema_json();
    const std::string spec_json = (flags & 2) ? ((flags & 1) ? second : first) : payments::spec_json(16);

    libfraud::Schema schema;
    try {
        schema = libfraud::parse_schema_json(schema_json, "manifest.json: ");
    } catch (const libfraud::FraudError& e) {
        check_message(e);
        return 0;
    }
    FUZZ_CHECK(schema.num_entities() >= 1 && schema.num_entities() <= FRAUD_MAX_ENTITY_TYPES);
    FUZZ_CHECK(schema.entity_required.size() == schema.num_entities());
    try {
        libfraud::FeaturePlan plan(schema, spec_json, "manifest.json: ");
        plan.bind(plan.store_layout());
        FUZZ_CHECK(plan.names().size() == plan.size());
        std::vector<std::string> names = plan.names();
        std::sort(names.begin(), names.end());
        FUZZ_CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
        std::vector<OwnedEvent> events = make_events(schema, data + 2, count);
        serve_and_replay(schema, plan, events);
    } catch (const libfraud::FraudError& e) {
        check_message(e);
    }
    return 0;
}
