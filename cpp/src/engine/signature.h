// Bundle signatures (export/BUNDLE.md "Security"): an ed25519 signature of manifest.json's exact
// bytes, in manifest.json.sig, checked with a public key the switch trusts (OpenSSL EVP).
#pragma once

#include <string>

namespace libfraud {

// Beside manifest.json: the raw 64-byte ed25519 signature of its bytes (no encoding, no newline).
inline constexpr const char* kManifestSignatureFile = "manifest.json.sig";

// Verifies <bundle_dir>/manifest.json.sig against manifest_bytes (the manifest exactly as read and
// parsed, so a file swapped after reading cannot pass). Throws FraudError:
// BUNDLE_INVALID naming the file when the key is unreadable, not an ed25519 PEM public key, or
// writable by others, or when the signature file is missing or unreadable; BUNDLE_CHECKSUM when
// the signature does not verify (the manifest or its signature altered, or another signer).
void verify_manifest_bytes(const std::string& bundle_dir, const std::string& manifest_bytes,
                           const std::string& public_key_pem_path);

// The same for <bundle_dir>/manifest.json as it is on disk now (IO_ERROR if it cannot be read).
void verify_manifest_signature(const std::string& bundle_dir, const std::string& public_key_pem_path);

}  // namespace libfraud
