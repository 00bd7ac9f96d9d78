/*
 * Concurrency stress through the C API: SCORERS threads score while one thread ingests and another
 * hot-swaps the bundle every SWAP_MS, for SECONDS. Every request must succeed (failed = 0), and
 * latency is reported overall and for requests that overlapped a swap. Prints one JSON object.
 *
 *   stress BUNDLE_A BUNDLE_B TXNS.bin SECONDS SCORERS SWAP_MS
 *
 * TXNS.bin: fraud_txn records (64 bytes each, libfraud.data.schema.TXN_DTYPE), in time order. The
 * first half is ingested before the clock starts; the ingest thread streams the second half; the
 * scorers score random transactions of the second half (fraud_engine_score: no store change).
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libfraud/fraud.h>

#include "bench_timing.h"

typedef struct {
    int64_t* ns;
    unsigned char* during_swap;
    size_t n, cap;
    uint64_t failed;
    unsigned seed;
} scorer_log;

static fraud_engine* engine;
static fraud_txn* txns;
static size_t n_txns, live_begin;
static atomic_int stop_flag;
static atomic_int swapping;
static atomic_ullong ingested, ingest_failed, swaps, swap_failed;
static char first_error[512];
static pthread_mutex_t error_mutex = PTHREAD_MUTEX_INITIALIZER;

static void remember_error(const char* where, fraud_status st) {
    pthread_mutex_lock(&error_mutex);
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "%s: %s: %s", where, fraud_status_name(st), fraud_last_error());
    pthread_mutex_unlock(&error_mutex);
}

static void* scorer(void* arg) {
    scorer_log* log = arg;
    while (!atomic_load(&stop_flag)) {
        size_t i = live_begin + (size_t)(rand_r(&log->seed) % (unsigned)(n_txns - live_begin));
        float score;
        int swap_before = atomic_load(&swapping);
        int64_t t0 = now_ns();
        fraud_status st = fraud_engine_score(engine, &txns[i], 1, &score);
        int64_t t1 = now_ns();
        if (st != FRAUD_STATUS_OK || !(score >= 0.0f && score <= 1.0f)) {
            log->failed++;
            if (st != FRAUD_STATUS_OK) remember_error("score", st);
            continue;
        }
        if (log->n == log->cap) {
            log->cap = log->cap ? 2 * log->cap : 1 << 16;
            log->ns = realloc(log->ns, log->cap * sizeof *log->ns);
            log->during_swap = realloc(log->during_swap, log->cap);
        }
        log->ns[log->n] = t1 - t0;
        log->during_swap[log->n] = (unsigned char)(swap_before || atomic_load(&swapping));
        log->n++;
    }
    return NULL;
}

static void* ingester(void* arg) {
    (void)arg;
    size_t i = live_begin;
    while (!atomic_load(&stop_flag) && i < n_txns) {
        fraud_status st = fraud_engine_ingest(engine, &txns[i], 1);
        if (st != FRAUD_STATUS_OK) {
            atomic_fetch_add(&ingest_failed, 1);
            remember_error("ingest", st);
        } else {
            atomic_fetch_add(&ingested, 1);
        }
        ++i;
        if ((i & 63) == 0) {  /* a steady stream, not a flood: ~1 transaction per 20 us */
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
    }
    return NULL;
}

int main(int argc, char** argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: stress BUNDLE_A BUNDLE_B TXNS.bin SECONDS SCORERS SWAP_MS\n");
        return 2;
    }
    const char* bundles[2] = {argv[1], argv[2]};
    double seconds = atof(argv[4]);
    int n_scorers = atoi(argv[5]);
    long swap_ms = atol(argv[6]);

    FILE* f = fopen(argv[3], "rb");
    if (!f) {
        perror(argv[3]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    n_txns = (size_t)bytes / sizeof(fraud_txn);
    txns = malloc(n_txns * sizeof *txns);
    if (!txns || fread(txns, sizeof *txns, n_txns, f) != n_txns) {
        fprintf(stderr, "cannot read %s\n", argv[3]);
        return 2;
    }
    fclose(f);
    live_begin = n_txns / 2;

    fraud_status st = fraud_engine_open(bundles[0], NULL, &engine);
    if (st != FRAUD_STATUS_OK) {
        fprintf(stderr, "open: %s: %s\n", fraud_status_name(st), fraud_last_error());
        return 2;
    }
    st = fraud_engine_ingest(engine, txns, live_begin);
    if (st != FRAUD_STATUS_OK) {
        fprintf(stderr, "ingest history: %s: %s\n", fraud_status_name(st), fraud_last_error());
        return 2;
    }

    pthread_t threads[64], ingest_thread;
    scorer_log logs[64];
    if (n_scorers < 1 || n_scorers > 64) return 2;
    memset(logs, 0, sizeof logs);
    int64_t start = now_ns();
    for (int t = 0; t < n_scorers; ++t) {
        logs[t].seed = 12345u + (unsigned)t;
        pthread_create(&threads[t], NULL, scorer, &logs[t]);
    }
    pthread_create(&ingest_thread, NULL, ingester, NULL);

    /* This thread swaps: A -> B -> A ... every swap_ms. */
    int64_t swap_ns_total = 0, swap_ns_max = 0;
    int next = 1;
    while ((double)(now_ns() - start) / 1e9 < seconds) {
        struct timespec pause = {swap_ms / 1000, (swap_ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
        atomic_store(&swapping, 1);
        int64_t t0 = now_ns();
        st = fraud_engine_swap_bundle(engine, bundles[next], NULL);
        int64_t took = now_ns() - t0;
        atomic_store(&swapping, 0);
        if (st != FRAUD_STATUS_OK) {
            atomic_fetch_add(&swap_failed, 1);
            remember_error("swap", st);
        } else {
            atomic_fetch_add(&swaps, 1);
            next ^= 1;
        }
        swap_ns_total += took;
        if (took > swap_ns_max) swap_ns_max = took;
    }
    atomic_store(&stop_flag, 1);
    for (int t = 0; t < n_scorers; ++t) pthread_join(threads[t], NULL);
    pthread_join(ingest_thread, NULL);
    double elapsed = (double)(now_ns() - start) / 1e9;

    size_t served = 0, in_swap = 0;
    uint64_t failed = 0;
    for (int t = 0; t < n_scorers; ++t) {
        served += logs[t].n;
        failed += logs[t].failed;
        for (size_t i = 0; i < logs[t].n; ++i) in_swap += logs[t].during_swap[i];
    }
    int64_t* all = malloc((served ? served : 1) * sizeof *all);
    int64_t* swap_only = malloc((in_swap ? in_swap : 1) * sizeof *swap_only);
    size_t a = 0, b = 0;
    for (int t = 0; t < n_scorers; ++t)
        for (size_t i = 0; i < logs[t].n; ++i) {
            all[a++] = logs[t].ns[i];
            if (logs[t].during_swap[i]) swap_only[b++] = logs[t].ns[i];
        }
    fraud_engine_stats stats;
    stats.struct_size = sizeof stats;
    fraud_engine_get_stats(engine, &stats);

    printf("{\"seconds\": %.2f, \"scorer_threads\": %d, \"swap_every_ms\": %ld,\n", elapsed, n_scorers, swap_ms);
    printf(" \"served\": %zu, \"failed\": %llu, \"throughput_per_s\": %.0f,\n", served,
           (unsigned long long)failed, (double)served / elapsed);
    printf(" \"ingested\": %llu, \"ingest_failed\": %llu,\n", (unsigned long long)atomic_load(&ingested),
           (unsigned long long)atomic_load(&ingest_failed));
    printf(" \"swaps\": %llu, \"swap_failed\": %llu, \"swap_ms_mean\": %.2f, \"swap_ms_max\": %.2f,\n",
           (unsigned long long)atomic_load(&swaps), (unsigned long long)atomic_load(&swap_failed),
           atomic_load(&swaps) ? (double)swap_ns_total / 1e6 / (double)atomic_load(&swaps) : 0.0,
           (double)swap_ns_max / 1e6);
    printf(" \"latency_us\": {\"p50\": %.2f, \"p99\": %.2f, \"p999\": %.2f, \"max\": %.2f},\n",
           served ? pct_us(all, served, 50) : 0, served ? pct_us(all, served, 99) : 0,
           served ? pct_us(all, served, 99.9) : 0, served ? pct_us(all, served, 100) : 0);
    printf(" \"during_swaps\": {\"requests\": %zu, \"p50_us\": %.2f, \"p99_us\": %.2f, \"max_us\": %.2f},\n", in_swap,
           in_swap ? pct_us(swap_only, in_swap, 50) : 0, in_swap ? pct_us(swap_only, in_swap, 99) : 0,
           in_swap ? pct_us(swap_only, in_swap, 100) : 0);
    printf(" \"engine_stats\": {\"scored\": %llu, \"rejected\": %llu, \"bundle_swaps\": %llu},\n",
           (unsigned long long)stats.scored, (unsigned long long)stats.rejected,
           (unsigned long long)stats.bundle_swaps);
    printf(" \"first_error\": \"%s\"}\n", first_error);
    fraud_engine_free(engine);
    for (int t = 0; t < n_scorers; ++t) {
        free(logs[t].ns);
        free(logs[t].during_swap);
    }
    free(all);
    free(swap_only);
    free(txns);
    return failed == 0 && atomic_load(&swap_failed) == 0 && atomic_load(&ingest_failed) == 0 ? 0 : 1;
}
