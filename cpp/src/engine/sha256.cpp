#include "engine/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common/error.h"

namespace libfraud {

namespace {

using Context = std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)>;

Context sha256_context() {
    Context ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
        throw FraudError(FRAUD_STATUS_INTERNAL, "OpenSSL: cannot initialise SHA-256");
    return ctx;
}

std::string hex_digest(EVP_MD_CTX* ctx) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(ctx, digest, &length);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 15]);
    }
    return out;
}

}  // namespace

std::string sha256_hex(const std::string& bytes) {
    Context ctx = sha256_context();
    EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size());
    return hex_digest(ctx.get());
}

std::string sha256_fd_hex(int fd, const std::string& name) {
    Context ctx = sha256_context();
    char buffer[1 << 16];
    off_t offset = 0;
    for (;;) {
        const ssize_t got = pread(fd, buffer, sizeof buffer, offset);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) throw FraudError(FRAUD_STATUS_IO_ERROR, name + ": read error: " + std::strerror(errno));
        if (got == 0) break;
        EVP_DigestUpdate(ctx.get(), buffer, static_cast<size_t>(got));
        offset += got;
    }
    return hex_digest(ctx.get());
}

std::string sha256_file_hex(const std::string& path) {
    // O_NONBLOCK: a FIFO never blocks the open (its reads end at once: no writer).
    const int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw FraudError(FRAUD_STATUS_IO_ERROR, path + ": cannot open for reading");
    try {
        std::string out = sha256_fd_hex(fd, path);
        close(fd);
        return out;
    } catch (...) {
        close(fd);
        throw;
    }
}

}  // namespace libfraud
