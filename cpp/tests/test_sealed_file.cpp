// engine/sealed_file: an artifact is read from the bundle once, into a sealed private copy whose
// sha256 is checked; what loaders read (its /proc/self/fd path, its bytes) stays those bytes
// whatever happens to the bundle's file afterwards (rewritten in place, replaced by rename, removed),
// and nothing can write the copy. Files that are not regular are refused by name without blocking
// (a FIFO), and the sha256 of the copy must be the expected one.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "check.h"
#include "engine/sealed_file.h"
#include "engine/sha256.h"

using libfraud::SealedFile;

namespace {

std::string temp_dir() {
    char name[] = "/tmp/libfraud-test-sealed-XXXXXX";
    const char* dir = mkdtemp(name);
    if (dir == nullptr) {
        std::perror("mkdtemp");
        std::exit(2);
    }
    return dir;
}

void write(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void test_the_copy_outlives_changes_to_the_file(const std::string& dir) {
    const std::string path = dir + "/model.bin", original = "the verified weights\n";
    write(path, original);
    const std::string sha = libfraud::sha256_file_hex(path);
    SealedFile sealed(path, sha);
    CHECK(sealed.path() == path);
    CHECK(sealed.sha256() == sha);
    CHECK(sealed.bytes() == original);
    CHECK(sealed.load_path().rfind("/proc/self/fd/", 0) == 0);
    CHECK(read(sealed.load_path()) == original);

    write(path, "other weights, same inode\n");  // rewritten in place after the copy
    CHECK(read(sealed.load_path()) == original);
    CHECK(sealed.bytes() == original);
    write(dir + "/other.bin", "a whole other file\n");
    CHECK(std::rename((dir + "/other.bin").c_str(), path.c_str()) == 0);  // replaced by rename
    CHECK(read(sealed.load_path()) == original);
    std::remove(path.c_str());
    CHECK(read(sealed.load_path()) == original);

    // Sealed: whoever opens the copy for writing (another process of this user, through
    // /proc/<pid>/fd) cannot change a byte of it.
    const int fd = open(sealed.load_path().c_str(), O_RDWR);
    if (fd >= 0) {
        CHECK(::write(fd, "X", 1) == -1);
        CHECK(ftruncate(fd, 0) == -1);
        close(fd);
    }
    CHECK(sealed.bytes() == original);

    SealedFile moved(std::move(sealed));  // the descriptor moves with it, and the path stays valid
    CHECK(read(moved.load_path()) == original);
}

void test_other_bytes_are_refused(const std::string& dir) {
    const std::string path = dir + "/swapped.bin";
    write(path, "verified");
    const std::string sha = libfraud::sha256_file_hex(path);
    write(path, "swapped!");  // same size, other bytes: what a swap after verification looks like
    CHECK_THROWS(SealedFile(path, sha), FRAUD_STATUS_BUNDLE_CHECKSUM,
                 path + ": sha256 of the bytes loaded is " + libfraud::sha256_file_hex(path) +
                     ", the manifest says " + sha + " (altered after verification)");
    SealedFile unchecked(path, "");  // outside a bundle: no expectation, no check
    CHECK(unchecked.bytes() == "swapped!");
    std::remove(path.c_str());
}

void test_files_that_are_not_regular(const std::string& dir) {
    const std::string fifo = dir + "/model.fifo";
    CHECK(mkfifo(fifo.c_str(), 0600) == 0);
    // No writer ever opens it: a blocking open would hang here (main's alarm ends the test then).
    CHECK_THROWS(SealedFile(fifo, std::string(64, 'a')), FRAUD_STATUS_BUNDLE_CHECKSUM,
                 fifo + " is a FIFO (not a regular file)");
    CHECK_THROWS(SealedFile(fifo, ""), FRAUD_STATUS_LOAD_ERROR, fifo + " is a FIFO (not a regular file)");
    std::remove(fifo.c_str());

    CHECK_THROWS(SealedFile(dir, std::string(64, 'a')), FRAUD_STATUS_BUNDLE_CHECKSUM,
                 dir + " is a directory, not a file");
    CHECK_THROWS(SealedFile(dir + "/.", ""), FRAUD_STATUS_LOAD_ERROR, dir + "/. is a directory, not a file");
    CHECK_THROWS(SealedFile("/dev/null", ""), FRAUD_STATUS_LOAD_ERROR,
                 "/dev/null is a character device (not a regular file)");

    // Gone since verification: the bundle's fault; a missing file outside a bundle: cannot load.
    CHECK_THROWS(SealedFile(dir + "/gone", std::string(64, 'a')), FRAUD_STATUS_BUNDLE_CHECKSUM,
                 dir + "/gone is missing (cannot open: No such file or directory)");
    CHECK_THROWS(SealedFile(dir + "/gone", ""), FRAUD_STATUS_LOAD_ERROR, dir + "/gone is missing");

    struct stat info {};
    CHECK_THROWS(libfraud::open_regular_file(dir, "artifact 'x' path '.'", &info), FRAUD_STATUS_BUNDLE_CHECKSUM,
                 "artifact 'x' path '.' is a directory, not a file");
}

void test_an_empty_file(const std::string& dir) {
    const std::string path = dir + "/empty";
    write(path, "");
    SealedFile sealed(path, libfraud::sha256_file_hex(path));
    CHECK(sealed.bytes().empty());
    CHECK(read(sealed.load_path()).empty());
    std::remove(path.c_str());
}

}  // namespace

int main() {
    alarm(60);  // a blocking open of a FIFO must fail the test, not hang it
    const std::string dir = temp_dir();
    test_the_copy_outlives_changes_to_the_file(dir);
    test_other_bytes_are_refused(dir);
    test_files_that_are_not_regular(dir);
    test_an_empty_file(dir);
    rmdir(dir.c_str());
    return report_checks();
}
