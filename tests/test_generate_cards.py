"""Tests of libfraud.data.generate_cards: the two-entity (customer, terminal) card generator."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from libfraud.data.generate_cards import (
    CARD_COLUMNS,
    CHANNELS,
    generate_card_transactions,
    write_card_transactions,
)

DAY = pd.Timedelta(days=1)


def gen(n, **kw) -> pd.DataFrame:
    return pd.concat(list(generate_card_transactions(n, **kw)), ignore_index=True)


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return gen(50_000, seed=7)


def test_columns_dtypes_and_values():
    df = gen(5_000, seed=1)
    assert tuple(df.columns) == CARD_COLUMNS
    expect = {"TRANSACTION_ID": "int64", "TX_DATETIME": "datetime64[ns]", "CUSTOMER_ID": "int64",
              "TERMINAL_ID": "int64", "TX_AMOUNT": "float64", "TX_FRAUD": "int8",
              "TX_FRAUD_SCENARIO": "int8", "RISK_SCORE": "float64"}
    assert {c: str(df[c].dtype) for c in expect} == expect
    assert pd.api.types.is_string_dtype(df["CHANNEL"]) and set(df["CHANNEL"]) == set(CHANNELS)
    assert np.array_equal(df["TRANSACTION_ID"].to_numpy(), np.arange(5_000))
    t = df["TX_DATETIME"]
    assert t.is_monotonic_increasing and (t.dt.microsecond == 0).all() and (t.dt.nanosecond == 0).all()
    assert t.iat[0] >= pd.Timestamp("2026-01-01") and t.iat[0] < pd.Timestamp("2026-01-02")
    a = df["TX_AMOUNT"].to_numpy()
    assert np.isfinite(a).all() and (a >= 0).all() and np.array_equal(np.round(a, 2), a)
    assert set(df["TX_FRAUD_SCENARIO"]) <= {0, 1, 2, 3}
    assert np.array_equal(df["TX_FRAUD"] == 1, df["TX_FRAUD_SCENARIO"] > 0)
    assert df["CUSTOMER_ID"].min() >= 0 and df["TERMINAL_ID"].min() >= 0
    # Legitimate 0.00 amounts (account verifications) and missing risk scores.
    assert ((a == 0) & (df["TX_FRAUD"] == 0)).sum() >= 10
    risk = df["RISK_SCORE"]
    assert 0.04 < risk.isna().mean() < 0.12 and risk.dropna().between(0, 1).all()
    # ATM withdrawals are round amounts.
    atm = df.loc[(df["CHANNEL"] == "atm") & (df["TX_FRAUD_SCENARIO"] != 3), "TX_AMOUNT"]
    assert len(atm) and ((atm % 20 == 0) & (atm >= 20)).all()


def test_same_seed_same_frame_and_chunking_does_not_matter():
    a = gen(12_000, seed=3)
    pd.testing.assert_frame_equal(a, gen(12_000, seed=3, chunk_size=777))
    pd.testing.assert_frame_equal(a.head(5_000), gen(5_000, seed=3, n_customers=50))
    b = gen(12_000, seed=4)
    assert not a[["TX_DATETIME", "TX_AMOUNT"]].equals(b[["TX_DATETIME", "TX_AMOUNT"]])
    sizes = [len(c) for c in generate_card_transactions(2_500, seed=1, chunk_size=1_000)]
    assert sizes == [1_000, 1_000, 500]
    assert list(generate_card_transactions(0)) == []


def test_start_and_populations():
    df = gen(3_000, seed=2, start=pd.Timestamp("2025-06-01 02:00", tz="Europe/Paris"),
             n_customers=30, n_terminals=100)
    assert df["TX_DATETIME"].iat[0] >= pd.Timestamp("2025-06-01 00:00")  # 02:00 Paris = 00:00 UTC
    assert df["CUSTOMER_ID"].max() < 30 and df["TERMINAL_ID"].max() < 100
    for bad in [dict(fraud_rate=0.5), dict(seed=-1), dict(n_customers=0)]:
        with pytest.raises(ValueError):
            next(generate_card_transactions(10, **bad))


@pytest.mark.parametrize("rate", [0.008, 0.02])
def test_fraud_rate_tracks_request(big, rate):
    df = big if rate == 0.008 else gen(30_000, seed=5, fraud_rate=rate)
    assert abs(df["TX_FRAUD"].mean() / rate - 1) < 0.3, df["TX_FRAUD"].mean()


def test_scenario_shares(big):
    share = big.loc[big["TX_FRAUD"] == 1, "TX_FRAUD_SCENARIO"].value_counts(normalize=True)
    # The simulator's mix: compromised terminals most, then customers, a few sharp-rule rows.
    assert 0.45 < share[2] < 0.8 and 0.15 < share[3] < 0.45 and 0.01 < share[1] < 0.2, share.to_dict()


def test_rule_1_holds_exactly(big):
    over = big["TX_AMOUNT"] > 220
    assert over.any() and (big.loc[over, "TX_FRAUD"] == 1).all()
    assert (big.loc[big["TX_FRAUD_SCENARIO"] == 1, "TX_AMOUNT"] > 220).all()
    assert big.loc[big["TX_FRAUD"] == 0, "TX_AMOUNT"].max() <= 220


def test_terminal_compromise_makes_fraud_clusters_by_terminal(big):
    day = (big["TX_DATETIME"] - big["TX_DATETIME"].iat[0].normalize()) // DAY
    df = big.assign(day=day)
    s2 = df[df["TX_FRAUD_SCENARIO"] == 2]
    # A compromised terminal-day is all fraud (scenario 2, or 3 on top of it).
    hit = df.set_index(["TERMINAL_ID", "day"]).index.isin(s2.set_index(["TERMINAL_ID", "day"]).index)
    assert (df.loc[hit, "TX_FRAUD"] == 1).all()
    per_terminal = s2.groupby("TERMINAL_ID").agg(rows=("day", "size"),
                                                 span=("day", lambda d: d.max() - d.min()))
    assert len(per_terminal) >= 8 and per_terminal["rows"].median() >= 10
    assert (per_terminal["span"] <= 27).mean() > 0.8  # 28 days per compromise
    # So a terminal's recent fraud predicts its next transaction's fraud.
    fraud = df[df["TX_FRAUD"] == 1]
    fraud_times = fraud.groupby("TERMINAL_ID")["TX_DATETIME"].apply(lambda t: t.to_numpy())
    recent = np.zeros(len(df), bool)
    for term, rows in df.groupby("TERMINAL_ID").indices.items():
        if term in fraud_times.index:
            t = df["TX_DATETIME"].to_numpy()[rows]
            f = fraud_times[term]
            week_ago = t - np.timedelta64(7, "D")
            recent[rows] = np.searchsorted(f, t, "left") > np.searchsorted(f, week_ago, "left")
    y = df["TX_FRAUD"].to_numpy()
    assert y[recent].mean() > 20 * y[~recent].mean()


def test_customer_compromise_multiplies_amounts(big):
    s3 = big[big["TX_FRAUD_SCENARIO"] == 3]
    legit_mean = big[big["TX_FRAUD"] == 0].groupby("CUSTOMER_ID")["TX_AMOUNT"].mean()
    ratio = s3["TX_AMOUNT"].to_numpy() / legit_mean[s3["CUSTOMER_ID"]].to_numpy()
    assert 3.5 < np.median(ratio) < 6.5
    # Rows of one compromise lie within 14 days (a customer may be compromised again later).
    t = s3.sort_values(["CUSTOMER_ID", "TX_DATETIME"])
    new_run = (t["CUSTOMER_ID"].diff() != 0) | (t["TX_DATETIME"].diff() >= 14 * DAY)
    span = t.groupby(new_run.cumsum().to_numpy())["TX_DATETIME"].agg(lambda x: x.max() - x.min())
    assert (span < 14 * DAY).mean() > 0.8 and s3["CUSTOMER_ID"].nunique() >= 10


def test_customers_use_nearby_terminals(big):
    n_terminals = big["TERMINAL_ID"].max() + 1
    per_customer = big.groupby("CUSTOMER_ID")["TERMINAL_ID"].nunique()
    assert per_customer.max() < 0.5 * n_terminals
    # Nearby customers share terminals: most terminals see several customers.
    assert big.groupby("TERMINAL_ID")["CUSTOMER_ID"].nunique().median() >= 5


def test_risk_score_is_weakly_informative(big):
    risk = big.groupby("TX_FRAUD")["RISK_SCORE"].mean()
    assert 0.05 < risk[1] - risk[0] < 0.25


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_round_trip(tmp_path, suffix):
    path = write_card_transactions(tmp_path / f"c{suffix}", 3_000, seed=5, chunk_size=1_000)
    expect = gen(3_000, seed=5)
    if suffix == ".csv":
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert tuple(raw.columns) == CARD_COLUMNS
        iso = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
        assert raw["TX_DATETIME"].map(lambda s: bool(iso.fullmatch(s))).all()
        assert ((raw["RISK_SCORE"] == "") == expect["RISK_SCORE"].isna()).all()
        got = pd.read_csv(path)
        got["TX_DATETIME"] = pd.to_datetime(got["TX_DATETIME"]).astype("datetime64[ns]")
        got = got.astype({c: expect[c].dtype for c in ("TX_FRAUD", "TX_FRAUD_SCENARIO", "CHANNEL")})
    else:
        got = pd.read_parquet(path)
        got["TX_DATETIME"] = got["TX_DATETIME"].astype("datetime64[ns]")
    pd.testing.assert_frame_equal(got, expect)
    empty = write_card_transactions(tmp_path / f"e{suffix}", 0)
    read = pd.read_csv if suffix == ".csv" else pd.read_parquet
    assert list(read(empty).columns) == list(CARD_COLUMNS)
    with pytest.raises(ValueError, match="csv"):
        write_card_transactions(tmp_path / "c.json", 10)
