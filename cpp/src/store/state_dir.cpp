#include "store/state_dir.h"

#include <sys/stat.h>

#include "common/error.h"
#include "store/log_format.h"

namespace libfraud {
namespace {

[[noreturn]] void dir_fail(const std::string& dir, const std::string& what) {
    throw FraudError(FRAUD_STATUS_IO_ERROR, "state dir " + dir + ": " + what);
}

std::string seq(uint64_t s) { return std::to_string(s); }

}  // namespace

std::string snapshot_path(const std::string& dir) { return dir + "/store.snapshot"; }
std::string log_path(const std::string& dir) { return dir + "/store.log"; }
std::string next_log_path(const std::string& dir) { return dir + "/store.log.next"; }

bool path_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

StateFiles find_state_files(const std::string& dir, const StoreLayout& layout, const SnapshotInfo* snapshot) {
    StateFiles f;
    const std::string main = log_path(dir), next = next_log_path(dir);
    const bool have_main = path_exists(main), have_next = path_exists(next);
    const uint64_t at = snapshot ? snapshot->appended_total : 0;
    if (!snapshot || snapshot->log.none()) {
        // No snapshot, or one that names no log: store.log (if any) may start at or before it.
        f.stray_next = have_next;
        if (!have_main) return f;
        const LogHeader h = read_log_header(main, layout);
        if (h.base_seq > at) {
            if (!snapshot) {
                dir_fail(dir, "store.log starts at sequence " + seq(h.base_seq) +
                                  " but store.snapshot, which held the transactions before it, is missing");
            }
            dir_fail(dir, "store.log starts at sequence " + seq(h.base_seq) + " but the snapshot ends at " + seq(at) +
                              ": transactions " + seq(at) + " to " + seq(h.base_seq - 1) + " are missing (snapshot stale?)");
        }
        f.log = main;
        return f;
    }
    const LogId& want = snapshot->log;
    const std::string expects = "the snapshot (taken at sequence " + seq(at) + ") expects log " + want.hex() +
                                " from sequence " + seq(at) + ", which holds every transaction acknowledged after it";
    auto named = [&](const std::string& path, const LogHeader& h) {
        if (h.base_seq != at) {
            dir_fail(dir, path + " is log " + want.hex() + ", the one the snapshot names, but starts at sequence " +
                              seq(h.base_seq) + ", not at the snapshot's " + seq(at));
        }
    };
    LogHeader mh;
    std::string main_error;
    if (have_main) {
        try {
            mh = read_log_header(main, layout);
        } catch (const FraudError& e) {
            main_error = e.what();
        }
        if (main_error.empty() && mh.id == want) {
            named(main, mh);
            f.log = main;
            f.stray_next = have_next;
            return f;
        }
    }
    if (have_next) {
        bool is_named = false;
        LogHeader nh;
        try {
            nh = read_log_header(next, layout);
            is_named = nh.id == want;
        } catch (const FraudError&) {
            // a stray store.log.next cut short by a crash: never named by a snapshot
        }
        if (is_named) {
            named(next, nh);
            f.log = next;
            f.log_is_next = true;
            return f;
        }
    }
    if (!have_main) dir_fail(dir, "store.log is missing; " + expects);
    if (!main_error.empty()) throw FraudError(FRAUD_STATUS_IO_ERROR, main_error);
    // Another log: say how far it reaches, so that the gap is plain.
    std::string reach = "starts at sequence " + seq(mh.base_seq);
    try {
        const LogScan s = scan_log(main, layout, /*allow_corrupt_tail=*/true, nullptr, nullptr);
        reach += " and ends at sequence " + seq(s.next_seq);
        if (s.next_seq < at) reach += ", before the snapshot's " + seq(at);
    } catch (const FraudError&) {
        reach += " (its records are damaged)";
    }
    dir_fail(dir, "store.log is log " + mh.id.hex() + ", which " + reach + ", not the log the snapshot names: " +
                      expects + ". store.log was replaced (by an older log, or another state directory's) and "
                      "the transactions acknowledged after the snapshot are not in it");
}

}  // namespace libfraud
