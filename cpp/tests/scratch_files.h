// Scratch directories and whole-file reads and writes for the durable-store tests.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

// /tmp/<prefix>_<pid>_<name>, emptied.
inline std::string scratch_dir(const std::string& prefix, const std::string& name) {
    std::string d = "/tmp/" + prefix + "_" + std::to_string(::getpid()) + "_" + name;
    std::system(("rm -rf '" + d + "'").c_str());
    ::mkdir(d.c_str(), 0755);
    return d;
}

inline std::vector<char> read_bytes(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

inline void write_bytes(const std::string& p, const std::vector<char>& b) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
}
