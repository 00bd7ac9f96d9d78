// The state directory's own promises (store/state_dir.h): the snapshot names its log, so a log
// deleted, replaced or older than the snapshot is refused naming the gap; a damaged last record is
// refused, unlike a torn one, or quarantined when allowed, its bytes kept; a snapshot stopped at
// any step (a killed process, a failed step) loses nothing and raises no false alarm.
// Plain program: prints "N passed, N failed" last; exit code 1 on any failure.
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "check.h"
#include "scratch_files.h"
#include "common/error.h"
#include "common/log.h"
#include "payments.h"
#include "store/log_format.h"
#include "store/restore.h"
#include "store/snapshot.h"
#include "store/state_log.h"
#include "store/validate.h"

using namespace libfraud;
using payments::Events;

namespace {

constexpr fraud_status kIo = FRAUD_STATUS_IO_ERROR;
constexpr size_t kEventBytes = 8 * (3 + 4 + 0 + 2);  // payments: id, time, amount, 4 entities, 2 codes

const StoreLayout& L() {
    static const StoreLayout l = payments::layout();
    return l;
}

std::string temp_dir(const std::string& name) { return scratch_dir("libfraud_state_dir", name); }

std::vector<std::string> files_in(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = ::opendir(dir.c_str())) {
        while (const dirent* e = ::readdir(d))
            if (e->d_name[0] != '.') out.push_back(e->d_name);
        ::closedir(d);
    }
    return out;
}

// Events 1..n, one card, a minute apart.
const std::vector<fraud_txn>& txns() {
    static const std::vector<fraud_txn> v = [] {
        std::vector<fraud_txn> t;
        for (int64_t i = 0; i < 2000; ++i) t.push_back(payments::txn(i + 1, 1'700'000'000'000 + 60000 * i, 1.0 + i, i % 7));
        return t;
    }();
    return v;
}

// A state directory written as the engine writes it: validate, log, then the store.
struct Writer {
    std::string dir;
    TemporalStore store{L()};
    std::unique_ptr<StateLog> log;
    explicit Writer(const std::string& d, bool fsync = false) : dir(d) {
        restore_state(dir, store);
        log = StateLog::open(dir, fsync, store);
    }
    // Appends events [from, from + n) as one record.
    void ingest(size_t from, size_t n) {
        const Events ev(&txns()[from], n);
        validate_for_append(store, ev.data(), ev.size());
        log->append(ev.data(), ev.size());
        for (const fraud_event& e : ev) store.append(e);
    }
};

uint64_t restored_size(const std::string& dir, const Recovery& r = {}) {
    TemporalStore s(L());
    restore_state(dir, s, r);
    return s.appended_total();
}

// Item 6: a snapshot names its log. A deleted, another, an older or a shorter log is refused.
void test_the_snapshot_names_its_log() {
    const std::string dir = temp_dir("named");
    std::vector<char> older;  // store.log after 60 events, before the snapshot
    LogId first, second;
    {
        Writer w(dir);
        w.ingest(0, 60);
        older = read_bytes(log_path(dir));
        first = w.log->id();
        w.ingest(60, 40);
        w.log->snapshot(w.store);
        second = w.log->id();
        CHECK(first != second && read_snapshot_info(snapshot_path(dir)).log == second);
        w.ingest(100, 50);  // acknowledged after the snapshot: only in store.log
    }
    CHECK(restored_size(dir) == 150);
    const std::vector<char> good = read_bytes(log_path(dir));

    // Deleted.
    ::unlink(log_path(dir).c_str());
    TemporalStore kept(L());
    CHECK_THROWS(restore_state(dir, kept), kIo,
                 "store.log is missing; the snapshot (taken at sequence 100) expects log " + second.hex() + " from sequence 100");
    CHECK(kept.size() == 0);
    CHECK_THROWS(StateLog::open(dir, false, TemporalStore(L())), kIo, "store.log is missing");
    CHECK(files_in(dir).size() == 1);  // open created nothing

    // Older and shorter: the log from before the snapshot, at 60 events.
    write_bytes(log_path(dir), older);
    CHECK_THROWS(restore_state(dir, kept), kIo,
                 "store.log is log " + first.hex() + ", which starts at sequence 0 and ends at sequence 60, before "
                 "the snapshot's 100, not the log the snapshot names");

    // Another directory's log (of the same layout).
    const std::string other = temp_dir("other");
    LogId theirs;
    {
        Writer w(other);
        w.ingest(0, 120);
        theirs = w.log->id();
    }
    write_bytes(log_path(dir), read_bytes(log_path(other)));
    CHECK_THROWS(restore_state(dir, kept), kIo, "store.log is log " + theirs.hex() + ", which starts at sequence 0 and ends at sequence 120");

    // The named log with another base (a header rewritten with a valid checksum): refused too.
    std::vector<char> moved = good;
    const uint64_t base = 90;
    std::memcpy(moved.data() + 16, &base, 8);
    Sha256 h;
    h.update(moved.data(), 72);
    h.finish(reinterpret_cast<uint8_t*>(moved.data() + 72));
    write_bytes(log_path(dir), moved);
    CHECK_THROWS(restore_state(dir, kept), kIo, "is log " + second.hex() + ", the one the snapshot names, but starts at sequence 90, not at the snapshot's 100");

    write_bytes(log_path(dir), good);
    CHECK(restored_size(dir) == 150);
}

// When a log may be absent: a new directory, and a snapshot written outside a state directory
// (it names none). Opening such a snapshot re-takes it, naming the new log: from then on a lost
// log is noticed.
void test_legitimate_absences() {
    const std::string fresh = temp_dir("fresh");
    CHECK(restored_size(fresh) == 0);
    {
        Writer w(fresh);
        CHECK(w.log->next_seq() == 0 && !w.log->id().none());
    }
    const std::string dir = temp_dir("standalone");
    TemporalStore s(L());
    const Events ev(txns().data(), 30);
    for (const fraud_event& e : ev) s.append(e);
    write_snapshot(s, snapshot_path(dir));
    CHECK(read_snapshot_info(snapshot_path(dir)).log.none());
    CHECK(restored_size(dir) == 30);  // no log: fine, it names none
    {
        Writer w(dir);
        CHECK(w.log->next_seq() == 30);
        const SnapshotInfo info = read_snapshot_info(snapshot_path(dir));
        CHECK(info.log == w.log->id() && info.appended_total == 30);
        w.ingest(30, 10);
    }
    CHECK(restored_size(dir) == 40);
    ::unlink(log_path(dir).c_str());
    CHECK_THROWS(restored_size(dir), kIo, "store.log is missing");
}

std::vector<std::string> g_logged;
void capture(fraud_log_level level, const char* message, void*) {
    if (level == FRAUD_LOG_WARN) g_logged.push_back(message);
}

// Item 7: a damaged last record (every byte present) is refused, unlike a torn one; allowed, it is
// quarantined, its bytes kept.
void test_damaged_last_record_is_not_torn() {
    const std::string dir = temp_dir("damaged");
    {
        Writer w(dir, /*fsync=*/true);
        for (size_t i = 0; i < 300; i += 100) w.ingest(i, 100);
    }
    const std::string lp = log_path(dir);
    const std::vector<char> good = read_bytes(lp);
    const size_t rec = kRecordHeaderBytes + 100 * kEventBytes, last = kLogHeaderBytes + 2 * rec;
    CHECK(good.size() == kLogHeaderBytes + 3 * rec);
    // A flip in any byte of the last record: refused, naming the file, offset and sequence.
    int refused = 0, header = 0;
    for (size_t pos = last; pos < good.size(); pos += (pos < last + kRecordHeaderBytes ? 1 : 97)) {
        std::vector<char> bad = good;
        bad[pos] ^= 0x10;
        write_bytes(lp, bad);
        TemporalStore r(L());
        std::string msg;
        try {
            restore_state(dir, r);
        } catch (const FraudError& e) {
            msg = e.what();
        }
        const bool named = msg.find("state log " + lp + ": corrupt record at offset " + std::to_string(last) + " (sequence 200)") == 0;
        refused += named && r.size() == 0;
        header += named && pos < last + 24 && msg.find("header is damaged") != std::string::npos;
        if (!named) std::printf("position %zu: %s\n", pos, msg.c_str());
    }
    CHECK(refused == static_cast<int>(kRecordHeaderBytes + (rec - kRecordHeaderBytes + 96) / 97) && header == 24);
    // A cut anywhere in it (a crash mid-append): a torn tail, dropped. Cuts of 56 bytes or more
    // leave an intact header announcing more than is there.
    int dropped = 0, cuts = 0;
    for (size_t keep = 0; keep < rec; keep += (keep < 80 ? 1 : 211), ++cuts) {
        write_bytes(lp, std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(last + keep)));
        TemporalStore r(L());
        const RestoreStats st = restore_state(dir, r);
        dropped += st.log_transactions == 200 && st.torn_tail_bytes == keep && st.corrupt_tail_bytes == 0;
    }
    CHECK(dropped == cuts);

    // Allowed: restore skips it; open moves its bytes to a quarantine file, cuts the log and says so.
    std::vector<char> bad = good;
    bad[last + kRecordHeaderBytes + 300] ^= 0x01;  // an amount's bit
    write_bytes(lp, bad);
    Recovery allow;
    allow.quarantine_corrupt_tail = true;
    TemporalStore r(L());
    const RestoreStats st = restore_state(dir, r, allow);
    CHECK(st.log_transactions == 200 && st.corrupt_tail_bytes == rec && st.torn_tail_bytes == 0);
    CHECK(read_bytes(lp) == bad);  // restore reads only
    CHECK_THROWS(StateLog::open(dir, false, r), kIo, "checksum does not match");
    set_log_callback(capture, nullptr, FRAUD_LOG_DEBUG);
    {
        auto log = StateLog::open(dir, false, r, allow);
        const std::string q = log->quarantine_file();
        CHECK(q.rfind(lp + ".quarantine-", 0) == 0);
        CHECK(read_bytes(q) == std::vector<char>(bad.begin() + static_cast<std::ptrdiff_t>(last), bad.end()));
        CHECK(read_bytes(lp) == std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(last)));
        CHECK(g_logged.size() == 1 && g_logged[0].find(q) != std::string::npos &&
              g_logged[0].find("corrupt record at offset " + std::to_string(last) + " (sequence 200)") != std::string::npos &&
              g_logged[0].find("NOT in the store") != std::string::npos);
        const Events ev(&txns()[200], 5);
        log->append(ev.data(), ev.size());
    }
    set_log_callback(nullptr, nullptr, FRAUD_LOG_DEBUG);
    CHECK(restored_size(dir) == 205);  // in order again: no allowance needed

    // A damaged record with a valid one after it is refused even when the quarantine is allowed.
    bad = good;
    bad[kLogHeaderBytes + rec + 200] ^= 0x01;
    write_bytes(lp, bad);
    CHECK_THROWS(restored_size(dir, allow), kIo, "a valid record follows at offset " + std::to_string(last));
    TemporalStore again(L());
    CHECK_THROWS(StateLog::open(dir, false, again, allow), kIo, "refusing to skip acknowledged transactions");
}

// Crash safety of snapshot(): stopped at each step by a killed process (fork, _exit: the files as
// the kernel has them) or by a failed step (an exception), the directory restores to every
// acknowledged event, raises no false alarm, and opens to append again.
int g_stop_at = 0;
bool g_throw = false;
void stop_here(int step) {
    if (step != g_stop_at) return;
    if (!g_throw) ::_exit(0);
    throw FraudError(kIo, "test: step " + std::to_string(step) + " failed");
}

void test_snapshot_stopped_at_each_step() {
    StateLog::set_snapshot_step_hook(stop_here);
    for (int mode = 0; mode < 2; ++mode) {
        g_throw = mode == 1;
        for (int step = 1; step <= 4; ++step) {
            g_stop_at = step;
            const std::string dir = temp_dir("stop_" + std::to_string(mode) + "_" + std::to_string(step));
            {
                Writer w(dir);
                w.ingest(0, 100);
                g_stop_at = 0;
                w.log->snapshot(w.store);
                g_stop_at = step;
                w.ingest(100, 50);  // after the first snapshot, in its log
                if (!g_throw) {
                    const pid_t pid = ::fork();
                    if (pid == 0) {
                        w.log->snapshot(w.store);
                        ::_exit(1);  // the hook did not stop it
                    }
                    int status = 0;
                    ::waitpid(pid, &status, 0);
                    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                } else {
                    CHECK_THROWS(w.log->snapshot(w.store), kIo, "test: step");
                    // Before the snapshot's rename nothing changed and appends go on; after it,
                    // they are refused until the directory is opened again (step 4 is past the end).
                    const Events ev(&txns()[150], 1);
                    if (step == 1 || step == 4) {
                        w.log->append(ev.data(), 1);
                        w.store.append(ev[0]);
                    } else {
                        CHECK_THROWS(w.log->append(ev.data(), 1), kIo, "open the state directory again");
                        CHECK_THROWS(w.log->snapshot(w.store), kIo, "open the state directory again");
                    }
                }
            }
            g_stop_at = 0;
            const uint64_t expect = 150 + (g_throw && (step == 1 || step == 4));
            const bool next_left = path_exists(next_log_path(dir));
            CHECK(next_left == (step <= 3 && !(g_throw && step == 1)));  // a thrown step 1 removes its file
            CHECK(restored_size(dir) == expect);  // no false alarm, nothing lost
            {
                Writer w(dir);  // puts the directory in order
                CHECK(w.store.appended_total() == expect && !path_exists(next_log_path(dir)));
                const SnapshotInfo info = read_snapshot_info(snapshot_path(dir));
                CHECK(info.log == w.log->id() && read_log_header(log_path(dir), L()).id == w.log->id());
                w.ingest(expect, 10);
                w.log->snapshot(w.store);  // and snapshots work again
                w.ingest(expect + 10, 5);
            }
            CHECK(restored_size(dir) == expect + 15);
        }
    }
    StateLog::set_snapshot_step_hook(nullptr);
}

}  // namespace

int main() {
    try {
        test_the_snapshot_names_its_log();
        test_legitimate_absences();
        test_damaged_last_record_is_not_torn();
        test_snapshot_stopped_at_each_step();
    } catch (const std::exception& e) {
        ++g_failed;
        std::printf("FAIL: uncaught exception: %s\n", e.what());
    }
    return report_checks();
}
