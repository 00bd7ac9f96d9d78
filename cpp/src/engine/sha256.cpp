#include "engine/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <memory>

#include "common/error.h"

namespace libfraud {

std::string sha256_file_hex(const std::string& path) {
    std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!file) throw FraudError(FRAUD_STATUS_IO_ERROR, path + ": cannot open for reading");
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
        throw FraudError(FRAUD_STATUS_INTERNAL, "OpenSSL: cannot initialise SHA-256");
    char buffer[1 << 16];
    size_t got;
    while ((got = std::fread(buffer, 1, sizeof buffer, file.get())) > 0)
        EVP_DigestUpdate(ctx.get(), buffer, got);
    if (std::ferror(file.get())) throw FraudError(FRAUD_STATUS_IO_ERROR, path + ": read error");
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(ctx.get(), digest, &length);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 15]);
    }
    return out;
}

}  // namespace libfraud
