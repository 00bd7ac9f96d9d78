/* A stand-in TL2cgen tree library for the fuzz bundle: the ABI that engine/tree_library.cpp loads
 * (predict, get_num_feature, threshold/leaf types, one target, one class), no trained model. It
 * reads every entry of the row, so a row shorter than get_num_feature() is an ASan finding.
 * The feature count depends on the bundle's features.config; the harness writes it into
 * LIBFRAUD_FUZZ_NUM_FEATURE before it opens the engine. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

union Entry {
    int missing;
    float fvalue;
    int qvalue;
};

int32_t get_num_feature(void) {
    const char* n = getenv("LIBFRAUD_FUZZ_NUM_FEATURE");
    return n ? (int32_t)atoi(n) : 0;
}
const char* get_threshold_type(void) { return "float32"; }
const char* get_leaf_output_type(void) { return "float32"; }
int32_t get_num_target(void) { return 1; }
void get_num_class(int32_t* out) { *out = 1; }

void predict(union Entry* data, int pred_margin, float* result) {
    const int32_t n = get_num_feature();
    float margin = 0.0f;
    for (int32_t i = 0; i < n; ++i)
        if (data[i].missing != -1 && isfinite(data[i].fvalue)) margin += data[i].fvalue > 0.5f ? 0.01f : -0.01f;
    result[0] += pred_margin ? margin : 1.0f / (1.0f + expf(-margin));
}
