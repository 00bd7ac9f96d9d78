// A bundle artifact's bytes, read from the bundle once into a private anonymous file (memfd) that is
// then sealed against every change, and hashed there: whatever loads the artifact (dlopen, a GNN
// plugin, a parser) reads the sealed copy, so the bytes checked against the manifest are the bytes
// used. A file swapped in the bundle after the check is never read (export/BUNDLE.md "Security").
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

namespace libfraud {

// What is wrong with a file of this st_mode as an artifact: "" for a regular file, else e.g.
// "is a directory, not a file" or "is a FIFO (not a regular file)" (a phrase to follow a name).
std::string file_type_problem(mode_t mode);

// Opens path for reading once and checks what was opened: O_NONBLOCK, so a FIFO in its place never
// blocks the open, and the type is the descriptor's (fstat), so the file checked is the file read.
// Returns the descriptor (the caller closes it) and its stat in *info. Throws FraudError
// BUNDLE_CHECKSUM "<name> is missing (cannot open: ...)" or "<name> " + file_type_problem, IO_ERROR
// "<name> cannot be opened: <why>".
int open_regular_file(const std::string& path, const std::string& name, struct stat* info);

// Move-only; closes its descriptor on destruction. Const members are thread-safe.
class SealedFile {
public:
    // Opens path once (open_regular_file: "<path> is a FIFO (not a regular file)"...), copies it
    // into a memfd, seals it (no write, grow, shrink) and hashes the sealed bytes.
    // expected_sha256 (lowercase hex; the manifest's): those bytes must have it, else FraudError
    // BUNDLE_CHECKSUM "... (altered after verification)", as is a file gone or no longer regular;
    // empty: no check (files outside a bundle; a missing or irregular file is then LOAD_ERROR).
    // IO_ERROR when the file cannot be read; LOAD_ERROR when no sealed copy can be made (no memfd
    // or /proc: then nothing is loaded rather than the unchecked file).
    SealedFile(const std::string& path, const std::string& expected_sha256);
    ~SealedFile();
    SealedFile(SealedFile&& other) noexcept;
    SealedFile& operator=(SealedFile&& other) noexcept;
    SealedFile(const SealedFile&) = delete;
    SealedFile& operator=(const SealedFile&) = delete;

    const std::string& path() const { return path_; }  // the bundle's file, for messages
    // "/proc/self/fd/<n>": the sealed copy by name, for loaders that take a path. Valid while this
    // object lives; each SealedFile is a new file (dlopen never mistakes it for one loaded before).
    const std::string& load_path() const { return load_path_; }
    const std::string& sha256() const { return sha256_; }  // of the sealed bytes
    // The sealed bytes, read in full (for parsers).
    std::string bytes() const;

private:
    std::string path_;
    std::string load_path_;
    std::string sha256_;
    int fd_ = -1;
};

}  // namespace libfraud
