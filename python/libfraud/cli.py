"""The `libfraud` command: schema infer, generate, train, compile, score, label, demo, bench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _generate(args) -> int:
    from .data import write_transactions
    path = write_transactions(args.out, args.n, seed=args.seed, fraud_rate=args.fraud_rate,
                              progress=not args.quiet)
    print(f"wrote {args.n} transactions to {path}")
    return 0


def _declared(args, columns):
    """(schema, spec) from --schema (one TOML with both, or with --features a second file), or the
    --preset (payments when neither is given)."""
    from .data.declared import load_config, load_preset, load_schema, load_spec
    if args.schema:
        if args.features:
            schema = load_schema(args.schema)
            return schema, load_spec(args.features, schema)
        return load_config(args.schema)
    return load_preset(args.preset or "payments", columns)


def _schema_infer(args) -> int:
    from .data.declared import infer_schema
    text = infer_schema(args.data)
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


def _train(args) -> int:
    from .data import read_table
    from .models.gbdt import GbdtParams
    from .train import SamplerSettings, train
    transactions = read_table(args.data)
    schema, spec = _declared(args, transactions.columns)
    params = GbdtParams(n_estimators=args.trees, max_depth=args.depth, nthread=args.threads)
    gnn_params = None
    if not args.no_gnn:
        from .train_gnn import GnnParams
        gnn_params = GnnParams(epochs=args.gnn_epochs)
    result = train(transactions, schema=schema, spec=spec, params=params, gnn_params=gnn_params,
                   sampler=SamplerSettings(fanout=args.fanout, strategy=args.strategy,
                                           graph_fields=tuple(args.graph_field or ())),
                   progress=not args.quiet)
    out = result.save(args.out)
    test = result.metrics["test"]
    print(f"trained {result.model.n_trees} trees{' on GNN outputs' if gnn_params else ''}; "
          f"test AUPRC {test['auprc']:.4f}, AUROC {test['auroc']:.4f}; saved to {out}")
    if "test_gbdt_only" in result.metrics:
        print(f"  trees alone: test AUPRC {result.metrics['test_gbdt_only']['auprc']:.4f}")
    return 0


def _compile(args) -> int:
    from .compile import compile_model_dir
    bundle = compile_model_dir(args.model_dir, args.out, jobs=args.jobs, progress=not args.quiet)
    print(f"bundle written to {bundle}")
    return 0


def _score(args) -> int:
    import numpy as np
    import pandas as pd

    from .data import read_table
    from .scorer import Scorer
    scorer = Scorer(args.bundle, gnn_backend=args.backend or "", state_dir=args.state_dir or "")
    transactions = read_table(args.input)  # in the bundle's schema's columns; the core validates values
    if args.labels:
        scores = scorer.score_and_ingest_replaying_labels(transactions)
    else:
        scores = (scorer.score(transactions) if args.no_ingest
                  else scorer.score_and_ingest(transactions))
    id_column = scorer.schema.event_id.column
    out = pd.DataFrame({id_column: transactions[id_column].to_numpy(),
                        "score": scores.astype(np.float32)})
    out["flagged"] = (out["score"] >= scorer.threshold).astype(np.int8)
    if args.out:
        out.to_csv(args.out, index=False, float_format="%.9g")
        print(f"scored {len(out)} transactions into {args.out}", file=sys.stderr)
    else:
        out.to_csv(sys.stdout, index=False, float_format="%.9g")
    return 0


def _label(args) -> int:
    from .data import read_table
    from .scorer import Scorer
    scorer = Scorer(args.bundle, state_dir=args.state_dir)
    labels = read_table(args.labels)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="libfraud", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("schema", help="draft a schema and feature spec from a data file")
    schema_sub = p.add_subparsers(dest="schema_command", required=True)
    p = schema_sub.add_parser("infer", help="write a TOML draft: every column with a proposed role and type")
    p.add_argument("data", help="transactions (.csv or .parquet)")
    p.add_argument("--out", help="write the draft here (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.set_defaults(run=_schema_infer)

    p = sub.add_parser("generate", help="write a synthetic payment network (.csv or .parquet)")
    p.add_argument("out")
    p.add_argument("-n", type=int, default=100_000, help="transactions (default 100000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fraud-rate", type=float, default=0.01)
    p.set_defaults(run=_generate)

    p = sub.add_parser("train", help="replay features, train XGBoost on a time-ordered split")
    p.add_argument("data", help="labelled transactions (.csv or .parquet)")
    p.add_argument("--out", required=True, help="model directory")
    p.add_argument("--schema", help="TOML declaring the schema and the features (see `libfraud schema infer`)")
    p.add_argument("--features", help="the feature spec in a TOML of its own (else in --schema's file)")
    p.add_argument("--preset", choices=("payments", "cards"),
                   help="a built-in schema and feature spec instead of --schema (default: payments)")
    p.add_argument("--graph-field", action="append",
                   help="a numeric or categorical field added to the GNN's transaction features (repeatable)")
    p.add_argument("--trees", type=int, default=500, help="maximum boosting rounds")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-gnn", action="store_true", help="trees on the core's features only")
    p.add_argument("--gnn-epochs", type=int, default=30)
    p.add_argument("--fanout", type=int, default=10, help="sampled earlier transactions per entity")
    p.add_argument("--strategy", choices=("most_recent", "uniform"), default="most_recent")
    p.set_defaults(run=_train)

    p = sub.add_parser("compile", help="compile a trained model into a checked bundle")
    p.add_argument("model_dir")
    p.add_argument("--out", required=True, help="bundle directory")
    p.add_argument("--jobs", type=int, default=2, help="parallel compiler processes")
    p.set_defaults(run=_compile)

    p = sub.add_parser("score", help="score transactions with a bundle (one line per transaction)")
    p.add_argument("bundle")
    p.add_argument("input", help="transactions (.csv or .parquet), in time order")
    p.add_argument("--out", help="write CSV here instead of standard output")
    p.add_argument("--no-ingest", action="store_true",
                   help="score against the store as it is, storing nothing (each sees none of the others)")
    p.add_argument("--backend", help="GNN backend for a GNN bundle (aoti, torchscript); default: "
                                     "the bundle's first that loads")
    p.add_argument("--state-dir", help="keep the store durable here (restored on start, labels included)")
    p.add_argument("--labels", action="store_true",
                   help="also apply the input's labels, each once its label time has passed (evaluation "
                        "as served: label-aware features see what a switch fed with labels would)")
    p.set_defaults(run=_score)

    p = sub.add_parser("label", help="apply labels (event id, label, label time) to a durable store")
    p.add_argument("bundle")
    p.add_argument("labels", help="labels (.csv or .parquet) in the schema's event id / label columns")
    p.add_argument("--state-dir", required=True, help="the store's state directory (as given to score)")
    p.set_defaults(run=_label)

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
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"libfraud {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
