/*
 * The compiled trees alone, through libfraud's C API: fraud_engine_score_features on rows the
 * caller computed, one row per call and BATCH rows per call, one thread. Driven by
 * trees_latency.py, which compiles this file against the installed package; prints JSON.
 *
 *   fraud_trees_bench BUNDLE_DIR ROWS.f32 N_ROWS SINGLE_CALLS BATCH BATCH_CALLS REPEATS SCORES.f32
 *
 * ROWS.f32: N_ROWS x num_features float32, row-major, NaN = missing. Single-row calls walk the rows
 * in order (wrapping), so the branch predictor cannot learn one path. Every call is timed with
 * CLOCK_MONOTONIC; per repeat the p50 and p99 of the call times are reported, after a warm-up that
 * is not timed. SCORES.f32 receives the N_ROWS scores, for the parity check against XGBoost.
 * fraud_engine_open is timed OPENS times (open_ms). LIBFRAUD_TREE_LAYOUT (compiled, flat) forces the
 * engine's tree predictor, as trees_scaling.py does for its per-layout columns.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libfraud/fraud.h>

#include "bench_timing.h"

#define OPENS 5 /* timed fraud_engine_open calls */

static int fail(const char* what, fraud_status st) {
    fprintf(stderr, "fraud_trees_bench: %s: %s: %s\n", what, fraud_status_name(st), fraud_last_error());
    return 2;
}

int main(int argc, char** argv) {
    fraud_engine* engine = NULL;
    fraud_status st;
    size_t nf, n_rows, batch, i;
    long single_calls, batch_calls, repeats, r, c;
    float *rows, *scores;
    int64_t* ns;
    double *s50, *s99, *b50, *b99;
    FILE* f;
    double open_ms[OPENS];

    if (argc != 9) {
        fprintf(stderr, "usage: %s BUNDLE_DIR ROWS.f32 N_ROWS SINGLE_CALLS BATCH BATCH_CALLS REPEATS "
                        "SCORES.f32\n", argv[0]);
        return 2;
    }
    n_rows = (size_t)atol(argv[3]);
    single_calls = atol(argv[4]);
    batch = (size_t)atol(argv[5]);
    batch_calls = atol(argv[6]);
    repeats = atol(argv[7]);
    if (n_rows < batch || batch < 1 || single_calls < 1 || batch_calls < 1 || repeats < 1) {
        fprintf(stderr, "fraud_trees_bench: need N_ROWS >= BATCH >= 1 and positive counts\n");
        return 2;
    }

    /* Bundle open time: the first open (cold caches for the process), then re-opens; the median
     * of all is reported with the list. */
    for (r = 0; r < OPENS; ++r) {
        int64_t t0 = now_ns();
        st = fraud_engine_open(argv[1], NULL, &engine);
        open_ms[r] = (double)(now_ns() - t0) / 1e6;
        if (st != FRAUD_STATUS_OK) return fail("fraud_engine_open", st);
        if (r + 1 < OPENS) fraud_engine_free(engine);
    }
    st = fraud_engine_num_features(engine, &nf);
    if (st != FRAUD_STATUS_OK) return fail("fraud_engine_num_features", st);

    rows = malloc(n_rows * nf * sizeof *rows);
    scores = malloc(n_rows * sizeof *scores);
    ns = malloc((size_t)(single_calls > batch_calls ? single_calls : batch_calls) * sizeof *ns);
    s50 = malloc((size_t)repeats * 4 * sizeof *s50);
    if (!rows || !scores || !ns || !s50) {
        fprintf(stderr, "fraud_trees_bench: out of memory\n");
        return 2;
    }
    s99 = s50 + repeats;
    b50 = s99 + repeats;
    b99 = b50 + repeats;
    f = fopen(argv[2], "rb");
    if (!f || fread(rows, sizeof *rows, n_rows * nf, f) != n_rows * nf) {
        fprintf(stderr, "fraud_trees_bench: cannot read %zu x %zu floats from %s\n", n_rows, nf, argv[2]);
        return 2;
    }
    fclose(f);

    /* Scores of every row, one per call, for parity; also the warm-up (page faults, caches). */
    for (i = 0; i < n_rows; ++i) {
        st = fraud_engine_score_features(engine, rows + i * nf, 1, scores + i);
        if (st != FRAUD_STATUS_OK) return fail("fraud_engine_score_features", st);
    }
    f = fopen(argv[8], "wb");
    if (!f || fwrite(scores, sizeof *scores, n_rows, f) != n_rows || fclose(f) != 0) {
        fprintf(stderr, "fraud_trees_bench: cannot write %s\n", argv[8]);
        return 2;
    }
    for (i = 0; i + batch <= n_rows; i += batch) { /* batch warm-up */
        st = fraud_engine_score_features(engine, rows + i * nf, batch, scores + i);
        if (st != FRAUD_STATUS_OK) return fail("fraud_engine_score_features (batch)", st);
    }
    for (r = 0; r < repeats; ++r) {
        size_t row = 0;
        for (c = 0; c < single_calls; ++c) {
            int64_t t0 = now_ns();
            fraud_engine_score_features(engine, rows + row * nf, 1, scores);
            ns[c] = now_ns() - t0;
            row = row + 1 == n_rows ? 0 : row + 1;
        }
        s50[r] = pct_us(ns, (size_t)single_calls, 50.0);
        s99[r] = pct_us(ns, (size_t)single_calls, 99.0);
        row = 0;
        for (c = 0; c < batch_calls; ++c) {
            int64_t t0 = now_ns();
            fraud_engine_score_features(engine, rows + row * nf, batch, scores);
            ns[c] = now_ns() - t0;
            row = row + 2 * batch > n_rows ? 0 : row + batch;
        }
        b50[r] = pct_us(ns, (size_t)batch_calls, 50.0);
        b99[r] = pct_us(ns, (size_t)batch_calls, 99.0);
    }

    printf("{\"path\": \"libfraud fraud_engine_score_features\", \"library\": \"%s\", "
           "\"num_features\": %zu, \"batch\": %zu,\n",
           fraud_version(), nf, batch);
    printf(" \"single\": {");
    print_list("p50_us", s50, repeats, ", ");
    print_list("p99_us", s99, repeats, "},\n");
    printf(" \"batched\": {");
    print_list("p50_us", b50, repeats, ", ");
    print_list("p99_us", b99, repeats, "},\n");
    printf(" ");
    print_list("open_ms", open_ms, OPENS, "}\n");

    free(rows);
    free(scores);
    free(ns);
    free(s50);
    fraud_engine_free(engine);
    return 0;
}
