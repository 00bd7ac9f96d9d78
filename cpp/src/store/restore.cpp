#include "store/restore.h"

#include <utility>

#include "common/error.h"
#include "store/log_format.h"
#include "store/snapshot.h"
#include "store/validate.h"

namespace libfraud {

RestoreStats restore_state(const std::string& dir, TemporalStore& store, const Recovery& recovery) {
    RestoreStats stats;
    const std::string snap = snapshot_path(dir);
    TemporalStore fresh(store.layout(), store.config());
    SnapshotInfo info;
    const bool have_snapshot = path_exists(snap);
    if (have_snapshot) {
        fresh = read_snapshot(snap, store.layout(), store.config(), &info);  // verified before its log is chosen
        stats.snapshot_loaded = true;
        stats.snapshot_transactions = fresh.size();
    }
    const StateFiles files = find_state_files(dir, store.layout(), have_snapshot ? &info : nullptr);
    if (!files.log.empty()) {
        const std::string& log = files.log;
        auto on_labels = [&](uint64_t off, const fraud_label* labels, size_t n) {
            // A label record may predate the snapshot (which then holds it) or name an event
            // evicted since: what can apply is applied, the rest was already applied or is gone.
            for (size_t i = 0; i < n; ++i) {
                uint32_t row;
                if (!fresh.find_event(labels[i].event_id, &row)) continue;
                try {
                    validate_labels(fresh, &labels[i], 1);
                } catch (const FraudError& e) {
                    log_fail(log, "label record at offset " + std::to_string(off) + ": replay refused: " + e.what());
                }
                fresh.apply_label(row, labels[i].label, labels[i].label_time_ms);
            }
            ++stats.log_label_records;
        };
        auto on_events = [&](uint64_t off, uint64_t first, const fraud_event* txns, size_t n) {
            const uint64_t have = fresh.appended_total();
            if (first + n <= have) {  // logged before a snapshot that names no log was taken
                stats.log_skipped += n;
                return;
            }
            if (first != have) {
                log_fail(log, "record at offset " + std::to_string(off) + " starts at sequence " +
                                  std::to_string(first) + " but the store (snapshot) is at " +
                                  std::to_string(have) + ": transactions are missing");
            }
            try {
                validate_for_append(fresh, txns, n);
            } catch (const FraudError& e) {
                log_fail(log, "record at offset " + std::to_string(off) + ": replay refused: " + e.what());
            }
            for (size_t i = 0; i < n; ++i) fresh.append(txns[i]);
            ++stats.log_records;
            stats.log_transactions += n;
        };
        const LogScan scan = scan_log(log, store.layout(), recovery.quarantine_corrupt_tail, on_events, on_labels);
        stats.torn_tail_bytes = scan.torn_bytes;
        stats.corrupt_tail_bytes = scan.corrupt_bytes;
    }
    store = std::move(fresh);
    return stats;
}

}  // namespace libfraud
