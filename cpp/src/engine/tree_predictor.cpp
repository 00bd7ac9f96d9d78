#include "engine/tree_predictor.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/error.h"
#include "common/log.h"

namespace libfraud {

TreeLayout tree_layout_from_env() {
    const char* v = std::getenv("LIBFRAUD_TREE_LAYOUT");
    if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return TreeLayout::Auto;
    if (std::strcmp(v, "compiled") == 0) return TreeLayout::Compiled;
    if (std::strcmp(v, "flat") == 0) return TreeLayout::Flat;
    throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                     std::string("LIBFRAUD_TREE_LAYOUT is '") + v + "'; valid: auto, compiled, flat");
}

TreePredictor::TreePredictor(const std::string& so_path, const std::string& so_sha256,
                             std::unique_ptr<FlatForest> flat, TreeLayout layout)
    : flat_(std::move(flat)) {
    if (layout == TreeLayout::Flat && !flat_)
        throw FraudError(FRAUD_STATUS_LOAD_ERROR,
                         "LIBFRAUD_TREE_LAYOUT=flat, but the bundle has no node tables (model.node_tables): "
                         "only its compiled trees can score it");
    if (!flat_ || layout == TreeLayout::Compiled) {
        flat_from_rows_ = SIZE_MAX;
    } else if (layout == TreeLayout::Flat || flat_->num_nodes() > kFlatMinNodes) {
        flat_from_rows_ = 0;
    } else {
        flat_from_rows_ = SIZE_MAX;  // a small model: compiled for every call
    }
    // A model flat for every call never maps its compiled library: the open skips copying, hashing
    // and relocating megabytes of code (verify_bundle has checked the file's checksum already).
    if (flat_from_rows_ > 0) compiled_ = std::make_unique<TreeLibrary>(so_path, so_sha256);
    num_features_ = compiled_ ? compiled_->num_features() : flat_->num_features();
    if (compiled_ && flat_ && flat_->num_features() != compiled_->num_features())
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                         "the node tables read " + std::to_string(flat_->num_features()) +
                             " features but the tree library " + std::to_string(compiled_->num_features()));
}

void TreePredictor::predict_rows(const float* rows, size_t n, float* out) const {
    if (uses_flat(n)) {
        flat_->predict_rows(rows, n, out);
    } else {
        compiled_->predict_rows(rows, n, out);
    }
}

LoadedTrees load_trees(const Manifest& manifest, TreeLayout layout) {
    LoadedTrees loaded;
    std::unique_ptr<FlatForest> flat;
    if (manifest.node_tables.present) {
        const ArtifactEntry& entry = manifest.artifact(manifest.node_tables.artifact);
        const std::string path = manifest.artifact_path(entry);
        loaded.tables = read_shap_tables(path, entry.sha256);  // checksum, sizes, tree_shap_validate
        try {
            flat = std::make_unique<FlatForest>(loaded.tables->view(), manifest.node_tables.base_margin);
        } catch (const FraudError& e) {
            throw FraudError(FRAUD_STATUS_LOAD_ERROR, "node tables " + path + ": " + e.what());
        }
    }
    const size_t nodes = flat ? flat->num_nodes() : 0;
    const ArtifactEntry& model = manifest.artifact(manifest.model_artifact);
    loaded.predictor =
        std::make_unique<TreePredictor>(manifest.artifact_path(model), model.sha256, std::move(flat), layout);
    const TreePredictor& p = *loaded.predictor;
    std::string how;
    if (!p.flat()) {
        how = "compiled for every call (no node tables)";
    } else if (!p.compiled()) {
        how = "flat for every call (" + std::to_string(nodes) + " nodes)";
    } else {
        how = "compiled for every call (" + std::to_string(nodes) + " nodes)";
    }
    log(FRAUD_LOG_INFO, "trees: " + how);
    return loaded;
}

}  // namespace libfraud
