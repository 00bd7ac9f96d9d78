#include "explain/tree_shap.h"

#include <cmath>
#include <string>
#include <vector>

#include "common/error.h"

namespace libfraud {
namespace {

// One feature on the path from the root: the fraction of training cover that follows the path
// where the feature is unknown (zero) and whether x itself follows it (one), and the weight of the
// subsets of the path of each size (pweight, the permutation weights of Algorithm 2).
struct PathElement {
    int32_t feature;
    double zero_fraction;
    double one_fraction;
    double pweight;
};
static_assert(sizeof(PathElement) == 4 * sizeof(double), "PathElement sizes the scratch");

// EXTEND: add a feature to the path of unique_depth + 1 elements, updating the subset weights.
void extend_path(PathElement* path, size_t unique_depth, double zero_fraction, double one_fraction,
                 int32_t feature) {
    path[unique_depth] = {feature, zero_fraction, one_fraction, unique_depth == 0 ? 1.0 : 0.0};
    const double d1 = static_cast<double>(unique_depth + 1);
    for (size_t k = unique_depth; k-- > 0;) {
        path[k + 1].pweight += one_fraction * path[k].pweight * static_cast<double>(k + 1) / d1;
        path[k].pweight = zero_fraction * path[k].pweight * static_cast<double>(unique_depth - k) / d1;
    }
}

// UNWIND: remove element i (EXTEND's inverse), so a feature split on twice counts once.
void unwind_path(PathElement* path, size_t unique_depth, size_t i) {
    const double one = path[i].one_fraction;
    const double zero = path[i].zero_fraction;
    const double d1 = static_cast<double>(unique_depth + 1);
    double next_one_portion = path[unique_depth].pweight;
    for (size_t k = unique_depth; k-- > 0;) {
        if (one != 0) {
            const double tmp = path[k].pweight;
            path[k].pweight = next_one_portion * d1 / (static_cast<double>(k + 1) * one);
            next_one_portion =
                tmp - path[k].pweight * zero * static_cast<double>(unique_depth - k) / d1;
        } else {
            path[k].pweight = path[k].pweight * d1 / (zero * static_cast<double>(unique_depth - k));
        }
    }
    for (size_t k = i; k < unique_depth; ++k) {
        path[k].feature = path[k + 1].feature;
        path[k].zero_fraction = path[k + 1].zero_fraction;
        path[k].one_fraction = path[k + 1].one_fraction;
    }
}

// The total subset weight of the path with element i unwound, without changing the path.
double unwound_path_sum(const PathElement* path, size_t unique_depth, size_t i) {
    const double one = path[i].one_fraction;
    const double zero = path[i].zero_fraction;
    const double d1 = static_cast<double>(unique_depth + 1);
    double next_one_portion = path[unique_depth].pweight;
    double total = 0;
    for (size_t k = unique_depth; k-- > 0;) {
        if (one != 0) {
            const double tmp = next_one_portion * d1 / (static_cast<double>(k + 1) * one);
            total += tmp;
            next_one_portion = path[k].pweight - tmp * zero * static_cast<double>(unique_depth - k) / d1;
        } else if (zero != 0) {
            total += path[k].pweight * d1 / (zero * static_cast<double>(unique_depth - k));
        }
    }
    return total;
}

// RECURSE over the subtree at node. The parent's path (unique_depth elements) is at parent_path;
// this node's copy goes right after it, so each recursion level owns its own slice of the scratch.
void recurse(const TreeShapTables& t, const float* x, double* phi, int32_t node,
             PathElement* parent_path, size_t unique_depth, double parent_zero_fraction,
             double parent_one_fraction, int32_t parent_feature) {
    PathElement* path = parent_path + unique_depth;
    for (size_t k = 0; k < unique_depth; ++k) path[k] = parent_path[k];
    extend_path(path, unique_depth, parent_zero_fraction, parent_one_fraction, parent_feature);

    if (t.left[node] < 0) {
        // Element 0 is the root's placeholder (feature -1), never a real feature.
        for (size_t k = 1; k <= unique_depth; ++k) {
            const double w = unwound_path_sum(path, unique_depth, k);
            phi[path[k].feature] += w * (path[k].one_fraction - path[k].zero_fraction) * t.value[node];
        }
        return;
    }

    const int32_t f = t.feature[node];
    const float v = x[f];
    int32_t hot;
    if (std::isnan(v)) {
        hot = t.default_left[node] ? t.left[node] : t.right[node];
    } else {
        hot = v < t.threshold[node] ? t.left[node] : t.right[node];
    }
    const int32_t cold = hot == t.left[node] ? t.right[node] : t.left[node];
    const double hot_zero_fraction = t.cover[hot] / t.cover[node];
    const double cold_zero_fraction = t.cover[cold] / t.cover[node];

    // A feature already on the path is unwound and re-added here with its fractions combined.
    double incoming_zero = 1;
    double incoming_one = 1;
    size_t next_depth = unique_depth + 1;
    for (size_t k = 1; k <= unique_depth; ++k) {
        if (path[k].feature == f) {
            incoming_zero = path[k].zero_fraction;
            incoming_one = path[k].one_fraction;
            unwind_path(path, unique_depth, k);
            next_depth = unique_depth;
            break;
        }
    }
    // Children copy the path to path + next_depth, past this node's live elements: after an
    // unwind, the children's slice starts one earlier and still never overlaps.
    recurse(t, x, phi, hot, path, next_depth, hot_zero_fraction * incoming_zero, incoming_one, f);
    // A cold branch with no cover left (its share underflowed to 0) adds exactly 0 to every
    // feature; descending would divide 0 by 0 when its feature splits again below.
    const double cold_zero = cold_zero_fraction * incoming_zero;
    if (cold_zero > 0) recurse(t, x, phi, cold, path, next_depth, cold_zero, 0.0, f);
}

// XGBoost sums covers in float32: a child may exceed its parent by rounding, never by more.
constexpr double kCoverSlack = 1e-3;

[[noreturn]] void invalid(const std::string& what) {
    throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "tree_shap tables: " + what);
}

}  // namespace

size_t tree_shap_scratch_size(size_t max_depth) {
    // Recursion level L (root 0) holds at most L + 1 elements, starting where level L - 1's end.
    const size_t levels = max_depth + 1;
    return levels * (levels + 1) / 2 * (sizeof(PathElement) / sizeof(double));
}

void tree_shap_validate(const TreeShapTables& t, size_t n_nodes) {
    if (t.tree_offsets[0] != 0 || static_cast<size_t>(t.tree_offsets[t.n_trees]) != n_nodes) {
        invalid("tree_offsets must start at 0 and end at the node count " + std::to_string(n_nodes));
    }
    // Children point forward within their tree and each node has one parent, so the trees are
    // trees and one forward pass gives every node's depth.
    std::vector<int32_t> depth(n_nodes, -1);
    for (size_t tree = 0; tree < t.n_trees; ++tree) {
        const int64_t begin = t.tree_offsets[tree];
        const int64_t end = t.tree_offsets[tree + 1];
        if (end <= begin || static_cast<size_t>(end) > n_nodes) {
            invalid("tree_offsets must increase: tree " + std::to_string(tree) + " is [" +
                    std::to_string(begin) + ", " + std::to_string(end) + ")");
        }
        depth[static_cast<size_t>(begin)] = 0;
        for (int64_t n = begin; n < end; ++n) {
            const std::string at = "node " + std::to_string(n) + " (tree " + std::to_string(tree) + ")";
            const int32_t d = depth[static_cast<size_t>(n)];
            if (d < 0) invalid(at + ": no parent (not reachable from the root)");
            if (static_cast<size_t>(d) > t.max_depth) {
                invalid(at + ": depth " + std::to_string(d) + " exceeds max_depth " +
                        std::to_string(t.max_depth));
            }
            if (!(t.cover[n] >= 0) || !std::isfinite(t.cover[n])) invalid(at + ": cover must be >= 0");
            if (t.left[n] < 0) {
                if (t.left[n] != -1 || t.right[n] != -1) invalid(at + ": a leaf's children must both be -1");
                if (!std::isfinite(t.value[n])) invalid(at + ": leaf value is not finite");
                continue;
            }
            if (!(t.cover[n] > 0)) invalid(at + ": a split's cover must be > 0");
            for (const int32_t child : {t.left[n], t.right[n]}) {
                if (child <= n || child >= end || depth[static_cast<size_t>(child)] >= 0) {
                    invalid(at + ": children must be later nodes of the same tree, one parent each");
                }
                depth[static_cast<size_t>(child)] = d + 1;
            }
            // The recurrences take a child's share of its parent's cover as a fraction: a child
            // heavier than its parent (beyond float32 rounding of the sums) is not a tree's cover.
            for (const int32_t child : {t.left[n], t.right[n]}) {
                if (!(t.cover[child] <= t.cover[n] * (1.0 + kCoverSlack)))
                    invalid(at + ": child " + std::to_string(child) + "'s cover " + std::to_string(t.cover[child]) +
                            " exceeds its parent's " + std::to_string(t.cover[n]));
            }
            if (t.feature[n] < 0 || static_cast<size_t>(t.feature[n]) >= t.num_features) {
                invalid(at + ": feature " + std::to_string(t.feature[n]) + " out of range");
            }
        }
    }
}

void tree_shap(const TreeShapTables& t, const float* x, double* phi, double* scratch) {
    for (size_t k = 0; k < t.num_features; ++k) phi[k] = 0;
    phi[t.num_features] = t.expected_value;
    auto* path = reinterpret_cast<PathElement*>(scratch);
    for (size_t tree = 0; tree < t.n_trees; ++tree) {
        recurse(t, x, phi, static_cast<int32_t>(t.tree_offsets[tree]), path, 0, 1.0, 1.0, -1);
    }
}

}  // namespace libfraud
