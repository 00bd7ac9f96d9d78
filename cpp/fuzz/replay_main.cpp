// A main for the fuzz targets without libFuzzer (GCC, or any build without -fsanitize=fuzzer):
// LLVMFuzzerInitialize once (when the target has one), then LLVMFuzzerTestOneInput on each file
// named, or on each file of a directory named, in name order. What libFuzzer does when given
// files, so the saved regressions and the seeds replay in every test build (cpp/tests/
// CMakeLists.txt: ctest fuzz_replay_*), under the sanitizers when the build has them. A finding
// aborts (FUZZ_CHECK, a trap, an uncaught exception) like it does under libFuzzer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

int main(int argc, char** argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    std::vector<std::string> files;
    for (int i = 1; i < argc; ++i) {
        const std::filesystem::path p(argv[i]);
        if (std::filesystem::is_directory(p)) {
            std::vector<std::string> in;
            for (const auto& e : std::filesystem::directory_iterator(p))
                if (e.is_regular_file()) in.push_back(e.path().string());
            std::sort(in.begin(), in.end());
            files.insert(files.end(), in.begin(), in.end());
        } else if (std::filesystem::is_regular_file(p)) {
            files.push_back(p.string());
        } else {
            std::fprintf(stderr, "replay: %s: no such file or directory\n", argv[i]);
            return 2;
        }
    }
    for (const std::string& f : files) {
        std::ifstream in(f, std::ios::binary);
        const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
        std::printf("replay: %s (%zu bytes)\n", f.c_str(), bytes.size());
        std::fflush(stdout);
        // A heap copy of exactly the input's size, never NULL (as libFuzzer passes it, an empty
        // input included), so ASan sees any read past it.
        std::unique_ptr<uint8_t[]> data(new uint8_t[bytes.size()]);
        std::copy(bytes.begin(), bytes.end(), data.get());
        LLVMFuzzerTestOneInput(data.get(), bytes.size());
    }
    std::printf("replay: %zu input(s) ran clean\n", files.size());
    return 0;
}
