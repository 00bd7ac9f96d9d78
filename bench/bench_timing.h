/* Timing helpers shared by the C bench harnesses: one clock, one percentile rule, one JSON list. */
#ifndef LIBFRAUD_BENCH_TIMING_H
#define LIBFRAUD_BENCH_TIMING_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int cmp_i64(const void* a, const void* b) {
    int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile in microseconds; sorts ns in place. */
static inline double pct_us(int64_t* ns, size_t n, double p) {
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999999);
    qsort(ns, n, sizeof *ns, cmp_i64);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)ns[rank - 1] / 1000.0;
}

static inline void print_list(const char* key, const double* v, long n, const char* sep) {
    long i;
    printf("\"%s\": [", key);
    for (i = 0; i < n; ++i) printf("%s%.4f", i ? ", " : "", v[i]);
    printf("]%s", sep);
}

#endif
