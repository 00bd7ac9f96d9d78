// Scratch files for the fuzz targets: one private temporary directory per process, removed at exit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

// A target's own check: a failure is a finding (libFuzzer saves the input), with where and what.
#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, \
                         #cond);                                                      \
            std::abort();                                                             \
        }                                                                             \
    } while (0)

namespace libfraud_fuzz {

// A new directory under $TMPDIR (or /tmp), removed with everything in it when the process exits.
std::string make_temp_dir(const char* tag);

// Replaces path's contents with the bytes; aborts when it cannot (a harness failure, not a finding).
void write_file(const std::string& path, const void* data, size_t size);
void write_file(const std::string& path, const std::string& text);

std::string read_file(const std::string& path);

}  // namespace libfraud_fuzz
