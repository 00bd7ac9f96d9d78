// The manifest's "calibration" section (export/BUNDLE.md): what read_manifest accepts and refuses,
// and Calibration::apply against the formulas (the parity with the Python reference on real
// bundles: tests/test_calibration.py). Plain program: prints "N passed, N failed" last.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "check.h"
#include "count_allocations.h"
#include "engine/manifest.h"

using namespace libfraud;

namespace {

std::string temp_dir() {
    char name[] = "/tmp/libfraud-test-calibration-XXXXXX";
    const char* dir = mkdtemp(name);
    if (dir == nullptr) {
        std::perror("mkdtemp");
        std::exit(2);
    }
    return dir;
}

// A manifest read_manifest accepts (it loads no artifact), with `extra` spliced in at the top level.
// format_version: 3 when `extra` carries a calibration section, else 2 (export/BUNDLE.md "Versions
// and compatibility"), unless `version` says otherwise.
constexpr int64_t kVersionForSections = INT64_MIN;
Manifest read_with(const std::string& dir, const std::string& extra, int64_t version = kVersionForSections) {
    if (version == kVersionForSections) version = extra.find("\"calibration\"") != std::string::npos ? 3 : 2;
    std::ofstream(dir + "/manifest.json")
        << R"({"format": "libfraud-bundle", "format_version": )" << version
        << R"(, "schema": {}, "threshold": 0.5,)"
        << R"("features": {"spec": {}, "order": []},)"
        << R"("model": {"kind": "gbdt", "artifact": "trees", "name": "fraud", "version": "3",)"
        << R"( "data_fingerprint": "sha256:00", "source_revision": null, "created_utc": "2024-01-01T00:00:00Z"},)"
        << R"("artifacts": [{"name": "trees", "path": "trees/model.so", "target": "tl2cgen-c-shared",)"
        << R"( "sha256": "0000000000000000000000000000000000000000000000000000000000000000", "size": 1}])"
        << (extra.empty() ? "" : ", " + extra) << "}";
    return read_manifest(dir);
}

std::string points(size_t n) {
    std::string x = "[", y = "[";
    for (size_t i = 0; i < n; ++i) {
        x += (i ? ", " : "") + std::to_string(static_cast<double>(i) / static_cast<double>(n));
        y += (i ? ", " : "") + std::string("0.5");
    }
    return R"("x": )" + x + R"(], "y": )" + y + "]";
}

void check_near(float got, double want, double tol, int line) {
    if (std::fabs(static_cast<double>(got) - want) <= tol) {
        ++g_passed;
    } else {
        ++g_failed;
        std::printf("FAIL line %d: got %.9g, wanted %.9g (tolerance %g)\n", line, got, want, tol);
    }
}
#define CHECK_NEAR(got, want, tol) check_near((got), (want), (tol), __LINE__)

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }
double logit(double p) { return std::log(p / (1.0 - p)); }

void test_absent_and_provenance(const std::string& dir) {
    const Manifest m = read_with(dir, "");
    CHECK(!m.calibration.present());  // scores stay the trees' output
    CHECK(m.calibration.apply(0.25f) == 0.25f);
    CHECK(m.model_artifact == "trees");  // provenance keys in `model` are accepted and ignored
}

void test_platt(const std::string& dir) {
    const Manifest m = read_with(dir, R"("calibration": {"method": "platt", "a": 2, "b": -1.5, "fitted_on": "valid"})");
    const Calibration& c = m.calibration;
    CHECK(c.method == Calibration::Method::Platt && c.a == 2.0 && c.b == -1.5);
    for (float p : {0.001f, 0.02f, 0.5f, 0.9f, 0.999f})
        CHECK_NEAR(c.apply(p), sigmoid(2.0 * logit(static_cast<double>(p)) - 1.5), 1e-7);
    // Outside (1e-7, 1 - 1e-7) the input is clipped first (CLIP in calibration.py).
    CHECK_NEAR(c.apply(0.0f), sigmoid(2.0 * logit(1e-7) - 1.5), 1e-12);
    CHECK(c.apply(0.0f) == c.apply(1e-9f));
    CHECK_NEAR(c.apply(1.0f), sigmoid(2.0 * logit(1.0 - 1e-7) - 1.5), 1e-7);
    CHECK(std::isnan(c.apply(std::nanf(""))));

    // Extreme but finite parameters saturate to 0 or 1, never NaN or inf.
    const Manifest steep = read_with(dir, R"("calibration": {"method": "platt", "a": 1e300, "b": 0})");
    CHECK(steep.calibration.apply(0.9f) == 1.0f);
    CHECK(steep.calibration.apply(0.1f) == 0.0f);
    CHECK(steep.calibration.apply(0.5f) == 0.5f);
    const Manifest shifted = read_with(dir, R"("calibration": {"method": "platt", "a": 1, "b": -1e308})");
    CHECK(shifted.calibration.apply(0.999f) == 0.0f);
}

void test_isotonic(const std::string& dir) {
    const Manifest m = read_with(dir, R"("calibration": {"method": "isotonic", "x": [0.1, 0.2, 0.4], "y": [0, 0.5, 0.5]})");
    const Calibration& c = m.calibration;
    CHECK(c.method == Calibration::Method::Isotonic && c.x.size() == 3);
    CHECK(c.apply(0.0f) == 0.0f);         // left of x[0]: y[0]
    CHECK(c.apply(0.05f) == 0.0f);
    CHECK_NEAR(c.apply(0.1f), 0.0, 1e-6);  // 0.1f is a little above 0.1
    CHECK_NEAR(c.apply(0.15f), 0.25, 1e-7);
    CHECK_NEAR(c.apply(0.175f), 0.375, 1e-7);
    CHECK(c.apply(0.2f) == 0.5f);
    CHECK(c.apply(0.3f) == 0.5f);
    CHECK(c.apply(0.4f) == 0.5f);  // from x[n-1] on: y[n-1]
    CHECK(c.apply(1.0f) == 0.5f);
    CHECK(std::isnan(c.apply(std::nanf(""))));
    // A breakpoint hit exactly gives its y (no interpolation from either side).
    const Manifest exact = read_with(dir, R"("calibration": {"method": "isotonic", "x": [0.25, 0.5, 0.75], "y": [0.1, 0.2, 0.9]})");
    CHECK(exact.calibration.apply(0.5f) == 0.2f);
    CHECK_NEAR(exact.calibration.apply(0.625f), 0.55, 1e-7);

    // The most points read, and each segment found (binary search) on a dense grid.
    const Manifest dense = read_with(dir, R"("calibration": {"method": "isotonic", )" + points(1024) + "}");
    CHECK(dense.calibration.x.size() == 1024);
    CHECK(dense.calibration.apply(0.7f) == 0.5f);
}

void test_apply_allocates_nothing(const std::string& dir) {
    const Manifest iso = read_with(dir, R"("calibration": {"method": "isotonic", )" + points(1024) + "}");
    const Manifest platt = read_with(dir, R"("calibration": {"method": "platt", "a": 1.1, "b": -2})");
    const long before = g_allocations;
    float sink = 0.0f;
    for (int i = 0; i < 1000; ++i) {
        const float p = static_cast<float>(i) / 1000.0f;
        sink += iso.calibration.apply(p) + platt.calibration.apply(p);
    }
    CHECK(g_allocations == before);
    CHECK(std::isfinite(sink));
}

// Not a check: the cost per score, printed for the record (the release build's ctest log).
void time_apply(const std::string& dir) {
    const Manifest iso = read_with(dir, R"("calibration": {"method": "isotonic", )" + points(1024) + "}");
    const Manifest platt = read_with(dir, R"("calibration": {"method": "platt", "a": 1.1, "b": -2})");
    constexpr int n = 2000000;
    for (const Manifest* m : {&platt, &iso}) {
        volatile float sink = 0.0f;
        const auto start = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < n; ++i) sink = sink + m->calibration.apply(static_cast<float>((i * 7919) % n) / n);
        const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count() / n;
        std::printf("calibration %s: %.1f ns per score\n", m == &platt ? "platt" : "isotonic (1024 points)", ns);
    }
}

void test_refusals(const std::string& dir) {
    const auto refused = [&](const std::string& section, const std::string& needle, int line) {
        check_throws([&] { read_with(dir, R"("calibration": )" + section); }, FRAUD_STATUS_BUNDLE_INVALID, needle, line);
    };
#define REFUSED(section, needle) refused(section, needle, __LINE__)
    REFUSED(R"([1, 2])", "'calibration' must be an object");
    REFUSED(R"({"a": 1, "b": 0})", "calibration.method");
    REFUSED(R"({"method": "beta", "a": 1, "b": 0})", "'calibration.method' is \"beta\"");
    REFUSED(R"({"method": "platt", "a": 1})", "calibration.b");
    REFUSED(R"({"method": "platt", "a": "1", "b": 0})", "'calibration.a' must be a number");
    REFUSED(R"({"method": "platt", "a": true, "b": 0})", "'calibration.a' must be a number");
    REFUSED(R"({"method": "platt", "a": 0, "b": 0})", "'calibration.a' must be > 0");
    REFUSED(R"({"method": "platt", "a": -1, "b": 0})", "'calibration.a' must be > 0");
    REFUSED(R"({"method": "platt", "a": 1, "b": 0, "clip": 1e-6})", "unknown key 'calibration.clip'");
    REFUSED(R"({"method": "platt", "a": 1, "b": 0, "x": [0, 1]})", "unknown key 'calibration.x'");
    REFUSED(R"({"method": "platt", "a": 1, "b": 0, "fitted_on": 3})", "'calibration.fitted_on' must be a string");
    // Non-finite numbers are not JSON; the parser's error names where it stopped.
    REFUSED(R"({"method": "platt", "a": NaN, "b": 0})", "near 'calibration.a'");
    REFUSED(R"({"method": "platt", "a": 1, "b": 1e400})", "near 'calibration.b'");
    REFUSED(R"({"method": "isotonic", "x": [0, 0.5, Infinity], "y": [0, 0.5, 1]})", "near 'calibration.x[2]'");
    REFUSED(R"({"method": "isotonic", "x": [0, 1]})", "calibration.y");
    REFUSED(R"({"method": "isotonic", "x": {"0": 1}, "y": [0, 1]})", "'calibration.x' must be a list");
    REFUSED(R"({"method": "isotonic", "x": [0, "1"], "y": [0, 1]})", "'calibration.x[1]' must be a number");
    REFUSED(R"({"method": "isotonic", "x": [0.5], "y": [0.5]})", "'calibration.x' has 1 points");
    REFUSED(R"({"method": "isotonic", )" + points(1025) + "}", "'calibration.x' has 1025 points");
    REFUSED(R"({"method": "isotonic", "x": [0, 0.5, 1], "y": [0, 1]})", "'calibration.y' has 2");
    REFUSED(R"({"method": "isotonic", "x": [0, 0.5, 0.5], "y": [0, 0.5, 1]})", "'calibration.x' must be strictly increasing: x[2]");
    REFUSED(R"({"method": "isotonic", "x": [0, 0.6, 0.5], "y": [0, 0.5, 1]})", "'calibration.x' must be strictly increasing");
    REFUSED(R"({"method": "isotonic", "x": [0, 0.5, 1], "y": [0, 0.6, 0.5]})", "'calibration.y' must be non-decreasing: y[2]");
    REFUSED(R"({"method": "isotonic", "x": [0, 0.5, 1], "y": [0, 0.5, 1.5]})", "'calibration.y' must lie in [0, 1]: y[2]");
    REFUSED(R"({"method": "isotonic", "x": [0, 0.5, 1], "y": [-0.1, 0.5, 1]})", "'calibration.y' must lie in [0, 1]: y[0]");
    REFUSED(R"({"method": "isotonic", "x": [0, 1], "y": [0, 1], "a": 1})", "unknown key 'calibration.a'");
#undef REFUSED
}

// Version 3 means a calibrated bundle, version 2 an uncalibrated one: a core older than
// calibration reads 2 and ignores unknown keys, so a calibrated bundle marked 2 would be served
// there uncalibrated. The two mismatches are refused naming format_version, before the section is
// read; any other version is BUNDLE_VERSION, listing what this core reads.
void test_format_version(const std::string& dir) {
    const std::string platt = R"("calibration": {"method": "platt", "a": 2, "b": -1.5})";
    const Manifest v3 = read_with(dir, platt, 3);
    CHECK(v3.format_version == 3 && v3.calibration.present());
    const Manifest v2 = read_with(dir, "", 2);
    CHECK(v2.format_version == 2 && !v2.calibration.present());
    CHECK(FRAUD_BUNDLE_FORMAT_VERSION_MIN == 2 && FRAUD_BUNDLE_FORMAT_VERSION_MAX == 3);
    CHECK(FRAUD_BUNDLE_FORMAT_VERSION == FRAUD_BUNDLE_FORMAT_VERSION_MAX);

    CHECK_THROWS(read_with(dir, "", 3), FRAUD_STATUS_BUNDLE_INVALID,
                 "format_version 3 without a 'calibration' section");
    CHECK_THROWS(read_with(dir, platt, 2), FRAUD_STATUS_BUNDLE_INVALID,
                 "format_version 2 with a 'calibration' section");
    CHECK_THROWS(read_with(dir, platt, 2), FRAUD_STATUS_BUNDLE_INVALID, "would ignore the section");
    // The version is checked first: a broken section in a version-2 manifest is still named by it.
    CHECK_THROWS(read_with(dir, R"("calibration": [])", 2), FRAUD_STATUS_BUNDLE_INVALID, "format_version 2 with");
    CHECK_THROWS(read_with(dir, R"("calibration": [])", 3), FRAUD_STATUS_BUNDLE_INVALID,
                 "'calibration' must be an object");
    for (int64_t version : {int64_t{0}, int64_t{1}, int64_t{4}, int64_t{-1}, int64_t{99}, INT64_MAX}) {
        CHECK_THROWS(read_with(dir, "", version), FRAUD_STATUS_BUNDLE_VERSION, "this libfraud reads versions 2 to 3");
        CHECK_THROWS(read_with(dir, platt, version), FRAUD_STATUS_BUNDLE_VERSION,
                     "format_version " + std::to_string(version) + " is not supported");
    }
}

}  // namespace

int main() {
    const std::string dir = temp_dir();
    test_absent_and_provenance(dir);
    test_platt(dir);
    test_isotonic(dir);
    test_apply_allocates_nothing(dir);
    test_refusals(dir);
    test_format_version(dir);
    time_apply(dir);
    std::remove((dir + "/manifest.json").c_str());
    rmdir(dir.c_str());
    return report_checks();
}
