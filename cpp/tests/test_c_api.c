/* The C API from C99: error paths of bundle loading and argument checking, no model needed.
 * argv[1]: a scratch directory for fixture bundles.
 *
 * No bundle that opens is built here (that needs a compiled tree library): the engine-level
 * behaviour of the declared-schema functions (fraud_engine_schema_count / _name / _has_amount,
 * the *_events functions, fraud_engine_label's statuses) is tested from Python on real bundles
 * (tests/test_scorer.py, test_durable_engine.py, test_hot_swap.py), and the fuzz_transactions
 * replay (ctest fuzz_replay_transactions) drives fraud_engine_label and the _events functions on a
 * stand-in payments bundle; here, what needs no engine: fraud_hash_id's documented
 * values, the statuses' names, the structs' layout, and every entry point's NULL checks. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libfraud/fraud.h"

static int passed = 0, failed = 0;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (cond) {                                                         \
            ++passed;                                                       \
        } else {                                                            \
            ++failed;                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                   \
    } while (0)

static void write_file(const char* path, const char* text) {
    FILE* f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

/* sha256("abc") */
#define ABC_SHA "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static char bundle[1024];

static void make_bundle(const char* root, const char* name, const char* manifest, const char* artifact) {
    char path[1100];
    snprintf(bundle, sizeof bundle, "%s/%s", root, name);
    mkdir(root, 0755);
    mkdir(bundle, 0755);
    snprintf(path, sizeof path, "%s/trees", bundle);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/manifest.json", bundle);
    write_file(path, manifest);
    if (artifact) {
        snprintf(path, sizeof path, "%s/trees/model.so", bundle);
        write_file(path, artifact);
    }
}

/* A declared schema (export/SCHEMA.md) and a one-feature spec, as a version-2 manifest carries. */
#define SCHEMA_WITH(entity)                                                                             \
    "{\"format\": \"libfraud-schema\", \"version\": 1, \"name\": \"t\", \"time\": {\"column\": \"t\"}," \
    " \"amount\": {\"column\": \"a\"}, \"entities\": [{\"name\": \"" entity "\", \"required\": true}]}"
#define SCHEMA SCHEMA_WITH("card")
#define SPEC_WITH(feature) \
    "{\"format\": \"libfraud-features\", \"version\": 1, \"features\": [" feature "]}"
#define SPEC SPEC_WITH("{\"name\": \"amount\", \"kind\": \"amount\"}")

static const char* manifest_full(const char* version, const char* schema, const char* spec, const char* order,
                                 const char* path, const char* sha, const char* size) {
    static char text[4096];
    snprintf(text, sizeof text,
             "{\"format\": \"libfraud-bundle\", \"format_version\": %s, \"schema\": %s,"
             " \"features\": {\"spec\": %s, \"order\": [\"%s\"]},"
             " \"model\": {\"artifact\": \"trees\"}, \"threshold\": 0.5,"
             " \"artifacts\": [{\"name\": \"trees\", \"path\": \"%s\", \"target\": \"tl2cgen-c-shared\","
             " \"sha256\": \"%s\", \"size\": %s}]}",
             version, schema, spec, order, path, sha, size);
    return text;
}

static const char* manifest_with(const char* version, const char* path, const char* sha, const char* size) {
    return manifest_full(version, SCHEMA, SPEC, "not_a_feature", path, sha, size);
}

/* manifest_with(...) with a top-level `calibration` section spliced in before the closing brace. */
static const char* manifest_calibrated(const char* version, const char* sha, const char* size) {
    static char text[4200];
    const char* base = manifest_with(version, "trees/model.so", sha, size);
    snprintf(text, sizeof text, "%.*s, \"calibration\": {\"method\": \"platt\", \"a\": 1.5, \"b\": -2}}",
             (int)(strlen(base) - 1), base);
    return text;
}

static fraud_status open_status(const char* dir) {
    fraud_engine* engine = (fraud_engine*)1;
    fraud_status status = fraud_engine_open(dir, NULL, &engine);
    CHECK(engine == NULL); /* *out is NULL on failure */
    CHECK(strlen(fraud_last_error()) > 0);
    return status;
}

/* A NULL engine (or output) is refused with INVALID_ARGUMENT and a message, by every entry point. */
static void check_null_arguments(void) {
    size_t n = 7;
    const char* name = "x";
    int32_t flag = 5;
    double d = 0;
    float score = 0;
    int64_t ids[4] = {1, -1, 2, -1};
    int64_t codes[2] = {840, 5411};
    fraud_event ev;
    fraud_label label;
    fraud_engine_stats stats;
    memset(&ev, 0, sizeof ev);
    ev.entity_id = ids;
    ev.categorical = codes;
    ev.amount = 1.0;
    memset(&label, 0, sizeof label);
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;

#define REFUSED(call)                                                   \
    do {                                                                \
        CHECK((call) == FRAUD_STATUS_INVALID_ARGUMENT);                 \
        CHECK(strstr(fraud_last_error(), "NULL") != NULL);              \
    } while (0)
    REFUSED(fraud_engine_schema_count(NULL, FRAUD_ROLE_ENTITY, &n));
    CHECK(n == 7); /* untouched */
    REFUSED(fraud_engine_schema_name(NULL, FRAUD_ROLE_CATEGORICAL, 0, &name));
    CHECK(strcmp(name, "x") == 0);
    REFUSED(fraud_engine_schema_has_amount(NULL, &flag));
    CHECK(flag == 5);
    REFUSED(fraud_engine_num_features(NULL, &n));
    REFUSED(fraud_engine_feature_name(NULL, 0, &name));
    REFUSED(fraud_engine_gnn_backend(NULL, &name));
    REFUSED(fraud_engine_threshold(NULL, &d));
    REFUSED(fraud_engine_ingest_events(NULL, &ev, 1));
    REFUSED(fraud_engine_score_events(NULL, &ev, 1, &score));
    REFUSED(fraud_engine_score_and_ingest_events(NULL, &ev, 1, &score));
    REFUSED(fraud_engine_features_events(NULL, &ev, 1, &score));
    REFUSED(fraud_engine_label(NULL, &label, 1));
    REFUSED(fraud_engine_label(NULL, NULL, 0));
    REFUSED(fraud_engine_ingest(NULL, NULL, 0));
    REFUSED(fraud_engine_score(NULL, NULL, 0, NULL));
    REFUSED(fraud_engine_score_and_ingest(NULL, NULL, 0, NULL));
    REFUSED(fraud_engine_features(NULL, NULL, 0, NULL));
    REFUSED(fraud_engine_score_features(NULL, NULL, 0, NULL));
    REFUSED(fraud_engine_swap_bundle(NULL, ".", NULL));
    REFUSED(fraud_engine_snapshot(NULL));
    REFUSED(fraud_engine_get_stats(NULL, &stats));
    REFUSED(fraud_engine_store_size(NULL, NULL, NULL));
    {
        fraud_reason reason;
        size_t count = 9;
        int32_t code = 3;
        memset(&reason, 0, sizeof reason);
        REFUSED(fraud_engine_reason_count(NULL, &n));
        REFUSED(fraud_engine_reason_family(NULL, 0, &code, &name, &name));
        CHECK(code == 3 && strcmp(name, "x") == 0);
        REFUSED(fraud_engine_explain_events(NULL, &ev, 1, 1, 0.0f, &score, &reason, &count));
        REFUSED(fraud_engine_score_and_ingest_explain_events(NULL, &ev, 1, 1, 0.0f, &score, &reason, &count));
        REFUSED(fraud_engine_contributions(NULL, &score, 1, &d));
        {
            fraud_neighbour neighbour;
            REFUSED(fraud_engine_explain_neighbours(NULL, &ev, 1, &neighbour, &count));
            CHECK(sizeof(fraud_neighbour) == 24);
        }
        CHECK(count == 9);
        /* The layout a switch compiles against: no padding surprises across compilers. */
        CHECK(sizeof(fraud_reason) == 24);
        CHECK(strcmp(fraud_status_name(FRAUD_STATUS_NO_EXPLANATION), "FRAUD_STATUS_NO_EXPLANATION") == 0);
    }
    {
        fraud_outcome outcome;
        fraud_reason reason;
        size_t count = 9;
        int32_t code = 3;
        const char* sha = "x";
        REFUSED(fraud_engine_decide_events(NULL, &ev, 1, 0, 0.0f, &outcome, NULL, NULL));
        REFUSED(fraud_engine_score_and_ingest_decide_events(NULL, &ev, 1, 1, 0.0f, &outcome, &reason, &count));
        REFUSED(fraud_engine_decision_bands(NULL, &d, &d));
        REFUSED(fraud_engine_rule_count(NULL, &n));
        REFUSED(fraud_engine_rule(NULL, 0, &code, &name, &name, &flag, &flag));
        REFUSED(fraud_engine_set_challenger(NULL, ".", NULL));
        REFUSED(fraud_engine_promote_challenger(NULL));
        REFUSED(fraud_engine_bundle_sha256(NULL, &sha, &sha));
        REFUSED(fraud_engine_set_decision_callback(NULL, NULL, NULL));
        REFUSED(fraud_engine_set_decision_log(NULL, "x.jsonl"));
        CHECK(count == 9 && code == 3 && strcmp(sha, "x") == 0);
        /* Fixed layouts: a switch compiled against this header reads them field by field. */
        CHECK(sizeof(fraud_outcome) == 32);
        CHECK(offsetof(fraud_outcome, rule_hits) == 16 && offsetof(fraud_outcome, challenger_rule_hits) == 24);
        CHECK(offsetof(fraud_decision_record, bundle_sha256) == 24);
        CHECK(offsetof(fraud_decision_record, outcome) == 24 + 2 * sizeof(void*));
        CHECK(sizeof(fraud_decision_record) == 24 + 2 * sizeof(void*) + 32 + sizeof(void*) + sizeof(size_t) + 8);
        CHECK(FRAUD_DECISION_ALLOW == 0 && FRAUD_DECISION_REVIEW == 1 && FRAUD_DECISION_DECLINE == 2);
        CHECK(offsetof(fraud_engine_stats, challenger_set) == offsetof(fraud_engine_stats, store_labels) + 8);
    }
    {
        fraud_drift drift;
        size_t count = 9;
        REFUSED(fraud_engine_drift(NULL, &drift, 1, &count));
        CHECK(count == 9); /* nothing written when the engine is NULL */
        CHECK(sizeof(fraud_drift) == 24);
    }
#undef REFUSED
}

/* fraud_hash_id: FNV-1a 64 of the bytes, the splitmix64 finaliser, the top bit cleared
 * (export/SCHEMA.md "Ids"); the values are that function's, computed independently. */
static void check_hash_id(void) {
    CHECK(fraud_hash_id("", 0) == INT64_C(8442584544778250395));
    CHECK(fraud_hash_id(NULL, 0) == INT64_C(8442584544778250395)); /* NULL with 0 bytes: "" */
    CHECK(fraud_hash_id("a", 1) == INT64_C(198367012849983736));
    CHECK(fraud_hash_id("card_123", 8) == INT64_C(10156519538269513));
    CHECK(fraud_hash_id("ecom", 4) == INT64_C(5404883537411407195));
    CHECK(fraud_hash_id("caf\xc3\xa9", 5) == INT64_C(6971924050583713167)); /* UTF-8 bytes */
    CHECK(fraud_hash_id("a\0b", 3) == INT64_C(7726145306922670462));      /* len, not NUL */
    CHECK(fraud_hash_id("ecomX", 4) == fraud_hash_id("ecom", 4));
    CHECK(fraud_hash_id("b", 1) != fraud_hash_id("a", 1));
    {
        /* Never negative (-1 means absent / missing), for any input. */
        char buf[16];
        int i, all_non_negative = 1;
        for (i = 0; i < 20000; ++i) {
            int len = snprintf(buf, sizeof buf, "id-%d", i);
            all_non_negative &= fraud_hash_id(buf, (size_t)len) >= 0;
        }
        CHECK(all_non_negative);
    }
}

int main(int argc, char** argv) {
    const char* root = argc > 1 ? argv[1] : "c_api_fixtures";
    fraud_engine* engine = NULL;

    alarm(60); /* a call that blocks (opening a FIFO) fails the test instead of hanging it */

    CHECK(FRAUD_API_VERSION == 2 && FRAUD_BUNDLE_FORMAT_VERSION == 3);
    CHECK(FRAUD_BUNDLE_FORMAT_VERSION_MIN == 2 && FRAUD_BUNDLE_FORMAT_VERSION_MAX == 3);
    CHECK(strcmp(fraud_status_name(FRAUD_STATUS_BUNDLE_CHECKSUM), "FRAUD_STATUS_BUNDLE_CHECKSUM") == 0);
    CHECK(strcmp(fraud_status_name(FRAUD_STATUS_UNKNOWN_EVENT), "FRAUD_STATUS_UNKNOWN_EVENT") == 0);
    CHECK(strcmp(fraud_status_name(FRAUD_STATUS_INVALID_LABEL), "FRAUD_STATUS_INVALID_LABEL") == 0);
    CHECK(strcmp(fraud_status_name(FRAUD_STATUS_LABEL_CONFLICT), "FRAUD_STATUS_LABEL_CONFLICT") == 0);
    CHECK(strcmp(fraud_status_name((fraud_status)99), "FRAUD_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(fraud_status_name(FRAUD_STATUS_NO_DRIFT_REFERENCE), "FRAUD_STATUS_NO_DRIFT_REFERENCE") == 0);
    CHECK(strcmp(fraud_status_name((fraud_status)18), "FRAUD_STATUS_UNKNOWN") == 0);
    CHECK(strlen(fraud_version()) >= 5);
    CHECK(sizeof(fraud_txn) == 64);
    CHECK(sizeof(fraud_label) == 24);
    CHECK(sizeof(fraud_event) == 3 * 8 + 3 * sizeof(void*));
    CHECK(FRAUD_CODE_MISSING == -1 && FRAUD_ENTITY_ABSENT == -1 && FRAUD_MAX_ENTITY_TYPES == 16);
    check_hash_id();

    fraud_engine_params params = fraud_engine_default_params();
    CHECK(params.struct_size == sizeof params);
    CHECK(params.expected_transactions == 0);
    CHECK(params.drift_window_events == 0); /* 0: the default window (10000 events) */
    params.struct_size = 3;
    CHECK(fraud_engine_open(".", &params, &engine) == FRAUD_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(fraud_last_error(), "struct_size") != NULL);

    CHECK(fraud_engine_open(NULL, NULL, &engine) == FRAUD_STATUS_INVALID_ARGUMENT);
    CHECK(fraud_engine_open(".", NULL, NULL) == FRAUD_STATUS_INVALID_ARGUMENT);
    check_null_arguments();
    fraud_engine_free(NULL); /* does nothing */

    CHECK(open_status("/nonexistent/bundle") == FRAUD_STATUS_IO_ERROR);
    CHECK(strstr(fraud_last_error(), "/nonexistent/bundle") != NULL);

    make_bundle(root, "not_json", "{ this is not json", "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "not valid JSON") != NULL);

    make_bundle(root, "no_features", "{\"format\": \"libfraud-bundle\", \"format_version\": 2}", "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "'features'") != NULL);

    /* Version 2 carries the declared schema: a manifest without one is refused. */
    make_bundle(root, "no_schema",
                "{\"format\": \"libfraud-bundle\", \"format_version\": 2, \"features\": {\"spec\": {},"
                " \"order\": []}}",
                "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "'schema'") != NULL);

    /* Changed with the declared schema: version 1 (the fixed payments format) is the old one now. */
    make_bundle(root, "version", manifest_with("1", "trees/model.so", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_VERSION);
    CHECK(strstr(fraud_last_error(), "format_version 1") != NULL);
    CHECK(strstr(fraud_last_error(), "reads versions 2 to 3") != NULL);
    make_bundle(root, "version4", manifest_with("4", "trees/model.so", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_VERSION);
    CHECK(strstr(fraud_last_error(), "format_version 4 is not supported") != NULL);
    CHECK(strstr(fraud_last_error(), "reads versions 2 to 3") != NULL);
    make_bundle(root, "version4_calibrated", manifest_calibrated("4", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_VERSION);

    /* Version 3 is a calibrated bundle, 2 an uncalibrated one (export/BUNDLE.md "Versions and
     * compatibility"): a core older than calibration reads 2 and ignores unknown keys, so it would
     * serve a calibrated bundle marked 2 uncalibrated. Both mismatches are refused naming format_version. */
    make_bundle(root, "version3_uncalibrated", manifest_with("3", "trees/model.so", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "format_version 3 without a 'calibration' section") != NULL);
    make_bundle(root, "version2_calibrated", manifest_calibrated("2", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "format_version 2 with a 'calibration' section") != NULL);
    /* Version 3 with its section passes the version check and the checksums: refused only later, at
     * the feature order (this fixture's order is wrong on purpose; no compiled trees here). */
    make_bundle(root, "version3_calibrated", manifest_calibrated("3", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "features.order[0] is 'not_a_feature'") != NULL);
    make_bundle(root, "version3_altered", manifest_calibrated("3", ABC_SHA, "3"), "abd");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_CHECKSUM);

    make_bundle(root, "escape", manifest_with("2", "../../etc/passwd", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "outside the bundle") != NULL);

    make_bundle(root, "missing", manifest_with("2", "trees/model.so", ABC_SHA, "3"), NULL);
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_CHECKSUM);
    CHECK(strstr(fraud_last_error(), "missing") != NULL);

    /* '.' is the bundle directory itself, not a link leaving it; a FIFO is there but no file, and
     * opening it never blocks (main's alarm fails the test if it did). */
    make_bundle(root, "dot", manifest_with("2", ".", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_CHECKSUM);
    CHECK(strstr(fraud_last_error(), "artifact 'trees' path '.' is a directory, not a file") != NULL);
    make_bundle(root, "fifo", manifest_with("2", "trees/model.so", ABC_SHA, "3"), NULL);
    {
        char fifo[1100];
        snprintf(fifo, sizeof fifo, "%s/trees/model.so", bundle);
        remove(fifo); /* a previous run's */
        CHECK(mkfifo(fifo, 0644) == 0);
    }
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_CHECKSUM);
    CHECK(strstr(fraud_last_error(), "artifact 'trees' path 'trees/model.so' is a FIFO (not a regular file)") != NULL);

    make_bundle(root, "truncated", manifest_with("2", "trees/model.so", ABC_SHA, "3"), "ab");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_CHECKSUM);
    CHECK(strstr(fraud_last_error(), "truncated") != NULL);

    make_bundle(root, "altered", manifest_with("2", "trees/model.so", ABC_SHA, "3"), "abd");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_CHECKSUM);
    CHECK(strstr(fraud_last_error(), "altered") != NULL);

    /* Checksums right, but the feature order is not what the spec computes: refused before dlopen. */
    make_bundle(root, "order", manifest_with("2", "trees/model.so", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "features.order[0] is 'not_a_feature' but features.spec computes 'amount'") != NULL);

    /* A schema or a spec the core cannot compile: refused before dlopen, naming the key. */
    make_bundle(root, "bad_schema",
                manifest_full("2", SCHEMA_WITH("Card"), SPEC, "amount", "trees/model.so", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "schema.entities[0].name: 'Card' must match") != NULL);
    make_bundle(root, "bad_spec",
                manifest_full("2", SCHEMA,
                              SPEC_WITH("{\"name\": \"x\", \"kind\": \"time_since_last\", \"entity\": \"termnal\"}"), "x",
                              "trees/model.so", ABC_SHA, "3"),
                "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "features.spec.features[0].entity: 'termnal' is not an entity of the schema (card)") != NULL);

    /* Everything before loading passes; the artifact ("abc") is no shared library: LOAD_ERROR. */
    make_bundle(root, "not_a_library",
                manifest_full("2", SCHEMA, SPEC, "amount", "trees/model.so", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_LOAD_ERROR);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
