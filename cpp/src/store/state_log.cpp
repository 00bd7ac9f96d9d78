#include "store/state_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "store/log_format.h"
#include "store/snapshot.h"

namespace libfraud {
namespace {

void (*g_step_hook)(int) = nullptr;

void step(int n) {
    if (g_step_hook) g_step_hook(n);
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

void StateLog::set_snapshot_step_hook(void (*hook)(int)) { g_step_hook = hook; }

std::unique_ptr<StateLog> StateLog::open(const std::string& dir, bool fsync_every_append, const TemporalStore& restored,
                                         const Recovery& recovery) {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        throw FraudError(FRAUD_STATUS_IO_ERROR, "state dir " + dir + ": cannot create: " + errno_text());
    }
    std::unique_ptr<StateLog> log(new StateLog());
    log->dir_ = dir;
    log->path_ = log_path(dir);
    log->fsync_ = fsync_every_append;
    log->layout_ = restored.layout();
    const std::string snap = snapshot_path(dir), next = next_log_path(dir);
    const bool have_snapshot = path_exists(snap);
    const SnapshotInfo info = have_snapshot ? read_snapshot_info(snap) : SnapshotInfo{};
    const bool names_log = have_snapshot && !info.log.none();
    const StateFiles files = find_state_files(dir, log->layout_, have_snapshot ? &info : nullptr);
    if (files.log_is_next) {  // a snapshot stopped between its rename and its log's: finish it
        if (::rename(next.c_str(), log->path_.c_str()) != 0) log_fail(log->path_, "rename from " + next + " failed: " + errno_text());
        fsync_dir(dir);
    } else if (files.stray_next && ::unlink(next.c_str()) != 0 && errno != ENOENT) {
        log_fail(next, "cannot remove (a snapshot that stopped before its rename left it): " + errno_text());
    }
    if (!files.log.empty()) {
        const LogScan scan = scan_log(log->path_, log->layout_, recovery.quarantine_corrupt_tail, nullptr, nullptr);
        log->id_ = scan.header.id;
        log->next_seq_ = scan.next_seq;
        log->end_ = scan.valid_end;
        log->reopen_for_append();
        if (scan.corrupt_bytes) {
            log->quarantine_tail(scan.valid_end, scan.corrupt_what);
        } else if (scan.torn_bytes) {  // cut the torn tail, so new records follow the last valid one
            if (::ftruncate(log->fd_, static_cast<off_t>(scan.valid_end)) != 0 || ::fsync(log->fd_) != 0) {
                log_fail(log->path_, "cannot cut the torn tail: " + errno_text());
            }
        }
        // A log wholly behind a snapshot that names no log: all its records are in the snapshot.
        if (have_snapshot && !names_log && log->next_seq_ < info.appended_total) log->next_seq_ = info.appended_total;
    } else if (have_snapshot) {
        log->next_seq_ = info.appended_total;  // a snapshot naming no log, alone: snapshot() below adds one
    } else {
        log->id_ = LogId::random();
        write_log_file(dir, log->path_, LogHeader{log->id_, 0}, log->layout_);
        log->end_ = kLogHeaderBytes;
        log->reopen_for_append();
    }
    if (log->next_seq_ != restored.appended_total()) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "state log " + log->path_ + " continues at sequence " + std::to_string(log->next_seq_) +
                             " but the store is at " + std::to_string(restored.appended_total()) +
                             ": open the log with the store restore_state filled from this directory");
    }
    // A snapshot that names no log would not notice this log going missing: re-take it now,
    // before anything is appended, naming a new log.
    if (have_snapshot && !names_log) log->snapshot(restored);
    return log;
}

StateLog::~StateLog() {
    if (fd_ >= 0) ::close(fd_);
}

void StateLog::reopen_for_append() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) log_fail(path_, "cannot open for append: " + errno_text());
}

// Copies the bytes from `from` to the end into a new quarantine file (made durable first), then
// cuts the log there: a crash in between leaves the bytes in both, never in neither.
void StateLog::quarantine_tail(uint64_t from, const std::string& what) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    std::string name;
    int q = -1;
    for (int k = 0; q < 0; ++k) {
        name = path_ + ".quarantine-" + std::to_string(ms) + (k ? "-" + std::to_string(k) : "");
        q = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (q < 0 && (errno != EEXIST || k > 100)) log_fail(name, "cannot create: " + errno_text());
    }
    const int in = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    uint64_t copied = 0;
    try {
        if (in < 0) log_fail(path_, "cannot open to quarantine its tail: " + errno_text());
        std::vector<unsigned char> buf(1 << 16);
        for (;;) {
            const ssize_t r = ::pread(in, buf.data(), buf.size(), static_cast<off_t>(from + copied));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) log_fail(path_, "read failed: " + errno_text());
            if (r == 0) break;
            write_all_at(q, buf.data(), static_cast<size_t>(r), copied, name);
            copied += static_cast<uint64_t>(r);
        }
        if (::fsync(q) != 0) log_fail(name, "fsync failed: " + errno_text());
    } catch (...) {
        if (in >= 0) ::close(in);
        ::close(q);
        ::unlink(name.c_str());
        throw;
    }
    ::close(in);
    ::close(q);
    fsync_dir(dir_);
    if (::ftruncate(fd_, static_cast<off_t>(from)) != 0 || ::fsync(fd_) != 0) {
        log_fail(path_, "cannot cut the log at offset " + std::to_string(from) + " after quarantining its tail: " + errno_text());
    }
    quarantine_file_ = name;
    log(FRAUD_LOG_WARN, "state log " + path_ + ": " + what + "; quarantined as allowed (quarantine_corrupt_log_tail): its " +
                            std::to_string(copied) + " bytes moved to " + name + " and the log cut at offset " +
                            std::to_string(from) + ", so the transactions in them are NOT in the store");
}

void StateLog::append(const fraud_event* events, size_t n) {
    if (n == 0) return;
    if (!events) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "events is NULL with n = " + std::to_string(n));
    write_record(event_record(RowLayout(layout_.schema), events, n, next_seq_));
    next_seq_ += n;
}

void StateLog::append_labels(const fraud_label* labels, size_t n) {
    if (n == 0) return;
    if (!labels) throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT, "labels is NULL with n = " + std::to_string(n));
    write_record(label_record(labels, n, next_seq_));
}

void StateLog::write_record(const std::vector<unsigned char>& rec) {
    if (!refuse_appends_.empty()) log_fail(path_, refuse_appends_);
    try {
        write_all_at(fd_, rec.data(), rec.size(), end_, path_);
    } catch (...) {
        // A partial record must not stay: a later record after it would make it look like
        // corruption rather than a torn tail.
        if (::ftruncate(fd_, static_cast<off_t>(end_)) != 0) refuse_appends_ = "a failed write could not be cut back; reopen the log";
        throw;
    }
    if (fsync_ && ::fdatasync(fd_) != 0) {
        // After a failed fsync the page cache may have dropped the data: what is on disk is unknown.
        refuse_appends_ = "an earlier fdatasync failed; take a snapshot or reopen the log before appending";
        log_fail(path_, "fdatasync failed: " + errno_text());
    }
    end_ += rec.size();
}

void StateLog::snapshot(const TemporalStore& store) {
    if (refuse_snapshots_) log_fail(path_, refuse_appends_);
    if (store.appended_total() != next_seq_) {
        throw FraudError(FRAUD_STATUS_INVALID_ARGUMENT,
                         "state log " + path_ + ": the store is at sequence " + std::to_string(store.appended_total()) +
                             " but the log at " + std::to_string(next_seq_) + ": a snapshot must be of the store it logs");
    }
    const LogHeader next{LogId::random(), next_seq_};
    const std::string next_path = next_log_path(dir_);
    write_log_file(dir_, next_path, next, layout_);  // (1)
    int next_fd = -1;
    try {
        step(1);
        next_fd = ::open(next_path.c_str(), O_WRONLY | O_CLOEXEC);
        if (next_fd < 0) log_fail(next_path, "cannot open for append: " + errno_text());
        write_snapshot_file(store, snapshot_path(dir_), next.id);  // (2)
    } catch (...) {
        if (next_fd >= 0) ::close(next_fd);
        ::unlink(next_path.c_str());  // nothing names it: the old snapshot and its log still hold
        throw;
    }
    // The snapshot in place names the new log: every append from here on goes there, and none
    // until both renames are durable (a power loss could still undo the snapshot's).
    if (fd_ >= 0) ::close(fd_);
    fd_ = next_fd;
    id_ = next.id;
    end_ = kLogHeaderBytes;
    refuse_appends_ = "a snapshot stopped after store.snapshot was renamed (an fsync or a rename failed); open the "
                      "state directory again, which finishes it";
    refuse_snapshots_ = true;
    step(2);
    fsync_dir(dir_);
    step(3);
    if (::rename(next_path.c_str(), path_.c_str()) != 0) log_fail(path_, "rename from " + next_path + " failed: " + errno_text());
    fsync_dir(dir_);  // (3)
    refuse_appends_.clear();
    refuse_snapshots_ = false;
    step(4);
}

}  // namespace libfraud
