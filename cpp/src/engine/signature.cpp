#include "engine/signature.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/error.h"

namespace libfraud {
namespace {

constexpr size_t kEd25519SignatureBytes = 64;

[[noreturn]] void refuse(fraud_status status, const std::string& message) {
    ERR_clear_error();  // leave no OpenSSL errors queued on this thread
    throw FraudError(status, message);
}

using PkeyPtr = std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)>;

PkeyPtr read_public_key(const std::string& path) {
    struct stat info {};
    if (stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode))
        refuse(FRAUD_STATUS_BUNDLE_INVALID, path + ": trusted public key file missing or not a file");
    if (info.st_mode & S_IWOTH) {  // anyone could put their own key here
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
        refuse(FRAUD_STATUS_BUNDLE_INVALID,
               path + ": trusted public key file is writable by others (mode " + mode + ")");
    }
    std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!file) refuse(FRAUD_STATUS_BUNDLE_INVALID, path + ": cannot open the trusted public key");
    PkeyPtr key(PEM_read_PUBKEY(file.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
    if (!key) refuse(FRAUD_STATUS_BUNDLE_INVALID, path + ": not a PEM public key (BEGIN PUBLIC KEY)");
    if (EVP_PKEY_id(key.get()) != EVP_PKEY_ED25519)
        refuse(FRAUD_STATUS_BUNDLE_INVALID, path + ": not an ed25519 public key");
    return key;
}

std::string read_signature(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        refuse(FRAUD_STATUS_BUNDLE_INVALID,
               path + ": missing; this engine loads only bundles signed by its trusted key "
                      "(`libfraud sign BUNDLE --key PRIVATE.pem`)");
    std::string bytes(kEd25519SignatureBytes + 1, '\0');  // one more: a longer file is told apart
    in.read(&bytes[0], static_cast<std::streamsize>(bytes.size()));
    bytes.resize(static_cast<size_t>(in.gcount()));
    if (bytes.size() != kEd25519SignatureBytes)
        refuse(FRAUD_STATUS_BUNDLE_CHECKSUM,
               path + ": not a raw 64-byte ed25519 signature (" +
                   (bytes.size() > kEd25519SignatureBytes ? std::string("longer")
                                                          : std::to_string(bytes.size()) + " bytes") +
                   "; altered)");
    return bytes;
}

}  // namespace

void verify_manifest_bytes(const std::string& bundle_dir, const std::string& manifest_bytes,
                           const std::string& public_key_pem_path) {
    PkeyPtr key = read_public_key(public_key_pem_path);
    const std::string sig_path = bundle_dir + "/" + kManifestSignatureFile;
    const std::string signature = read_signature(sig_path);
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    // ed25519 hashes internally: one-shot EVP_DigestVerify with no digest.
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1)
        refuse(FRAUD_STATUS_INTERNAL, "OpenSSL: cannot initialise ed25519 verification");
    const int ok = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                                    signature.size(),
                                    reinterpret_cast<const unsigned char*>(manifest_bytes.data()),
                                    manifest_bytes.size());
    if (ok != 1)
        refuse(FRAUD_STATUS_BUNDLE_CHECKSUM,
               bundle_dir + "/manifest.json: the signature in " + sig_path +
                   " does not verify with the trusted key " + public_key_pem_path +
                   " (manifest.json or its signature altered, or signed by another key)");
    ERR_clear_error();
}

void verify_manifest_signature(const std::string& bundle_dir, const std::string& public_key_pem_path) {
    const std::string path = bundle_dir + "/manifest.json";
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FraudError(FRAUD_STATUS_IO_ERROR, path + ": cannot open (is this a bundle?)");
    std::stringstream text;
    text << in.rdbuf();
    verify_manifest_bytes(bundle_dir, text.str(), public_key_pem_path);
}

}  // namespace libfraud
