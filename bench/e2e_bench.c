/*
 * End to end through libfraud's C API, as a payment switch calls it. Driven by bench/report.py,
 * which compiles this file against the installed package; prints one JSON object.
 *
 *   e2e_bench latency    BUNDLE BACKEND TXNS.bin N_HISTORY N_LIVE WARMUP REPEATS OP NS_OUT.i64
 *   e2e_bench throughput BUNDLE BACKEND TXNS.bin N_HISTORY N_LIVE BATCH THREADS REPEATS OP
 *
 * TXNS.bin: fraud_txn records (fraud.h's layout) in time order; the first N_HISTORY are ingested
 * (untimed, in one call), the next N_LIVE are the traffic. BACKEND: the GNN backend ("" or "-" =
 * the bundle's default). Every repeat opens a fresh engine and ingests the same history, so each
 * repeat does the same work.
 *
 * latency: one transaction per call, one thread. The first WARMUP live transactions are called
 * untimed, every later one is timed alone (CLOCK_MONOTONIC). OP: "score_and_ingest" (the serving
 * call: validate + features + 2-hop sample + GNN + trees + store), or "features" (the model's input
 * row alone; the transaction is then ingested untimed so the store moves as in serving). The ns of
 * every timed call of every repeat go to NS_OUT.i64 (int64, repeat after repeat).
 *
 * throughput: transactions per second over the N_LIVE live transactions in calls of BATCH.
 * OP "score_and_ingest": one thread (the call is exclusive). OP "score": THREADS threads, each
 * scoring its contiguous share with fraud_engine_score (safe concurrently; nothing is stored, so
 * every transaction sees the history alone). Wall time from the threads' start to the last join.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libfraud/fraud.h>

#include "bench_timing.h"

static int fail(const char* what, fraud_status st) {
    fprintf(stderr, "e2e_bench: %s: %s: %s\n", what, fraud_status_name(st), fraud_last_error());
    exit(2);
}

static fraud_engine* open_with_history(const char* bundle, const char* backend, const fraud_txn* txns,
                                       size_t n_history, size_t n_total) {
    fraud_engine* engine = NULL;
    fraud_engine_params params = fraud_engine_default_params();
    fraud_status st;
    params.expected_transactions = (int64_t)n_total;
    params.gnn_backend = (backend[0] == '\0' || strcmp(backend, "-") == 0) ? NULL : backend;
    st = fraud_engine_open(bundle, &params, &engine);
    if (st != FRAUD_STATUS_OK) fail("fraud_engine_open", st);
    if (n_history > 0) {
        st = fraud_engine_ingest(engine, txns, n_history);
        if (st != FRAUD_STATUS_OK) fail("fraud_engine_ingest (history)", st);
    }
    return engine;
}

struct share {
    const fraud_engine* engine;
    const fraud_txn* txns;
    size_t n, batch;
    float* scores;
    int failed;
};

static void* score_share(void* arg) {
    struct share* s = arg;
    size_t i;
    for (i = 0; i < s->n; i += s->batch) {
        size_t m = s->n - i < s->batch ? s->n - i : s->batch;
        if (fraud_engine_score(s->engine, s->txns + i, m, s->scores + i) != FRAUD_STATUS_OK) s->failed = 1;
    }
    return NULL;
}

int main(int argc, char** argv) {
    const char *mode, *bundle, *backend, *op;
    size_t n_history, n_live, n_total, i;
    long repeats, r;
    fraud_txn* txns;
    float* scores;
    FILE* f;

    if (argc != 11 || (strcmp(argv[1], "latency") != 0 && strcmp(argv[1], "throughput") != 0)) {
        fprintf(stderr,
                "usage: %s latency BUNDLE BACKEND TXNS.bin N_HISTORY N_LIVE WARMUP REPEATS OP NS_OUT.i64\n"
                "       %s throughput BUNDLE BACKEND TXNS.bin N_HISTORY N_LIVE BATCH THREADS REPEATS OP\n",
                argv[0], argv[0]);
        return 2;
    }
    mode = argv[1];
    bundle = argv[2];
    backend = argv[3];
    n_history = (size_t)atol(argv[5]);
    n_live = (size_t)atol(argv[6]);
    n_total = n_history + n_live;
    txns = malloc(n_total * sizeof *txns);
    scores = malloc((n_live + 1) * sizeof *scores);
    if (!txns || !scores) {
        fprintf(stderr, "e2e_bench: out of memory\n");
        return 2;
    }
    f = fopen(argv[4], "rb");
    if (!f || fread(txns, sizeof *txns, n_total, f) != n_total) {
        fprintf(stderr, "e2e_bench: cannot read %zu transactions from %s\n", n_total, argv[4]);
        return 2;
    }
    fclose(f);

    if (strcmp(mode, "latency") == 0) {
        size_t warmup = (size_t)atol(argv[7]), timed, nf = 0;
        int features_op;
        int64_t* ns;
        double *p50, *p99, *p999;
        float* row;
        repeats = atol(argv[8]);
        op = argv[9];
        features_op = strcmp(op, "features") == 0;
        if (!features_op && strcmp(op, "score_and_ingest") != 0) {
            fprintf(stderr, "e2e_bench: OP must be score_and_ingest or features\n");
            return 2;
        }
        if (warmup >= n_live || repeats < 1) {
            fprintf(stderr, "e2e_bench: need WARMUP < N_LIVE and REPEATS >= 1\n");
            return 2;
        }
        timed = n_live - warmup;
        ns = malloc((size_t)repeats * timed * sizeof *ns);
        p50 = malloc((size_t)repeats * 3 * sizeof *p50);
        row = malloc(4096 * sizeof *row);
        if (!ns || !p50 || !row) return 2;
        p99 = p50 + repeats;
        p999 = p99 + repeats;
        for (r = 0; r < repeats; ++r) {
            fraud_engine* engine = open_with_history(bundle, backend, txns, n_history, n_total);
            const fraud_txn* live = txns + n_history;
            int64_t* out = ns + (size_t)r * timed;
            int64_t* sorted = malloc(timed * sizeof *sorted);
            fraud_status st;
            if (fraud_engine_num_features(engine, &nf) != FRAUD_STATUS_OK || nf > 4096) return 2;
            for (i = 0; i < n_live; ++i) {
                int64_t t0 = now_ns(), t1;
                if (features_op) {
                    st = fraud_engine_features(engine, live + i, 1, row);
                    t1 = now_ns();
                    if (st != FRAUD_STATUS_OK) fail("fraud_engine_features", st);
                    st = fraud_engine_ingest(engine, live + i, 1);
                    if (st != FRAUD_STATUS_OK) fail("fraud_engine_ingest", st);
                } else {
                    st = fraud_engine_score_and_ingest(engine, live + i, 1, scores + i);
                    t1 = now_ns();
                    if (st != FRAUD_STATUS_OK) fail("fraud_engine_score_and_ingest", st);
                }
                if (i >= warmup) out[i - warmup] = t1 - t0;
            }
            memcpy(sorted, out, timed * sizeof *sorted);
            p50[r] = pct_us(sorted, timed, 50.0);
            p99[r] = pct_us(sorted, timed, 99.0);
            p999[r] = pct_us(sorted, timed, 99.9);
            free(sorted);
            fraud_engine_free(engine);
        }
        f = fopen(argv[10], "wb");
        if (!f || fwrite(ns, sizeof *ns, (size_t)repeats * timed, f) != (size_t)repeats * timed ||
            fclose(f) != 0) {
            fprintf(stderr, "e2e_bench: cannot write %s\n", argv[10]);
            return 2;
        }
        printf("{\"mode\": \"latency\", \"op\": \"%s\", \"library\": \"%s\", \"num_features\": %zu, "
               "\"timed_per_repeat\": %zu, \"warmup\": %zu, ",
               op, fraud_version(), nf, timed, warmup);
        print_list("p50_us", p50, repeats, ", ");
        print_list("p99_us", p99, repeats, ", ");
        print_list("p999_us", p999, repeats, "}\n");
        free(ns);
        free(p50);
        free(row);
    } else {
        size_t batch = (size_t)atol(argv[7]);
        long threads = atol(argv[8]);
        double* tps;
        repeats = atol(argv[9]);
        op = argv[10];
        if (batch < 1 || threads < 1 || threads > 256 || repeats < 1) {
            fprintf(stderr, "e2e_bench: need BATCH >= 1, 1 <= THREADS <= 256, REPEATS >= 1\n");
            return 2;
        }
        tps = malloc((size_t)repeats * sizeof *tps);
        for (r = 0; r < repeats; ++r) {
            fraud_engine* engine = open_with_history(bundle, backend, txns, n_history, n_total);
            const fraud_txn* live = txns + n_history;
            int64_t t0, t1;
            if (strcmp(op, "score_and_ingest") == 0) {
                t0 = now_ns();
                for (i = 0; i < n_live; i += batch) {
                    size_t m = n_live - i < batch ? n_live - i : batch;
                    fraud_status st = fraud_engine_score_and_ingest(engine, live + i, m, scores + i);
                    if (st != FRAUD_STATUS_OK) fail("fraud_engine_score_and_ingest", st);
                }
                t1 = now_ns();
            } else if (strcmp(op, "score") == 0) {
                pthread_t tid[256];
                struct share sh[256];
                long t;
                /* warm-up: each thread's scratch buffers and the backend's first run */
                score_share(&(struct share){engine, live, batch < n_live ? batch : n_live, batch, scores, 0});
                for (t = 0; t < threads; ++t) {
                    size_t lo = n_live * (size_t)t / (size_t)threads, hi = n_live * (size_t)(t + 1) / (size_t)threads;
                    sh[t] = (struct share){engine, live + lo, hi - lo, batch, scores + lo, 0};
                }
                t0 = now_ns();
                for (t = 0; t < threads; ++t) pthread_create(&tid[t], NULL, score_share, &sh[t]);
                for (t = 0; t < threads; ++t) pthread_join(tid[t], NULL);
                t1 = now_ns();
                for (t = 0; t < threads; ++t)
                    if (sh[t].failed) fail("fraud_engine_score (a thread)", FRAUD_STATUS_OK);
            } else {
                fprintf(stderr, "e2e_bench: OP must be score_and_ingest or score\n");
                return 2;
            }
            tps[r] = (double)n_live / ((double)(t1 - t0) / 1e9);
            fraud_engine_free(engine);
        }
        printf("{\"mode\": \"throughput\", \"op\": \"%s\", \"batch\": %zu, \"threads\": %ld, ", op, batch,
               threads);
        print_list("txn_per_s", tps, repeats, "}\n");
        free(tps);
    }
    free(txns);
    free(scores);
    return 0;
}
