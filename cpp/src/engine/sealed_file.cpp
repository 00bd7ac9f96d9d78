#include "engine/sealed_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common/error.h"
#include "engine/sha256.h"

namespace libfraud {
namespace {

struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) close(fd);
    }
    int release() { return std::exchange(fd, -1); }
};

[[noreturn]] void fail(fraud_status status, const std::string& path, const std::string& what) {
    throw FraudError(status, path + ": " + what);
}

// Copies src to its end (not to a size read before: a file that grows or shrinks meanwhile is
// copied as it is, and the hash then decides).
void copy_all(int src, int dst, const std::string& path) {
    for (;;) {
        const ssize_t sent = sendfile(dst, src, nullptr, size_t{1} << 30);
        if (sent < 0 && errno == EINTR) continue;
        if (sent < 0) fail(FRAUD_STATUS_IO_ERROR, path, std::string("cannot copy: ") + std::strerror(errno));
        if (sent == 0) return;
    }
}

}  // namespace

std::string file_type_problem(mode_t mode) {
    if (S_ISREG(mode)) return "";
    if (S_ISDIR(mode)) return "is a directory, not a file";
    if (S_ISFIFO(mode)) return "is a FIFO (not a regular file)";
    if (S_ISSOCK(mode)) return "is a socket (not a regular file)";
    if (S_ISCHR(mode)) return "is a character device (not a regular file)";
    if (S_ISBLK(mode)) return "is a block device (not a regular file)";
    return "is not a regular file";
}

int open_regular_file(const std::string& path, const std::string& name, struct stat* info) {
    const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        const int error = errno;
        if (stat(path.c_str(), info) == 0 && !file_type_problem(info->st_mode).empty())  // e.g. a socket
            throw FraudError(FRAUD_STATUS_BUNDLE_CHECKSUM, name + " " + file_type_problem(info->st_mode));
        if (error == ENOENT || error == ENOTDIR || error == ELOOP)
            throw FraudError(FRAUD_STATUS_BUNDLE_CHECKSUM,
                             name + " is missing (cannot open: " + std::strerror(error) + ")");
        throw FraudError(FRAUD_STATUS_IO_ERROR, name + " cannot be opened: " + std::strerror(error));
    }
    Fd opened{fd};
    if (fstat(fd, info) != 0)
        throw FraudError(FRAUD_STATUS_IO_ERROR, name + " cannot be opened: fstat: " + std::strerror(errno));
    if (!file_type_problem(info->st_mode).empty())
        throw FraudError(FRAUD_STATUS_BUNDLE_CHECKSUM, name + " " + file_type_problem(info->st_mode));
    return opened.release();
}

SealedFile::SealedFile(const std::string& path, const std::string& expected_sha256) : path_(path) {
    struct stat info {};
    Fd src{-1};
    try {
        src.fd = open_regular_file(path, path, &info);
    } catch (const FraudError& e) {
        // Against a manifest, a file gone or replaced since verification is the bundle's fault
        // (BUNDLE_CHECKSUM); outside a bundle it is a file that cannot be loaded.
        if (e.status() == FRAUD_STATUS_BUNDLE_CHECKSUM && expected_sha256.empty())
            throw FraudError(FRAUD_STATUS_LOAD_ERROR, e.what());
        throw;
    }

    Fd copy{memfd_create("libfraud-artifact", MFD_CLOEXEC | MFD_ALLOW_SEALING)};
    if (copy.fd < 0)
        fail(FRAUD_STATUS_LOAD_ERROR, path,
             std::string("cannot make a private copy to check and load (memfd_create: ") + std::strerror(errno) +
                 "), so nothing is loaded");
    copy_all(src.fd, copy.fd, path);
    if (fcntl(copy.fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        fail(FRAUD_STATUS_LOAD_ERROR, path, std::string("cannot seal its private copy: ") + std::strerror(errno));
    load_path_ = "/proc/self/fd/" + std::to_string(copy.fd);
    if (access(load_path_.c_str(), R_OK) != 0)
        fail(FRAUD_STATUS_LOAD_ERROR, path,
             "its private copy cannot be opened by name (" + load_path_ +
                 ": is /proc mounted?), so nothing is loaded");
    sha256_ = sha256_fd_hex(copy.fd, path);
    if (!expected_sha256.empty() && sha256_ != expected_sha256)
        fail(FRAUD_STATUS_BUNDLE_CHECKSUM, path,
             "sha256 of the bytes loaded is " + sha256_ + ", the manifest says " + expected_sha256 +
                 " (altered after verification)");
    fd_ = copy.release();
}

SealedFile::~SealedFile() {
    if (fd_ >= 0) close(fd_);
}

SealedFile::SealedFile(SealedFile&& other) noexcept
    : path_(std::move(other.path_)),
      load_path_(std::move(other.load_path_)),
      sha256_(std::move(other.sha256_)),
      fd_(std::exchange(other.fd_, -1)) {}

SealedFile& SealedFile::operator=(SealedFile&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) close(fd_);
        path_ = std::move(other.path_);
        load_path_ = std::move(other.load_path_);
        sha256_ = std::move(other.sha256_);
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

std::string SealedFile::bytes() const {
    struct stat info {};
    if (fstat(fd_, &info) != 0)
        fail(FRAUD_STATUS_IO_ERROR, path_, std::string("cannot stat its private copy: ") + std::strerror(errno));
    std::string out(static_cast<size_t>(info.st_size), '\0');
    size_t at = 0;
    while (at < out.size()) {  // sealed: the size cannot change under this loop
        const ssize_t got = pread(fd_, &out[at], out.size() - at, static_cast<off_t>(at));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) fail(FRAUD_STATUS_IO_ERROR, path_, "cannot read its private copy");
        at += static_cast<size_t>(got);
    }
    return out;
}

}  // namespace libfraud
