/*
 * XGBoost's own predictor through its C API, the baseline for the compiled trees:
 * XGBoosterPredictFromDense with nthread=1, one row per call and BATCH rows per call.
 * Driven by trees_latency.py; prints JSON in the same shape as fraud_trees_bench.
 *
 *   xgb_capi_bench MODEL.ubj ROWS.f32 N_ROWS N_FEATURES SINGLE_CALLS BATCH BATCH_CALLS REPEATS SCORES.f32
 *
 *   xgb_capi_bench contribs MODEL.ubj ROWS.f32 N_ROWS N_FEATURES WARMUP REPEATS CONTRIBS.f32 NS.i64
 *
 * contribs (driven by explain.py): TreeSHAP contributions ("pred_contribs") of one row per call.
 * XGBoosterPredictFromDense refuses prediction type 2 ("Unsupported prediction type"; the run
 * reports its message), so each call does what a C caller must: the row's array interface,
 * XGDMatrixCreateFromDense (nthread 1), XGBoosterPredictFromDMatrix with "type": 2, XGDMatrixFree.
 * WARMUP untimed calls, then REPEATS passes over the rows, each call timed (NS.i64, int64
 * [repeat][row]); CONTRIBS.f32: float [row][N_FEATURES + 1] of the timed calls, the last the bias.
 *
 * The xgboost wheel ships libxgboost.so but not c_api.h, so the few prototypes used are declared
 * here, as in xgboost/include/xgboost/c_api.h (bst_ulong is uint64_t). Each timed call includes
 * writing the array-interface JSON for its rows, which any caller of this API has to do.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void* BoosterHandle;
typedef void* DMatrixHandle;
typedef uint64_t bst_ulong;

extern const char* XGBGetLastError(void);
extern int XGBoosterCreate(const DMatrixHandle dmats[], bst_ulong len, BoosterHandle* out);
extern int XGBoosterFree(BoosterHandle handle);
extern int XGBoosterLoadModel(BoosterHandle handle, const char* fname);
extern int XGBoosterSetParam(BoosterHandle handle, const char* name, const char* value);
extern int XGBoosterPredictFromDense(BoosterHandle handle, const char* values, const char* config,
                                     DMatrixHandle m, const bst_ulong** out_shape,
                                     bst_ulong* out_dim, const float** out_result);
extern int XGBoostVersion(int* major, int* minor, int* patch);
extern int XGDMatrixCreateFromDense(const char* data, const char* config, DMatrixHandle* out);
extern int XGDMatrixFree(DMatrixHandle handle);
extern int XGBoosterPredictFromDMatrix(BoosterHandle handle, DMatrixHandle dmat, const char* config,
                                       const bst_ulong** out_shape, bst_ulong* out_dim,
                                       const float** out_result);

/* type 0: the transformed prediction (probability for binary:logistic), all trees. */
static const char* const predict_config =
    "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, \"iteration_end\": 0, "
    "\"strict_shape\": false, \"missing\": NaN, \"cache_id\": 0}";

#include "bench_timing.h"

static const float* predict(BoosterHandle bst, const float* rows, size_t n, size_t nf) {
    char iface[256];
    const bst_ulong* shape;
    bst_ulong dim;
    const float* out;
    snprintf(iface, sizeof iface,
             "{\"data\": [%llu, true], \"shape\": [%zu, %zu], \"typestr\": \"<f4\", \"version\": 3}",
             (unsigned long long)(uintptr_t)rows, n, nf);
    if (XGBoosterPredictFromDense(bst, iface, predict_config, NULL, &shape, &dim, &out) != 0) {
        fprintf(stderr, "xgb_capi_bench: XGBoosterPredictFromDense: %s\n", XGBGetLastError());
        exit(2);
    }
    return out;
}

/* type 2: per-feature contributions (TreeSHAP, exact), the bias last; all trees. */
static const char* const contribs_config =
    "{\"type\": 2, \"training\": false, \"iteration_begin\": 0, \"iteration_end\": 0, "
    "\"strict_shape\": false, \"missing\": NaN, \"cache_id\": 0}";

static const float* contribs(BoosterHandle bst, const float* row, size_t nf) {
    char iface[256];
    DMatrixHandle m = NULL;
    const bst_ulong* shape;
    bst_ulong dim;
    const float* out;
    snprintf(iface, sizeof iface,
             "{\"data\": [%llu, true], \"shape\": [1, %zu], \"typestr\": \"<f4\", \"version\": 3}",
             (unsigned long long)(uintptr_t)row, nf);
    if (XGDMatrixCreateFromDense(iface, "{\"missing\": NaN, \"nthread\": 1}", &m) != 0 ||
        XGBoosterPredictFromDMatrix(bst, m, contribs_config, &shape, &dim, &out) != 0) {
        fprintf(stderr, "xgb_capi_bench: contributions: %s\n", XGBGetLastError());
        exit(2);
    }
    if (dim != 2 || shape[0] != 1 || shape[1] != nf + 1) {
        fprintf(stderr, "xgb_capi_bench: contributions of unexpected shape\n");
        exit(2);
    }
    XGDMatrixFree(m); /* the output stays valid: it belongs to the booster until its next prediction */
    return out;
}

static int run_contribs(char** argv) {
    BoosterHandle bst = NULL;
    size_t n_rows = (size_t)atol(argv[4]), nf = (size_t)atol(argv[5]), warmup = (size_t)atol(argv[6]), i;
    long repeats = atol(argv[7]), r;
    float *rows, *out;
    int64_t *ns, *sorted;
    double* p50;
    char refused[512] = "";
    int major, minor, patch;
    FILE* f;

    if (n_rows < 1 || nf < 1 || repeats < 1) {
        fprintf(stderr, "xgb_capi_bench: need N_ROWS, N_FEATURES, REPEATS >= 1\n");
        return 2;
    }
    if (XGBoosterCreate(NULL, 0, &bst) != 0 || XGBoosterLoadModel(bst, argv[2]) != 0 ||
        XGBoosterSetParam(bst, "nthread", "1") != 0) {
        fprintf(stderr, "xgb_capi_bench: loading %s: %s\n", argv[2], XGBGetLastError());
        return 2;
    }
    rows = malloc(n_rows * nf * sizeof *rows);
    out = malloc(n_rows * (nf + 1) * sizeof *out);
    ns = malloc((size_t)repeats * n_rows * sizeof *ns);
    sorted = malloc(n_rows * sizeof *sorted);
    p50 = malloc((size_t)repeats * 2 * sizeof *p50);
    if (!rows || !out || !ns || !sorted || !p50) {
        fprintf(stderr, "xgb_capi_bench: out of memory\n");
        return 2;
    }
    f = fopen(argv[3], "rb");
    if (!f || fread(rows, sizeof *rows, n_rows * nf, f) != n_rows * nf) {
        fprintf(stderr, "xgb_capi_bench: cannot read %zu x %zu floats from %s\n", n_rows, nf, argv[3]);
        return 2;
    }
    fclose(f);

    { /* the in-place call, which would skip the DMatrix, refuses contributions: say so */
        char iface[256];
        const bst_ulong* shape;
        bst_ulong dim;
        const float* res;
        snprintf(iface, sizeof iface,
                 "{\"data\": [%llu, true], \"shape\": [1, %zu], \"typestr\": \"<f4\", \"version\": 3}",
                 (unsigned long long)(uintptr_t)rows, nf);
        if (XGBoosterPredictFromDense(bst, iface, contribs_config, NULL, &shape, &dim, &res) != 0) {
            const char* e = XGBGetLastError();
            size_t j, w = 0;
            for (j = 0; e[j] && e[j] != '\n' && w + 1 < sizeof refused; ++j)
                if (e[j] != '"' && e[j] != '\\') refused[w++] = e[j];
            refused[w] = '\0';
        }
    }

    for (i = 0; i < warmup; ++i) contribs(bst, rows + (i % n_rows) * nf, nf);
    for (r = 0; r < repeats; ++r) {
        int64_t* t = ns + (size_t)r * n_rows;
        for (i = 0; i < n_rows; ++i) {
            int64_t t0 = now_ns();
            const float* c = contribs(bst, rows + i * nf, nf);
            t[i] = now_ns() - t0;
            memcpy(out + i * (nf + 1), c, (nf + 1) * sizeof *out); /* untimed */
        }
        memcpy(sorted, t, n_rows * sizeof *sorted);
        p50[r] = pct_us(sorted, n_rows, 50.0);
        p50[repeats + r] = pct_us(sorted, n_rows, 99.0);
    }
    f = fopen(argv[8], "wb");
    if (!f || fwrite(out, sizeof *out, n_rows * (nf + 1), f) != n_rows * (nf + 1) || fclose(f) != 0) {
        fprintf(stderr, "xgb_capi_bench: cannot write %s\n", argv[8]);
        return 2;
    }
    f = fopen(argv[9], "wb");
    if (!f || fwrite(ns, sizeof *ns, (size_t)repeats * n_rows, f) != (size_t)repeats * n_rows || fclose(f) != 0) {
        fprintf(stderr, "xgb_capi_bench: cannot write %s\n", argv[9]);
        return 2;
    }
    XGBoostVersion(&major, &minor, &patch);
    printf("{\"path\": \"xgboost XGDMatrixCreateFromDense + XGBoosterPredictFromDMatrix type 2\", "
           "\"library\": \"%d.%d.%d\", \"num_features\": %zu, \"rows\": %zu, \"warmup\": %zu, "
           "\"predict_from_dense_type2\": \"%s\", ",
           major, minor, patch, nf, n_rows, warmup, refused[0] ? refused : "accepted");
    print_list("p50_us", p50, repeats, ", ");
    print_list("p99_us", p50 + repeats, repeats, "}\n");
    free(rows);
    free(out);
    free(ns);
    free(sorted);
    free(p50);
    XGBoosterFree(bst);
    return 0;
}

int main(int argc, char** argv) {
    BoosterHandle bst = NULL;
    size_t n_rows, nf, batch, i;
    long single_calls, batch_calls, repeats, r, c;
    float *rows, *scores;
    int64_t* ns;
    double *s50, *s99, *b50, *b99;
    int major, minor, patch;
    FILE* f;

    if (argc == 10 && strcmp(argv[1], "contribs") == 0) return run_contribs(argv);
    if (argc != 10) {
        fprintf(stderr, "usage: %s MODEL.ubj ROWS.f32 N_ROWS N_FEATURES SINGLE_CALLS BATCH BATCH_CALLS "
                        "REPEATS SCORES.f32\n", argv[0]);
        return 2;
    }
    n_rows = (size_t)atol(argv[3]);
    nf = (size_t)atol(argv[4]);
    single_calls = atol(argv[5]);
    batch = (size_t)atol(argv[6]);
    batch_calls = atol(argv[7]);
    repeats = atol(argv[8]);
    if (n_rows < batch || batch < 1 || nf < 1 || single_calls < 1 || batch_calls < 1 || repeats < 1) {
        fprintf(stderr, "xgb_capi_bench: need N_ROWS >= BATCH >= 1 and positive counts\n");
        return 2;
    }
    if (XGBoosterCreate(NULL, 0, &bst) != 0 || XGBoosterLoadModel(bst, argv[1]) != 0 ||
        XGBoosterSetParam(bst, "nthread", "1") != 0) {
        fprintf(stderr, "xgb_capi_bench: loading %s: %s\n", argv[1], XGBGetLastError());
        return 2;
    }

    rows = malloc(n_rows * nf * sizeof *rows);
    scores = malloc(n_rows * sizeof *scores);
    ns = malloc((size_t)(single_calls > batch_calls ? single_calls : batch_calls) * sizeof *ns);
    s50 = malloc((size_t)repeats * 4 * sizeof *s50);
    if (!rows || !scores || !ns || !s50) {
        fprintf(stderr, "xgb_capi_bench: out of memory\n");
        return 2;
    }
    s99 = s50 + repeats;
    b50 = s99 + repeats;
    b99 = b50 + repeats;
    f = fopen(argv[2], "rb");
    if (!f || fread(rows, sizeof *rows, n_rows * nf, f) != n_rows * nf) {
        fprintf(stderr, "xgb_capi_bench: cannot read %zu x %zu floats from %s\n", n_rows, nf, argv[2]);
        return 2;
    }
    fclose(f);

    /* Scores of every row, one per call, for parity; also the warm-up. */
    for (i = 0; i < n_rows; ++i) scores[i] = predict(bst, rows + i * nf, 1, nf)[0];
    f = fopen(argv[9], "wb");
    if (!f || fwrite(scores, sizeof *scores, n_rows, f) != n_rows || fclose(f) != 0) {
        fprintf(stderr, "xgb_capi_bench: cannot write %s\n", argv[9]);
        return 2;
    }
    for (i = 0; i + batch <= n_rows; i += batch) predict(bst, rows + i * nf, batch, nf);

    for (r = 0; r < repeats; ++r) {
        size_t row = 0;
        for (c = 0; c < single_calls; ++c) {
            int64_t t0 = now_ns();
            predict(bst, rows + row * nf, 1, nf);
            ns[c] = now_ns() - t0;
            row = row + 1 == n_rows ? 0 : row + 1;
        }
        s50[r] = pct_us(ns, (size_t)single_calls, 50.0);
        s99[r] = pct_us(ns, (size_t)single_calls, 99.0);
        row = 0;
        for (c = 0; c < batch_calls; ++c) {
            int64_t t0 = now_ns();
            predict(bst, rows + row * nf, batch, nf);
            ns[c] = now_ns() - t0;
            row = row + 2 * batch > n_rows ? 0 : row + batch;
        }
        b50[r] = pct_us(ns, (size_t)batch_calls, 50.0);
        b99[r] = pct_us(ns, (size_t)batch_calls, 99.0);
    }

    XGBoostVersion(&major, &minor, &patch);
    printf("{\"path\": \"xgboost XGBoosterPredictFromDense\", \"library\": \"%d.%d.%d\", "
           "\"num_features\": %zu, \"batch\": %zu,\n",
           major, minor, patch, nf, batch);
    printf(" \"single\": {");
    print_list("p50_us", s50, repeats, ", ");
    print_list("p99_us", s99, repeats, "},\n");
    printf(" \"batched\": {");
    print_list("p50_us", b50, repeats, ", ");
    print_list("p99_us", b99, repeats, "}}\n");

    free(rows);
    free(scores);
    free(ns);
    free(s50);
    XGBoosterFree(bst);
    return 0;
}
