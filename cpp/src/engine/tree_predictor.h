// The model's trees behind one call, predict_rows (export/BUNDLE.md "Node tables and which predictor
// scores"): TL2cgen's compiled if-else library (engine/tree_library.h) for models whose straight-line
// code fits the caches, the flat node array (engine/flat_forest.h) above that, whose kernel then
// follows the call's row count (one row at a time, or blocks of rows: the same bits).
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
    // The auto rule, from bench/trees_scaling.py on the project's machines (bench/README.md
    // "Trees: scaling"): flat above kFlatMinNodes nodes (compiled won one row by 20% at 918 nodes,
    // lost by 20% at 2382 and by 2x from 46k). By model size only, never by call shape: the two
    // predictors round differently in the last bit (TL2cgen adds double literals), and a
    // transaction's score must not depend on the batch it came in. Flat's kernels agree bit for bit.
    static constexpr size_t kFlatMinNodes = 2048;

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
