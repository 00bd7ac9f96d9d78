/*
 * The cost of reasons through libfraud's C API, one event (or row) per call, one thread. Driven by
 * bench/explain.py, which compiles this file against the installed package; prints one JSON object.
 *
 *   explain_bench e2e BUNDLE EVENTS.bin N_EVENTS N_ENT N_NUM N_CAT N_HISTORY WARMUP REPEATS K
 *                 NS_OUT.i64 SCORES_OUT.f32 [TURN]
 *   explain_bench contributions BUNDLE ROWS.f32 N_ROWS WARMUP REPEATS CONTRIB_OUT.f64 NS_OUT.i64
 *
 * EVENTS.bin: N_EVENTS fraud_event records of the bundle's schema, in time order, as columns one
 * after the other: event_id int64[N], time_ms int64[N], amount float64[N], entity_id int64[N][N_ENT],
 * numeric float64[N][N_NUM], categorical int64[N][N_CAT] (libfraud.events.EventArrays, written by
 * explain.py). The first N_HISTORY are ingested (untimed, one call), the rest are the traffic.
 *
 * e2e: three serving calls over the same traffic, each repeat opening a fresh engine per op and
 * ingesting the same history (so every op of every repeat does the same work); within a repeat the
 * ops run one after the other (a noisy neighbour hits all three alike), their order turning each
 * repeat (repeat r starts with op (TURN + r) mod 3, TURN default 0: explain_all, which sweeps the
 * caches, precedes each op alike over repeats, or over calls of TURN 0, 1, 2):
 *   score_and_ingest          fraud_engine_score_and_ingest_events
 *   explain_all               fraud_engine_score_and_ingest_explain_events, K, min_score 0
 *                             (every event explained)
 *   explain_alerts            the same with min_score = fraud_engine_threshold (alerts explained)
 * The first WARMUP live events are called untimed, every later one is timed alone
 * (CLOCK_MONOTONIC). NS_OUT.i64: int64 [op][repeat][timed call]; SCORES_OUT.f32: float [op][live
 * event] of the last repeat (the ops must agree: the reasons explain the score served).
 *
 * contributions: fraud_engine_contributions on one row per call: WARMUP untimed calls, then REPEATS
 * passes over the rows, each call timed. CONTRIB_OUT.f64: double [row][num_features + 1] (each
 * call writes its row's, so the output is what the timed calls computed); NS_OUT.i64: int64
 * [repeat][row].
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libfraud/fraud.h>

#include "bench_timing.h"

#define N_OPS 3
static const char* const op_names[N_OPS] = {"score_and_ingest", "explain_all", "explain_alerts"};

static void fail(const char* what, fraud_status st) {
    fprintf(stderr, "explain_bench: %s: %s: %s\n", what, fraud_status_name(st), fraud_last_error());
    exit(2);
}

static void* xmalloc(size_t bytes) {
    void* p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "explain_bench: out of memory\n");
        exit(2);
    }
    return p;
}

static void read_exact(FILE* f, void* dst, size_t size, size_t n, const char* path) {
    if (n > 0 && fread(dst, size, n, f) != n) {
        fprintf(stderr, "explain_bench: %s is shorter than its counts say\n", path);
        exit(2);
    }
}

static void write_all(const char* path, const void* src, size_t size, size_t n) {
    FILE* f = fopen(path, "wb");
    if (!f || fwrite(src, size, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "explain_bench: cannot write %s\n", path);
        exit(2);
    }
}

static fraud_engine* open_engine(const char* bundle, int64_t expected) {
    fraud_engine* engine = NULL;
    fraud_engine_params params = fraud_engine_default_params();
    fraud_status st;
    params.expected_transactions = expected;
    st = fraud_engine_open(bundle, &params, &engine);
    if (st != FRAUD_STATUS_OK) fail("fraud_engine_open", st);
    return engine;
}

static int run_e2e(int argc, char** argv) {
    const char* bundle = argv[2];
    size_t n = (size_t)atol(argv[4]), n_ent = (size_t)atol(argv[5]), n_num = (size_t)atol(argv[6]),
           n_cat = (size_t)atol(argv[7]), n_hist = (size_t)atol(argv[8]), warmup = (size_t)atol(argv[9]);
    long repeats = atol(argv[10]), r;
    size_t k = (size_t)atol(argv[11]), n_live, timed, i, op, nf = 0, n_families = 0;
    size_t first = argc > 14 ? (size_t)atol(argv[14]) : 0;
    int64_t *event_id, *time_ms, *entity, *categorical, *ns;
    double *amount, *numeric, threshold = 0.0;
    double* stats;
    size_t explained[N_OPS] = {0, 0, 0};
    fraud_event* events;
    fraud_reason* reasons;
    size_t* n_reasons;
    float* scores;
    FILE* f;
    if (n_hist >= n || warmup >= n - n_hist || repeats < 1 || k < 1) {
        fprintf(stderr, "explain_bench: need N_HISTORY < N_EVENTS, WARMUP < live events, REPEATS >= 1, K >= 1\n");
        return 2;
    }
    n_live = n - n_hist;
    timed = n_live - warmup;
    event_id = xmalloc(n * sizeof *event_id);
    time_ms = xmalloc(n * sizeof *time_ms);
    amount = xmalloc(n * sizeof *amount);
    entity = xmalloc(n * n_ent * sizeof *entity);
    numeric = xmalloc(n * n_num * sizeof *numeric);
    categorical = xmalloc(n * n_cat * sizeof *categorical);
    f = fopen(argv[3], "rb");
    if (!f) {
        fprintf(stderr, "explain_bench: cannot open %s\n", argv[3]);
        return 2;
    }
    read_exact(f, event_id, sizeof *event_id, n, argv[3]);
    read_exact(f, time_ms, sizeof *time_ms, n, argv[3]);
    read_exact(f, amount, sizeof *amount, n, argv[3]);
    read_exact(f, entity, sizeof *entity, n * n_ent, argv[3]);
    read_exact(f, numeric, sizeof *numeric, n * n_num, argv[3]);
    read_exact(f, categorical, sizeof *categorical, n * n_cat, argv[3]);
    fclose(f);
    events = xmalloc(n * sizeof *events);
    for (i = 0; i < n; ++i) {
        events[i].event_id = event_id[i];
        events[i].time_ms = time_ms[i];
        events[i].amount = amount[i];
        events[i].entity_id = n_ent ? entity + i * n_ent : NULL;
        events[i].numeric = n_num ? numeric + i * n_num : NULL;
        events[i].categorical = n_cat ? categorical + i * n_cat : NULL;
    }

    ns = xmalloc((size_t)N_OPS * (size_t)repeats * timed * sizeof *ns);
    scores = xmalloc((size_t)N_OPS * n_live * sizeof *scores);
    reasons = xmalloc(k * sizeof *reasons);
    n_reasons = xmalloc(sizeof *n_reasons);
    stats = xmalloc((size_t)N_OPS * (size_t)repeats * 4 * sizeof *stats); /* p50, p99, p999, mean */

    for (r = 0; r < repeats; ++r) {
        size_t turn;
        for (turn = 0; turn < N_OPS; ++turn) {
            fraud_engine* engine;
            const fraud_event* live = events + n_hist;
            int64_t* out;
            float* sc;
            int64_t* sorted = xmalloc(timed * sizeof *sorted);
            float min_score = 0.0f;
            double sum = 0.0;
            size_t count;
            fraud_status st;
            op = (first + turn + (size_t)r) % N_OPS; /* the order turns: no op always follows another */
            engine = open_engine(bundle, (int64_t)n);
            out = ns + ((size_t)op * (size_t)repeats + (size_t)r) * timed;
            sc = scores + op * n_live;
            if (fraud_engine_num_features(engine, &nf) != FRAUD_STATUS_OK ||
                fraud_engine_threshold(engine, &threshold) != FRAUD_STATUS_OK ||
                fraud_engine_reason_count(engine, &n_families) != FRAUD_STATUS_OK)
                fail("engine facts", FRAUD_STATUS_OK);
            if (fraud_engine_schema_count(engine, FRAUD_ROLE_ENTITY, &count) != FRAUD_STATUS_OK || count != n_ent ||
                fraud_engine_schema_count(engine, FRAUD_ROLE_NUMERIC, &count) != FRAUD_STATUS_OK || count != n_num ||
                fraud_engine_schema_count(engine, FRAUD_ROLE_CATEGORICAL, &count) != FRAUD_STATUS_OK ||
                count != n_cat) {
                fprintf(stderr, "explain_bench: N_ENT/N_NUM/N_CAT differ from the bundle's schema\n");
                return 2;
            }
            if (op == 2) min_score = (float)threshold;
            st = fraud_engine_ingest_events(engine, events, n_hist);
            if (st != FRAUD_STATUS_OK) fail("fraud_engine_ingest_events (history)", st);
            if (r == 0) explained[op] = 0;
            for (i = 0; i < n_live; ++i) {
                int64_t t0 = now_ns(), t1;
                if (op == 0) {
                    st = fraud_engine_score_and_ingest_events(engine, live + i, 1, sc + i);
                    t1 = now_ns();
                    if (st != FRAUD_STATUS_OK) fail("fraud_engine_score_and_ingest_events", st);
                } else {
                    st = fraud_engine_score_and_ingest_explain_events(engine, live + i, 1, k, min_score, sc + i,
                                                                      reasons, n_reasons);
                    t1 = now_ns();
                    if (st != FRAUD_STATUS_OK) fail("fraud_engine_score_and_ingest_explain_events", st);
                    if (r == 0 && i >= warmup && sc[i] >= min_score) ++explained[op];
                }
                if (i >= warmup) out[i - warmup] = t1 - t0;
            }
            for (i = 0; i < timed; ++i) sum += (double)out[i];
            memcpy(sorted, out, timed * sizeof *sorted);
            stats[((size_t)op * (size_t)repeats + (size_t)r) * 4 + 0] = pct_us(sorted, timed, 50.0);
            stats[((size_t)op * (size_t)repeats + (size_t)r) * 4 + 1] = pct_us(sorted, timed, 99.0);
            stats[((size_t)op * (size_t)repeats + (size_t)r) * 4 + 2] = pct_us(sorted, timed, 99.9);
            stats[((size_t)op * (size_t)repeats + (size_t)r) * 4 + 3] = sum / (double)timed / 1000.0;
            free(sorted);
            fraud_engine_free(engine);
        }
    }
    write_all(argv[12], ns, sizeof *ns, (size_t)N_OPS * (size_t)repeats * timed);
    write_all(argv[13], scores, sizeof *scores, (size_t)N_OPS * n_live);

    printf("{\"mode\": \"e2e\", \"library\": \"%s\", \"num_features\": %zu, \"reason_families\": %zu, "
           "\"threshold\": %.9g, \"k\": %zu, \"history\": %zu, \"warmup\": %zu, \"timed_per_repeat\": %zu, "
           "\"repeats\": %ld, \"ops\": {",
           fraud_version(), nf, n_families, threshold, k, n_hist, warmup, timed, repeats);
    for (op = 0; op < N_OPS; ++op) {
        double col[4][1024];
        long m = repeats < 1024 ? repeats : 1024, q;
        for (q = 0; q < m; ++q) {
            int s;
            for (s = 0; s < 4; ++s) col[s][q] = stats[((size_t)op * (size_t)repeats + (size_t)q) * 4 + (size_t)s];
        }
        printf("%s\"%s\": {\"explained_timed_events\": %zu, ", op ? ", " : "", op_names[op],
               op ? explained[op] : (size_t)0);
        print_list("p50_us", col[0], m, ", ");
        print_list("p99_us", col[1], m, ", ");
        print_list("p999_us", col[2], m, ", ");
        print_list("mean_us", col[3], m, "}");
    }
    printf("}}\n");
    free(event_id);
    free(time_ms);
    free(amount);
    free(entity);
    free(numeric);
    free(categorical);
    free(events);
    free(ns);
    free(scores);
    free(reasons);
    free(n_reasons);
    free(stats);
    return 0;
}

static int run_contributions(int argc, char** argv) {
    const char* bundle = argv[2];
    size_t n_rows = (size_t)atol(argv[4]), warmup = (size_t)atol(argv[5]), nf = 0, i, w;
    long repeats = atol(argv[6]), r;
    fraud_engine* engine;
    float* rows;
    double *contrib, *one, *p50, *p99;
    int64_t *ns, *sorted;
    fraud_status st;
    FILE* f;
    (void)argc;

    if (n_rows < 1 || repeats < 1) {
        fprintf(stderr, "explain_bench: need N_ROWS >= 1 and REPEATS >= 1\n");
        return 2;
    }
    engine = open_engine(bundle, 0);
    if (fraud_engine_num_features(engine, &nf) != FRAUD_STATUS_OK) fail("fraud_engine_num_features", FRAUD_STATUS_OK);
    rows = xmalloc(n_rows * nf * sizeof *rows);
    contrib = xmalloc(n_rows * (nf + 1) * sizeof *contrib);
    one = xmalloc((nf + 1) * sizeof *one);
    ns = xmalloc((size_t)repeats * n_rows * sizeof *ns);
    sorted = xmalloc(n_rows * sizeof *sorted);
    p50 = xmalloc((size_t)repeats * 2 * sizeof *p50);
    p99 = p50 + repeats;
    f = fopen(argv[3], "rb");
    if (!f) {
        fprintf(stderr, "explain_bench: cannot open %s\n", argv[3]);
        return 2;
    }
    read_exact(f, rows, sizeof *rows, n_rows * nf, argv[3]);
    fclose(f);

    for (w = 0; w < warmup; ++w) {
        st = fraud_engine_contributions(engine, rows + (w % n_rows) * nf, 1, one);
        if (st != FRAUD_STATUS_OK) fail("fraud_engine_contributions", st);
    }
    for (r = 0; r < repeats; ++r) {
        int64_t* out = ns + (size_t)r * n_rows;
        for (i = 0; i < n_rows; ++i) { /* each repeat writes the same output */
            int64_t t0 = now_ns();
            st = fraud_engine_contributions(engine, rows + i * nf, 1, contrib + i * (nf + 1));
            out[i] = now_ns() - t0;
            if (st != FRAUD_STATUS_OK) fail("fraud_engine_contributions", st);
        }
        memcpy(sorted, out, n_rows * sizeof *sorted);
        p50[r] = pct_us(sorted, n_rows, 50.0);
        p99[r] = pct_us(sorted, n_rows, 99.0);
    }
    write_all(argv[7], contrib, sizeof *contrib, n_rows * (nf + 1));
    write_all(argv[8], ns, sizeof *ns, (size_t)repeats * n_rows);
    printf("{\"mode\": \"contributions\", \"path\": \"fraud_engine_contributions\", \"library\": \"%s\", "
           "\"num_features\": %zu, \"rows\": %zu, \"warmup\": %zu, ",
           fraud_version(), nf, n_rows, warmup);
    print_list("p50_us", p50, repeats, ", ");
    print_list("p99_us", p99, repeats, "}\n");
    fraud_engine_free(engine);
    free(rows);
    free(contrib);
    free(one);
    free(ns);
    free(sorted);
    free(p50);
    return 0;
}

int main(int argc, char** argv) {
    if ((argc == 14 || argc == 15) && strcmp(argv[1], "e2e") == 0) return run_e2e(argc, argv);
    if (argc == 9 && strcmp(argv[1], "contributions") == 0) return run_contributions(argc, argv);
    fprintf(stderr,
            "usage: %s e2e BUNDLE EVENTS.bin N_EVENTS N_ENT N_NUM N_CAT N_HISTORY WARMUP REPEATS K NS_OUT.i64 "
            "SCORES_OUT.f32 [TURN]\n"
            "       %s contributions BUNDLE ROWS.f32 N_ROWS WARMUP REPEATS CONTRIB_OUT.f64 NS_OUT.i64\n",
            argv[0], argv[0]);
    return 2;
}
