// Drift's pure functions (engine/drift.h) for the compiler and `libfraud drift`: the same binning
// and PSI the engine's monitor uses, on rows and scores the caller has.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/drift.h"

namespace py = pybind11;

namespace {

using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Doubles = py::array_t<double, py::array::c_style | py::array::forcecast>;

py::array_t<int64_t> bin_values(const libfraud::DriftHistogram& h, const float* values, size_t n, size_t stride) {
    py::array_t<int64_t> out(static_cast<py::ssize_t>(n));
    for (size_t i = 0; i < n; ++i) out.mutable_data()[i] = static_cast<int64_t>(h.bin(values[i * stride]));
    return out;
}

py::array_t<uint64_t> counts_of(const libfraud::DriftHistogram& h, const float* values, size_t n, size_t stride) {
    py::array_t<uint64_t> out(static_cast<py::ssize_t>(h.bins()));
    uint64_t* c = out.mutable_data();
    for (size_t b = 0; b < h.bins(); ++b) c[b] = 0;
    for (size_t i = 0; i < n; ++i) ++c[h.bin(values[i * stride])];
    return out;
}

}  // namespace

void bind_drift(py::module_& m) {
    m.def(
        "drift_bin",
        [](const Doubles& edges, const Floats& values) {
            if (edges.ndim() != 1 || values.ndim() != 1) throw py::value_error("edges and values must be 1-D");
            libfraud::DriftHistogram h;
            h.edges.assign(edges.data(), edges.data() + edges.size());
            for (size_t i = 0; i < h.edges.size(); ++i) {
                if (!std::isfinite(h.edges[i]) || (i > 0 && !(h.edges[i] > h.edges[i - 1])))
                    throw py::value_error("edges must be finite and strictly increasing (at edges[" +
                                          std::to_string(i) + "])");
            }
            h.prepare();
            return bin_values(h, values.data(), static_cast<size_t>(values.size()), 1);
        },
        py::arg("edges"), py::arg("values"),
        "The drift bin of each value against these edges: i for [edges[i-1], edges[i]) (0 below the first, "
        "len(edges) from the last on), len(edges) + 1 for NaN (the missing bin).");

    m.def(
        "drift_psi",
        [](const std::string& reference, const std::vector<std::string>& feature_names, const Floats& rows,
           const Floats& scores) {
            const libfraud::DriftReference ref =
                libfraud::DriftReference::parse(reference, feature_names, "drift reference: ");
            const size_t F = ref.num_features();
            if (rows.ndim() != 2 || static_cast<size_t>(rows.shape(1)) != F)
                throw py::value_error("rows must be 2-D with " + std::to_string(F) + " columns (the features)");
            if (scores.ndim() != 1 || scores.shape(0) != rows.shape(0))
                throw py::value_error("scores must be 1-D with one score per row");
            const size_t n = static_cast<size_t>(rows.shape(0));
            py::list feature_counts;
            py::array_t<double> feature_psi(static_cast<py::ssize_t>(F));
            for (size_t j = 0; j < F; ++j) {
                py::array_t<uint64_t> c = counts_of(ref.features[j], rows.data() + j, n, F);
                feature_psi.mutable_data()[j] =
                    libfraud::population_stability(ref.features[j].proportions, c.data(), ref.features[j].bins());
                feature_counts.append(c);
            }
            py::array_t<uint64_t> score_counts = counts_of(ref.score, scores.data(), n, 1);
            py::dict out;
            out["events"] = n;
            out["feature_psi"] = feature_psi;
            out["feature_counts"] = feature_counts;
            out["score_psi"] = libfraud::population_stability(ref.score.proportions, score_counts.data(),
                                                              ref.score.bins());
            out["score_counts"] = score_counts;
            return out;
        },
        py::arg("reference"), py::arg("feature_names"), py::arg("rows"), py::arg("scores"),
        "PSI of rows [n, F] and their scores against a drift reference (the manifest's `drift` section as "
        "JSON text), as the engine's monitor computes it: {events, feature_psi [F], feature_counts (per "
        "feature, per bin), score_psi, score_counts}. FraudError (BUNDLE_INVALID) for a bad reference.");
}
