#include "fuzz_util.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

namespace libfraud_fuzz {
namespace {

// Never destroyed: the atexit handler that reads it runs after static destructors would have.
std::vector<std::string>& temp_dirs() {
    static auto* dirs = new std::vector<std::string>;
    return *dirs;
}

void remove_temp_dirs() {
    std::error_code ignored;
    for (const std::string& dir : temp_dirs()) std::filesystem::remove_all(dir, ignored);
}

[[noreturn]] void harness_failure(const std::string& what) {
    std::fprintf(stderr, "fuzz harness: %s\n", what.c_str());
    std::abort();
}

}  // namespace

std::string make_temp_dir(const char* tag) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/libfraud-" + tag + "-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) harness_failure("mkdtemp " + pattern + " failed");
    static std::once_flag registered;
    std::call_once(registered, [] { std::atexit(remove_temp_dirs); });
    temp_dirs().push_back(buf.data());
    return buf.data();
}

void write_file(const std::string& path, const void* data, size_t size) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) harness_failure("cannot write " + path);
    if (size != 0 && std::fwrite(data, 1, size, f) != size) harness_failure("short write " + path);
    std::fclose(f);
}

void write_file(const std::string& path, const std::string& text) {
    write_file(path, text.data(), text.size());
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) harness_failure("cannot read " + path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace libfraud_fuzz
