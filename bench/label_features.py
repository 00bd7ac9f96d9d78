"""What label-aware features are worth, side by side in one run: XGBoost on the `cards` preset with
and without its terminal fraud counts/rates (known only after the label delay), on the two-entity
card world (python/libfraud/data/generate_cards.py: compromised terminals, compromised customers,
a sharp amount rule). Same split, same trees, same seed; only the feature list differs.

    python -m bench.label_features [--n 300000] [--out results.json]

The data are the project's own synthetic world: a mechanism check, not evidence on real data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--out")
    args = ap.parse_args(argv)

    from libfraud import metrics
    from libfraud.data import generate_card_transactions
    from libfraud.data.declared import FeatureSpec, load_preset
    from libfraud.models.gbdt import GbdtParams
    from libfraud.train import train

    df = pd.concat(list(generate_card_transactions(args.n, seed=args.seed)), ignore_index=True)
    schema, spec = load_preset("cards")
    without = FeatureSpec([f for f in spec.features if f["kind"] != "label"], max_scan=spec.max_scan)
    params = GbdtParams(n_estimators=args.trees, max_depth=6, seed=args.seed)
    out = {"n": len(df), "fraud_rate": float(df["TX_FRAUD"].mean()), "runs": {}}
    for name, s in (("with label-aware features", spec), ("without", without)):
        r = train(df, schema=schema, spec=s, params=params)
        test = r.metrics["test"]
        out["runs"][name] = {"features": len(s.features), "test_auprc": test["auprc"],
                             "test_auroc": test["auroc"],
                             "precision_at_100": metrics.precision_at_k(r.y_test, r.test_scores, 100)}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
