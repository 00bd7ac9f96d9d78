// The latency floor for FraudGnn's dense form: one hand-written loop with every size a compile-time
// constant (-DH= -DD= -DK=), built -O3 -march=native by native_gnn_latency.py. No libfraud, no
// framework: what a person would write for exactly this model on exactly this machine.
//   gnn_floor WEIGHTS.bin INPUTS.bin CALLS WARMUP OUT.bin
// WEIGHTS.bin: float32, the order of load() below (written by native_gnn_latency.py), weights of
// each Linear transposed to [in][out]. INPUTS.bin: the seven arrays of one target, concatenated.
// OUT.bin: int64 nanoseconds of each timed call; stdout: the logit of the last call.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <vector>

#ifndef H
#error "build with -DH=<hidden> -DD=<embedding_dim> -DK=<fanout>"
#endif
constexpr int E = 4, F = 5;

struct Conv {
    alignas(64) float wl[H * H];  // [in][H]; ent_to_txn uses the first F rows
    alignas(64) float bl[H];
    alignas(64) float wr[F * H];
};
struct Net {
    float ts[F], tsc[F], xs[F], xsc[F], es[F], esc[F];
    Conv c3[E], c2[E], c1[E];
    alignas(64) float we[H * D];
    alignas(64) float be[D];
    alignas(64) float wh[D];
    float bh;
};

static bool load(Net& n, const char* path) {
    std::ifstream f(path, std::ios::binary);
    auto rd = [&](float* p, size_t c) { f.read(reinterpret_cast<char*>(p), c * sizeof(float)); };
    rd(n.ts, F); rd(n.tsc, F); rd(n.xs, F); rd(n.xsc, F); rd(n.es, F); rd(n.esc, F);
    for (Conv* cs : {n.c3, n.c2, n.c1}) {
        for (int e = 0; e < E; ++e) {
            rd(cs[e].wl, cs == n.c3 ? F * H : H * H); rd(cs[e].bl, H); rd(cs[e].wr, F * H);
        }
    }
    rd(n.we, H * D); rd(n.be, D); rd(n.wh, D); rd(&n.bh, 1);
    return bool(f);
}

struct In {
    float tx[F], e1[E * F], m1[E], t2[E * K * F], m2[E * K], e3[E * K * E * F], m3[E * K * E];
};

template <int N>
static inline void mv(float* __restrict o, const float* __restrict w, const float* __restrict x) {
    for (int i = 0; i < N; ++i)
        for (int h = 0; h < H; ++h) o[h] += w[i * H + h] * x[i];
}

__attribute__((noinline)) static float run(const Net& n, const In& in, float* emb) {
    float x0[F];
    for (int i = 0; i < F; ++i) x0[i] = (in.tx[i] - n.ts[i]) * n.tsc[i];
    alignas(64) float h0[H] = {};
    for (int e = 0; e < E; ++e) {
        alignas(64) float l[H], r[H] = {};
        if (in.m1[e] > 0) {
            alignas(64) float agg[H] = {};
            int cnt = 0;
            for (int k = 0; k < K; ++k) {
                const int s = e * K + k;
                if (!(in.m2[s] > 0)) continue;
                float xs[F];
                for (int i = 0; i < F; ++i) xs[i] = (in.t2[s * F + i] - n.xs[i]) * n.xsc[i];
                alignas(64) float h2[H] = {};
                for (int f = 0; f < E; ++f) {
                    alignas(64) float t[H];
                    for (int h = 0; h < H; ++h) t[h] = n.c3[f].bl[h];
                    if (in.m3[s * E + f] > 0) {
                        float a[F];
                        for (int i = 0; i < F; ++i) a[i] = (in.e3[(s * E + f) * F + i] - n.es[i]) * n.esc[i];
                        mv<F>(t, n.c3[f].wl, a);
                    }
                    mv<F>(t, n.c3[f].wr, xs);
                    for (int h = 0; h < H; ++h) h2[h] += t[h];
                }
                for (int h = 0; h < H; ++h) agg[h] += std::max(h2[h], 0.0f);
                ++cnt;
            }
            if (cnt) for (int h = 0; h < H; ++h) agg[h] /= float(cnt);
            float es[F];
            for (int i = 0; i < F; ++i) es[i] = (in.e1[e * F + i] - n.es[i]) * n.esc[i];
            alignas(64) float h1[H];
            for (int h = 0; h < H; ++h) h1[h] = n.c2[e].bl[h];
            mv<H>(h1, n.c2[e].wl, agg);
            mv<F>(h1, n.c2[e].wr, es);
            for (int h = 0; h < H; ++h) h1[h] = std::max(h1[h], 0.0f);
            for (int h = 0; h < H; ++h) l[h] = n.c1[e].bl[h];
            mv<H>(l, n.c1[e].wl, h1);
        } else {
            for (int h = 0; h < H; ++h) l[h] = n.c1[e].bl[h];
        }
        mv<F>(r, n.c1[e].wr, x0);
        for (int h = 0; h < H; ++h) h0[h] += l[h] + r[h];
    }
    for (int h = 0; h < H; ++h) h0[h] = std::max(h0[h], 0.0f);
    for (int d = 0; d < D; ++d) emb[d] = n.be[d];
    for (int h = 0; h < H; ++h)
        for (int d = 0; d < D; ++d) emb[d] += n.we[h * D + d] * h0[h];
    float logit = n.bh;
    for (int d = 0; d < D; ++d) logit += n.wh[d] * std::max(emb[d], 0.0f);
    return logit;
}

static int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int main(int argc, char** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s WEIGHTS.bin INPUTS.bin CALLS WARMUP OUT.bin\n", argv[0]);
        return 2;
    }
    static Net net;
    static In in;
    if (!load(net, argv[1])) return std::fprintf(stderr, "%s: too short\n", argv[1]), 2;
    std::ifstream fi(argv[2], std::ios::binary);
    fi.read(reinterpret_cast<char*>(&in), sizeof in);
    if (!fi) return std::fprintf(stderr, "%s: too short\n", argv[2]), 2;
    const long calls = std::atol(argv[3]), warmup = std::atol(argv[4]);
    std::vector<int64_t> ns(calls);
    float emb[D], logit = 0;
    for (long i = 0; i < warmup; ++i) logit = run(net, in, emb);
    for (long i = 0; i < calls; ++i) {
        const int64_t t0 = now_ns();
        logit = run(net, in, emb);
        ns[i] = now_ns() - t0;
    }
    std::ofstream(argv[5], std::ios::binary).write(reinterpret_cast<const char*>(ns.data()), calls * 8);
    std::printf("%.9g\n", logit);
    return 0;
}
