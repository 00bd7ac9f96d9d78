"""The `libfraud` command: schema infer, generate, train, compile, score, drift, label, demo, bench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _generate(args) -> int:
    if args.kind == "cards":
        from .data.generate_cards import write_card_transactions
        path = write_card_transactions(args.out, args.n, seed=args.seed,
                                       fraud_rate=0.008 if args.fraud_rate is None else args.fraud_rate,
                                       n_customers=args.customers, n_terminals=args.terminals,
                                       start=args.start or "2026-01-01", progress=not args.quiet)
    else:
        from .data import write_transactions
        path = write_transactions(args.out, args.n, seed=args.seed,
                                  fraud_rate=0.01 if args.fraud_rate is None else args.fraud_rate,
                                  progress=not args.quiet)
    print(f"wrote {args.n} {args.kind} transactions to {path}")
    return 0


def _declared(args, columns, config=None):
    """(schema, spec) from --schema (one TOML with both, or with --features a second file), the
    --preset, or the run config's schema/features/preset (payments when none is given)."""
    from .data.declared import load_config, load_preset, load_schema, load_spec
    schema_file = args.schema or (config.file("schema") if config else None)
    features_file = args.features or (config.file("features") if config else None)
    if schema_file:
        if features_file:
            schema = load_schema(schema_file)
            return schema, load_spec(features_file, schema)
        return load_config(schema_file)
    return load_preset(args.preset or (config.top.get("preset") if config else None) or "payments", columns)


def _read(args):
    """read_table with the input flags (--encoding, --max-cell-chars): every input file goes through it."""
    from .data import read_table
    return lambda path: read_table(path, encoding=args.encoding, max_cell_chars=args.max_cell_chars)


def _schema_infer(args) -> int:
    from .data.declared import infer_schema
    text = infer_schema(args.data, encoding=args.encoding, max_cell_chars=args.max_cell_chars)
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.force:
            raise FileExistsError(f"{out} exists (use --force to overwrite)")
        out.write_text(text, encoding="utf-8")
        print(f"wrote a draft schema and feature spec to {out}: check every role, then "
              f"`libfraud train {args.data} --schema {out} --out model/`", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _pairs(values, flag: str) -> dict:
    out = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: write KEY=VALUE")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _overlay(table: dict, args, names: dict) -> dict:
    """The config table with every flag the user gave on top (flags win)."""
    out = dict(table)
    for attr, key in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    return out


def _known_keys(table: dict, known: tuple, source: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ValueError(f"{source}: unknown key {unknown[0]!r}; known: {', '.join(known)}")


def _train(args) -> int:
    import json

    from .config_values import dataclass_from_mapping as typed

    from .models.gbdt import GbdtParams
    from .periods import PeriodSpec
    from .run_config import load_run_config
    from .train import Decision, Evaluation, SamplerSettings, train
    from .training_report import write_training_report
    config = load_run_config(args.config)
    read_table = _read(args)
    transactions = read_table(args.data)
    history_file = args.history or config.file("history")
    history = read_table(history_file) if history_file else None
    schema, spec = _declared(args, transactions.columns, config)
    out = Path(args.out)

    periods = PeriodSpec.from_mapping(_overlay(config.table("periods"), args, {
        "train_start": "train_start", "train_end": "train_end", "valid_start": "valid_start",
        "valid_end": "valid_end", "valid_fraction": "valid_fraction", "test_start": "test_start",
        "test_end": "test_end", "label_delay": "label_delay", "prequential": "prequential_folds",
        "unknown_labels": "unknown_labels"}))
    xgb_table = _overlay(config.table("xgboost"), args, {"trees": "n_estimators", "depth": "max_depth",
                                                        "threads": "nthread"})
    xgb_table.update(_pairs(args.xgb, "--xgb"))
    params = GbdtParams.from_mapping(xgb_table, "--xgb / [xgboost]")
    gnn_table = config.table("gnn")
    gnn_enabled = bool(gnn_table.pop("enabled", True)) and not args.no_gnn
    if args.gnn_epochs is not None:
        gnn_table["epochs"] = args.gnn_epochs
    gnn_table.update(_pairs(args.gnn, "--gnn"))
    gnn_params = None
    if gnn_enabled:
        from .train_gnn import GnnParams
        gnn_params = GnnParams.from_mapping(gnn_table, "--gnn / [gnn]")
    sampler_table = _overlay(config.table("sampler"), args, {"fanout": "fanout", "strategy": "strategy"})
    if args.graph_field:
        sampler_table["graph_fields"] = args.graph_field
    sampler_table["graph_fields"] = tuple(sampler_table.get("graph_fields", ()))
    sampler = typed(SamplerSettings, sampler_table, "[sampler] / --fanout, --strategy, --graph-field")
    decision = typed(Decision, _overlay(config.table("decision"), args, {"calibration": "calibration",
                                                                   "threshold": "threshold"}),
                     "[decision] / --calibration, --threshold")
    evaluation = typed(Evaluation, _overlay(config.table("evaluation"), args, {
        "k": "k", "k_entity": "entity", "drop_known_compromised": "drop_known_compromised"}),
                       "[evaluation] / --k, --k-entity, --drop-known-compromised")
    tuning = None
    tuning_table = _overlay(config.table("tuning"), args, {"tune_trials": "trials", "tune_minutes": "minutes",
                                                          "tune_storage": "storage", "tune_gnn": "gnn"})
    tuning_table["folds"] = max(1, periods.prequential_folds)
    if tuning_table.get("trials") or tuning_table.get("minutes"):
        from .tune_train import Tuning
        tuning_table.setdefault("storage", str(out / "tuning.db"))
        if "storage" in config.table("tuning") and config.path and args.tune_storage is None:
            tuning_table["storage"] = str(config.path.parent / config.table("tuning")["storage"])
        tuning = typed(Tuning, tuning_table, "[tuning] / --tune-*")
    tracking = _overlay(config.table("tracking"), args, {"mlflow_uri": "uri", "experiment": "experiment"})
    _known_keys(tracking, ("uri", "experiment", "enabled"), "[tracking]")
    track = bool(tracking.pop("enabled", True)) and not args.no_track
    model_table = _overlay(config.table("model"), args, {"name": "name", "version": "version"})
    _known_keys(model_table, ("name", "version"), "[model]")
    uri = None
    if track:  # before any training: an unreachable server fails now, with nothing written
        from .tracking import check_reachable, resolve_uri
        uri = resolve_uri(tracking.get("uri"), out.absolute().parent)
        check_reachable(uri)

    inputs = [args.data] + ([history_file] if history_file else [])
    result = train(transactions, schema=schema, spec=spec, params=params, periods=periods,
                   decision=decision, evaluation=evaluation, gnn_params=gnn_params, sampler=sampler,
                   tuning=tuning, name=model_table.get("name") or out.absolute().name,
                   version=model_table.get("version"), inputs=[str(p) for p in inputs], history=history,
                   progress=not args.quiet)
    result.save(out)
    if tuning is not None:
        from .tune import write_best
        write_best(result.tuning, out)
    report = write_training_report(result, out)
    if track:
        from .tracking import log_run
        run_id = log_run(uri, experiment=tracking.get("experiment") or "libfraud",
                         run_name=f"{result.provenance['name']}-{result.provenance['version']}",
                         params={"xgboost": json.loads(json.dumps(result.model.params.__dict__)),
                                 "periods": result.periods, "decision": decision.__dict__,
                                 "evaluation": evaluation.__dict__,
                                 **({"gnn": result.gnn.params.__dict__} if result.gnn is not None else {})},
                         metrics=result.metrics,
                         artifacts=[out / "report.html", out / "report.json", out / "training.json"]
                         + ([out / "tuning.json"] if tuning is not None else []),
                         dicts={"schema.json": result.schema, "spec.json": result.spec},
                         tags={"model_name": result.provenance["name"], "model_version": result.provenance["version"],
                               "data_fingerprint": result.provenance["data_fingerprint"]})
        info = json.loads((out / "training.json").read_text())
        info["mlflow"] = {"uri": uri, "run_id": run_id}
        (out / "training.json").write_text(json.dumps(info, indent=2))
        print(f"tracked as MLflow run {run_id} at {uri}", file=sys.stderr)
    _print_summary(result, report)
    print(f"saved to {out} (report: {out / 'report.html'})")
    return 0


def _print_summary(result, report) -> None:
    m = result.metrics["test"]
    k = next((key for key in m if key.startswith("daily_") and "_precision_at_" in key), None)
    line = f"trained {result.model.n_trees} trees{' on GNN outputs' if result.gnn is not None else ''}; test AP " \
           f"{m['auprc']:.4f}, AUROC {m['auroc']:.4f}"
    if k:
        line += f", {k.replace('_', ' ')} {m[k]:.4f}"
    print(line)
    at = m.get("at_threshold") or {}
    if at:
        precision = at.get("precision")
        print(f"  at threshold {result.threshold:.4g} ({result.threshold_rule}): precision "
              f"{'n/a' if precision is None else f'{precision:.3f}'}, recall {at.get('recall', 0):.3f}, "
              f"{at.get('alerts_per_day', float('nan')):.1f} alerts/day")
    if "brier" in m:
        print(f"  calibrated ({result.calibration['method'] if result.calibration else 'none'}): Brier "
              f"{m['brier']:.5f} (trees' own output {result.metrics['test_uncalibrated']['brier']:.5f}); mean "
              f"score {float(result.test_scores.mean()):.4f} vs fraud rate {result.metrics['test_fraud_rate']:.4f}")
    if "test_gbdt_only" in result.metrics:
        print(f"  trees alone: test AP {result.metrics['test_gbdt_only']['auprc']:.4f}")


def _compile(args) -> int:
    from .compile import compile_model_dir
    from .export import ParityError, TreeCompileError
    try:
        bundle = compile_model_dir(args.model_dir, args.out, jobs=args.jobs, progress=not args.quiet,
                                   rules=args.rules, review_from=args.review_from, decline_from=args.decline_from)
    except (ParityError, TreeCompileError) as e:  # the model, not the program: a message, no traceback
        print(f"libfraud compile: {e}", file=sys.stderr)
        return 2
    print(f"bundle written to {bundle}")
    return 0


def _score(args) -> int:
    import numpy as np
    import pandas as pd

    from .scorer import Scorer
    from .data.declared import parse_duration
    try:
        max_ahead = parse_duration(args.max_ahead) if args.max_ahead else 0
    except ValueError as e:
        raise ValueError(f"--max-ahead: {e}") from None
    scorer = Scorer(args.bundle, gnn_backend=args.backend or "", state_dir=args.state_dir or "",
                    max_ahead_ms=max_ahead, quarantine_corrupt_log_tail=args.quarantine_corrupt_log_tail)
    read_table = _read(args)
    transactions = read_table(args.input)  # in the bundle's schema's columns; the core validates values
    history = read_table(args.history) if args.history else None
    if history is not None and args.no_ingest and not args.labels:
        raise ValueError("--history with --no-ingest: the history is ingested; drop one of them")
    if args.challenger:
        scorer.set_challenger(args.challenger, gnn_backend=args.backend or "")
    if args.decision_log:
        scorer.decision_log(args.decision_log)
    # Every path decides: the score, the bundle's decision (and the challenger's), reasons on request.
    k = args.reasons or 0
    if args.reasons is not None and args.reasons < 1:
        raise ValueError(f"--reasons: K must be >= 1, got {args.reasons}")
    min_score = _reasons_min_score(args.reasons_min_score, scorer.threshold) if k else 0.0
    if args.labels:
        decided = scorer.decide_replaying_labels(transactions, k, min_score=min_score, history=history)
    elif history is not None:
        decided = scorer.decide_after(history, transactions, k, min_score=min_score)
    elif args.no_ingest:
        decided = scorer.decide(transactions, k, min_score=min_score)
    else:
        decided = scorer.score_and_ingest_decide(transactions, k, min_score=min_score)
    scorer.decision_log(None)
    id_column = scorer.schema.event_id.column
    out = pd.DataFrame({id_column: transactions[id_column].to_numpy(),
                        "score": decided["score"].to_numpy(np.float32)})
    out["flagged"] = (out["score"] >= scorer.threshold).astype(np.int8)
    out["decision"] = decided["decision"].to_numpy()
    if scorer.rules:
        out["rule_hits"] = [";".join(map(str, codes)) for codes in decided["rule_hits"]]
    if args.challenger:
        out["challenger_score"] = decided["challenger_score"].to_numpy(np.float32)
        out["challenger_decision"] = decided["challenger_decision"].to_numpy()
    if k:
        keep = [c for c in decided.columns if c.startswith("reason_")]
        out = pd.concat([out, decided[keep].reset_index(drop=True)], axis=1)
    if args.out:
        out.to_csv(args.out, index=False, float_format="%.9g")
        print(f"scored {len(out)} transactions into {args.out}", file=sys.stderr)
    else:
        out.to_csv(sys.stdout, index=False, float_format="%.9g")
    return 0


def _drift(args) -> int:
    import json

    from .drift_report import drift_report, write_html
    read_table = _read(args)
    report = drift_report(args.bundle, read_table(args.input),
                          history=read_table(args.history) if args.history else None, labels=args.labels)
    print(report.text(top=args.top))
    if args.out:
        Path(args.out).write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"wrote the drift report to {args.out}", file=sys.stderr)
    if args.html:
        write_html(report, args.html)
        print(f"wrote the drift page to {args.html}", file=sys.stderr)
    return 0


def _reasons_min_score(value: str, threshold: float) -> float:
    if value == "threshold":
        return float(threshold)
    try:
        score = float(value)
    except ValueError:
        raise ValueError(f"--reasons-min-score: expected a score in [0, 1] or 'threshold', got {value!r}") from None
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"--reasons-min-score: expected a score in [0, 1] or 'threshold', got {value!r}")
    return score


def _label(args) -> int:
    from .scorer import Scorer
    scorer = Scorer(args.bundle, state_dir=args.state_dir,
                    quarantine_corrupt_log_tail=args.quarantine_corrupt_log_tail)
    labels = _read(args)(args.labels)
    scorer.label(labels)
    stats = scorer.stats()
    print(f"applied labels from {args.labels}: {stats['labels_applied']} new, "
          f"{stats['store_labels']} labelled events in the store at {args.state_dir}", file=sys.stderr)
    return 0


def _demo(args) -> int:
    from .demo import run_demo
    report = run_demo(args.out, n=args.n, seed=args.seed, trees=args.trees, gnn=not args.no_gnn,
                      progress=not args.quiet)
    print(f"demo report: {Path(args.out) / 'report.json'}")
    m = report["metrics"]["test"]
    print(f"  test AUPRC {m['auprc']:.4f}  AUROC {m['auroc']:.4f}  "
          f"tree parity {report['parity']['trees']['max_abs_diff']:.2e}  "
          f"latency p50 {report['latency_us']['p50']:.1f} us  p99 {report['latency_us']['p99']:.1f} us")
    if "test_gbdt_only" in report["metrics"]:
        print(f"  trees alone: test AUPRC {report['metrics']['test_gbdt_only']['auprc']:.4f}; "
              f"GNN backend {report['gnn_backend']}; parity aoti "
              f"{report['parity']['aoti']['max_abs_diff']:.2e}, torchscript "
              f"{report['parity']['torchscript']['max_abs_diff']:.2e}")
    reasons = report.get("reasons")
    if reasons:
        top = ", ".join(f"{name} {count}" for name, count in list(reasons["top_reason_counts"].items())[:3])
        shap = report["parity"].get("shap_tables", {})
        print(f"  reasons: {reasons['alerts']} alerts explained by the core into "
              f"{Path(args.out) / reasons['file']} (first reasons: {top}); TreeSHAP vs xgboost "
              f"{shap.get('max_abs_diff', float('nan')):.2e}")
    return 0


def _bench(args) -> int:
    # The harnesses live in the repository's bench/, not in the package: run from the repo root.
    import os
    sys.path.insert(0, os.getcwd())
    try:
        from bench.report import main as bench_main
    except ImportError as e:
        raise FileNotFoundError(f"bench/ not found under {os.getcwd()} (run from the repository root): {e}")
    return bench_main(["--mode", args.mode, *(["--out", args.out] if args.out else []),
                       *(["--rebuild"] if args.rebuild else [])])


def _keygen(args) -> int:
    from .export.sign import generate_keypair
    private, public = generate_keypair(args.private, args.public)
    print(f"ed25519 private key {private} (keep it secret), public key {public} "
          f"(trusted_public_key_path on the switch)")
    return 0


def _sign(args) -> int:
    from .export.sign import sign_bundle
    print(f"signed: {sign_bundle(args.bundle, args.key)}")
    return 0


def _input_options() -> argparse.ArgumentParser:
    """The flags of every command that reads the user's data files."""
    from .data.input_file import MAX_CELL_CHARS
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("input files")
    g.add_argument("--encoding", default="utf-8",
                   help="text encoding of CSV inputs (default utf-8; e.g. latin-1, cp1252)")
    g.add_argument("--max-cell-chars", type=int, default=MAX_CELL_CHARS, metavar="N",
                   help=f"refuse an input whose cell (or column name) is longer than N characters "
                        f"(default {MAX_CELL_CHARS:,})")
    return p


def _add_quarantine_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quarantine-corrupt-log-tail", action="store_true",
                   help="open a state dir whose log's last record is damaged (a bit flip, not a crash) by "
                        "moving its bytes to store.log.quarantine-<unix ms>; its transactions are lost "
                        "(default: refuse to open)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="libfraud", description=__doc__)
    inputs = [_input_options()]
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("schema", help="draft a schema and feature spec from a data file")
    schema_sub = p.add_subparsers(dest="schema_command", required=True)
    p = schema_sub.add_parser("infer", help="write a TOML draft: every column with a proposed role and type",
                              parents=inputs)
    p.add_argument("data", help="transactions (.csv or .parquet)")
    p.add_argument("--out", help="write the draft here (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.set_defaults(run=_schema_infer)

    p = sub.add_parser("generate", help="write a synthetic payment network (.csv or .parquet)")
    p.add_argument("out")
    p.add_argument("-n", type=int, default=100_000, help="transactions (default 100000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fraud-rate", type=float, help="default 0.01 (payments), 0.008 (cards)")
    p.add_argument("--kind", choices=("payments", "cards"), default="payments",
                   help="payments: the payment network (payments preset); cards: customers and terminals "
                        "(cards preset)")
    p.add_argument("--customers", type=int, help="cards: customers (default n / 240)")
    p.add_argument("--terminals", type=int, help="cards: terminals (default twice the customers)")
    p.add_argument("--start", help="cards: the first day (default 2026-01-01)")
    p.set_defaults(run=_generate)

    p = sub.add_parser("train", help="replay features, train XGBoost (and a GNN) on periods by time",
                       description="Flags override the --config file's tables (see libfraud.run_config).",
                       parents=inputs)
    p.add_argument("data", help="labelled transactions (.csv or .parquet)")
    p.add_argument("--out", required=True, help="model directory")
    p.add_argument("--config", help="a run configuration TOML ([periods], [xgboost], [decision], ...)")
    p.add_argument("--schema", help="TOML declaring the schema and the features (see `libfraud schema infer`)")
    p.add_argument("--features", help="the feature spec in a TOML of its own (else in --schema's file)")
    p.add_argument("--preset", choices=("payments", "cards"),
                   help="a built-in schema and feature spec instead of --schema (default: payments)")
    p.add_argument("--history", help="earlier transactions fed to the store as warm-up, never trained on")
    g = p.add_argument_group("periods", "dates (ISO-8601, naive = UTC) or durations (7d, 12h); without "
                                        "them 70/15/15 of the labelled events by time")
    g.add_argument("--train-start", help="first training day (default: the first event)")
    g.add_argument("--train-end", help="end of the training period: a date or a duration after its start")
    g.add_argument("--valid-start", help="validation start (date, or a duration before --train-end); "
                                         "default: the last --valid-fraction of the training period")
    g.add_argument("--valid-end", help="validation end, for a validation period of its own")
    g.add_argument("--valid-fraction", type=float, help="share of the training period's labelled events "
                                                       "held out for validation (default 0.2)")
    g.add_argument("--label-delay", help="how long labels take to be known (the gap before the test; "
                                         "default: the schema's label delay)")
    g.add_argument("--test-start", help="default: the end of training + the label delay")
    g.add_argument("--test-end", help="a date or a duration after the test start (default: the data's end)")
    g.add_argument("--prequential", type=int,
                   help="--tune-trials scores each trial on this many time-shifted validation folds")
    g.add_argument("--unknown-labels", choices=("legitimate", "drop"),
                   help="a training label not yet known at the test start: legitimate (no fraud report "
                        "yet, as the desk's data says; default) or left out")
    g = p.add_argument_group("model")
    g.add_argument("--trees", type=int, help="maximum boosting rounds (default 500)")
    g.add_argument("--depth", type=int, help="tree depth (default 6)")
    g.add_argument("--threads", type=int, help="XGBoost threads (default 2)")
    g.add_argument("--xgb", action="append", metavar="KEY=VALUE",
                   help="any GbdtParams field: tree_method=exact, max_bin=4096, learning_rate=0.05 ...")
    g.add_argument("--no-gnn", action="store_true", help="trees on the core's features only")
    g.add_argument("--gnn-epochs", type=int)
    g.add_argument("--gnn", action="append", metavar="KEY=VALUE", help="any GnnParams field: hidden=64 ...")
    g.add_argument("--graph-field", action="append",
                   help="a numeric or categorical field added to the GNN's transaction features (repeatable)")
    g.add_argument("--fanout", type=int, help="sampled earlier transactions per entity (default 10)")
    g.add_argument("--strategy", choices=("most_recent", "uniform"))
    g = p.add_argument_group("decision and evaluation")
    g.add_argument("--calibration", choices=("platt", "isotonic", "none"),
                   help="calibrate the scores on validation (default platt)")
    g.add_argument("--threshold", help="fpr:0.01 (default), alerts_per_day:100, cost:MISSED:REVIEW or value:0.5")
    g.add_argument("--k", type=int, help="daily precision@k: alerts investigated per day (default 100)")
    g.add_argument("--k-entity", help="entity ranked per day for precision@k (default: the first declared)")
    g.add_argument("--drop-known-compromised", action="store_true", default=None,
                   help="leave out of the test the entities with a fraud known before it")
    g = p.add_argument_group("tuning (Optuna) and tracking (MLflow)")
    g.add_argument("--tune-trials", type=int, help="search the tree parameters for this many trials")
    g.add_argument("--tune-minutes", type=float, help="... or for this long")
    g.add_argument("--tune-gnn", action="store_true", default=None,
                   help="also search the GNN's knobs (hidden, embedding, lr, dropout, balance, weight decay), "
                        "its own study in the same file, before the trees")
    g.add_argument("--tune-storage", help="the study's SQLite file (default OUT/tuning.db; a rerun resumes)")
    g.add_argument("--mlflow-uri", help="tracking server or folder (default: ./mlruns beside --out)")
    g.add_argument("--experiment", help="MLflow experiment (default libfraud)")
    g.add_argument("--no-track", action="store_true", help="do not record an MLflow run")
    g.add_argument("--name", help="model name in the manifest (default: the --out folder's name)")
    g.add_argument("--version", help="model version in the manifest (default: the UTC time of training)")
    p.set_defaults(run=_train)

    p = sub.add_parser("compile", help="compile a trained model into a checked bundle")
    p.add_argument("model_dir")
    p.add_argument("--out", required=True, help="bundle directory")
    p.add_argument("--jobs", type=int, default=2, help="parallel compiler processes")
    p.add_argument("--rules", help="a rules.toml: score bands ([decision]) and rules ([[rule]]) the core "
                                   "evaluates after the model (export/BUNDLE.md \"decision\")")
    p.add_argument("--review-from", type=float, help="review from this score (default: the bundle's threshold)")
    p.add_argument("--decline-from", type=float, help="decline from this score (default: no decline band)")
    p.set_defaults(run=_compile)

    p = sub.add_parser("score", help="score transactions with a bundle (one line per transaction)",
                       parents=inputs)
    p.add_argument("bundle")
    p.add_argument("input", help="transactions (.csv or .parquet), in time order")
    p.add_argument("--out", help="write CSV here instead of standard output")
    p.add_argument("--no-ingest", action="store_true",
                   help="score against the store as it is, storing nothing (each sees none of the others)")
    p.add_argument("--backend", help="GNN backend for a GNN bundle (aoti, torchscript); default: "
                                     "the bundle's first that loads")
    p.add_argument("--state-dir", help="keep the store durable here (restored on start, labels included)")
    _add_quarantine_flag(p)
    p.add_argument("--labels", action="store_true",
                   help="also apply the input's labels, each once its label time has passed (evaluation "
                        "as served: label-aware features see what a switch fed with labels would)")
    p.add_argument("--history", help="earlier transactions (with their labels) stored first, unscored: the "
                                     "store starts where a switch running since then would be")
    p.add_argument("--reasons", type=int, metavar="K",
                   help="add the top K reasons of each score (reason_1..K: family, code, text, contribution "
                        "in log-odds, the family's main feature and its value), computed by the core")
    p.add_argument("--max-ahead", metavar="DURATION",
                   help="refuse events more than this ahead of the store's watermark and the clock "
                        "(e.g. 1d): a far-future timestamp would make every later event out of order")
    p.add_argument("--reasons-min-score", default="0", metavar="SCORE",
                   help="reasons only for scores >= SCORE, or 'threshold' (the bundle's alert threshold); "
                        "default 0: every transaction")
    p.add_argument("--challenger", metavar="BUNDLE",
                   help="also score every transaction with this bundle (same schema), in shadow: adds "
                        "challenger_score and challenger_decision; the served score is unchanged")
    p.add_argument("--decision-log", metavar="FILE",
                   help="append one JSON line per decided transaction here (the core's decision records: "
                        "bundle sha256, score, decision, rule hits, reasons, challenger)")
    p.set_defaults(run=_score)

    p = sub.add_parser("drift", help="how far transactions are from the bundle's training reference (PSI, "
                                     "chi-square)", parents=inputs)
    p.add_argument("bundle")
    p.add_argument("input", help="transactions (.csv or .parquet), in time order")
    p.add_argument("--history", help="earlier transactions stored first, not compared (as for score)")
    p.add_argument("--labels", action="store_true",
                   help="apply the input's labels at their label times (label-aware features; default: none)")
    p.add_argument("--out", help="write the whole report as JSON here")
    p.add_argument("--html", help="write a self-contained HTML page here")
    p.add_argument("--top", type=int, default=15, help="features shown in the printed table (default 15)")
    p.set_defaults(run=_drift)

    p = sub.add_parser("label", help="apply labels (event id, label, label time) to a durable store",
                       parents=inputs)
    p.add_argument("bundle")
    p.add_argument("labels", help="labels (.csv or .parquet) in the schema's event id / label columns")
    p.add_argument("--state-dir", required=True, help="the store's state directory (as given to score)")
    _add_quarantine_flag(p)
    p.set_defaults(run=_label)

    from .service.serve_cli import add_serve_parser
    add_serve_parser(sub, [])

    p = sub.add_parser("bench", help="the side-by-side latency and accuracy report (from the repo root)")
    p.add_argument("--mode", choices=("smoke", "quick", "full"), default="quick")
    p.add_argument("--out", help="results folder (default bench/results)")
    p.add_argument("--rebuild", action="store_true", help="train and compile the bundle even if kept")
    p.set_defaults(run=_bench)

    p = sub.add_parser("keygen", help="write a new ed25519 key pair for signing bundles")
    p.add_argument("--private", required=True, help="private key file to create (PEM, mode 0600)")
    p.add_argument("--public", required=True, help="public key file to create (PEM), for the switches")
    p.set_defaults(run=_keygen)

    p = sub.add_parser("sign", help="verify a bundle, then sign its manifest (manifest.json.sig)")
    p.add_argument("bundle")
    p.add_argument("--key", required=True, help="ed25519 private key (PEM, from keygen)")
    p.set_defaults(run=_sign)

    p = sub.add_parser("demo", help="generate -> train -> compile -> score, with a report")
    p.add_argument("--out", default="demo-out")
    p.add_argument("-n", type=int, default=200_000, help="transactions (default 200000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trees", type=int, default=500)
    p.add_argument("--no-gnn", action="store_true", help="the tree model alone")
    p.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.schema import SchemaError
    try:
        from ._core import FraudError
    except ImportError:  # the compiled core is missing: every command but generate needs it
        FraudError = ()  # noqa: N806
    try:
        return args.run(args)
    except SchemaError as e:
        print(f"libfraud {args.command}: invalid input: {e}", file=sys.stderr)
        return 2
    except FraudError as e:
        print(f"libfraud {args.command}: {e.status}: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:  # a missing or unreadable file, a bad flag value
        print(f"libfraud {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
