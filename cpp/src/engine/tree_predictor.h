// The model's trees behind one call, predict_rows, which picks the predictor by the call's row count
// and the model's size (export/BUNDLE.md "Which predictor scores"): TL2cgen's compiled if-else
// library (engine/tree_library.h) where its straight-line code fits the instruction cache, the flat
// node array (engine/flat_forest.h) for batches and for models too big for that.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "engine/flat_forest.h"
#include "engine/manifest.h"
#include "engine/tree_library.h"
#include "explain/shap_file.h"

namespace libfraud {

enum class TreeLayout { Auto, Compiled, Flat };

// LIBFRAUD_TREE_LAYOUT, a debugging and benchmarking aid (bench/trees_scaling.py): "compiled" or
// "flat" serves every call with that predictor, "auto" or unset chooses. Anything else:
// FraudError(INVALID_ARGUMENT) listing the valid values.
TreeLayout tree_layout_from_env();

// Immutable once built; const calls are thread-safe and allocate nothing after a thread's first.
class TreePredictor {
public:
    // The auto rule's thresholds, from bench/trees_scaling.py on the project's machines (see
    // bench/README.md "Trees: scaling"): a call of kFlatRows rows or more goes flat (the block
    // kernel beat or tied the compiled row loop at every size measured, 918 nodes up); a smaller
    // call is compiled unless the model has more than kRowFlatMinNodes nodes (compiled won one row
    // by 20% at 918 nodes, lost by 20% at 2382, and by 2x from 46k).
    static constexpr size_t kFlatRows = 16;
    static constexpr size_t kRowFlatMinNodes = 2048;

    // so_path/so_sha256: the compiled library (a bundle's model artifact), loaded only when some
    // call would use it. flat: null for a bundle without node tables (then every call is compiled).
    // LOAD_ERROR when `layout` asks for a predictor the bundle lacks.
    TreePredictor(const std::string& so_path, const std::string& so_sha256, std::unique_ptr<FlatForest> flat,
                  TreeLayout layout);

    size_t num_features() const { return num_features_; }
    // out[i] = probability of row i (rows: n * num_features() floats, NaN = missing).
    void predict_rows(const float* rows, size_t n, float* out) const;

    // Which predictor a call of n rows uses: "compiled" or "flat".
    const char* layout_for(size_t n) const { return uses_flat(n) ? "flat" : "compiled"; }
    const FlatForest* flat() const { return flat_.get(); }
    const TreeLibrary* compiled() const { return compiled_.get(); }

private:
    bool uses_flat(size_t n) const { return n >= flat_from_rows_; }

    std::unique_ptr<TreeLibrary> compiled_;  // null when no call uses it
    std::unique_ptr<FlatForest> flat_;
    size_t flat_from_rows_;  // SIZE_MAX: never flat; 0: always
    size_t num_features_ = 0;
};

// The bundle's trees: its node tables read once through a sealed copy (when model.node_tables names
// them), the flat forest built from them, the predictor. `tables` is handed back for the explainer
// when the explanation section names the same artifact, so the file is read and checked once.
struct LoadedTrees {
    std::unique_ptr<TreePredictor> predictor;
    std::optional<ShapTablesFile> tables;
};
LoadedTrees load_trees(const Manifest& manifest, TreeLayout layout);

}  // namespace libfraud
