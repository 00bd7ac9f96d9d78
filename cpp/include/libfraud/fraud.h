/*
 * libfraud: real-time payment-fraud scoring. The C API, and the library's only ABI promise.
 *
 * The path of one transaction: validate -> temporal store (each entity's time-ordered history)
 * -> point-in-time features -> compiled trees (from the bundle) -> probability of fraud
 * (calibrated when the bundle carries a calibrator: its manifest's "calibration" section).
 *
 * Errors: every function returns a fraud_status; on failure, fraud_last_error() gives a message
 * for the calling thread naming what is wrong. No C++ exception ever crosses this boundary.
 *
 * Threading (per engine): fraud_engine_score() may run from many threads at once. Functions that
 * change the store (ingest, score_and_ingest) take the engine exclusively: they wait for running
 * scores, and scores wait for them, so a score always sees the store after a whole number of
 * ingest calls (a consistent prefix of the stream).
 *
 * Ownership: the caller owns every buffer it passes; the library never keeps a pointer to one
 * after the call returns. An engine is freed by fraud_engine_free(); nothing else needs freeing.
 */
#ifndef LIBFRAUD_FRAUD_H
#define LIBFRAUD_FRAUD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FRAUD_API __declspec(dllexport)
#else
#define FRAUD_API __attribute__((visibility("default")))
#endif

/* Bumped when this header changes incompatibly. 2: declared schemas (fraud_event), labels. */
#define FRAUD_API_VERSION 2
/*
 * The bundle format versions this library reads, MIN to MAX (export/BUNDLE.md "Versions and
 * compatibility"): 2, a bundle without a "calibration" section (also read by cores older than
 * calibration); 3, a bundle with one (refused by those cores, which would have ignored it). A
 * version-3 manifest without the section, or a version-2 one with it, is FRAUD_STATUS_BUNDLE_INVALID;
 * a version outside MIN..MAX is FRAUD_STATUS_BUNDLE_VERSION.
 */
#define FRAUD_BUNDLE_FORMAT_VERSION_MIN 2
#define FRAUD_BUNDLE_FORMAT_VERSION_MAX 3
/* The newest bundle format version this library reads (FRAUD_BUNDLE_FORMAT_VERSION_MAX); it reads
 * every version from FRAUD_BUNDLE_FORMAT_VERSION_MIN up to this one. */
#define FRAUD_BUNDLE_FORMAT_VERSION FRAUD_BUNDLE_FORMAT_VERSION_MAX

typedef enum fraud_status {
    FRAUD_STATUS_OK = 0,
    FRAUD_STATUS_INVALID_ARGUMENT = 1,    /* a NULL pointer, a bad size or parameter */
    FRAUD_STATUS_INVALID_TRANSACTION = 2, /* a field out of its domain (NaN amount, negative id...) */
    FRAUD_STATUS_OUT_OF_ORDER = 3,        /* timestamp older than the store's watermark */
    FRAUD_STATUS_DUPLICATE_TRANSACTION = 4, /* txn_id already in the store or twice in a batch */
    FRAUD_STATUS_IO_ERROR = 5,            /* a file that cannot be opened or read */
    FRAUD_STATUS_BUNDLE_INVALID = 6,      /* manifest unparsable, or inconsistent with this library */
    FRAUD_STATUS_BUNDLE_VERSION = 7,      /* a format version this library does not read */
    FRAUD_STATUS_BUNDLE_CHECKSUM = 8,     /* an artifact missing, not a regular file, of the wrong size or sha256 */
    FRAUD_STATUS_LOAD_ERROR = 9,          /* an artifact verified but could not be loaded */
    FRAUD_STATUS_INTERNAL = 10,           /* a bug or out of memory; the message says which */
    FRAUD_STATUS_OUT_OF_RETENTION = 11,   /* a time older than the store keeps history for */
    FRAUD_STATUS_BACKEND_UNAVAILABLE = 12, /* a GNN backend plugin missing or not loadable here */
    FRAUD_STATUS_UNKNOWN_EVENT = 13,      /* a label for an event id the store does not hold */
    FRAUD_STATUS_INVALID_LABEL = 14,      /* a label not 0/1, or a label time before its event */
    FRAUD_STATUS_LABEL_CONFLICT = 15,     /* a label that differs from one already applied */
    FRAUD_STATUS_NO_EXPLANATION = 16,     /* reasons asked of a bundle compiled without explanation data */
    FRAUD_STATUS_NO_DRIFT_REFERENCE = 17  /* drift asked of a bundle compiled without a drift reference */
} fraud_status;

/* The most entity types a schema declares. */
#define FRAUD_MAX_ENTITY_TYPES 16
/* A categorical code meaning "missing". */
#define FRAUD_CODE_MISSING (-1)

/*
 * One event, laid out by the bundle's declared schema (export/SCHEMA.md): the engine's schema says
 * how many entity ids, numeric values and categorical codes an event has, their names and order
 * (fraud_engine_schema_count / fraud_engine_schema_name): a switch maps its fields once at start.
 * Rules (checked at every entry point): time_ms any int64; amount finite and >= 0 (ignored when the
 * schema has no amount); entity_id[i] >= 0, or FRAUD_ENTITY_ABSENT for an optional entity type;
 * numeric[i] finite or NaN (missing); categorical[i] >= 0 or FRAUD_CODE_MISSING. String ids and
 * codes are mapped with fraud_hash_id. The arrays are read during the call only.
 */
typedef struct fraud_event {
    int64_t event_id;            /* unique within the store */
    int64_t time_ms;             /* unix epoch, milliseconds, UTC */
    double amount;
    const int64_t* entity_id;    /* [num entity types]; may be NULL when there are none */
    const double* numeric;       /* [num numeric fields]; NULL when there are none */
    const int64_t* categorical;  /* [num categorical fields]; NULL when there are none */
} fraud_event;

/* A label for a stored event: known from label_time_ms on (>= the event's time_ms). */
typedef struct fraud_label {
    int64_t event_id;
    int64_t label_time_ms;
    int32_t label;    /* 1 fraud, 0 legitimate */
    int32_t reserved; /* 0 */
} fraud_label;

/* The roles of a schema's fields, for fraud_engine_schema_count / fraud_engine_schema_name. */
typedef enum fraud_field_role {
    FRAUD_ROLE_ENTITY = 0,
    FRAUD_ROLE_NUMERIC = 1,
    FRAUD_ROLE_CATEGORICAL = 2,
    FRAUD_ROLE_EVENT_ID = 3  /* the event id: one field, named "event_id" */
} fraud_field_role;

/*
 * The legacy fixed transaction: the `payments` preset's event (entities card, device, merchant,
 * ip; categoricals country, mcc; no numeric fields). The fraud_txn functions below convert to
 * fraud_event and run the same path; they refuse an engine whose schema is not that preset.
 */
/* Entities of the payments preset; the order of fraud_txn.entity_id. */
typedef enum fraud_entity {
    FRAUD_ENTITY_CARD = 0,
    FRAUD_ENTITY_DEVICE = 1,
    FRAUD_ENTITY_MERCHANT = 2,
    FRAUD_ENTITY_IP = 3,
    FRAUD_ENTITY_COUNT = 4
} fraud_entity;

/* An entity id meaning "not present" (allowed for device and IP only). */
#define FRAUD_ENTITY_ABSENT (-1)

/*
 * One payments-preset transaction, 64 bytes, no padding. Rules: those of fraud_event (amount finite
 * and >= 0; card and merchant ids >= 0; device and IP ids >= 0 or FRAUD_ENTITY_ABSENT; country and
 * mcc >= 0 or FRAUD_CODE_MISSING). An entity never seen before has an empty history (cold start).
 */
typedef struct fraud_txn {
    int64_t txn_id;                        /* unique within the store */
    int64_t timestamp_ms;                  /* unix epoch, milliseconds */
    double amount;
    int64_t entity_id[FRAUD_ENTITY_COUNT]; /* indexed by fraud_entity */
    int32_t country;
    int32_t mcc;
} fraud_txn;

/* Options for fraud_engine_open(). Get defaults from fraud_engine_default_params(), then change. */
typedef struct fraud_engine_params {
    uint32_t struct_size; /* sizeof(fraud_engine_params): lets fields be appended compatibly */
    uint32_t reserved;
    int64_t expected_transactions; /* capacity hint for the store; 0 = none */
    /* GNN bundles: the backend to run ("aoti", "torchscript"); NULL or "" = the first of the
     * bundle's backends, default first, that loads on this machine. Copied; not kept. */
    const char* gnn_backend;
    /* Where backend plugins (libfraud_torch.so...) are; NULL = next to this library. Copied. */
    const char* plugin_dir;
    /* Durable state: a directory for the store's snapshot and its append-only log; NULL = memory
     * only. On open, the snapshot and then the log are replayed; every acknowledged ingest is in
     * the log before the call returns (see fsync_every_ingest). The snapshot names the log that
     * follows it: a log deleted or replaced since (another or an older one) fails the open with
     * FRAUD_STATUS_IO_ERROR naming the gap, as does any damaged record; a record cut short by a
     * crash (a torn tail) is dropped. Copied. */
    const char* state_dir;
    /* 1: fsync the log before an ingest call returns (survives power loss); 0: write() only
     * (survives a crash of the process, not of the machine). */
    int32_t fsync_every_ingest;
    /* Bounded memory: history older than watermark - retention_ms is evicted (0 = keep all), and
     * each entity keeps at most max_history_per_entity transactions (0 = no limit). */
    uint32_t max_history_per_entity;
    int64_t retention_ms;
    /* Bundle signatures: a PEM ed25519 public key file; when set, manifest.json must carry a valid
     * signature (manifest.json.sig) by its private key, or the bundle is refused. Copied. */
    const char* trusted_public_key_path;
    /* Reasons (fraud_engine_explain_events): memory the precomputed TreeSHAP tables of the fast
     * path may take, built when the bundle loads; 0 = 256 MiB. A bundle needing more (very many
     * or very deep trees) is explained by the recursive algorithm instead: the same values, about
     * 15x slower; the log says which. */
    uint64_t explain_table_bytes;
    /* Refuse to store an event whose time_ms is more than this many ms ahead of the later of the
     * store's watermark and the wall clock (FRAUD_STATUS_INVALID_TRANSACTION naming both): one
     * far-future event (microseconds sent as milliseconds) would otherwise make every later real
     * event out of order, for ever in a durable store. 0 = no bound. */
    int64_t max_ahead_ms;
    /* state_dir: 1 lets the open go on past a damaged LAST record of the log (every byte present,
     * checksum wrong: a bit flip or an overwrite, not a crash; or a power loss that reached the
     * disk with the file's size but not all its data): its bytes are moved to
     * state_dir/store.log.quarantine-<unix ms>, the log is cut there, and a WARN line says so; the
     * transactions in it are not restored. 0: the open fails with FRAUD_STATUS_IO_ERROR naming
     * the file, offset and sequence. A damaged record with valid ones after it fails either way. */
    int32_t quarantine_corrupt_log_tail;
    /* Drift (fraud_engine_drift): the window of scored events the monitor compares with the
     * bundle's reference, 1000 .. 2^32; 0 = 10000. Read at open, at each swap and set_challenger
     * (whose params leaving it 0 keep the open's value). */
    uint64_t drift_window_events;
} fraud_engine_params;

typedef enum fraud_log_level {
    FRAUD_LOG_DEBUG = 0,
    FRAUD_LOG_INFO = 1,
    FRAUD_LOG_WARN = 2,
    FRAUD_LOG_ERROR = 3
} fraud_log_level;

/* A log sink. message is valid during the call only. Called from whichever thread logs; must not
 * call back into libfraud. */
typedef void (*fraud_log_fn)(fraud_log_level level, const char* message, void* user_data);

/* Counters a switch can read. Get with fraud_engine_get_stats(); set struct_size first. */
typedef struct fraud_engine_stats {
    uint32_t struct_size;
    uint32_t reserved;
    uint64_t scored;                /* transactions scored */
    uint64_t ingested;              /* transactions stored */
    uint64_t rejected;              /* transactions refused (all reasons) */
    uint64_t rejected_by_status[16]; /* indexed by fraud_status */
    uint64_t bundle_swaps;
    uint64_t bundle_swap_failures;
    uint64_t store_transactions;     /* in the store now (after eviction) */
    uint64_t store_bytes;            /* approximate memory held by the store */
    uint64_t evicted;                /* transactions evicted by retention */
    double latency_p50_us;           /* of recent scoring calls, per transaction */
    double latency_p99_us;
    char gnn_backend[32];            /* backend in use, "none" for a tree-only bundle */
    uint64_t labels_applied;         /* labels stored (repeats of a stored label not counted) */
    uint64_t labels_rejected;        /* labels refused (all reasons; by status in rejected_by_status) */
    uint64_t store_labels;           /* labelled events in the store now */
    /* The shadow challenger (fraud_engine_set_challenger), since it was set; all 0 without one. */
    int32_t challenger_set;          /* 1 while a challenger is set */
    int32_t reserved2;
    uint64_t challenger_scored;      /* events the challenger scored */
    uint64_t challenger_decision_disagreements; /* of those, how many it decided otherwise */
    double challenger_score_abs_diff_sum;       /* sum of |champion score - challenger score| */
    double challenger_score_abs_diff_mean;      /* that sum / challenger_scored */
    double challenger_latency_p50_us;           /* the challenger's share of recent calls, per event */
    double challenger_latency_p99_us;
    uint64_t challenger_failures;    /* calls in which the challenger failed (its scores NaN; logged) */
    uint64_t decision_records;       /* records handed to the decision callback and log */
    uint64_t decision_log_errors;    /* decide calls whose records could not be written (logged) */
    /* Drift of the serving bundle's window (fraud_engine_drift); without a drift reference: 0 events,
     * NaN PSIs and feature -1. NaN PSIs too while the window is empty. */
    uint64_t drift_window_events;    /* scored events in the window now */
    double drift_score_psi;          /* PSI of the served score */
    double drift_max_feature_psi;    /* the largest feature PSI */
    int32_t drift_max_feature;       /* its feature (index in the feature order); -1 if none */
    int32_t drift_reserved;
} fraud_engine_stats;

typedef struct fraud_engine fraud_engine;

/* Message for the last failed call on this thread ("" if none). Valid until the next call on
 * this thread; the library owns it. */
FRAUD_API const char* fraud_last_error(void);

/* Static name of a status, e.g. "FRAUD_STATUS_BUNDLE_CHECKSUM"; "FRAUD_STATUS_UNKNOWN" otherwise. */
FRAUD_API const char* fraud_status_name(fraud_status status);

/* Process-wide log sink (the library never prints): messages at min_level and above go to fn;
 * fn NULL switches logging off (the default). Thread-safe; takes effect for later messages. */
FRAUD_API void fraud_set_log_callback(fraud_log_fn fn, void* user_data, fraud_log_level min_level);

/* Library version, "MAJOR.MINOR.PATCH"; static storage. */
FRAUD_API const char* fraud_version(void);

FRAUD_API fraud_engine_params fraud_engine_default_params(void);

/* The stable id of a string (export/SCHEMA.md "Ids"): 64-bit FNV-1a of the len bytes, the
 * splitmix64 finaliser, the top bit cleared (so >= 0). bytes may be NULL when len is 0. Pure. */
FRAUD_API int64_t fraud_hash_id(const char* bytes, size_t len);

/*
 * Open the bundle directory at bundle_dir: checks the manifest's format version and every
 * artifact's size and sha256 before loading anything, then loads the compiled trees (and the GNN
 * and TreeSHAP tables it has), each from a sealed private copy whose sha256 is checked again
 * (BUNDLE_CHECKSUM "altered after verification" if a file changed meanwhile), and starts an
 * empty temporal store. params may be NULL (defaults). On success *out owns a new engine
 * (free with fraud_engine_free); on failure *out is NULL.
 */
FRAUD_API fraud_status fraud_engine_open(const char* bundle_dir, const fraud_engine_params* params,
                                         fraud_engine** out);

/* Frees the engine and everything it holds. NULL does nothing. No call on it may be running. */
FRAUD_API void fraud_engine_free(fraud_engine* engine);

/* Number of features the bundle's model reads (the length of a row from fraud_engine_features). */
FRAUD_API fraud_status fraud_engine_num_features(const fraud_engine* engine, size_t* out);

/* How many fields of a role the engine's schema declares (entity types, numeric, categorical):
 * the lengths of fraud_event's arrays. The schema never changes for an open engine (a swap to a
 * bundle of another schema is refused). */
FRAUD_API fraud_status fraud_engine_schema_count(const fraud_engine* engine, fraud_field_role role,
                                                 size_t* out);

/* Name of field i of a role ("card", "terminal", "channel"...); owned by the engine, valid while
 * it is open. */
FRAUD_API fraud_status fraud_engine_schema_name(const fraud_engine* engine, fraud_field_role role,
                                                size_t i, const char** out);

/* *out = 1 when field i of a role holds strings in the user's data (ids or codes the compiler
 * mapped with fraud_hash_id: a switch maps its strings the same way), 0 for integers (and for
 * numeric fields). */
FRAUD_API fraud_status fraud_engine_schema_string_ids(const fraud_engine* engine, fraud_field_role role,
                                                      size_t i, int32_t* out);

/* 1 if the schema has an amount (fraud_event.amount is read), else 0. */
FRAUD_API fraud_status fraud_engine_schema_has_amount(const fraud_engine* engine, int32_t* out);

/* Name of feature i in the model's feature order; owned by the engine, valid until the next
 * fraud_engine_swap_bundle. */
FRAUD_API fraud_status fraud_engine_feature_name(const fraud_engine* engine, size_t i,
                                                 const char** out);

/* The GNN backend in use ("native", "aoti", "torchscript"...), or "none" for a tree-only bundle;
 * owned by the engine, valid until the next fraud_engine_swap_bundle. */
FRAUD_API fraud_status fraud_engine_gnn_backend(const fraud_engine* engine, const char** out);

/* The bundle's decision threshold on the score (score >= threshold: flag); on the calibrated
 * scale when the bundle carries a calibrator. */
FRAUD_API fraud_status fraud_engine_threshold(const fraud_engine* engine, double* out);

/*
 * Append n transactions to the store, in order. The batch is all or nothing: every transaction is
 * validated (fields, time order against the watermark and within the batch, duplicate ids) before
 * any is stored; on failure the store is exactly as it was and the message names the batch index,
 * the txn_id and the field. Exclusive (see Threading).
 */
FRAUD_API fraud_status fraud_engine_ingest(fraud_engine* engine, const fraud_txn* txns, size_t n);

/*
 * Score n transactions against the store as it stands, without storing them: scores_out[i] is the
 * probability of fraud of txns[i] (calibrated when the bundle carries a calibrator, else the
 * trees' output), from features that see only stored transactions strictly
 * earlier than txns[i].timestamp_ms. All-or-nothing validation of fields as for ingest (time order
 * and duplicates are not checked, nothing is stored). Safe from many threads at once.
 */
FRAUD_API fraud_status fraud_engine_score(const fraud_engine* engine, const fraud_txn* txns,
                                          size_t n, float* scores_out);

/*
 * The serving call: for each transaction in order, score it, then store it; the same scores as
 * calling fraud_engine_score and fraud_engine_ingest one transaction at a time. Validated as a
 * whole first, as fraud_engine_ingest. Exclusive.
 */
FRAUD_API fraud_status fraud_engine_score_and_ingest(fraud_engine* engine, const fraud_txn* txns,
                                                     size_t n, float* scores_out);

/*
 * The model's input rows for n transactions, as fraud_engine_score would compute them (NaN marks a
 * missing value): features_out holds n * num_features floats, row-major. Safe from many threads.
 */
FRAUD_API fraud_status fraud_engine_features(const fraud_engine* engine, const fraud_txn* txns,
                                             size_t n, float* features_out);

/*
 * The model alone on n rows the caller computed (n * num_features floats, row-major, in the
 * feature order; NaN = missing): for a caller with its own features, and to time the trees.
 * NaN is the only missing marker (a training sentinel such as -999 is scored as a value); +/-inf
 * is refused, all rows checked before any is scored: FRAUD_STATUS_INVALID_TRANSACTION naming the
 * row and the feature (index and name), nothing written to scores_out.
 * The bundle's calibration, if any, is applied as for fraud_engine_score.
 * Safe from many threads.
 */
FRAUD_API fraud_status fraud_engine_score_features(const fraud_engine* engine, const float* rows,
                                                   size_t n, float* scores_out);

/*
 * Hot swap: load and verify the bundle at bundle_dir off the hot path, then replace the engine's
 * model atomically. Scores running during the swap finish on the old model; later ones use the
 * new. The store is kept. On any failure the old model keeps serving and the status says why.
 * params: as for fraud_engine_open (only the model-related fields are used); NULL = defaults.
 * Safe to call while other threads score and ingest.
 */
FRAUD_API fraud_status fraud_engine_swap_bundle(fraud_engine* engine, const char* bundle_dir,
                                                const fraud_engine_params* params);

/* Writes a snapshot of the store to the engine's state_dir and starts a new, empty log that it
 * names (FRAUD_STATUS_INVALID_ARGUMENT without a state_dir); a crash at any point loses nothing.
 * Should an fsync or a rename fail after the snapshot is in place (FRAUD_STATUS_IO_ERROR),
 * ingests are refused until the engine is opened again, which finishes the switch to the new log.
 * Exclusive, like ingest, for its whole length: every score and ingest waits for it (about 6 s for
 * 9M events on a 2-core VM, bench/README.md "Fast at every size"). A maintenance call: run it
 * off-peak or on a replica. */
FRAUD_API fraud_status fraud_engine_snapshot(fraud_engine* engine);

/* Fills *out (out->struct_size must be set). Safe from many threads. */
FRAUD_API fraud_status fraud_engine_get_stats(const fraud_engine* engine, fraud_engine_stats* out);

/*
 * The same functions for events of the engine's declared schema (fraud_event). Same rules,
 * threading and all-or-nothing validation as their fraud_txn versions above, which are these
 * functions applied to the payments preset's layout.
 */
FRAUD_API fraud_status fraud_engine_ingest_events(fraud_engine* engine, const fraud_event* events,
                                                  size_t n);
FRAUD_API fraud_status fraud_engine_score_events(const fraud_engine* engine,
                                                 const fraud_event* events, size_t n,
                                                 float* scores_out);
FRAUD_API fraud_status fraud_engine_score_and_ingest_events(fraud_engine* engine,
                                                            const fraud_event* events, size_t n,
                                                            float* scores_out);
FRAUD_API fraud_status fraud_engine_features_events(const fraud_engine* engine,
                                                    const fraud_event* events, size_t n,
                                                    float* features_out);

/*
 * Apply n labels to stored events, all or nothing: FRAUD_STATUS_UNKNOWN_EVENT (id not in the
 * store, or evicted), FRAUD_STATUS_INVALID_LABEL (label not 0/1, reserved not 0, label time before
 * the event's), FRAUD_STATUS_LABEL_CONFLICT (differs from a stored label; the same label again is
 * a no-op keeping the first label time); the message names the batch index and the event id.
 * Label-aware features of an event at time t count a label only when label_time_ms < t. Logged
 * like an ingest (state_dir). Exclusive (see Threading).
 */
FRAUD_API fraud_status fraud_engine_label(fraud_engine* engine, const fraud_label* labels, size_t n);

/*
 * Reasons (export/BUNDLE.md "explanation"). A bundle compiled with explanation data carries exact
 * TreeSHAP tables of its trees and maps every feature to a reason family (velocity, amount against
 * normal, new counterparty, entity risk from labels, graph neighbourhood...), each with a stable
 * code and a short text. A reason is a family whose features, together, raised this event's score.
 *
 * Contributions are in the trees' margin (log-odds) BEFORE the bundle's calibration: a feature's
 * contributions plus the expected value (the margin of the average training row) sum to the margin.
 * Calibration is monotone, so it never reorders reasons (Platt: calibrated log-odds = a * margin + b).
 */
typedef struct fraud_reason {
    int32_t code;         /* the family's stable code (fraud_engine_reason_family) */
    int32_t family;       /* the family's index in the bundle that served: 0 .. reason_count - 1 */
    double contribution;  /* the family's features' summed contribution to the margin (> 0) */
    int32_t feature;      /* the family's most contributing feature (an index of the feature order) */
    float value;          /* that feature's value for this event (NaN = missing) */
} fraud_reason;

/* Number of reason families of the bundle serving now; 0 when it has no explanation data. */
FRAUD_API fraud_status fraud_engine_reason_count(const fraud_engine* engine, size_t* out);

/* Family i of the bundle serving now: its stable code, name ("velocity") and text ("Unusual number
 * of transactions in a short time"); the strings are owned by the engine and valid until the next
 * fraud_engine_swap_bundle (after a swap, look families up by code). Any out may be NULL. */
FRAUD_API fraud_status fraud_engine_reason_family(const fraud_engine* engine, size_t i, int32_t* code_out,
                                                  const char** name_out, const char** text_out);

/*
 * fraud_engine_score_events, and for each event whose score is >= min_score, its reasons: the up
 * to k families with the largest positive summed contribution, largest first, in
 * reasons_out[i * k .. i * k + n_reasons_out[i]) (n_reasons_out[i] = 0 below min_score: pass 0 to
 * explain every event). Score and reasons come from the same feature row: the reasons explain the
 * score returned. k must be 1..fraud_engine_reason_count (FRAUD_STATUS_INVALID_ARGUMENT otherwise);
 * a bundle without explanation data gives FRAUD_STATUS_NO_EXPLANATION and writes nothing (score
 * with fraud_engine_score_events instead). Caller's buffers: scores_out[n], reasons_out[n * k],
 * n_reasons_out[n]. Allocates nothing after a thread's first calls; safe from many threads.
 * Cost: exact TreeSHAP over every tree (bench/explain.py), so a min_score at the alert
 * threshold (fraud_engine_threshold) keeps it off most events.
 */
FRAUD_API fraud_status fraud_engine_explain_events(const fraud_engine* engine, const fraud_event* events,
                                                   size_t n, size_t k, float min_score, float* scores_out,
                                                   fraud_reason* reasons_out, size_t* n_reasons_out);

/* The serving call with reasons: fraud_engine_score_and_ingest_events, each event explained as
 * fraud_engine_explain_events would (from the score it was served). Same checks, then nothing is
 * scored or stored when they fail. Exclusive (see Threading). */
FRAUD_API fraud_status fraud_engine_score_and_ingest_explain_events(fraud_engine* engine,
                                                                    const fraud_event* events, size_t n,
                                                                    size_t k, float min_score, float* scores_out,
                                                                    fraud_reason* reasons_out,
                                                                    size_t* n_reasons_out);

/* Per-feature contributions of n caller rows (as fraud_engine_score_features takes them, +/-inf
 * refused as there): contributions_out[i * (num_features + 1) + j] for feature j, the last of each
 * row the expected value; each row sums to the trees' margin. FRAUD_STATUS_NO_EXPLANATION without
 * explanation data. Safe from many threads. */
FRAUD_API fraud_status fraud_engine_contributions(const fraud_engine* engine, const float* rows, size_t n,
                                                  double* contributions_out);

/* One sampled neighbour's share of a GNN bundle's score (fraud_engine_explain_neighbours). */
typedef struct fraud_neighbour {
    int64_t event_id;    /* the earlier stored event that was sampled */
    int32_t entity_type; /* through which of the scored event's entities (schema order) */
    int32_t slot;        /* its place among that entity's sampled events (0 = the first sampled) */
    double delta;        /* the trees' log-odds with it minus without it (> 0: it raised the score) */
} fraud_neighbour;

/*
 * Which sampled neighbours mattered (GNN bundles): the event's neighbourhood is sampled as for a
 * score, then each sampled earlier event is left out once (its mask slot zeroed) and the GNN and
 * trees rerun; the up to m neighbours whose absence lowers the trees' log-odds most, largest first,
 * go to out[0 .. *n_out) (fewer when fewer were sampled; a negative delta lowered the score).
 * Costs one GNN and one tree pass per sampled neighbour (fanout x entity types): an analyst's
 * call, not a hot-path one. Nothing is stored. FRAUD_STATUS_NO_EXPLANATION for a bundle without a
 * GNN; m must be >= 1. Safe from many threads.
 */
FRAUD_API fraud_status fraud_engine_explain_neighbours(const fraud_engine* engine, const fraud_event* event,
                                                       size_t m, fraud_neighbour* out, size_t* n_out);

/*
 * Decisions (export/BUNDLE.md "decision"). After the model, the bundle's decision policy turns a
 * score into an action: score bands (allow below review_from, review from it, decline from
 * decline_from; without a `decision` section, review from the bundle's threshold and no decline
 * band) and, when the bundle has them, rules over the event's features and fields, each with a
 * stable code, an action and a mode (shadow rules are recorded in rule_hits, never change the
 * decision). The decision is the most severe of the band and the active rules that held.
 */
typedef enum fraud_decision {
    FRAUD_DECISION_ALLOW = 0,
    FRAUD_DECISION_REVIEW = 1,
    FRAUD_DECISION_DECLINE = 2
} fraud_decision;

/* One event's outcome (the decide functions), 32 bytes. With a shadow challenger set
 * (fraud_engine_set_challenger) its fields are the challenger's on the same event and store state;
 * it never changes the champion's. */
typedef struct fraud_outcome {
    float score;                   /* the champion's score, the value fraud_engine_score_events gives */
    float challenger_score;        /* NaN without a challenger (or when it failed) */
    int32_t decision;              /* fraud_decision of the champion's policy */
    int32_t challenger_decision;   /* the challenger's policy's on its score; -1 without a challenger */
    uint64_t rule_hits;            /* bit i: the champion's rule i held (fraud_engine_rule) */
    uint64_t challenger_rule_hits; /* the same for the challenger's rules; 0 without */
} fraud_outcome;

/* The serving bundle's score bands, on the served (calibrated) scale: review from *review_from_out,
 * decline from *decline_from_out; +inf means no such band. Either out may be NULL. */
FRAUD_API fraud_status fraud_engine_decision_bands(const fraud_engine* engine, double* review_from_out,
                                                   double* decline_from_out);

/* Number of rules of the serving bundle's decision policy (at most 64; 0 without rules). */
FRAUD_API fraud_status fraud_engine_rule_count(const fraud_engine* engine, size_t* out);

/* Rule i of the serving bundle: its stable code, name, condition as written (when), action
 * (fraud_decision) and shadow flag (1: recorded only). The strings are owned by the engine and
 * valid until the next fraud_engine_swap_bundle or fraud_engine_promote_challenger. Any out may
 * be NULL. */
FRAUD_API fraud_status fraud_engine_rule(const fraud_engine* engine, size_t i, int32_t* code_out,
                                         const char** name_out, const char** when_out, int32_t* action_out,
                                         int32_t* shadow_out);

/*
 * fraud_engine_score_events, then the decision policy on each event's score and the row it came
 * from (no second feature computation): outcomes_out[i] for events[i]. k = 0: no reasons
 * (reasons_out and n_reasons_out may be NULL); k >= 1: reasons as fraud_engine_explain_events
 * gives them (same k and min_score rules, same buffers). Same validation and all-or-nothing rule
 * as fraud_engine_score_events; nothing is stored. Safe from many threads. With a decision
 * callback or log set, the call's records go there before it returns.
 */
FRAUD_API fraud_status fraud_engine_decide_events(const fraud_engine* engine, const fraud_event* events, size_t n,
                                                  size_t k, float min_score, fraud_outcome* outcomes_out,
                                                  fraud_reason* reasons_out, size_t* n_reasons_out);

/* The serving call with decisions: fraud_engine_score_and_ingest_events (each event scored, then
 * stored, in order), each event decided as fraud_engine_decide_events would. Exclusive (see
 * Threading); the decision records go to the callback and log after the engine is released. */
FRAUD_API fraud_status fraud_engine_score_and_ingest_decide_events(fraud_engine* engine, const fraud_event* events,
                                                                   size_t n, size_t k, float min_score,
                                                                   fraud_outcome* outcomes_out,
                                                                   fraud_reason* reasons_out,
                                                                   size_t* n_reasons_out);

/*
 * Shadow challenger: a second bundle scored on every event beside the serving one (the champion),
 * on the same store state (in score_and_ingest, before the event is stored and after the batch's
 * earlier events are), to compare a candidate model on live traffic. The champion's scores and
 * decisions are unchanged; the challenger's go into fraud_outcome, the decision records and the
 * challenger_* counters of fraud_engine_stats. It costs about a second scoring pass.
 *
 * Set: bundle_dir is loaded and verified off the hot path, as fraud_engine_swap_bundle does, and
 * must serve from the engine's store (its schema: FRAUD_STATUS_BUNDLE_INVALID naming the difference
 * otherwise); on any failure the engine is as it was. NULL or "" clears it. params: as for
 * fraud_engine_swap_bundle. A swap of the champion keeps the challenger. Safe to call while other
 * threads score and ingest; a call in flight finishes with the pair it started with.
 */
FRAUD_API fraud_status fraud_engine_set_challenger(fraud_engine* engine, const char* bundle_dir,
                                                   const fraud_engine_params* params);

/* The challenger becomes the champion, atomically and without a reload (a hot swap: calls in
 * flight finish on the old pair; counted in bundle_swaps); afterwards there is no challenger.
 * FRAUD_STATUS_INVALID_ARGUMENT when none is set. Safe to call while other threads score. */
FRAUD_API fraud_status fraud_engine_promote_challenger(fraud_engine* engine);

/* Lower-case hex SHA-256 of the champion's manifest.json bytes, and of the challenger's (NULL
 * without one): which bundles decided. Owned by the engine, valid until the next swap,
 * fraud_engine_set_challenger or fraud_engine_promote_challenger. challenger_out may be NULL. */
FRAUD_API fraud_status fraud_engine_bundle_sha256(const fraud_engine* engine, const char** champion_out,
                                                  const char** challenger_out);

/* What the decide functions decided for one event: an audit record. Fixed layout for this
 * FRAUD_API_VERSION. */
typedef struct fraud_decision_record {
    int64_t event_id;
    int64_t time_ms;                 /* the event's */
    int64_t decided_at_ms;           /* the wall clock (unix ms) when the call decided */
    const char* bundle_sha256;       /* the champion's manifest.json SHA-256 (fraud_engine_bundle_sha256) */
    const char* challenger_sha256;   /* NULL without a challenger */
    fraud_outcome outcome;
    const fraud_reason* reasons;     /* the event's reasons (k >= 1), NULL otherwise */
    size_t n_reasons;
    double latency_us;               /* this event's share of the call's time (the call / n) */
} fraud_decision_record;

/* Receives each decide call's records: records[0 .. n). Everything they point to is valid during
 * the call only. */
typedef void (*fraud_decision_fn)(const fraud_decision_record* records, size_t n, void* user_data);

/*
 * The decide functions call fn once per call with that call's n records (n >= 1), on the calling
 * thread, after the engine's lock is released (fn may take its own locks, or Python's GIL), before
 * the call returns. fn must not call this engine's decide functions (refused with
 * FRAUD_STATUS_INVALID_ARGUMENT) nor its exclusive functions (ingest, label, swaps: they would
 * store or swap before this call's caller has its results). Keep it short: the caller waits.
 * fn NULL removes it. The score and explain functions make no records. Safe to call while other
 * threads score: a call in flight uses the callback it started with.
 */
FRAUD_API fraud_status fraud_engine_set_decision_callback(fraud_engine* engine, fraud_decision_fn fn,
                                                          void* user_data);

/*
 * A built-in sink for the same records: the file at path (created 0600 if absent) gets one JSON
 * object a line per decided event, appended (O_APPEND; one write() per call, so records of
 * concurrent calls never interleave): event_id, time_ms, decided_at_ms, bundle_sha256, score,
 * decision ("allow", "review", "decline"), rule_hits (the codes of the rules that held), reasons
 * ([{code, name, contribution, feature, value}]; value null when missing), latency_us and, with a
 * challenger, challenger_sha256, challenger_score, challenger_decision, challenger_rule_hits.
 * Concurrent calls' batches land in the order the calls finish (which may differ from the order
 * they were stored in; time_ms orders events). Scores are written as the shortest decimal that
 * reads back as the same float. A write that fails never fails the decide call: it is logged and
 * counted (decision_log_errors). NULL or "" closes the file. FRAUD_STATUS_IO_ERROR when it cannot
 * be opened (the previous file stays). Safe to call while other threads score.
 */
FRAUD_API fraud_status fraud_engine_set_decision_log(fraud_engine* engine, const char* path);

/*
 * Drift (export/BUNDLE.md "drift"). A bundle compiled with a drift reference carries, per model
 * feature and for the served score, bin edges (quantiles of the training rows, plus a bin for
 * missing values) and the training proportion of each bin. The engine bins every event it scores
 * (fraud_engine_score*, _score_and_ingest*, _explain_events...; not fraud_engine_score_features'
 * caller rows) into a window of the last drift_window_events events, kept as 10 rotating slots
 * (so the window holds 90% to 100% of that; a call's block of up to 64 events goes whole to the
 * slot of its first event), and reports the population stability index of the window against the
 * reference:
 *   PSI = sum over bins (a_i - r_i) ln(a_i / r_i), a_i the window's proportion, r_i the reference's,
 *   both floored at 1e-4 (empty bins); the missing bin included.
 * Reading: < 0.1 stable, 0.1 - 0.25 moderate shift, > 0.25 significant shift. A hot swap (or a
 * challenger's promotion) starts a fresh window against the new champion's reference; a shadow
 * challenger's scores are not counted. Counting is lock-free and cheap (a few atomic
 * adds per event); a read racing a score may miss part of that call's events.
 */
typedef struct fraud_drift {
    int32_t feature;        /* index in the feature order; -1 = the served score */
    int32_t reserved;
    double psi;             /* NaN while the window is empty */
    uint64_t window_events; /* scored events in the window */
} fraud_drift;

/* The serving bundle's drift: out[0] the score (feature -1), out[1 + j] feature j; writes
 * min(capacity, num_features + 1) entries and their count to *n_out (out may be NULL when capacity
 * is 0). FRAUD_STATUS_NO_DRIFT_REFERENCE for a bundle without a drift reference (*n_out = 0).
 * Allocates; safe from many threads, alongside scoring. */
FRAUD_API fraud_status fraud_engine_drift(const fraud_engine* engine, fraud_drift* out, size_t capacity,
                                          size_t* n_out);

/* Number of transactions in the store, and its watermark (latest timestamp; INT64_MIN if empty). */
FRAUD_API fraud_status fraud_engine_store_size(const fraud_engine* engine, uint64_t* n_out,
                                               int64_t* watermark_ms_out);

#ifdef __cplusplus
}
#endif

#endif /* LIBFRAUD_FRAUD_H */
