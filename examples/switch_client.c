/*
 * switch_client: a stand-in for a payment switch, written against libfraud's C API alone.
 *
 *   switch_client BUNDLE_DIR TRANSACTIONS.csv [--scores OUT.csv]
 *
 * Opens the bundle, then for every CSV row calls fraud_engine_score_and_ingest() with one
 * transaction (as a switch does when an authorisation request arrives), timing each call.
 * Writes "txn_id,score" (a header line, then one line per scored row, score as %.9g: the exact
 * float32) to stdout or OUT.csv; prints a summary with latency percentiles to stderr.
 *
 * CSV: a header naming at least txn_id,timestamp_ms,amount,card_id,device_id,merchant_id,ip_id,
 * country,mcc in any order; other columns (label, fraud_type...) are ignored. An empty device_id
 * or ip_id means FRAUD_ENTITY_ABSENT. Double-quoted fields are accepted; a field may not span lines.
 *
 * Exit: 0 every row scored; 1 some rows rejected (each reported on stderr as
 * "row N (txn_id=...): STATUS: message", N counting data rows from 1); 2 usage, bundle or file error.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libfraud/fraud.h>

enum column {
    COL_TXN_ID,
    COL_TIMESTAMP_MS,
    COL_AMOUNT,
    COL_CARD_ID,
    COL_DEVICE_ID,
    COL_MERCHANT_ID,
    COL_IP_ID,
    COL_COUNTRY,
    COL_MCC,
    COL_COUNT
};

static const char* const column_names[COL_COUNT] = {
    "txn_id", "timestamp_ms", "amount", "card_id", "device_id",
    "merchant_id", "ip_id", "country", "mcc"};

/* A growable array of fields split from one line; the strings point into the line buffer. */
typedef struct fields {
    char** v;
    size_t n;
    size_t cap;
} fields;

typedef struct latencies {
    int64_t* ns;
    size_t n;
    size_t cap;
} latencies;

static void chomp(char* line) {
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
}

static int fields_push(fields* f, char* s) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        char** v = realloc(f->v, cap * sizeof *v);
        if (!v) return -1;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = s;
    return 0;
}

/* Splits line in place on commas; "..." fields may hold commas, "" is a literal quote.
 * Returns 0, or -1 on an unterminated quote or out of memory. */
static int split_csv(char* line, fields* f) {
    char* r = line;
    f->n = 0;
    for (;;) {
        char* start = r;
        char* w = r;
        if (*r == '"') {
            ++r;
            for (;;) {
                if (*r == '\0') return -1;
                if (*r == '"') {
                    if (r[1] == '"') {
                        *w++ = '"';
                        r += 2;
                        continue;
                    }
                    ++r;
                    break;
                }
                *w++ = *r++;
            }
            while (*r != ',' && *r != '\0') *w++ = *r++; /* text after the closing quote */
        } else {
            while (*r != ',' && *r != '\0') ++r;
            w = r;
        }
        {
            int last = (*r == '\0');
            *w = '\0';
            if (fields_push(f, start) != 0) return -1;
            if (last) return 0;
            r++;
        }
    }
}

static int parse_i64(const char* s, int64_t* out) {
    char* end;
    long long v;
    if (*s == '\0') return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') return -1;
    *out = (int64_t)v;
    return 0;
}

/* An int64 id; an empty field is FRAUD_ENTITY_ABSENT when allow_absent. */
static int parse_id(const char* s, int allow_absent, int64_t* out) {
    if (*s == '\0' && allow_absent) {
        *out = FRAUD_ENTITY_ABSENT;
        return 0;
    }
    return parse_i64(s, out);
}

static int parse_i32(const char* s, int32_t* out) {
    int64_t v;
    if (parse_i64(s, &v) != 0 || v < INT32_MIN || v > INT32_MAX) return -1;
    *out = (int32_t)v;
    return 0;
}

/* Any number strtod reads, "nan" and "inf" included: the core, not the client, owns the rules. */
static int parse_f64(const char* s, double* out) {
    char* end;
    if (*s == '\0') return -1;
    errno = 0;
    *out = strtod(s, &end);
    if (errno == ERANGE || *end != '\0') return -1;
    return 0;
}

/* Fills txn from the row, or returns the column that does not parse (COL_COUNT on success). */
static enum column parse_row(char** v, const size_t* col, fraud_txn* txn) {
    memset(txn, 0, sizeof *txn);
    if (parse_i64(v[col[COL_TXN_ID]], &txn->txn_id) != 0) return COL_TXN_ID;
    if (parse_i64(v[col[COL_TIMESTAMP_MS]], &txn->timestamp_ms) != 0) return COL_TIMESTAMP_MS;
    if (parse_f64(v[col[COL_AMOUNT]], &txn->amount) != 0) return COL_AMOUNT;
    if (parse_id(v[col[COL_CARD_ID]], 0, &txn->entity_id[FRAUD_ENTITY_CARD]) != 0) return COL_CARD_ID;
    if (parse_id(v[col[COL_DEVICE_ID]], 1, &txn->entity_id[FRAUD_ENTITY_DEVICE]) != 0) return COL_DEVICE_ID;
    if (parse_id(v[col[COL_MERCHANT_ID]], 0, &txn->entity_id[FRAUD_ENTITY_MERCHANT]) != 0)
        return COL_MERCHANT_ID;
    if (parse_id(v[col[COL_IP_ID]], 1, &txn->entity_id[FRAUD_ENTITY_IP]) != 0) return COL_IP_ID;
    if (parse_i32(v[col[COL_COUNTRY]], &txn->country) != 0) return COL_COUNTRY;
    if (parse_i32(v[col[COL_MCC]], &txn->mcc) != 0) return COL_MCC;
    return COL_COUNT;
}

static int latencies_push(latencies* l, int64_t ns) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        int64_t* p = realloc(l->ns, cap * sizeof *p);
        if (!p) return -1;
        l->ns = p;
        l->cap = cap;
    }
    l->ns[l->n++] = ns;
    return 0;
}

static int cmp_i64(const void* a, const void* b) {
    int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values, in microseconds. */
static double percentile_us(const int64_t* sorted, size_t n, double p) {
    size_t rank;
    if (n == 0) return 0.0;
    rank = (size_t)(p / 100.0 * (double)n + 0.999999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)sorted[rank - 1] / 1000.0;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int usage(const char* argv0) {
    fprintf(stderr, "usage: %s BUNDLE_DIR TRANSACTIONS.csv [--scores OUT.csv]\n", argv0);
    return 2;
}

int main(int argc, char** argv) {
    const char* bundle_dir = NULL;
    const char* csv_path = NULL;
    const char* scores_path = NULL;
    fraud_engine* engine = NULL;
    FILE* in = NULL;
    FILE* out = stdout;
    char* line = NULL;
    size_t line_cap = 0;
    fields f = {NULL, 0, 0};
    latencies lat = {NULL, 0, 0};
    size_t col[COL_COUNT];
    size_t n_columns = 0;
    uint64_t rows = 0, rejected = 0;
    int rc = 2;
    int i;
    fraud_status st;

    for (i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--scores") == 0) {
            if (i + 1 >= argc || scores_path) return usage(argv[0]);
            scores_path = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            return usage(argv[0]);
        } else if (!bundle_dir) {
            bundle_dir = argv[i];
        } else if (!csv_path) {
            csv_path = argv[i];
        } else {
            return usage(argv[0]);
        }
    }
    if (!bundle_dir || !csv_path) return usage(argv[0]);

    st = fraud_engine_open(bundle_dir, NULL, &engine);
    if (st != FRAUD_STATUS_OK) {
        fprintf(stderr, "switch_client: cannot open bundle %s: %s: %s\n", bundle_dir,
                fraud_status_name(st), fraud_last_error());
        goto done;
    }

    in = fopen(csv_path, "r");
    if (!in) {
        fprintf(stderr, "switch_client: cannot open %s: %s\n", csv_path, strerror(errno));
        goto done;
    }
    if (scores_path) {
        out = fopen(scores_path, "w");
        if (!out) {
            fprintf(stderr, "switch_client: cannot write %s: %s\n", scores_path, strerror(errno));
            out = stdout;
            goto done;
        }
    }

    /* Header: find each schema column; extra columns are ignored. */
    if (getline(&line, &line_cap, in) < 0) {
        fprintf(stderr, "switch_client: %s: empty file, expected a header line\n", csv_path);
        goto done;
    }
    chomp(line);
    if (split_csv(line, &f) != 0) {
        fprintf(stderr, "switch_client: %s: header does not parse as CSV\n", csv_path);
        goto done;
    }
    n_columns = f.n;
    {
        int c;
        for (c = 0; c < COL_COUNT; ++c) {
            size_t k;
            col[c] = SIZE_MAX;
            for (k = 0; k < f.n; ++k)
                if (strcmp(f.v[k], column_names[c]) == 0) col[c] = k;
            if (col[c] == SIZE_MAX) {
                fprintf(stderr, "switch_client: %s: header has no column '%s'\n", csv_path,
                        column_names[c]);
                goto done;
            }
        }
    }

    fprintf(out, "txn_id,score\n");
    for (;;) {
        fraud_txn txn;
        float score = 0.0f;
        int64_t t0, t1;
        enum column bad;
        int split_rc;

        if (getline(&line, &line_cap, in) < 0) break;
        chomp(line);
        if (line[0] == '\0') continue; /* blank line, e.g. at the end of the file */
        ++rows;

        split_rc = split_csv(line, &f);
        if (split_rc != 0 || f.n != n_columns) {
            fprintf(stderr, "row %llu (txn_id=%s): %s: %s (%zu fields, the header has %zu)\n",
                    (unsigned long long)rows, f.n > col[COL_TXN_ID] ? f.v[col[COL_TXN_ID]] : "?",
                    fraud_status_name(FRAUD_STATUS_INVALID_TRANSACTION),
                    split_rc != 0 ? "unterminated quote" : "missing or extra fields", f.n, n_columns);
            ++rejected;
            continue;
        }
        bad = parse_row(f.v, col, &txn);
        if (bad != COL_COUNT) {
            fprintf(stderr, "row %llu (txn_id=%s): %s: field %s: '%s' does not parse\n",
                    (unsigned long long)rows, f.v[col[COL_TXN_ID]],
                    fraud_status_name(FRAUD_STATUS_INVALID_TRANSACTION), column_names[bad],
                    f.v[col[bad]]);
            ++rejected;
            continue;
        }

        t0 = now_ns();
        st = fraud_engine_score_and_ingest(engine, &txn, 1, &score);
        t1 = now_ns();
        if (st != FRAUD_STATUS_OK) {
            fprintf(stderr, "row %llu (txn_id=%lld): %s: %s\n", (unsigned long long)rows,
                    (long long)txn.txn_id, fraud_status_name(st), fraud_last_error());
            ++rejected;
            continue;
        }
        if (latencies_push(&lat, t1 - t0) != 0) {
            fprintf(stderr, "switch_client: out of memory\n");
            goto done;
        }
        fprintf(out, "%lld,%.9g\n", (long long)txn.txn_id, (double)score);
    }
    if (ferror(in)) {
        fprintf(stderr, "switch_client: error reading %s: %s\n", csv_path, strerror(errno));
        goto done;
    }

    qsort(lat.ns, lat.n, sizeof *lat.ns, cmp_i64);
    fprintf(stderr, "transactions: %llu\nscored: %llu\nrejected: %llu\n",
            (unsigned long long)rows, (unsigned long long)lat.n, (unsigned long long)rejected);
    fprintf(stderr,
            "latency_us (score_and_ingest, n=1): p50=%.2f p90=%.2f p99=%.2f p99.9=%.2f max=%.2f\n",
            percentile_us(lat.ns, lat.n, 50.0), percentile_us(lat.ns, lat.n, 90.0),
            percentile_us(lat.ns, lat.n, 99.0), percentile_us(lat.ns, lat.n, 99.9),
            lat.n ? (double)lat.ns[lat.n - 1] / 1000.0 : 0.0);
    rc = rejected ? 1 : 0;

done:
    if (out != stdout) {
        if (fclose(out) != 0 && rc != 2) {
            fprintf(stderr, "switch_client: error writing %s: %s\n", scores_path, strerror(errno));
            rc = 2;
        }
    } else if (fflush(stdout) != 0 && rc != 2) {
        fprintf(stderr, "switch_client: error writing scores: %s\n", strerror(errno));
        rc = 2;
    }
    if (in) fclose(in);
    free(line);
    free(f.v);
    free(lat.ns);
    fraud_engine_free(engine);
    return rc;
}
