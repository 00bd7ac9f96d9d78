/*
 * XGBoost's own predictor through its C API, the baseline for the compiled trees:
 * XGBoosterPredictFromDense with nthread=1, one row per call and BATCH rows per call.
 * Driven by trees_latency.py; prints JSON in the same shape as fraud_trees_bench.
 *
 *   xgb_capi_bench MODEL.ubj ROWS.f32 N_ROWS N_FEATURES SINGLE_CALLS BATCH BATCH_CALLS REPEATS SCORES.f32
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

int main(int argc, char** argv) {
    BoosterHandle bst = NULL;
    size_t n_rows, nf, batch, i;
    long single_calls, batch_calls, repeats, r, c;
    float *rows, *scores;
    int64_t* ns;
    double *s50, *s99, *b50, *b99;
    int major, minor, patch;
    FILE* f;

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
