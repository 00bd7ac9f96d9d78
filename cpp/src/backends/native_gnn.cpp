#include "backends/native_gnn.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/bounded_json.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the native GNN artifact is little-endian; this host is not"
#endif

namespace libfraud {
namespace {

constexpr size_t kFixedHeader = 32;
constexpr int kMaxEntFeatures = kNativeMaxEntityTypes + 1;

enum class Aggr { kMean, kMax, kSum };

// One SAGEConv: out = lin_l(aggr(x_src)) + lin_r(x_dst). Weights transposed to [in][H] so every
// inner loop runs over the H outputs (contiguous, vectorisable); lin_l has the bias, lin_r none.
struct Conv {
    const float* wl = nullptr;  // [in_l][H]
    const float* bl = nullptr;  // [H]
    const float* wr = nullptr;  // [in_r][H]
};

struct Net;
using RunFn = void (*)(const Net&, const fraud_gnn_inputs&, float*, float*);

struct FreeDeleter {
    void operator()(float* p) const noexcept { std::free(p); }
};

struct Net {
    int H = 0;
    int D = 0;
    int E = 0;   // entity types
    int Ft = 0;  // transaction features
    int Fe = 0;  // entity features, E + 1
    Aggr aggr[3] = {Aggr::kMean, Aggr::kMean, Aggr::kMean};  // ent_to_txn, txn_to_ent, ent_to_target
    const float* shift_target = nullptr;
    const float* scale_target = nullptr;
    const float* shift_txn = nullptr;
    const float* scale_txn = nullptr;
    const float* shift_ent = nullptr;
    const float* scale_ent = nullptr;
    Conv ent_to_txn[kNativeMaxEntityTypes];     // lin_l [Fe][H], lin_r [Ft][H]; E used
    Conv txn_to_ent[kNativeMaxEntityTypes];     // lin_l [H][H],  lin_r [Fe][H]
    Conv ent_to_target[kNativeMaxEntityTypes];  // lin_l [H][H],  lin_r [Ft][H]
    const float* embed_w = nullptr;  // [H][D]
    const float* embed_b = nullptr;  // [D]
    const float* head_w = nullptr;   // [D]
    float head_b = 0.0f;
    std::unique_ptr<float, FreeDeleter> storage;  // every pointer above points in here
    RunFn run = nullptr;
    std::string isa;
};

// ---------------------------------------------------------------------------------------------
// The kernel. Written once, instantiated per hidden width (compile-time H lets the compiler keep
// a whole hidden vector in registers) and per ISA and its vector width (wrappers below); run_impl
// itself is inlined. E, Ft and K are runtime values.
#define LF_INLINE inline __attribute__((always_inline))

// out[h] = sum_i w[i][h] * x[i]: the dot product of PyTorch's linear, accumulated i = 0, 1, ...
template <int HC>
LF_INLINE void matvec(float* __restrict out, const float* __restrict w, const float* __restrict x,
                      int in, int n) {
    const int N = HC > 0 ? HC : n;
    for (int h = 0; h < N; ++h) out[h] = 0.0f;
    for (int i = 0; i < in; ++i) {
        const float xi = x[i];
        const float* __restrict wi = w + static_cast<size_t>(i) * N;
        for (int h = 0; h < N; ++h) out[h] += wi[h] * xi;
    }
}

LF_INLINE void standardise(float* __restrict out, const float* __restrict x, const float* shift,
                           const float* scale, int n) {
    for (int i = 0; i < n; ++i) out[i] = (x[i] - shift[i]) * scale[i];
}

// VW floats, any alignment: a register of the ISA's width (4 SSE2/NEON, 8 AVX2, 16 AVX-512).
template <int VW>
struct Vec {
    typedef float type __attribute__((vector_size(VW * sizeof(float)), aligned(sizeof(float))));
};

// v (+)= p[0..VW); by reference: a vector return value would change the ABI between ISAs.
template <class V>
LF_INLINE void load(V& v, const float* p) {
    std::memcpy(&v, p, sizeof v);
}

// One SAGEConv on a slot, v = (lin_l(xl) + bias) + lin_r(xr), with xl == nullptr for no neighbour
// (lin_l(0) = bias); then out += v, or out = relu(v) with kRelu. The input widths (E + 1, Ft) are
// runtime values: holding the H outputs as NB vectors keeps them in registers across the input
// loop, where arrays would go through the stack (and the compiler would rather vectorise the
// input loop, with gathers). Same additions, same order, as matvec.
template <int HC, int VW, bool kRelu>
LF_INLINE void sage(float* __restrict out, const Conv& c, const float* __restrict xl, int in_l,
                    const float* __restrict xr, int in_r, int n) {
    if constexpr (HC > 0 && HC % VW == 0) {
        using B = typename Vec<VW>::type;
        constexpr int NB = HC / VW;
        B l[NB], r[NB], w;
        for (int j = 0; j < NB; ++j) l[j] = B{}, r[j] = B{};
        if (xl != nullptr) {
            for (int i = 0; i < in_l; ++i) {
                const float* wi = c.wl + static_cast<size_t>(i) * HC;
                for (int j = 0; j < NB; ++j) load(w, wi + j * VW), l[j] += w * xl[i];
            }
            for (int j = 0; j < NB; ++j) load(w, c.bl + j * VW), l[j] += w;
        } else {
            for (int j = 0; j < NB; ++j) load(l[j], c.bl + j * VW);
        }
        for (int i = 0; i < in_r; ++i) {
            const float* wi = c.wr + static_cast<size_t>(i) * HC;
            for (int j = 0; j < NB; ++j) load(w, wi + j * VW), r[j] += w * xr[i];
        }
        for (int j = 0; j < NB; ++j) {
            B v = l[j] + r[j];
            if constexpr (!kRelu) load(w, out + j * VW), v += w;
            std::memcpy(out + j * VW, &v, sizeof v);
        }
        if constexpr (kRelu) {
            for (int h = 0; h < HC; ++h) out[h] = std::max(out[h], 0.0f);
        }
    } else {
        alignas(64) float l[kNativeMaxHidden], r[kNativeMaxHidden];
        if (xl != nullptr) {
            matvec<HC>(l, c.wl, xl, in_l, n);
            for (int h = 0; h < n; ++h) l[h] += c.bl[h];
        } else {
            for (int h = 0; h < n; ++h) l[h] = c.bl[h];
        }
        matvec<HC>(r, c.wr, xr, in_r, n);
        for (int h = 0; h < n; ++h) {
            if constexpr (kRelu) {
                out[h] = std::max(l[h] + r[h], 0.0f);
            } else {
                out[h] += l[h] + r[h];
            }
        }
    }
}

template <int HC, int VW>
LF_INLINE void run_impl(const Net& net, const fraud_gnn_inputs& in, float* __restrict logits,
                        float* __restrict embeddings) {
    constexpr int S = HC > 0 ? HC : kNativeMaxHidden;  // scratch width
    const int H = HC > 0 ? HC : net.H;
    const int D = net.D, E = net.E, Ft = net.Ft, Fe = net.Fe;  // run() checked the inputs' E, Ft
    const int64_t K = in.fanout;
    alignas(64) float h2[S], agg[S], h1[S], h0[S];
    alignas(64) float emb[kNativeMaxEmbedding];
    float x0[kNativeMaxTxnFeatures], xs[kNativeMaxTxnFeatures], es[kMaxEntFeatures], a3[kMaxEntFeatures];

    for (int64_t b = 0; b < in.batch; ++b) {
        standardise(x0, in.target_x + b * Ft, net.shift_target, net.scale_target, Ft);
        const float* m1 = in.ent1_mask + b * E;
        for (int h = 0; h < H; ++h) h0[h] = 0.0f;

        for (int e = 0; e < E; ++e) {
            // hop 1 entity e only reaches the target when present: a masked one's edge goes to the
            // sink, so its (whole hop-2/3 subtree of) work is skipped, not computed and dropped.
            const bool has_ent = m1[e] > 0.0f;
            if (has_ent) {
                const Aggr ag = net.aggr[1];
                int count = 0;
                for (int h = 0; h < H; ++h) agg[h] = 0.0f;
                const int64_t slot0 = (b * E + e) * K;
                for (int64_t k = 0; k < K; ++k) {
                    const int64_t slot = slot0 + k;
                    if (!(in.txn2_mask[slot] > 0.0f)) continue;  // edge to the sink
                    // hop 3 -> hop 2: sum over entity types f of SAGEConv_f(x_txn, its entity f).
                    standardise(xs, in.txn2_x + slot * Ft, net.shift_txn, net.scale_txn, Ft);
                    const float* m3 = in.ent3_mask + slot * E;
                    const float* x3 = in.ent3_x + slot * E * Fe;
                    for (int h = 0; h < H; ++h) h2[h] = 0.0f;
                    for (int f = 0; f < E; ++f) {
                        // One neighbour: every aggregation is the identity; none: aggregation 0.
                        const bool has = m3[f] > 0.0f;
                        if (has) standardise(a3, x3 + f * Fe, net.shift_ent, net.scale_ent, Fe);
                        sage<HC, VW, false>(h2, net.ent_to_txn[f], has ? a3 : nullptr, Fe, xs, Ft, H);
                    }
                    // relu, then fold into entity e's aggregation in slot order (PyG's scatter order).
                    if (ag == Aggr::kMax) {
                        for (int h = 0; h < H; ++h) {
                            const float v = std::max(h2[h], 0.0f);
                            agg[h] = count == 0 ? v : std::max(agg[h], v);
                        }
                    } else {
                        for (int h = 0; h < H; ++h) agg[h] += std::max(h2[h], 0.0f);
                    }
                    ++count;
                }
                if (ag == Aggr::kMean && count > 0) {
                    const float n = static_cast<float>(count);
                    for (int h = 0; h < H; ++h) agg[h] = agg[h] / n;
                }
                // hop 2 -> hop 1: entity e's own SAGEConv, then relu.
                standardise(es, in.ent1_x + (b * E + e) * Fe, net.shift_ent, net.scale_ent, Fe);
                sage<HC, VW, true>(h1, net.txn_to_ent[e], agg, H, es, Fe, H);
            }
            // hop 1 -> target: SAGEConv_e(x_target, h1_e if present), summed over e.
            sage<HC, VW, false>(h0, net.ent_to_target[e], has_ent ? h1 : nullptr, H, x0, Ft, H);
        }
        for (int h = 0; h < H; ++h) h0[h] = std::max(h0[h], 0.0f);

        // embed, then head(relu(embedding)).
        for (int d = 0; d < D; ++d) emb[d] = 0.0f;
        for (int h = 0; h < H; ++h) {
            const float v = h0[h];
            const float* w = net.embed_w + static_cast<size_t>(h) * D;
            for (int d = 0; d < D; ++d) emb[d] += w[d] * v;
        }
        float logit = 0.0f;
        for (int d = 0; d < D; ++d) {
            emb[d] += net.embed_b[d];
            logit += net.head_w[d] * std::max(emb[d], 0.0f);
        }
        logits[b] = logit + net.head_b;
        if (embeddings != nullptr) std::memcpy(embeddings + b * D, emb, sizeof(float) * D);
    }
}

// Widths with a compiled specialisation; any other width runs the generic (runtime H) loop.
#define LF_FOR_WIDTHS(X) X(16) X(32) X(48) X(64) X(96) X(128)

template <int HC>
void run_generic(const Net& n, const fraud_gnn_inputs& in, float* lo, float* em) {
    run_impl<HC, 4>(n, in, lo, em);  // 16-byte vectors: SSE2, NEON
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LF_HAVE_X86_VARIANTS 1
template <int HC>
__attribute__((target("avx2,fma"))) void run_avx2(const Net& n, const fraud_gnn_inputs& in, float* lo,
                                                  float* em) {
    run_impl<HC, 8>(n, in, lo, em);
}
template <int HC>
__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma"))) void run_avx512(
    const Net& n, const fraud_gnn_inputs& in, float* lo, float* em) {
    run_impl<HC, 16>(n, in, lo, em);
}
#endif

RunFn pick_generic(int H) {
#define LF_CASE(W) \
    if (H == W) return &run_generic<W>;
    LF_FOR_WIDTHS(LF_CASE)
#undef LF_CASE
    return &run_generic<0>;
}

#ifdef LF_HAVE_X86_VARIANTS
RunFn pick_avx2(int H) {
#define LF_CASE(W) \
    if (H == W) return &run_avx2<W>;
    LF_FOR_WIDTHS(LF_CASE)
#undef LF_CASE
    return &run_avx2<0>;
}
RunFn pick_avx512(int H) {
#define LF_CASE(W) \
    if (H == W) return &run_avx512<W>;
    LF_FOR_WIDTHS(LF_CASE)
#undef LF_CASE
    return &run_avx512<0>;
}
#endif

// The best variant this CPU runs; LIBFRAUD_NATIVE_ISA=generic|avx2|avx512 caps it (tests, benches).
void pick_kernel(Net& net) {
    const char* cap_env = std::getenv("LIBFRAUD_NATIVE_ISA");
    const std::string cap = cap_env ? cap_env : "";
#ifdef LF_HAVE_X86_VARIANTS
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx512 && (cap.empty() || cap == "avx512")) {
        net.run = pick_avx512(net.H);
        net.isa = "avx512";
        return;
    }
    if (avx2 && (cap.empty() || cap == "avx512" || cap == "avx2")) {
        net.run = pick_avx2(net.H);
        net.isa = "avx2";
        return;
    }
#endif
    (void)cap;
    net.run = pick_generic(net.H);
    net.isa = "generic";
}

// ---------------------------------------------------------------------------------------------
// Loading.
struct LoadError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct TensorRef {
    std::vector<int64_t> shape;
    uint64_t offset = 0;  // from the start of the weights section
};

std::string shape_text(const std::vector<int64_t>& s) {
    std::string out;
    for (int64_t d : s) out += (out.empty() ? "" : ", ") + std::to_string(d);
    return "[" + out + "]";
}

uint32_t read_u32(const unsigned char* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
uint64_t read_u64(const unsigned char* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

Aggr parse_aggr(const std::string& layer, const std::string& a) {
    if (a == "mean") return Aggr::kMean;
    if (a == "max") return Aggr::kMax;
    if (a == "sum") return Aggr::kSum;
    throw LoadError("layer '" + layer + "': aggregation '" + a + "' is not supported (mean, max, sum)");
}

std::unique_ptr<Net> load_net(const std::string& path, int64_t embedding_dim) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw LoadError("cannot open the file");
    std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (bytes.size() < kFixedHeader) {
        throw LoadError("truncated: " + std::to_string(bytes.size()) + " bytes, shorter than the " +
                        std::to_string(kFixedHeader) + "-byte fixed header");
    }
    if (std::memcmp(bytes.data(), kNativeGnnMagic, 8) != 0) {
        throw LoadError("bad magic: not a libfraud native GNN artifact (expected \"LFNATIVE\")");
    }
    const uint32_t version = read_u32(&bytes[8]);
    if (version != kNativeGnnVersion) {
        throw LoadError("format version " + std::to_string(version) + ", this libfraud reads version " +
                        std::to_string(kNativeGnnVersion));
    }
    const uint64_t header_len = read_u32(&bytes[12]);
    const uint64_t w_off = read_u64(&bytes[16]);
    const uint64_t w_len = read_u64(&bytes[24]);
    if (w_off % 64 != 0 || w_off < kFixedHeader + header_len) {
        throw LoadError("corrupt fixed header: weights offset " + std::to_string(w_off) +
                        " (header length " + std::to_string(header_len) + ")");
    }
    if (w_off > bytes.size() || w_len > bytes.size() - w_off) {
        throw LoadError("truncated: " + std::to_string(bytes.size()) + " bytes, the header says " +
                        std::to_string(w_off + w_len));
    }
    if (w_len % 4 != 0) throw LoadError("corrupt fixed header: weights length not a multiple of 4");

    nlohmann::json hdr;
    libfraud::JsonParseError error;  // linear time, bounded depth (common/bounded_json.h)
    if (!libfraud::parse_bounded_json(std::string(bytes.begin() + kFixedHeader, bytes.begin() + kFixedHeader + header_len),
                                      16, hdr, error))
        throw LoadError("corrupt JSON header" + (error.path.empty() ? "" : " near '" + error.path + "'") + ": " +
                        error.what);

    auto net = std::make_unique<Net>();
    std::map<std::string, TensorRef> tensors;
    std::vector<std::string> layer_names;
    try {
        if (hdr.at("format").get<std::string>() != "libfraud-native-gnn") {
            throw LoadError("header format is not \"libfraud-native-gnn\"");
        }
        if (hdr.at("precision").get<std::string>() != "float32") {
            throw LoadError("precision '" + hdr.at("precision").get<std::string>() + "', only float32 runs");
        }
        const auto& arch = hdr.at("architecture");
        if (arch.at("model").get<std::string>() != "FraudGnn") {
            throw LoadError("architecture '" + arch.at("model").get<std::string>() + "' is not FraudGnn");
        }
        net->H = arch.at("hidden").get<int>();
        net->D = arch.at("embedding_dim").get<int>();
        net->E = arch.at("entity_types").get<int>();
        net->Ft = arch.at("txn_features").get<int>();
        net->Fe = arch.at("ent_features").get<int>();
        if (net->E < 1 || net->E > kNativeMaxEntityTypes || net->Fe != net->E + 1 || net->Ft < 1 ||
            net->Ft > kNativeMaxTxnFeatures) {
            throw LoadError("inputs of " + std::to_string(net->E) + " entity types, " +
                            std::to_string(net->Ft) + " transaction and " + std::to_string(net->Fe) +
                            " entity features; need 1.." + std::to_string(kNativeMaxEntityTypes) +
                            " entity types, entity features = entity types + 1, 1.." +
                            std::to_string(kNativeMaxTxnFeatures) + " transaction features");
        }
        // The one pipeline this backend executes; the writer records it and refuses anything else.
        static const char* const kLayers[][2] = {
            {"input_scaling", "standardise"}, {"ent_to_txn", "hetero_sage_sum"},
            {"txn_to_ent", "hetero_sage_per_type"}, {"ent_to_target", "hetero_sage_sum"},
            {"embed", "linear"}, {"head", "relu_linear"}};
        const auto& layers = arch.at("layers");
        if (!layers.is_array() || layers.size() != std::size(kLayers)) {
            throw LoadError("layer list has " + std::to_string(layers.size()) + " entries, expected " +
                            std::to_string(std::size(kLayers)));
        }
        int sage = 0;
        for (size_t i = 0; i < layers.size(); ++i) {
            const std::string name = layers[i].at("name").get<std::string>();
            const std::string op = layers[i].at("op").get<std::string>();
            if (name != kLayers[i][0] || op != kLayers[i][1]) {
                throw LoadError("layer " + std::to_string(i) + " is '" + name + "' (" + op + "), expected '" +
                                kLayers[i][0] + "' (" + kLayers[i][1] + ")");
            }
            if (op.rfind("hetero_sage", 0) == 0) {
                net->aggr[sage++] = parse_aggr(name, layers[i].at("aggr").get<std::string>());
            }
        }
        for (const auto& t : hdr.at("tensors")) {
            TensorRef ref;
            ref.shape = t.at("shape").get<std::vector<int64_t>>();
            ref.offset = t.at("offset").get<uint64_t>();
            tensors[t.at("name").get<std::string>()] = ref;
        }
    } catch (const LoadError&) {
        throw;
    } catch (const std::exception& e) {
        throw LoadError(std::string("bad JSON header: ") + e.what());
    }
    if (net->H < 1 || net->H > kNativeMaxHidden || net->D < 1 || net->D > kNativeMaxEmbedding) {
        throw LoadError("hidden " + std::to_string(net->H) + " / embedding_dim " + std::to_string(net->D) +
                        " outside 1.." + std::to_string(kNativeMaxHidden));
    }
    if (embedding_dim != net->D) {
        throw LoadError("shape mismatch: the artifact's embedding_dim is " + std::to_string(net->D) +
                        ", the caller expects " + std::to_string(embedding_dim));
    }

    const int H = net->H, D = net->D, E = net->E, Ft = net->Ft, Fe = net->Fe;
    // Every tensor the network needs, its shape, and how it is stored here (transposed or not).
    struct Need {
        std::string name;
        std::vector<int64_t> shape;
        bool transpose;
        const float** dst;
    };
    std::vector<Need> needs = {
        {"target_shift", {Ft}, false, &net->shift_target}, {"target_scale", {Ft}, false, &net->scale_target},
        {"txn_shift", {Ft}, false, &net->shift_txn},       {"txn_scale", {Ft}, false, &net->scale_txn},
        {"ent_shift", {Fe}, false, &net->shift_ent},       {"ent_scale", {Fe}, false, &net->scale_ent},
        {"embed.weight", {D, H}, true, &net->embed_w},     {"embed.bias", {D}, false, &net->embed_b},
        {"head.weight", {1, D}, false, &net->head_w},
    };
    const struct {
        const char* name;
        int in_l, in_r;
        Conv* convs;
    } steps[] = {{"ent_to_txn", Fe, Ft, net->ent_to_txn},
                 {"txn_to_ent", H, Fe, net->txn_to_ent},
                 {"ent_to_target", H, Ft, net->ent_to_target}};
    for (const auto& s : steps) {
        for (int t = 0; t < E; ++t) {
            const std::string p = std::string(s.name) + "." + std::to_string(t) + ".";
            needs.push_back({p + "lin_l.weight", {H, s.in_l}, true, &s.convs[t].wl});
            needs.push_back({p + "lin_l.bias", {H}, false, &s.convs[t].bl});
            needs.push_back({p + "lin_r.weight", {H, s.in_r}, true, &s.convs[t].wr});
        }
    }
    const float* head_b = nullptr;
    needs.push_back({"head.bias", {1}, false, &head_b});

    size_t total = 0;  // floats, each tensor rounded up to 16 (64 bytes)
    for (const auto& n : needs) {
        size_t count = 1;
        for (int64_t d : n.shape) count *= static_cast<size_t>(d);
        total += (count + 15) / 16 * 16;
    }
    float* raw = static_cast<float*>(std::aligned_alloc(64, total * sizeof(float)));
    if (raw == nullptr) throw LoadError("out of memory for " + std::to_string(total) + " weights");
    net->storage.reset(raw);

    const unsigned char* weights = bytes.data() + w_off;
    size_t at = 0;
    for (const auto& n : needs) {
        auto it = tensors.find(n.name);
        if (it == tensors.end()) throw LoadError("tensor '" + n.name + "' missing");
        const TensorRef& ref = it->second;
        if (ref.shape != n.shape) {
            throw LoadError("shape mismatch: tensor '" + n.name + "' is " + shape_text(ref.shape) +
                            "; hidden " + std::to_string(H) + ", embedding_dim " + std::to_string(D) + ", " +
                            std::to_string(E) + " entity types and " + std::to_string(Ft) +
                            " transaction features need " + shape_text(n.shape));
        }
        size_t count = 1;
        for (int64_t d : n.shape) count *= static_cast<size_t>(d);
        if (ref.offset % 64 != 0 || ref.offset > w_len || count * 4 > w_len - ref.offset) {
            throw LoadError("tensor '" + n.name + "' at offset " + std::to_string(ref.offset) +
                            " lies outside the " + std::to_string(w_len) + "-byte weights section");
        }
        float* dst = raw + at;
        const unsigned char* src = weights + ref.offset;
        if (n.transpose) {  // [rows][cols] -> [cols][rows]
            const size_t rows = static_cast<size_t>(n.shape[0]), cols = static_cast<size_t>(n.shape[1]);
            for (size_t i = 0; i < rows; ++i) {
                for (size_t j = 0; j < cols; ++j) std::memcpy(&dst[j * rows + i], src + 4 * (i * cols + j), 4);
            }
        } else {
            std::memcpy(dst, src, count * 4);
        }
        *n.dst = dst;
        at += (count + 15) / 16 * 16;
    }
    net->head_b = *head_b;
    pick_kernel(*net);
    return net;
}

void write_err(char* err, size_t errlen, const std::string& msg) {
    if (err == nullptr || errlen == 0) return;
    const size_t n = std::min(msg.size(), errlen - 1);
    std::memcpy(err, msg.data(), n);
    err[n] = '\0';
}

// ---------------------------------------------------------------------------------------------
// The fraud_gnn_backend table.
int native_supports(const char* kind) { return kind != nullptr && std::strcmp(kind, "native") == 0; }

void* native_load(const char* kind, const char* path, int64_t embedding_dim, char* err, size_t errlen) {
    try {
        if (!native_supports(kind)) throw LoadError(std::string("kind '") + (kind ? kind : "") + "' is not native");
        return load_net(path ? path : "", embedding_dim).release();
    } catch (const std::exception& e) {
        write_err(err, errlen, e.what());
    } catch (...) {
        write_err(err, errlen, "unknown error");
    }
    return nullptr;
}

int native_run(void* model, const fraud_gnn_inputs* in, float* logits, float* embeddings, char* err,
               size_t errlen) {
    const Net* net = static_cast<const Net*>(model);
    if (net == nullptr || in == nullptr || logits == nullptr || in->batch < 0 || in->fanout <= 0) {
        write_err(err, errlen, "native GNN: null model/inputs/logits, or batch < 0 / fanout <= 0");
        return 1;
    }
    if (in->num_entity_types != net->E || in->txn_features != net->Ft) {  // the kernel trusts both
        write_err(err, errlen,
                  "native GNN: the inputs have " + std::to_string(in->num_entity_types) + " entity types and " +
                      std::to_string(in->txn_features) + " transaction features, the model was exported for " +
                      std::to_string(net->E) + " and " + std::to_string(net->Ft));
        return 1;
    }
    net->run(*net, *in, logits, embeddings);
    return 0;
}

void native_free(void* model) { delete static_cast<Net*>(model); }

const fraud_gnn_backend kNativeBackend = {
    FRAUD_GNN_BACKEND_ABI, "native", &native_supports, &native_load, &native_run, &native_free,
};

}  // namespace

const fraud_gnn_backend* native_gnn_backend() { return &kNativeBackend; }

}  // namespace libfraud
