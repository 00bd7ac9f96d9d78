// The decision section's policy (engine/decision_policy.h) for Python: the compiler checks a user's
// rules with the core's own parser before compiling anything, and tests evaluate them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "bindings/records.h"
#include "engine/decision_policy.h"
#include "schema/schema.h"

namespace py = pybind11;
using libfraud::bindings::checked;
using libfraud::bindings::EventsView;
using A = const py::array&;

namespace {

class PyDecisionPolicy {
public:
    PyDecisionPolicy(const std::string& decision_json, std::vector<std::string> feature_names,
                     const std::string& schema_json, double threshold)
        : features_(std::move(feature_names)),
          schema_(libfraud::parse_schema_json(schema_json, "schema: ")),
          policy_(libfraud::DecisionPolicy::from_json(decision_json, threshold, features_, schema_, "")) {}

    // (decisions int8: 0 allow, 1 review, 2 decline; rule hits uint64: bit i = rule i held).
    py::tuple evaluate(A rows, A event_id, A time_ms, A amount, A entity_id, A numeric, A categorical, A scores) const {
        const EventsView events(schema_, event_id, time_ms, amount, entity_id, numeric, categorical);
        const size_t n = events.size(), F = features_.size();
        const float* row = checked<float>(rows, "rows", "float32", n, F, true);
        const float* score = checked<float>(scores, "scores", "float32", n, 0, false);
        py::array_t<int8_t> decisions(static_cast<py::ssize_t>(n));
        py::array_t<uint64_t> hits(static_cast<py::ssize_t>(n));
        int8_t* d = decisions.mutable_data();
        uint64_t* h = hits.mutable_data();
        for (size_t i = 0; i < n; ++i) {
            const libfraud::DecisionPolicy::Outcome o = policy_.decide(row + i * F, events.data()[i], score[i]);
            d[i] = static_cast<int8_t>(o.decision);
            h[i] = o.rule_hits;
        }
        return py::make_tuple(decisions, hits);
    }

    py::list rules() const {
        py::list out;
        for (size_t i = 0; i < policy_.rule_count(); ++i) {
            const libfraud::Rule& r = policy_.rule(i);
            py::dict d;
            d["code"] = r.code;
            d["name"] = r.name;
            d["when"] = r.when;
            d["action"] = r.action == libfraud::Decision::Decline ? "decline" : "review";
            d["mode"] = r.shadow ? "shadow" : "active";
            out.append(d);
        }
        return out;
    }
    double review_from() const { return policy_.review_from(); }
    py::object decline_from() const {
        return std::isinf(policy_.decline_from()) ? py::none() : py::cast(policy_.decline_from());
    }
    bool reads_features() const { return policy_.reads_features(); }

private:
    std::vector<std::string> features_;
    libfraud::Schema schema_;
    libfraud::DecisionPolicy policy_;
};

}  // namespace

void bind_decision(py::module_& m) {
    py::class_<PyDecisionPolicy>(m, "DecisionPolicy",
                                 "A bundle's `decision` section (score bands and rules), compiled by the core "
                                 "against the model's features and the schema (export/BUNDLE.md \"decision\").")
        .def(py::init<const std::string&, std::vector<std::string>, const std::string&, double>(),
             py::arg("decision_json"), py::arg("feature_names"), py::arg("schema_json"), py::arg("threshold"),
             "decision_json: the section as JSON text (\"\" = none); FraudError(BUNDLE_INVALID) names the rule")
        .def("evaluate", &PyDecisionPolicy::evaluate, py::arg("rows"), LIBFRAUD_EVENT_ARGS, py::arg("scores"),
             "(decisions int8 [n]: 0 allow, 1 review, 2 decline; rule_hits uint64 [n]: bit i = rule i held)")
        .def_property_readonly("rules", &PyDecisionPolicy::rules,
                               "[{code, name, when, action, mode}], in the section's order (bit i of a hit mask)")
        .def_property_readonly("review_from", &PyDecisionPolicy::review_from)
        .def_property_readonly("decline_from", &PyDecisionPolicy::decline_from, "None: no decline band")
        .def_property_readonly("reads_features", &PyDecisionPolicy::reads_features);
}
