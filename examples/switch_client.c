/*
 * switch_client: a stand-in for a payment switch, written against libfraud's C API alone.
 *
 *   switch_client BUNDLE_DIR EVENTS.csv [--scores OUT.csv] [--reasons K]
 *
 * Opens the bundle and reads its declared schema from the engine (entity types, numeric and
 * categorical fields, by name), maps the CSV's columns to them once, then for every row calls
 * fraud_engine_score_and_ingest_events() with one event (as a switch does when an authorisation
 * request arrives), timing each call. Writes "<id column>,score" (a header line, then one line per
 * scored row, score as %.9g: the exact float32) to stdout or OUT.csv; prints a summary with latency
 * percentiles to stderr. With --reasons K, alerts (score >= the bundle's threshold) come with their
 * reasons from fraud_engine_score_and_ingest_explain_events(): for j = 1..K the columns
 * reason_j (the family's name), reason_j_code and reason_j_contribution (log-odds), empty when the
 * score is below the threshold or fewer families raised it.
 *
 * CSV: a header naming the event id ("event_id" or "txn_id"), the time in epoch milliseconds
 * ("time_ms" or "timestamp_ms"), "amount" when the schema has one, and a column per schema field,
 * named as the schema names it or, for an entity, with an "_id" suffix ("card" or "card_id"), in
 * any order; other columns are ignored. Where the schema says a field holds strings
 * (fraud_engine_schema_string_ids), each cell's text is mapped with fraud_hash_id, as the compiler
 * mapped the training data; other ids and codes are integers. An empty entity cell is
 * FRAUD_ENTITY_ABSENT, an empty categorical cell FRAUD_CODE_MISSING, an empty numeric cell NaN
 * (missing). Double-quoted fields are accepted; a field may not span lines.
 *
 * Exit: 0 every row scored; 1 some rows rejected (each reported on stderr as
 * "row N (id=...): STATUS: message", N counting data rows from 1); 2 usage, bundle or file error.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libfraud/fraud.h>

/* The event's layout, read from the engine, and where each part is in the CSV. */
typedef struct layout {
    size_t n_entities, n_numeric, n_categorical;
    int has_amount;
    size_t id_col, time_col, amount_col;
    size_t* entity_col;
    size_t* numeric_col;
    size_t* categorical_col;
    const char** entity_name;
    const char** numeric_name;
    const char** categorical_name;
    int32_t id_strings;
    int32_t* entity_strings;
    int32_t* categorical_strings;
} layout;

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

/* Any number strtod reads, "nan" and "inf" included: the core, not the client, owns the rules. */
static int parse_f64(const char* s, double* out) {
    char* end;
    if (*s == '\0') return -1;
    errno = 0;
    *out = strtod(s, &end);
    if (errno == ERANGE || *end != '\0') return -1;
    return 0;
}

/* An id or code: a string field's text by fraud_hash_id, else an integer; empty = `empty`.
 * 0, or -1 when an integer field's cell is not an integer. */
static int parse_code(const char* s, int strings, int64_t empty, int64_t* out) {
    if (*s == '\0') {
        *out = empty;
        return 0;
    }
    if (strings) {
        *out = fraud_hash_id(s, strlen(s));
        return 0;
    }
    return parse_i64(s, out);
}

/* Fills the event from the row; returns the name of the column that does not parse, or NULL. */
static const char* parse_row(char** v, const layout* l, fraud_event* ev, int64_t* ents, double* nums,
                             int64_t* cats) {
    size_t k;
    memset(ev, 0, sizeof *ev);
    if (*v[l->id_col] == '\0' || parse_code(v[l->id_col], l->id_strings, 0, &ev->event_id) != 0) return "event id";
    if (parse_i64(v[l->time_col], &ev->time_ms) != 0) return "time (epoch ms)";
    if (l->has_amount && parse_f64(v[l->amount_col], &ev->amount) != 0) return "amount";
    for (k = 0; k < l->n_entities; ++k)
        if (parse_code(v[l->entity_col[k]], l->entity_strings[k], FRAUD_ENTITY_ABSENT, &ents[k]) != 0)
            return l->entity_name[k];
    for (k = 0; k < l->n_numeric; ++k) {
        const char* cell = v[l->numeric_col[k]];
        if (*cell == '\0') {
            nums[k] = NAN;
        } else if (parse_f64(cell, &nums[k]) != 0) {
            return l->numeric_name[k];
        }
    }
    for (k = 0; k < l->n_categorical; ++k)
        if (parse_code(v[l->categorical_col[k]], l->categorical_strings[k], FRAUD_CODE_MISSING, &cats[k]) != 0)
            return l->categorical_name[k];
    ev->entity_id = ents;
    ev->numeric = l->n_numeric ? nums : NULL;
    ev->categorical = l->n_categorical ? cats : NULL;
    return NULL;
}

/* Index of the header column named `name` (or `name` + suffix), SIZE_MAX when absent. */
static size_t find_column(const fields* header, const char* name, const char* suffix) {
    size_t k, len = strlen(name);
    for (k = 0; k < header->n; ++k) {
        const char* h = header->v[k];
        if (strcmp(h, name) == 0) return k;
        if (suffix && strncmp(h, name, len) == 0 && strcmp(h + len, suffix) == 0) return k;
    }
    return SIZE_MAX;
}

/* Reads the engine's schema and maps every part of an event to a header column; 0 or -1. */
static int map_columns(fraud_engine* engine, const fields* header, const char* path, layout* l) {
    static const fraud_field_role roles[3] = {FRAUD_ROLE_ENTITY, FRAUD_ROLE_NUMERIC, FRAUD_ROLE_CATEGORICAL};
    size_t* counts[3];
    size_t** cols[3];
    const char*** names[3];
    int r;
    int32_t has_amount = 0;
    counts[0] = &l->n_entities, counts[1] = &l->n_numeric, counts[2] = &l->n_categorical;
    cols[0] = &l->entity_col, cols[1] = &l->numeric_col, cols[2] = &l->categorical_col;
    names[0] = &l->entity_name, names[1] = &l->numeric_name, names[2] = &l->categorical_name;
    if (fraud_engine_schema_has_amount(engine, &has_amount) != FRAUD_STATUS_OK) return -1;
    l->has_amount = has_amount;
    l->id_col = find_column(header, "event_id", NULL);
    if (l->id_col == SIZE_MAX) l->id_col = find_column(header, "txn_id", NULL);
    l->time_col = find_column(header, "time_ms", NULL);
    if (l->time_col == SIZE_MAX) l->time_col = find_column(header, "timestamp_ms", NULL);
    l->amount_col = l->has_amount ? find_column(header, "amount", NULL) : 0;
    if (l->id_col == SIZE_MAX || l->time_col == SIZE_MAX || l->amount_col == SIZE_MAX) {
        fprintf(stderr, "switch_client: %s: the header needs event_id (or txn_id), time_ms (or timestamp_ms)%s\n",
                path, l->has_amount ? " and amount" : "");
        return -1;
    }
    if (fraud_engine_schema_string_ids(engine, FRAUD_ROLE_EVENT_ID, 0, &l->id_strings) != FRAUD_STATUS_OK) return -1;
    for (r = 0; r < 3; ++r) {
        size_t k;
        if (fraud_engine_schema_count(engine, roles[r], counts[r]) != FRAUD_STATUS_OK) return -1;
        *cols[r] = calloc(*counts[r] + 1, sizeof(size_t));
        *names[r] = calloc(*counts[r] + 1, sizeof(const char*));
        if (!*cols[r] || !*names[r]) return -1;
        if (r == 0) l->entity_strings = calloc(*counts[r] + 1, sizeof(int32_t));
        if (r == 2) l->categorical_strings = calloc(*counts[r] + 1, sizeof(int32_t));
        if ((r == 0 && !l->entity_strings) || (r == 2 && !l->categorical_strings)) return -1;
        for (k = 0; k < *counts[r]; ++k) {
            const char* name = NULL;
            if (fraud_engine_schema_name(engine, roles[r], k, &name) != FRAUD_STATUS_OK) return -1;
            (*names[r])[k] = name;
            if (r != 1) {
                int32_t* kinds = r == 0 ? l->entity_strings : l->categorical_strings;
                if (fraud_engine_schema_string_ids(engine, roles[r], k, &kinds[k]) != FRAUD_STATUS_OK) return -1;
            }
            (*cols[r])[k] = find_column(header, name, r == 0 ? "_id" : NULL);
            if ((*cols[r])[k] == SIZE_MAX) {
                fprintf(stderr, "switch_client: %s: header has no column '%s'%s (the bundle's schema has it)\n", path,
                        name, r == 0 ? " or its _id form" : "");
                return -1;
            }
        }
    }
    return 0;
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
    fprintf(stderr, "usage: %s BUNDLE_DIR TRANSACTIONS.csv [--scores OUT.csv] [--reasons K]\n", argv0);
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
    layout lay;
    int64_t* ents = NULL;
    double* nums = NULL;
    int64_t* cats = NULL;
    size_t n_columns = 0;
    uint64_t rows = 0, rejected = 0;
    int rc = 2;
    int i;
    fraud_status st;
    size_t k = 0, j;
    fraud_reason* reasons = NULL;
    double threshold = 0.0;

    for (i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--scores") == 0) {
            if (i + 1 >= argc || scores_path) return usage(argv[0]);
            scores_path = argv[++i];
        } else if (strcmp(argv[i], "--reasons") == 0) {
            char* end = NULL;
            long v;
            if (i + 1 >= argc || k) return usage(argv[0]);
            v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 1 || v > 64) return usage(argv[0]);
            k = (size_t)v;
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
    memset(&lay, 0, sizeof lay);

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
    if (map_columns(engine, &f, csv_path, &lay) != 0) {
        if (fraud_last_error()[0]) fprintf(stderr, "switch_client: %s\n", fraud_last_error());
        goto done;
    }
    ents = calloc(lay.n_entities + 1, sizeof *ents);
    nums = calloc(lay.n_numeric + 1, sizeof *nums);
    cats = calloc(lay.n_categorical + 1, sizeof *cats);
    if (!ents || !nums || !cats) {
        fprintf(stderr, "switch_client: out of memory\n");
        goto done;
    }
    if (k) {
        size_t families = 0;
        if (fraud_engine_reason_count(engine, &families) != FRAUD_STATUS_OK || families == 0) {
            fprintf(stderr, "switch_client: --reasons: this bundle has no explanation data\n");
            goto done;
        }
        if (k > families) {
            fprintf(stderr, "switch_client: --reasons %zu: the bundle has %zu reason families\n", k, families);
            goto done;
        }
        reasons = calloc(k, sizeof *reasons);
        if (!reasons || fraud_engine_threshold(engine, &threshold) != FRAUD_STATUS_OK) goto done;
    }
    fprintf(out, "%s,score", f.v[lay.id_col]);
    for (j = 1; j <= k; ++j) fprintf(out, ",reason_%zu,reason_%zu_code,reason_%zu_contribution", j, j, j);
    fprintf(out, "\n");
    for (;;) {
        fraud_event ev;
        float score = 0.0f;
        size_t n_reasons = 0;
        int64_t t0, t1;
        const char* bad;
        int split_rc;

        if (getline(&line, &line_cap, in) < 0) break;
        chomp(line);
        if (line[0] == '\0') continue; /* blank line, e.g. at the end of the file */
        ++rows;

        split_rc = split_csv(line, &f);
        if (split_rc != 0 || f.n != n_columns) {
            fprintf(stderr, "row %llu (id=%s): %s: %s (%zu fields, the header has %zu)\n",
                    (unsigned long long)rows, f.n > lay.id_col ? f.v[lay.id_col] : "?",
                    fraud_status_name(FRAUD_STATUS_INVALID_TRANSACTION),
                    split_rc != 0 ? "unterminated quote" : "missing or extra fields", f.n, n_columns);
            ++rejected;
            continue;
        }
        bad = parse_row(f.v, &lay, &ev, ents, nums, cats);
        if (bad) {
            fprintf(stderr, "row %llu (id=%s): %s: field %s does not parse\n", (unsigned long long)rows,
                    f.v[lay.id_col], fraud_status_name(FRAUD_STATUS_INVALID_TRANSACTION), bad);
            ++rejected;
            continue;
        }

        t0 = now_ns();
        st = k ? fraud_engine_score_and_ingest_explain_events(engine, &ev, 1, k, (float)threshold, &score, reasons,
                                                               &n_reasons)
               : fraud_engine_score_and_ingest_events(engine, &ev, 1, &score);
        t1 = now_ns();
        if (st != FRAUD_STATUS_OK) {
            fprintf(stderr, "row %llu (id=%lld): %s: %s\n", (unsigned long long)rows,
                    (long long)ev.event_id, fraud_status_name(st), fraud_last_error());
            ++rejected;
            continue;
        }
        if (latencies_push(&lat, t1 - t0) != 0) {
            fprintf(stderr, "switch_client: out of memory\n");
            goto done;
        }
        fprintf(out, "%lld,%.9g", (long long)ev.event_id, (double)score);
        for (j = 0; j < k; ++j) {
            const char* name = "";
            if (j < n_reasons &&
                fraud_engine_reason_family(engine, (size_t)reasons[j].family, NULL, &name, NULL) == FRAUD_STATUS_OK)
                fprintf(out, ",%s,%d,%.9g", name, (int)reasons[j].code, reasons[j].contribution);
            else
                fprintf(out, ",,,");
        }
        fprintf(out, "\n");
    }
    if (ferror(in)) {
        fprintf(stderr, "switch_client: error reading %s: %s\n", csv_path, strerror(errno));
        goto done;
    }

    qsort(lat.ns, lat.n, sizeof *lat.ns, cmp_i64);
    fprintf(stderr, "events: %llu\nscored: %llu\nrejected: %llu\n",
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
    free(reasons);
    free(ents);
    free(nums);
    free(cats);
    free(lay.entity_col);
    free(lay.numeric_col);
    free(lay.categorical_col);
    free(lay.entity_name);
    free(lay.numeric_name);
    free(lay.categorical_name);
    free(lay.entity_strings);
    free(lay.categorical_strings);
    fraud_engine_free(engine);
    return rc;
}
