#include "engine/model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <utility>

#include "common/error.h"
#include "common/log.h"
#include "engine/sha256.h"

namespace libfraud {
namespace {

std::mutex g_hook_mutex;
AfterVerifyHook g_after_verify;

// Permissions, signature (with a trusted key), format, then every checksum: all before any load,
// because a shared library is code. Each loader then checks its own sealed copy again.
Manifest verified_manifest(const std::string& bundle_dir, const char* trusted_key) {
    const std::string key = trusted_key ? trusted_key : "";
    Manifest manifest = read_manifest(bundle_dir, key);
    verify_bundle(manifest, key);
    AfterVerifyHook hook;
    {
        std::lock_guard<std::mutex> lock(g_hook_mutex);
        hook = g_after_verify;
    }
    if (hook) hook(bundle_dir);
    return manifest;
}

// The model reads the plan's features, then (GNN bundles) the GNN's outputs, in that order.
FeaturePlan checked_features(const Manifest& manifest, const Schema& schema) {
    FeaturePlan computer(schema, manifest.spec_json, "manifest.json: ");
    std::vector<std::string> expected = computer.names();
    expected.insert(expected.end(), manifest.gnn.output_features.begin(), manifest.gnn.output_features.end());
    if (expected != manifest.feature_order) {
        size_t i = 0;
        while (i < expected.size() && i < manifest.feature_order.size() && expected[i] == manifest.feature_order[i])
            ++i;
        const std::string found = i < manifest.feature_order.size() ? manifest.feature_order[i] : "<end>";
        const std::string wanted = i < expected.size() ? expected[i] : "<end>";
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                         "manifest.json: features.order[" + std::to_string(i) + "] is '" + found +
                             "' but features.spec computes '" + wanted +
                             "' there (then gnn.output_features)");
    }
    return computer;
}

SamplerConfig sampler_config(const GnnSection& gnn, const Schema& schema) {
    SamplerConfig config;
    for (size_t i = 0; i < gnn.graph_fields.size(); ++i) {
        const std::string& n = gnn.graph_fields[i];
        if (schema.numeric_index(n) >= 0) {
            config.graph_fields.push_back({FieldRef::Numeric, schema.numeric_index(n)});
        } else if (schema.categorical_index(n) >= 0) {
            config.graph_fields.push_back({FieldRef::Categorical, schema.categorical_index(n)});
        } else {
            throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, "manifest.json: gnn.sampler.graph_fields[" + std::to_string(i) +
                                                              "]: '" + n + "' is not a numeric or categorical field of the schema");
        }
    }
    config.fanout = gnn.fanout;
    config.seed = gnn.seed;
    if (gnn.strategy == "most_recent") {
        config.strategy = SampleStrategy::MostRecent;
    } else if (gnn.strategy == "uniform") {
        config.strategy = SampleStrategy::Uniform;
    } else {
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID, "manifest.json: gnn.sampler.strategy '" + gnn.strategy +
                                                          "' is not one of most_recent, uniform");
    }
    return config;
}

std::unique_ptr<GnnModel> load_backend(const Manifest& manifest, const GnnBackendEntry& entry,
                                       const std::string& plugin_dir) {
    const std::vector<std::string> missing = missing_cpu_flags(entry.cpu_flags);
    if (!missing.empty()) {
        std::string need, lack;
        for (const auto& f : entry.cpu_flags) need += (need.empty() ? "" : ", ") + f;
        for (const auto& f : missing) lack += (lack.empty() ? "" : ", ") + f;
        throw FraudError(FRAUD_STATUS_LOAD_ERROR, "GNN artifact '" + entry.artifact + "' (" + entry.kind +
                                                      ") was built for a CPU with " + need +
                                                      "; this CPU lacks " + lack);
    }
    const ArtifactEntry& artifact = manifest.artifact(entry.artifact);
    return GnnModel::load(entry.kind, manifest.artifact_path(artifact), manifest.gnn.embedding_dim, plugin_dir,
                          artifact.sha256);
}

// The caller's choice, or the bundle's backends in order (default first): the first that loads.
std::unique_ptr<GnnStage> load_gnn(const Manifest& manifest, const Schema& schema, const fraud_engine_params& params) {
    const GnnSection& gnn = manifest.gnn;
    const std::string wanted = params.gnn_backend ? params.gnn_backend : "";
    const std::string plugin_dir = params.plugin_dir ? params.plugin_dir : "";
    std::vector<const GnnBackendEntry*> order;
    for (const auto& b : gnn.backends)
        if (b.kind == gnn.default_backend) order.push_back(&b);
    for (const auto& b : gnn.backends)
        if (b.kind != gnn.default_backend) order.push_back(&b);
    if (!wanted.empty()) {
        std::string kinds;
        const GnnBackendEntry* chosen = nullptr;
        for (const auto* b : order) {
            kinds += (kinds.empty() ? "" : ", ") + b->kind;
            if (b->kind == wanted) chosen = b;
        }
        if (!chosen)
            throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                             "gnn_backend '" + wanted + "' is not in this bundle; it has: " + kinds);
        order = {chosen};
    }
    std::string reasons;
    fraud_status first_status = FRAUD_STATUS_BACKEND_UNAVAILABLE;
    for (const auto* b : order) {
        try {
            auto stage = std::make_unique<GnnStage>(GnnStage{Sampler(schema, sampler_config(gnn, schema)), nullptr, b->kind,
                                                             static_cast<size_t>(gnn.embedding_dim)});
            stage->model = load_backend(manifest, *b, plugin_dir);
            if (!reasons.empty()) log(FRAUD_LOG_WARN, "GNN backends skipped: " + reasons);
            log(FRAUD_LOG_INFO, "GNN backend '" + b->kind + "' serves " + manifest.bundle_dir +
                                    (wanted.empty() ? " (the first of the bundle's that loads)" : " (asked for)"));
            return stage;
        } catch (const FraudError& e) {
            // Altered since verification: the bundle is refused, never served by its next backend.
            if (e.status() == FRAUD_STATUS_BUNDLE_CHECKSUM) throw;
            if (reasons.empty()) first_status = e.status();
            reasons += (reasons.empty() ? "" : "; ") + b->kind + ": " + e.what();
        }
    }
    throw FraudError(first_status, "no GNN backend of this bundle loads here: " + reasons);
}

constexpr size_t kDefaultExplainTableBytes = size_t{256} << 20;  // fraud.h explain_table_bytes

double logit(float p) {
    const double q = p;
    return std::log(q / (1.0 - q));
}

}  // namespace

// Per-thread scratch: the scoring path allocates only on a thread's first calls.
struct ModelScratch {
    std::vector<float> row, masked_row;
    std::vector<float> target_x, ent1_x, ent1_mask, txn2_x, txn2_mask, ent3_x, ent3_mask;
    std::vector<int64_t> txn2_id;

    std::vector<float> logits, embeddings;  // a block's GNN outputs

    // Room for `count` events' rows and neighbourhoods (and, with embedding_dim, GNN outputs).
    void fit(size_t row_size, const NeighbourhoodShape* shape, size_t count = 1, size_t embedding_dim = 0) {
        auto grow = [count](auto& v, size_t n) {
            if (v.size() < n * count) v.resize(n * count);
        };
        grow(row, row_size);
        if (!shape) return;
        grow(target_x, shape->target_x());
        grow(ent1_x, shape->ent1_x());
        grow(ent1_mask, shape->ent1_mask());
        grow(txn2_x, shape->txn2_x());
        grow(txn2_mask, shape->txn2_mask());
        grow(ent3_x, shape->ent3_x());
        grow(ent3_mask, shape->ent3_mask());
        grow(logits, 1);
        grow(embeddings, embedding_dim);
    }

    NeighbourhoodBuffers buffers(bool with_ids) {
        NeighbourhoodBuffers b;
        b.target_x = target_x.data();
        b.ent1_x = ent1_x.data();
        b.ent1_mask = ent1_mask.data();
        b.txn2_x = txn2_x.data();
        b.txn2_mask = txn2_mask.data();
        b.ent3_x = ent3_x.data();
        b.ent3_mask = ent3_mask.data();
        if (with_ids) b.txn2_id = txn2_id.data();
        return b;
    }
};

namespace {

// A thread's scratch for the model in `role` of a pass (0: the one served, 1: a shadow scored
// alongside it): allocated on a thread's first calls only.
ModelScratch& scratch(int role = 0) {
    thread_local ModelScratch s[2];
    return s[role];
}

}  // namespace

void set_after_verify_hook_for_testing(AfterVerifyHook hook) {
    std::lock_guard<std::mutex> lock(g_hook_mutex);
    g_after_verify = std::move(hook);
}

Model::Model(const std::string& bundle_dir, const fraud_engine_params& params, const StoreLayout* store)
    : manifest_(verified_manifest(bundle_dir, params.trusted_public_key_path)),
      schema_(parse_schema_json(manifest_.schema_json, "manifest.json: ")),
      features_(checked_features(manifest_, schema_)),
      layout_(features_.store_layout()),
      manifest_sha256_(sha256_hex(manifest_.text)) {
    if (store) layout_ = *store;
    features_.bind(layout_);
    // Rules name features and fields: resolved before any artifact is loaded.
    decision_ = DecisionPolicy::from_manifest(manifest_.decision_json, manifest_.threshold, manifest_.feature_order,
                                              schema_);
    if (!manifest_.drift_json.empty())
        drift_ = std::make_unique<DriftMonitor>(
            DriftReference::parse(manifest_.drift_json, manifest_.feature_order, "manifest.json: "),
            params.drift_window_events);
    const ArtifactEntry& model = manifest_.artifact(manifest_.model_artifact);
    if (model.target != "tl2cgen-c-shared")
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                         "manifest.json: model artifact '" + model.name + "' has target '" + model.target +
                             "'; this libfraud scores with 'tl2cgen-c-shared'");
    if (manifest_.gnn.present) {
        gnn_ = load_gnn(manifest_, schema_, params);
        gnn_backend_ = gnn_->backend;
    }
    // Every loader re-checks the sha256 of the very bytes it uses (no swap between check and load).
    LoadedTrees loaded = load_trees(manifest_, tree_layout_from_env());
    trees_ = std::move(loaded.predictor);
    if (trees_->num_features() != num_features())
        throw FraudError(FRAUD_STATUS_BUNDLE_INVALID,
                         "tree library reads " + std::to_string(trees_->num_features()) +
                             " features but features.order lists " + std::to_string(num_features()));
    if (manifest_.explanation.present) {
        const ArtifactEntry& tables = manifest_.artifact(manifest_.explanation.artifact);
        const size_t budget = params.explain_table_bytes ? static_cast<size_t>(params.explain_table_bytes)
                                                         : kDefaultExplainTableBytes;
        if (loaded.tables && manifest_.node_tables.artifact == tables.name) {  // read once for both
            explainer_ = std::make_unique<Explainer>(std::move(*loaded.tables), manifest_.artifact_path(tables),
                                                     manifest_.explanation, num_features(), budget);
        } else {
            explainer_ = std::make_unique<Explainer>(manifest_.artifact_path(tables), tables.sha256,
                                                     manifest_.explanation, num_features(), budget);
        }
    }
}

const Explainer& Model::require_explainer(const char* what, bool check_k, size_t k) const {
    if (!explainer_)
        throw FraudError(FRAUD_STATUS_NO_EXPLANATION,
                         std::string(what) + ": bundle " + bundle_dir() +
                             " has no explanation data (no 'explanation' section: compiled without "
                             "reasons, or by a libfraud older than them); score without reasons");
    if (!check_k) return *explainer_;
    if (k < 1 || k > explainer_->num_families())
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         std::string(what) + ": k is " + std::to_string(k) + "; this bundle has " +
                             std::to_string(explainer_->num_families()) + " reason families, so k must be 1.." +
                             std::to_string(explainer_->num_families()));
    return *explainer_;
}

void Model::run_gnn(const NeighbourhoodBuffers& buffers, size_t batch, float* logits, float* embeddings) const {
    const NeighbourhoodShape shape = gnn_->sampler.shape();
    fraud_gnn_inputs inputs{static_cast<int64_t>(batch),
                            static_cast<int64_t>(shape.fanout),
                            static_cast<int64_t>(shape.entity_types),
                            static_cast<int64_t>(shape.txn_features),
                            buffers.target_x,
                            buffers.ent1_x,
                            buffers.ent1_mask,
                            buffers.txn2_x,
                            buffers.txn2_mask,
                            buffers.ent3_x,
                            buffers.ent3_mask};
    gnn_->model->run(inputs, logits, embeddings);
}

void Model::run_gnn(const NeighbourhoodBuffers& buffers, float* gnn_out) const {
    run_gnn(buffers, 1, gnn_out, gnn_out + 1);  // one event: [logit, embedding...] in its row
}

void Model::row(const TemporalStore& store, const fraud_event& txn, float* row) const {
    features_.compute(store, txn, row);
    if (!gnn_) return;
    ModelScratch& s = scratch();
    const NeighbourhoodShape shape = gnn_->sampler.shape();
    s.fit(num_features(), &shape);
    const NeighbourhoodBuffers buffers = s.buffers(false);
    gnn_->sampler.sample(store, txn, buffers, 0);
    run_gnn(buffers, row + features_.size());
}

size_t Model::neighbours(const TemporalStore& store, const fraud_event& event, size_t m,
                         fraud_neighbour* out) const {
    if (!gnn_)
        throw FraudError(FRAUD_STATUS_NO_EXPLANATION,
                         "fraud_engine_explain_neighbours: bundle " + bundle_dir() +
                             " has no GNN stage, so no sampled neighbours to explain");
    ModelScratch& s = scratch();
    const NeighbourhoodShape shape = gnn_->sampler.shape();
    s.fit(num_features(), &shape);
    if (s.masked_row.size() < num_features()) s.masked_row.resize(num_features());
    if (s.txn2_id.size() < shape.txn2_mask()) s.txn2_id.resize(shape.txn2_mask());
    float* row = s.row.data();
    features_.compute(store, event, row);
    const NeighbourhoodBuffers buffers = s.buffers(true);
    gnn_->sampler.sample(store, event, buffers, 0);
    run_gnn(buffers, row + features_.size());
    float p = 0.0f;
    trees_->predict_rows(row, 1, &p);
    const double full = logit(p);
    float* masked = s.masked_row.data();
    std::copy(row, row + num_features(), masked);
    // Each sampled neighbour left out once (its mask slot zeroed): how much the trees' log-odds
    // fall without it. Kept: the m largest falls, largest first.
    size_t kept = 0;
    for (size_t slot = 0; slot < shape.txn2_mask(); ++slot) {
        if (buffers.txn2_mask[slot] == 0.0f) continue;
        buffers.txn2_mask[slot] = 0.0f;
        run_gnn(buffers, masked + features_.size());
        buffers.txn2_mask[slot] = 1.0f;
        trees_->predict_rows(masked, 1, &p);
        const fraud_neighbour n{buffers.txn2_id[slot], static_cast<int32_t>(slot / shape.fanout),
                                static_cast<int32_t>(slot % shape.fanout), full - logit(p)};
        size_t at = kept < m ? kept++ : m;
        while (at > 0 && out[at - 1].delta < n.delta) {
            if (at < m) out[at] = out[at - 1];
            --at;
        }
        if (at < m) out[at] = n;
    }
    return kept;
}

float Model::finish_score(float p, const float* row, const ReasonRequest* reasons, size_t index) const {
    const float score = manifest_.calibration.apply(p);
    if (reasons) {
        // NaN never reaches min_score: no reasons for a score that is not a number.
        reasons->counts[index] = score >= reasons->min_score
                                     ? explainer_->reasons(row, reasons->k, reasons->reasons + index * reasons->k)
                                     : 0;
    }
    return score;
}

void Model::score_batch(const TemporalStore& store, const fraud_event* events, size_t n, float* scores,
                        const ReasonRequest* reasons, const std::function<void(size_t)>& after_each) const {
    ScoreOutputs out;
    out.scores = scores;
    out.reasons = reasons;
    score_batch(store, events, n, out, after_each, nullptr);
}

void Model::fit_scratch(ModelScratch& s, size_t count) const {
    NeighbourhoodShape shape{};
    if (gnn_) shape = gnn_->sampler.shape();
    s.fit(num_features(), gnn_ ? &shape : nullptr, count, gnn_ ? gnn_->embedding_dim : 0);
}

void Model::stage(const TemporalStore& store, const fraud_event& event, ModelScratch& s, size_t j) const {
    features_.compute(store, event, s.row.data() + j * num_features());
    if (gnn_) gnn_->sampler.sample(store, event, s.buffers(false), j);
}

void Model::finish_block(ModelScratch& s, const fraud_event* events, size_t start, size_t m,
                         const ScoreOutputs& out) const {
    const size_t F = num_features();
    float* rows = s.row.data();
    if (gnn_) {
        const size_t P = features_.size(), D = gnn_->embedding_dim;
        run_gnn(s.buffers(false), m, s.logits.data(), s.embeddings.data());
        for (size_t j = 0; j < m; ++j) {  // [logit, embedding...] after the features
            float* o = rows + j * F + P;
            o[0] = s.logits[j];
            std::copy(s.embeddings.data() + j * D, s.embeddings.data() + (j + 1) * D, o + 1);
        }
    }
    float* scores = out.scores + start;
    trees_->predict_rows(rows, m, scores);
    for (size_t j = 0; j < m; ++j) {
        scores[j] = finish_score(scores[j], rows + j * F, out.reasons, start + j);
        if (out.decisions) out.decisions[start + j] = decision_.decide(rows + j * F, events[start + j], scores[j]);
    }
}

namespace {

uint64_t steady_ns() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

}  // namespace

void Model::score_batch(const TemporalStore& store, const fraud_event* events, size_t n, const ScoreOutputs& out,
                        const std::function<void(size_t)>& after_each, ShadowPass* shadow) const {
    // A block's rows and neighbourhoods stay in L2 (~4 KB of neighbourhood an event at fanout 10).
    constexpr size_t kBlock = 64;
    ModelScratch& s = scratch(0);
    fit_scratch(s, std::min(n, kBlock));
    const Model* other = shadow ? shadow->model : nullptr;
    ModelScratch* t = other ? &scratch(1) : nullptr;
    if (other) other->fit_scratch(*t, std::min(n, kBlock));
    for (size_t start = 0; start < n; start += kBlock) {
        const size_t m = std::min(kBlock, n - start);
        for (size_t j = 0; j < m; ++j) {
            const fraud_event& ev = events[start + j];
            stage(store, ev, s, j);
            if (other) {
                const uint64_t t0 = steady_ns();
                other->stage(store, ev, *t, j);
                shadow->elapsed_ns += steady_ns() - t0;
            }
            if (after_each) after_each(start + j);
        }
        finish_block(s, events, start, m, out);
        if (drift_) drift_->record(s.row.data(), num_features(), m, out.scores + start);  // the champion's traffic
        if (other) {
            const uint64_t t0 = steady_ns();
            try {
                other->finish_block(*t, events, start, m, shadow->out);
            } catch (const std::exception& e) {
                shadow->error = e.what();
                other = nullptr;
                for (size_t i = start; i < n; ++i) {  // this block and the rest: not scored
                    shadow->out.scores[i] = std::numeric_limits<float>::quiet_NaN();
                    if (shadow->out.decisions) shadow->out.decisions[i] = DecisionPolicy::Outcome{};
                }
            }
            shadow->elapsed_ns += steady_ns() - t0;
        }
    }
}

void Model::score_rows(const float* rows, size_t n, float* scores) const {
    trees_->predict_rows(rows, n, scores);
    const Calibration& calibration = manifest_.calibration;
    if (!calibration.present()) return;
    for (size_t i = 0; i < n; ++i) scores[i] = calibration.apply(scores[i]);
}

}  // namespace libfraud
