"""Tests of libfraud.data: synthetic generator, payments files through the declared preset, the
fraud_txn C layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from libfraud.data import (
    COLUMN_NAMES,
    ENTITY_COLUMNS,
    FRAUD_TYPES,
    TXN_DTYPE,
    SchemaError,
    generate_transactions,
    load_transactions,
    payments_frame,
    to_txn_records,
    write_transactions,
)
from libfraud.data.generate import (
    GENERATED_FRAUD_TYPES,
    LEGIT_LABEL_DELAY_MS,
    compromised_merchants,
)

DAY_MS = 86_400_000


def gen(n, **kw) -> pd.DataFrame:
    return pd.concat(list(generate_transactions(n, **kw)), ignore_index=True)


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return gen(50_000, seed=7, fraud_rate=0.05)


# ---------------------------------------------------------------- generator


def test_same_seed_same_frame_and_chunking_does_not_matter():
    a = gen(12_000, seed=3)
    pd.testing.assert_frame_equal(a, gen(12_000, seed=3))
    pd.testing.assert_frame_equal(a, gen(12_000, seed=3, chunk_size=777))
    b = gen(12_000, seed=4)
    assert not a[["timestamp_ms", "amount", "card_id"]].equals(b[["timestamp_ms", "amount", "card_id"]])


def test_chunks_have_requested_size():
    sizes = [len(c) for c in generate_transactions(2_500, seed=1, chunk_size=1_000)]
    assert sizes == [1_000, 1_000, 500]
    assert list(generate_transactions(0)) == []


def test_time_order_unique_ids_schema(big):
    assert list(big.columns) == [*COLUMN_NAMES, "label_time_ms", "fraud_type"]
    assert big["label_time_ms"].dtype == np.int64
    assert np.array_equal(big["txn_id"].to_numpy(), np.arange(len(big)))
    assert big["timestamp_ms"].is_monotonic_increasing
    # The generator's frame passes the declared payments preset unchanged.
    pd.testing.assert_frame_equal(payments_frame(big), big)
    assert (big["device_id"] == -1).any() and (big["ip_id"] == -1).any()


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_fraud_rate_close_to_requested(rate):
    df = gen(50_000, seed=11, fraud_rate=rate)
    assert abs(df["label"].mean() / rate - 1) < 0.3


def test_each_typology_present_with_label(big):
    assert GENERATED_FRAUD_TYPES[: len(FRAUD_TYPES)] == FRAUD_TYPES
    assert "compromised_merchant" in GENERATED_FRAUD_TYPES
    counts = big["fraud_type"].value_counts()
    for t in GENERATED_FRAUD_TYPES[1:]:
        assert counts.get(t, 0) >= 20, t
    assert set(big["fraud_type"]) == set(GENERATED_FRAUD_TYPES)
    assert np.array_equal(big["label"].to_numpy() == 1, (big["fraud_type"] != "").to_numpy())


def test_typology_mix_present(big):
    fraud = big[big["label"] == 1]
    share = fraud["fraud_type"].value_counts(normalize=True)
    # Roughly 15% compromised merchants, the rest 35% ring, 15% collusion, 30% card testing,
    # 20% account takeover (by rows).
    for t, lo, hi in [("ring", 0.2, 0.5), ("merchant_collusion", 0.05, 0.3),
                      ("card_testing", 0.15, 0.45), ("account_takeover", 0.08, 0.35),
                      ("compromised_merchant", 0.07, 0.25)]:
        assert lo < share.get(t, 0.0) < hi, (t, share.to_dict())


def test_ring_devices_shared_by_many_cards_over_days(big):
    ring = big[big["fraud_type"].isin(["ring", "merchant_collusion"])]
    cards_per_ring_dev = ring.groupby("device_id")["card_id"].nunique()
    legit = big[(big["label"] == 0) & (big["device_id"] >= 0)]
    cards_per_legit_dev = legit.groupby("device_id")["card_id"].nunique()
    assert cards_per_ring_dev.median() >= 4
    assert cards_per_legit_dev.median() == 1
    # Slow: a ring device's use spans days, and few of its cards show up within any one day.
    span = ring.groupby("device_id")["timestamp_ms"].agg(lambda t: t.max() - t.min())
    assert span.median() > 3 * 86_400_000
    day = ring.assign(day=ring["timestamp_ms"] // 86_400_000)
    assert day.groupby(["device_id", "day"])["card_id"].nunique().median() <= 3
    # Graph signal: most ring rows are on a device that other fraud cards also use.
    assert (cards_per_ring_dev[ring["device_id"]].to_numpy() >= 2).mean() > 0.9
    # Mostly in the card's own country (proxies), on ordinary resale merchants.
    assert (ring["country"].isin([566, 643, 804, 156, 76, 608, 642, 360])).mean() < 0.3


def test_legit_lookalikes_present(big):
    legit = big[big["label"] == 0]
    # Shared legit devices/IPs (household, office PCs, merchant tablets, NAT, hotspots).
    dev_cards = legit[legit["device_id"] >= 0].groupby("device_id")["card_id"].nunique()
    ip_cards = legit[legit["ip_id"] >= 0].groupby("ip_id")["card_id"].nunique()
    assert (dev_cards >= 5).sum() >= 50 and (ip_cards >= 50).any()
    # Small-amount bursts on the card's own device: >= 3 under 5 within 20 minutes.
    small = legit[(legit["amount"] < 5) & (legit["device_id"] >= 0)].sort_values(["card_id", "timestamp_ms"])
    same = (small["card_id"].to_numpy()[2:] == small["card_id"].to_numpy()[:-2])
    close = (small["timestamp_ms"].to_numpy()[2:] - small["timestamp_ms"].to_numpy()[:-2]) <= 20 * 60_000
    assert (same & close).sum() >= 100
    # Travel (foreign country) and big one-off purchases happen legitimately too.
    assert (legit["country"].isin([566, 643, 804, 156, 76, 608, 642, 360])).mean() > 0.003
    assert (legit["amount"] > 1_000).sum() >= 20


def test_card_testing_small_amounts_fast_or_slow(big):
    ct = big[big["fraud_type"] == "card_testing"]
    small = ct[ct["amount"] < 5]
    assert len(small) / len(ct) > 0.9
    assert (ct["amount"] >= 50).any()  # some cash-outs
    per_card = small.groupby("card_id").agg(n=("amount", "size"),
                                            span=("timestamp_ms", lambda t: t.max() - t.min()))
    # Most tested cards see one burst of >= 5 small amounts: within 15 minutes, or (low and
    # slow) within 8 hours.
    fast = (per_card["n"] >= 5) & (per_card["span"] <= 15 * 60_000)
    assert 0.4 < fast.mean() < 0.8
    assert ((per_card["n"] >= 5) & (per_card["span"] <= 8 * 3_600_000)).mean() > 0.8
    # Tester devices are not the card's own.
    legit_pairs = set(map(tuple, big.loc[big["label"] == 0, ["card_id", "device_id"]].to_numpy()))
    assert not any(tuple(p) in legit_pairs for p in ct[["card_id", "device_id"]].to_numpy())
    # Tester tools are reused across many stolen cards.
    assert ct.groupby("device_id")["card_id"].nunique().max() >= 3


def test_account_takeover_new_device_or_victims_own(big):
    ato = big[big["fraud_type"] == "account_takeover"]
    legit = big[big["label"] == 0]
    assert ato["card_id"].isin(set(legit["card_id"])).mean() > 0.9
    unseen = ~ato["device_id"].isin(set(legit["device_id"]))
    assert 0.5 < unseen.mean() < 0.95  # mostly a new device ...
    own = set(map(tuple, legit[["card_id", "device_id"]].to_numpy()))
    on_own = np.array([tuple(p) in own for p in ato[["card_id", "device_id"]].to_numpy()])
    assert on_own.mean() > 0.1  # ... some via malware / remote access on the victim's own
    assert ato["amount"].median() > 1.5 * legit["amount"].median()


def test_label_times_follow_the_documented_delays(big):
    df = big
    delay = (df["label_time_ms"] - df["timestamp_ms"]).to_numpy()
    assert (delay >= 0).all()
    fraud = df["label"].to_numpy() == 1
    assert (delay[~fraud] == LEGIT_LABEL_DELAY_MS).all() and LEGIT_LABEL_DELAY_MS == 30 * DAY_MS
    days = delay[fraud] / DAY_MS
    # Lognormal, median 5 days (a little less with the same-day reports), capped at 30 days.
    assert 4.0 < np.median(days) < 5.5
    assert 0.04 < (days < 1).mean() < 0.12  # some reported the same day
    assert 12 < np.quantile(days, 0.95) < 20 and days.max() <= 30
    assert (days > 20).mean() > 0.005  # a long tail towards 30 days


def test_without_breaches():
    off = gen(5_000, seed=2, fraud_rate=0.05, compromised_share=0.0)
    assert not (off["fraud_type"] == "compromised_merchant").any()
    assert (off["label_time_ms"] >= off["timestamp_ms"]).all()
    assert len(compromised_merchants(5_000, seed=2, fraud_rate=0.05, compromised_share=0.0)) == 0
    with pytest.raises(ValueError, match="compromised_share"):
        next(generate_transactions(10, compromised_share=0.9))


def _exposure(df: pd.DataFrame, breaches: pd.DataFrame) -> tuple[dict, dict]:
    """First time each card was seen (legit row) by a breached merchant during its breach, and,
    for the other cards active during some breach, their first row in such a window (control)."""
    legit = df[df["label"] == 0]
    exposed: dict[int, int] = {}
    active: dict[int, int] = {}
    for b in breaches.itertuples():
        during = legit[(legit["timestamp_ms"] >= b.start_ms) & (legit["timestamp_ms"] < b.end_ms)]
        there = during[during["merchant_id"] == b.merchant_id]
        for target, rows in ((exposed, there), (active, during)):
            for card, t in rows.groupby("card_id")["timestamp_ms"].min().items():
                target[card] = min(target.get(card, t), t)
    return exposed, {c: t for c, t in active.items() if c not in exposed}


def _later_fraud_share(df: pd.DataFrame, first: dict) -> float:
    fraud = df[df["label"] == 1].groupby("card_id")["timestamp_ms"].apply(np.asarray)
    hit = [((f > t) & (f <= t + 16 * DAY_MS)).any() for c, t in first.items()
           for f in [fraud.get(c, np.zeros(0, np.int64))]]
    return float(np.mean(hit))


@pytest.mark.parametrize("rate,lift", [(0.01, 8.0), (0.05, 3.0)])
def test_compromised_merchants_defraud_their_customers_later(big, rate, lift):
    # big is (50_000, seed=7, fraud_rate=0.05); at 5% other fraud is common among the controls.
    df = big if rate == 0.05 else gen(50_000, seed=7, fraud_rate=rate)
    breaches = compromised_merchants(50_000, seed=7, fraud_rate=rate)
    assert len(breaches) >= 2 and breaches["merchant_id"].isin(df["merchant_id"]).all()
    assert set(breaches["kind"]) <= {"skimmer", "data_breach"}
    span = breaches["end_ms"] - breaches["start_ms"]
    assert span.between(2 * DAY_MS, 10 * DAY_MS).all()
    # The breached merchant's own rows are not fraud; the victims' fraud is elsewhere, later.
    comp = df[df["fraud_type"] == "compromised_merchant"]
    assert comp["merchant_id"].isin(breaches["merchant_id"]).mean() < 0.15
    exposed, control = _exposure(df, breaches)
    assert len(exposed) >= 20 and len(control) >= 500
    assert comp["card_id"].isin(exposed).all()  # every victim was seen by a breached merchant
    # Each victim's fraud starts 1-14 days (+ a spree of up to 36 h) after a visit to a breached
    # merchant during its breach (the capture: the first exposure or a later one).
    seen = pd.merge(df[df["label"] == 0], breaches, on="merchant_id")
    seen = seen[(seen["timestamp_ms"] >= seen["start_ms"]) & (seen["timestamp_ms"] < seen["end_ms"])]
    seen = seen.groupby("card_id")["timestamp_ms"].apply(np.asarray)
    for card, t in comp.groupby("card_id")["timestamp_ms"].min().items():
        gap = t - seen[card]
        assert ((gap > DAY_MS) & (gap < 15.5 * DAY_MS)).any(), card
    p_exposed, p_control = _later_fraud_share(df, exposed), _later_fraud_share(df, control)
    # Cards that used a breached merchant during its breach are far more often defrauded in the
    # next 16 days than cards active at the same time elsewhere.
    assert p_exposed > 0.25
    assert p_exposed > lift * p_control, (p_exposed, p_control)


def test_colluding_merchants_look_ordinary_but_serve_many_ring_cards(big):
    col = big[big["fraud_type"] == "merchant_collusion"]
    per_merchant = col.groupby("merchant_id")["card_id"].nunique()
    assert len(per_merchant) <= 5
    assert per_merchant.max() >= 10
    # Mules are ordinary shops (not a dedicated mcc) with legitimate trade of their own.
    mule_legit = big[(big["label"] == 0) & big["merchant_id"].isin(per_merchant.index)]
    assert len(mule_legit) >= 20


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_round_trip(tmp_path, suffix):
    path = write_transactions(tmp_path / f"t{suffix}", 3_000, seed=5, fraud_rate=0.05)
    expect = gen(3_000, seed=5, fraud_rate=0.05)
    got = load_transactions(path)  # through the declared payments preset: typed columns
    if suffix == ".csv":  # a column the preset does not declare stays as read: CSV text
        got["fraud_type"] = got["fraud_type"].astype(expect["fraud_type"].dtype)
    pd.testing.assert_frame_equal(got, expect)
    if suffix == ".csv":
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert ((raw["device_id"] == "") == (expect["device_id"] == -1)).all()


def test_unsupported_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.csv, \.parquet"):
        load_transactions(tmp_path / "t.json")
    with pytest.raises(ValueError, match="csv"):
        write_transactions(tmp_path / "t.json", 10)


# ---------------------------------------------------------------- C layout


def test_txn_dtype_layout():
    assert TXN_DTYPE.itemsize == 64
    offsets = {name: TXN_DTYPE.fields[name][1] for name in TXN_DTYPE.names}
    assert offsets == {"txn_id": 0, "timestamp_ms": 8, "amount": 16, "entity_id": 24,
                       "country": 56, "mcc": 60}
    assert TXN_DTYPE["entity_id"].shape == (4,) and TXN_DTYPE["entity_id"].base == np.dtype("<i8")
    assert TXN_DTYPE["country"] == np.dtype("<i4") and TXN_DTYPE["amount"] == np.dtype("<f8")
    assert ENTITY_COLUMNS == ("card_id", "device_id", "merchant_id", "ip_id")


def test_to_txn_records_values():
    df = gen(500, seed=2)
    rec = to_txn_records(df)
    assert rec.dtype == TXN_DTYPE and rec.flags["C_CONTIGUOUS"] and len(rec) == 500
    assert np.array_equal(rec["txn_id"], df["txn_id"]) and np.array_equal(rec["amount"], df["amount"])
    assert np.array_equal(rec["entity_id"], df[list(ENTITY_COLUMNS)].to_numpy())
    assert np.array_equal(rec["country"], df["country"]) and np.array_equal(rec["mcc"], df["mcc"])
    raw = rec.tobytes()[:64]  # first record, read as the C struct would
    assert np.frombuffer(raw[24:32], "<i8")[0] == df["card_id"].iat[0]
    assert np.frombuffer(raw[60:64], "<i4")[0] == df["mcc"].iat[0]


# ---------------------------------------------------------------- bad input


def small_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "txn_id": [100, 101, 102, 103, 104],
        "timestamp_ms": [1000, 2000, 2000, 3000, 4000],
        "amount": [10.0, 20.5, 3.25, 99.0, 1.0],
        "card_id": [1, 2, 3, 1, 2],
        "device_id": [5, -1, 6, 5, 7],
        "merchant_id": [9, 9, 8, 7, 9],
        "ip_id": [11, 12, -1, 11, 13],
        "country": [840, 826, 840, 1, 999],
        "mcc": [5411, 0, 9999, 5812, 5814],
        "label": [0, 0, 1, 0, 0],
    })


def test_small_frame_loads_typed():
    df = payments_frame(small_frame())
    assert df["country"].dtype == np.int32 and df["label"].dtype == np.int8
    assert df["device_id"].tolist() == [5, -1, 6, 5, 7]


def test_rules_are_the_cores():
    # The payments preset's rules are the declared schema's (and the core's): a zero amount, a
    # country 0 or an mcc of 10000 are valid codes now (the fixed-layout loader refused them).
    df = small_frame()
    df.loc[4, "amount"] = 0.0
    df.loc[1, "country"] = 0
    df.loc[2, "mcc"] = 10_000
    out = payments_frame(df)
    assert out["amount"].iat[4] == 0.0 and out["country"].iat[1] == 0 and out["mcc"].iat[2] == 10_000


@pytest.mark.parametrize("column,row,value,words", [
    ("amount", 3, np.nan, "amount"),
    ("amount", 1, np.inf, "finite"),
    ("amount", 2, -3.0, ">= 0"),
    ("card_id", 2, -1, "required"),
    ("device_id", 3, -2, "negative"),
    ("country", 1, -2, "negative"),
    ("label", 3, 2, "not 0 or 1"),
    ("timestamp_ms", 3, 1500, "time"),
    ("txn_id", 4, 101, "duplicate event id"),
])
def test_value_errors_name_row_and_column(column, row, value, words):
    df = small_frame()
    df[column] = df[column].astype(float if isinstance(value, float) else df[column].dtype)
    df.loc[row, column] = value
    with pytest.raises(SchemaError) as ei:
        payments_frame(df)
    e = ei.value
    assert (e.row, e.column) == (row, column), str(e)
    assert f"row {row}" in str(e) and repr(column) in str(e) and words in str(e)


def test_missing_column_is_named():
    with pytest.raises(SchemaError, match="'merchant_id'") as ei:
        payments_frame(small_frame().drop(columns="merchant_id"))
    assert ei.value.column == "merchant_id" and ei.value.row is None
    assert "label" not in payments_frame(small_frame().drop(columns="label"))  # servable, not trainable


def write_csv_with(tmp_path, row, column, text) -> str:
    path = tmp_path / "bad.csv"
    df = small_frame().astype(str)
    df.loc[row, column] = text
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("column,row,text", [
    ("amount", 3, "abc"),
    ("card_id", 1, ""),
    ("txn_id", 2, "99999999999999999999"),
    ("mcc", 4, "12x"),
    ("merchant_id", 0, "7.5"),
])
def test_csv_bad_cell_names_file_row_and_column(tmp_path, column, row, text):
    path = write_csv_with(tmp_path, row, column, text)
    with pytest.raises(SchemaError) as ei:
        load_transactions(path)
    e = ei.value
    assert (e.row, e.column) == (row, column), str(e)
    assert "bad.csv" in str(e) and f"row {row}" in str(e) and repr(column) in str(e)


def test_csv_empty_optional_id_is_absent(tmp_path):
    path = write_csv_with(tmp_path, 2, "device_id", "")
    df = load_transactions(path)
    assert df["device_id"].tolist() == [5, -1, -1, 5, 7]
    assert df.dtypes[list(COLUMN_NAMES)].tolist() == [np.dtype(t) for t in
                                                      ["i8", "i8", "f8", "i8", "i8", "i8", "i8", "i4", "i4", "i1"]]
