// File digests for bundle verification (OpenSSL's SHA-256: a library, not a hand-rolled hash).
#pragma once

#include <string>

namespace libfraud {

// Lower-case hex SHA-256 of the file's bytes. Throws FraudError(IO_ERROR) if it cannot be read.
std::string sha256_file_hex(const std::string& path);

// Lower-case hex SHA-256 of the bytes of an open file, from offset 0 to its end (pread: the
// descriptor's offset is left alone). `name` is for messages. Throws FraudError(IO_ERROR).
std::string sha256_fd_hex(int fd, const std::string& name);

// Lower-case hex SHA-256 of bytes in memory (a manifest's text, as read).
std::string sha256_hex(const std::string& bytes);

}  // namespace libfraud
