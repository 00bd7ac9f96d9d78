"""Features are float32 and +/-inf is refused everywhere (export/BUNDLE.md "Missing and infinite
values"), so no path may make one: a feature past float32's range (an amount finite as a double
but not as a float32, a sum of huge amounts) is saturated to +-FLT_MAX."""

from __future__ import annotations

import numpy as np
import pytest

from bundles import edited, set_at
from libfraud import FraudError, Scorer

FLT_MAX = float(np.finfo(np.float32).max)


def test_an_amount_past_float32_scores_as_its_saturated_features_do(small_bundle, small_transactions):
    # 1e39 is finite as a double (the store keeps it exactly) but not as a float32: its features
    # were +inf, which score() scored while score_features() refused the same row.
    scorer = Scorer(small_bundle)
    scorer.ingest(small_transactions.head(50))
    events = edited(scorer.events(small_transactions.iloc[50:53]), amount=lambda a: set_at(a, 1, 1e39))
    features = scorer.features(events)
    assert not np.isinf(features.to_numpy()).any()
    assert features["amount"].iloc[1] == FLT_MAX
    np.testing.assert_array_equal(scorer.score(events), scorer.score_features(features.to_numpy()))


def test_a_sum_past_float32_is_saturated_not_inf(small_bundle, small_transactions):
    scorer = Scorer(small_bundle)
    rows = small_transactions.head(4).copy()
    rows["card_id"] = rows["card_id"].iloc[0]
    rows["amount"] = 3.0e38  # each within float32; their sum is not
    scorer.ingest(rows.head(3))
    features = scorer.features(rows.iloc[[3]])
    sums = [c for c in features.columns if c.startswith("card_amount_sum")]
    assert sums and all(features[c].iloc[0] == FLT_MAX for c in sums), features[sums]
    assert not np.isinf(features.to_numpy()).any()
    assert 0.0 <= scorer.score(rows.iloc[[3]])[0] <= 1.0
