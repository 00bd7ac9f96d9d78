/*
 * Store growth stalls through libfraud's C API. Driven by bench/store_growth.py, which compiles
 * this file against the installed package; prints one JSON object.
 *
 *   store_growth BUNDLE STATE_DIR N_EVENTS HOT_SHARE OP SNAPSHOT_AT
 *
 * Opens an engine on BUNDLE (trees only) with STATE_DIR (write() only, no fsync) and no capacity
 * hint, then sends N_EVENTS synthetic payments transactions, one per call, each timed alone
 * (CLOCK_MONOTONIC): OP "ingest" (fraud_engine_ingest) or "score_and_ingest". One merchant takes
 * HOT_SHARE of the events (a hot entity growing to HOT_SHARE * N_EVENTS), the rest spread over
 * 50k merchants; cards take about 5 events each, devices 3 (70% present), IPs 4 (80% present).
 * After SNAPSHOT_AT events (0 = none) one fraud_engine_snapshot (timed apart, not an ingest call),
 * so the restore reads a snapshot and replays the rest of the log. At the end the engine is freed
 * and reopened on STATE_DIR: that open is the restore time. STATE_DIR "-": memory only (no log,
 * snapshot or restore), to tell the store's own stalls from the log's. Each call's thread CPU time is taken
 * too (CLOCK_THREAD_CPUTIME_ID): on a shared machine a wall-clock outlier of one scheduler tick
 * (4 ms) is another process's timeslice, not work of the call; the CPU time tells them apart.
 * And each call's page faults (RUSAGE_THREAD): on this VM one first touch of a fresh page has
 * taken up to 0.7 ms of CPU, so the harness reports the costliest call without a fault apart.
 */
#define _GNU_SOURCE /* RUSAGE_THREAD */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_timing.h"
#include "libfraud/fraud.h"

static uint64_t g_state = 0x9e3779b97f4a7c15ULL;
static uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (g_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double unit(void) { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

static int64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long faults(void) {
    struct rusage u;
    getrusage(RUSAGE_THREAD, &u);
    return u.ru_minflt + u.ru_majflt;
}

static int fail(const char* what, fraud_status s) {
    fprintf(stderr, "%s: %s: %s\n", what, fraud_status_name(s), fraud_last_error());
    return 1;
}

int main(int argc, char** argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: store_growth BUNDLE STATE_DIR N_EVENTS HOT_SHARE OP SNAPSHOT_AT\n");
        return 2;
    }
    const char* bundle = argv[1];
    const char* state = argv[2];
    const size_t n = (size_t)strtoull(argv[3], NULL, 10);
    const double hot = atof(argv[4]);
    const int score = strcmp(argv[5], "score_and_ingest") == 0;
    const size_t snapshot_at = (size_t)strtoull(argv[6], NULL, 10);
    fraud_engine_params params = fraud_engine_default_params();
    const int durable = strcmp(state, "-") != 0;  /* "-": memory only (no log, no restore) */
    params.state_dir = durable ? state : NULL;
    params.fsync_every_ingest = 0;
    fraud_engine* engine = NULL;
    fraud_status s = fraud_engine_open(bundle, &params, &engine);
    if (s != FRAUD_STATUS_OK) return fail("open", s);
    int64_t* ns = malloc(n * sizeof *ns);
    int64_t* cpu = malloc(n * sizeof *cpu);
    unsigned char* faulted = malloc(n);
    if (!ns || !cpu || !faulted) return 1;
    const int64_t cards = (int64_t)(n / 5 + 1), devices = (int64_t)(n / 3 + 1), ips = (int64_t)(n / 4 + 1);
    int64_t t = 1700000000000LL;
    uint64_t edges = 0;
    double snapshot_s = 0, total_s = 0;
    for (size_t i = 0; i < n; ++i) {
        fraud_txn x;
        memset(&x, 0, sizeof x);
        t += 1 + (int64_t)(next_u64() % 20);
        x.txn_id = (int64_t)i + 1;
        x.timestamp_ms = t;
        x.amount = 1.0 + 500.0 * unit() * unit();
        x.entity_id[FRAUD_ENTITY_CARD] = (int64_t)(next_u64() % (uint64_t)cards);
        x.entity_id[FRAUD_ENTITY_DEVICE] = unit() < 0.7 ? (int64_t)(next_u64() % (uint64_t)devices) : FRAUD_ENTITY_ABSENT;
        x.entity_id[FRAUD_ENTITY_MERCHANT] = unit() < hot ? 0 : 1 + (int64_t)(next_u64() % 50000);
        x.entity_id[FRAUD_ENTITY_IP] = unit() < 0.8 ? (int64_t)(next_u64() % (uint64_t)ips) : FRAUD_ENTITY_ABSENT;
        x.country = (int32_t)(next_u64() % 30);
        x.mcc = (int32_t)(next_u64() % 200);
        for (int e = 0; e < FRAUD_ENTITY_COUNT; ++e) edges += x.entity_id[e] >= 0;
        float p;
        const long f0 = faults();
        const int64_t c0 = cpu_ns(), t0 = now_ns();
        s = score ? fraud_engine_score_and_ingest(engine, &x, 1, &p) : fraud_engine_ingest(engine, &x, 1);
        ns[i] = now_ns() - t0;
        cpu[i] = cpu_ns() - c0;
        faulted[i] = faults() != f0;
        total_s += (double)ns[i] / 1e9;
        if (s != FRAUD_STATUS_OK) return fail("ingest", s);
        if (durable && snapshot_at && i + 1 == snapshot_at) {
            const int64_t s0 = now_ns();
            s = fraud_engine_snapshot(engine);
            snapshot_s = (double)(now_ns() - s0) / 1e9;
            if (s != FRAUD_STATUS_OK) return fail("snapshot", s);
        }
    }
    fraud_engine_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    fraud_engine_get_stats(engine, &st);
    fraud_engine_free(engine);
    fraud_engine_stats st2;
    memset(&st2, 0, sizeof st2);
    double restore_s = 0;
    if (durable) {
        const int64_t r0 = now_ns();
        s = fraud_engine_open(bundle, &params, &engine);
        restore_s = (double)(now_ns() - r0) / 1e9;
        if (s != FRAUD_STATUS_OK) return fail("restore", s);
        st2.struct_size = sizeof st2;
        fraud_engine_get_stats(engine, &st2);
        fraud_engine_free(engine);
    }
    /* The five costliest calls by CPU time: [position, CPU us, page faulted] (which step they hit). */
    size_t worst[5], filled = 0;
    for (size_t i = 0; i < n; ++i) {
        size_t k = filled < 5 ? filled++ : 5;
        if (k == 5 && cpu[i] <= cpu[worst[4]]) continue;
        if (k == 5) k = 4;
        while (k > 0 && cpu[worst[k - 1]] < cpu[i]) {
            worst[k] = worst[k - 1];
            --k;
        }
        worst[k] = i;
    }
    printf("{\"worst_cpu_calls\": [");
    for (size_t k = 0; k < filled; ++k)
        printf("%s[%zu, %.1f, %d]", k ? ", " : "", worst[k], (double)cpu[worst[k]] / 1000.0, faulted[worst[k]]);
    printf("], ");
    size_t over_1ms = 0, over_10ms = 0, cpu_over_1ms = 0, cpu_over_1ms_no_fault = 0, with_fault = 0;
    int64_t cpu_max_no_fault = 0;
    for (size_t i = 0; i < n; ++i) {
        with_fault += faulted[i];
        if (!faulted[i] && cpu[i] > cpu_max_no_fault) cpu_max_no_fault = cpu[i];
        cpu_over_1ms_no_fault += !faulted[i] && cpu[i] > 1000000;
        over_1ms += ns[i] > 1000000;
        over_10ms += ns[i] > 10000000;
        cpu_over_1ms += cpu[i] > 1000000;
    }
    printf("\"events\": %zu, \"op\": \"%s\", \"edges\": %llu, \"store_bytes\": %llu, \"store_transactions\": %llu,"
           " \"restored_transactions\": %llu, \"calls_over_1ms\": %zu, \"calls_over_10ms\": %zu, \"cpu_calls_over_1ms\": %zu, \"cpu_calls_over_1ms_without_fault\": %zu, \"calls_with_page_faults\": %zu, \"cpu_max_without_fault_us\": %.1f, \"total_s\": %.3f,"
           " \"snapshot_at\": %zu, \"snapshot_s\": %.3f, \"restore_s\": %.3f,",
           n, argv[5], (unsigned long long)edges, (unsigned long long)st.store_bytes,
           (unsigned long long)st.store_transactions, (unsigned long long)st2.store_transactions, over_1ms, over_10ms,
           cpu_over_1ms, cpu_over_1ms_no_fault, with_fault, (double)cpu_max_no_fault / 1000.0, total_s, snapshot_at, snapshot_s, restore_s);
    printf(" \"max_us\": %.1f, \"p9999_us\": %.1f, \"p99_us\": %.2f, \"p50_us\": %.2f,", pct_us(ns, n, 100.0),
           pct_us(ns, n, 99.99), pct_us(ns, n, 99.0), pct_us(ns, n, 50.0));
    printf(" \"cpu_max_us\": %.1f, \"cpu_p9999_us\": %.1f, \"cpu_p50_us\": %.2f}\n", pct_us(cpu, n, 100.0),
           pct_us(cpu, n, 99.99), pct_us(cpu, n, 50.0));
    free(ns);
    free(cpu);
    free(faulted);
    return 0;
}
