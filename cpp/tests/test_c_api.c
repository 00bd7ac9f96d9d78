/* The C API from C99: error paths of bundle loading and argument checking, no model needed.
 * argv[1]: a scratch directory for fixture bundles. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static const char* manifest_with(const char* version, const char* path, const char* sha, const char* size) {
    static char text[2048];
    snprintf(text, sizeof text,
             "{\"format\": \"libfraud-bundle\", \"format_version\": %s,"
             " \"features\": {\"config\": {\"windows_ms\": [3600000], \"distinct_window_ms\": 3600000,"
             " \"max_scan\": 16}, \"order\": [\"not_a_feature\"]},"
             " \"model\": {\"artifact\": \"trees\"}, \"threshold\": 0.5,"
             " \"artifacts\": [{\"name\": \"trees\", \"path\": \"%s\", \"target\": \"tl2cgen-c-shared\","
             " \"sha256\": \"%s\", \"size\": %s}]}",
             version, path, sha, size);
    return text;
}

static fraud_status open_status(const char* dir) {
    fraud_engine* engine = (fraud_engine*)1;
    fraud_status status = fraud_engine_open(dir, NULL, &engine);
    CHECK(engine == NULL); /* *out is NULL on failure */
    CHECK(strlen(fraud_last_error()) > 0);
    return status;
}

int main(int argc, char** argv) {
    const char* root = argc > 1 ? argv[1] : "c_api_fixtures";
    fraud_engine* engine = NULL;

    CHECK(strcmp(fraud_status_name(FRAUD_STATUS_BUNDLE_CHECKSUM), "FRAUD_STATUS_BUNDLE_CHECKSUM") == 0);
    CHECK(strcmp(fraud_status_name((fraud_status)99), "FRAUD_STATUS_UNKNOWN") == 0);
    CHECK(strlen(fraud_version()) >= 5);
    CHECK(sizeof(fraud_txn) == 64);

    fraud_engine_params params = fraud_engine_default_params();
    CHECK(params.struct_size == sizeof params);
    CHECK(params.expected_transactions == 0);
    params.struct_size = 3;
    CHECK(fraud_engine_open(".", &params, &engine) == FRAUD_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(fraud_last_error(), "struct_size") != NULL);

    CHECK(fraud_engine_open(NULL, NULL, &engine) == FRAUD_STATUS_INVALID_ARGUMENT);
    CHECK(fraud_engine_open(".", NULL, NULL) == FRAUD_STATUS_INVALID_ARGUMENT);
    CHECK(fraud_engine_ingest(NULL, NULL, 0) == FRAUD_STATUS_INVALID_ARGUMENT);
    CHECK(fraud_engine_score(NULL, NULL, 0, NULL) == FRAUD_STATUS_INVALID_ARGUMENT);
    fraud_engine_free(NULL); /* does nothing */

    CHECK(open_status("/nonexistent/bundle") == FRAUD_STATUS_IO_ERROR);
    CHECK(strstr(fraud_last_error(), "/nonexistent/bundle") != NULL);

    make_bundle(root, "not_json", "{ this is not json", "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "not valid JSON") != NULL);

    make_bundle(root, "no_threshold", "{\"format\": \"libfraud-bundle\", \"format_version\": 1}", "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "'features'") != NULL);

    make_bundle(root, "version", manifest_with("2", "trees/model.so", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_VERSION);
    CHECK(strstr(fraud_last_error(), "format_version 2") != NULL);

    make_bundle(root, "escape", manifest_with("1", "../../etc/passwd", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "outside the bundle") != NULL);

    make_bundle(root, "missing", manifest_with("1", "trees/model.so", ABC_SHA, "3"), NULL);
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_CHECKSUM);
    CHECK(strstr(fraud_last_error(), "missing") != NULL);

    make_bundle(root, "truncated", manifest_with("1", "trees/model.so", ABC_SHA, "3"), "ab");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_CHECKSUM);
    CHECK(strstr(fraud_last_error(), "truncated") != NULL);

    make_bundle(root, "altered", manifest_with("1", "trees/model.so", ABC_SHA, "3"), "abd");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_CHECKSUM);
    CHECK(strstr(fraud_last_error(), "altered") != NULL);

    /* Checksums right, but the feature order is not what this library computes: refused before dlopen. */
    make_bundle(root, "order", manifest_with("1", "trees/model.so", ABC_SHA, "3"), "abc");
    CHECK(open_status(bundle) == FRAUD_STATUS_BUNDLE_INVALID);
    CHECK(strstr(fraud_last_error(), "features.order[0]") != NULL);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
