"""The HTML report: self-contained, correct headline numbers, escaped text, refused bad input, and a
real render in headless Chromium that shows the figures."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from libfraud import plots
from libfraud.report_html import write_html_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DAY_MS = 86_400_000
SECTIONS = ["summary", "headline", "facts", "figures", "fig-pr", "fig-scores", "fig-reliability",
            "fig-daily", "fig-importance", "fig-latency", "tables", "scorers", "metrics",
            "metrics-by_fraud_type", "daily-table", "latency-table"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def make_synthetic() -> dict:
    """A week of scored transactions: calibrated scores (labels are drawn from them, ~2% fraud), raw
    scores that over-predict, a weaker second scorer, and the daily precision@k the caller computes."""
    rng = np.random.default_rng(0)
    n, k = 20_000, 100
    t0 = 1_767_830_400_000  # 2026-01-08 00:00 UTC
    times = np.sort(rng.integers(t0, t0 + 7 * DAY_MS, n))
    logit = rng.normal(-6.0, 2.2, n)
    scores = _sigmoid(logit)
    y = (rng.random(n) < scores).astype(np.int8)
    day = (times - t0) // DAY_MS
    days = []
    for d in range(7):
        rows = np.flatnonzero(day == d)
        top = rows[np.argsort(-scores[rows], kind="stable")[:k]]
        days.append({"day": f"2026-01-{8 + d:02d}", "precision": float(y[top].mean()),
                     "n": int(rows.size), "positives": int(y[rows].sum())})
    daily = {"k": k, "mean": float(np.mean([d["precision"] for d in days])), "days": days}
    return {
        "y": y, "scores": scores, "raw": _sigmoid(logit + 1.5),
        "trees": _sigmoid(logit + rng.normal(0.0, 2.0, n)),
        "daily": daily, "threshold": float(np.quantile(scores, 0.99)),
        "importance": {f"feature_{i:02d}": float(v) for i, v in enumerate(rng.gamma(1.5, 100.0, 30))},
        "latency": {"tl2cgen": rng.lognormal(1.6, 0.3, 5000), "xgboost": rng.lognormal(3.2, 0.2, 5000)},
    }


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic()


def _report_kwargs(d, **overrides):
    kwargs = dict(
        title="Synthetic week <test>", y=d["y"], scores=d["scores"], threshold=d["threshold"],
        metrics={"test": {"auprc": 0.61, "auroc": 0.97, "k": 100, "n": 20_000, "rule": "recall@1%FPR",
                          "confusion": {"tp": 120, "fp": 80}},
                 "valid": {"auprc": 0.58, "auroc": 0.96, "n": 18_000},
                 "by_fraud_type": {"card_testing": {"auprc": 0.7, "positives": 200},
                                   "account_takeover": {"auprc": 0.4, "positives": 90}}},
        other_scores={"trees alone": d["trees"]}, daily_precision=d["daily"], raw_scores=d["raw"],
        feature_importance=d["importance"], latency_us=d["latency"],
        facts={"model": "gbdt v3 & gnn", "data fingerprint": "sha256:" + "ab" * 32,
               "threshold rule": "recall at 1% FPR on valid"},
        scores_name="served model")
    kwargs.update(overrides)
    return kwargs


@pytest.fixture(scope="module")
def report(synthetic, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    assert write_html_report(path, **_report_kwargs(synthetic)) == path
    return path


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(text: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(text)
    return parser.tags


def _cards(text: str) -> dict[str, str]:
    return dict(re.findall(r'<div class="k">(.*?)</div><div class="v">(.*?)</div>', text))


def test_report_is_self_contained_with_every_section(report):
    text = report.read_text(encoding="utf-8")
    tags = _tags(text)
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed")]
    for tag, attrs in tags:
        for attr in ("src", "href"):
            value = attrs.get(attr)
            assert value is None or not re.match(r"\s*(https?:)?//", value, re.I), (tag, attr, value[:80])
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text, re.I)  # nor from the CSS
    imgs = [attrs["src"] for tag, attrs in tags if tag == "img"]
    assert len(imgs) == 6  # pr, scores, reliability, daily, importance, latency
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True)[:8] == PNG_MAGIC
    ids = {attrs.get("id") for _, attrs in tags}
    assert [s for s in SECTIONS if s not in ids] == []
    assert not list(report.parent.glob(".*.tmp"))  # the atomic write left no temp file behind


def test_headline_numbers_come_from_the_arrays(report, synthetic):
    y, s, t = synthetic["y"], synthetic["scores"], synthetic["threshold"]
    cards = _cards(report.read_text(encoding="utf-8"))
    flagged = s >= t
    tp = int(y[flagged].sum())
    assert cards["Average precision"] == f"{average_precision_score(y, s):.4g}"
    assert cards["AUROC"] == f"{roc_auc_score(y, s):.4g}"
    assert cards["Recall at threshold"] == f"{tp / y.sum():.4g}"
    assert cards["Precision at threshold"] == f"{tp / flagged.sum():.4g}"
    assert cards["Alerts per day"] == f"{flagged.sum() / 7:.4g}"  # 7 days in the daily table
    assert cards["Daily precision@100"] == f"{synthetic['daily']['mean']:.4g}"


def test_text_is_escaped(synthetic, tmp_path):
    evil = '<script>alert("x")</script>'
    path = write_html_report(tmp_path / "r.html", **_report_kwargs(
        synthetic, title=evil, facts={"<b>owner</b>": evil},
        other_scores={"<img src=x onerror=alert(1)>": synthetic["trees"]}))
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text and "<b>" not in text and "onerror=alert(1)>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert [t for t, _ in _tags(text) if t == "img"].__len__() == 6  # the name did not add an <img>


def test_minimal_report_leaves_out_what_was_not_given(synthetic, tmp_path):
    y = synthetic["y"]
    margins = np.log(synthetic["scores"] / (1 - synthetic["scores"]))  # not probabilities
    text = write_html_report(tmp_path / "r.html", title="margins", y=y, scores=margins).read_text()
    ids = {a.get("id") for _, a in _tags(text)}
    assert {"fig-pr", "fig-scores", "fig-reliability", "scorers"} <= ids
    assert not ids & {"fig-daily", "fig-importance", "fig-latency", "facts", "metrics", "latency-table"}
    assert "Not drawn: the scores span" in text  # reliability explains itself instead of lying
    assert "Alerts per day" not in _cards(text) and "Recall at threshold" not in _cards(text)


def _with_nan(s):
    s = s.copy()
    s[17] = np.nan
    return s


@pytest.mark.parametrize("override, match", [
    (lambda d: {"scores": d["scores"][:-5]}, "differ in length"),
    (lambda d: {"y": np.zeros_like(d["y"])}, "no positives"),
    (lambda d: {"scores": _with_nan(d["scores"])}, r"1 NaN or infinite values \(first at row 17\)"),
    (lambda d: {"raw_scores": d["raw"] * 2}, "raw_scores must be probabilities"),
    (lambda d: {"other_scores": {"short": d["trees"][:3]}}, r"other_scores\['short'\]"),
    (lambda d: {"threshold": float("nan")}, "threshold must be a finite number"),
    (lambda d: {"daily_precision": {"k": 100, "days": [{"day": "2026-01-08"}]}},
     r"daily_precision\['days'\]\[0\]"),
    (lambda d: {"daily_precision": {"k": 0, "days": []}}, r"daily_precision\['k'\]"),
    (lambda d: {"feature_importance": {"f": float("inf")}}, "feature importance of 'f'"),
    (lambda d: {"latency_us": {"c": np.array([1.0, -1.0])}}, "> 0"),
    (lambda d: {"reliability_bins": 1}, "reliability_bins"),
    (lambda d: {"metrics": {"test": 0.5}}, r"metrics\['test'\] must be a dict"),
], ids=["length", "no-positives", "nan", "raw-range", "other-length", "threshold", "daily-day", "daily-k",
        "importance", "latency", "bins", "metrics"])
def test_bad_input_is_refused_and_nothing_is_written(synthetic, tmp_path, override, match):
    path = tmp_path / "r.html"
    path.write_text("previous report")
    with pytest.raises(ValueError, match=match):
        write_html_report(path, **_report_kwargs(synthetic, **override(synthetic)))
    assert path.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_plot_functions_return_png_bytes_or_write_the_path(synthetic, tmp_path):
    d = synthetic
    drawn = {
        "pr": lambda p: plots.plot_pr_curve(d["y"], {"a": d["scores"], "b": d["trees"]}, p,
                                            threshold=d["threshold"]),
        "daily": lambda p: plots.plot_daily_precision(d["daily"], p),
        "reliability": lambda p: plots.plot_reliability(d["y"], {"cal": d["scores"], "raw": d["raw"]}, p,
                                                        bins=15),
        "scores": lambda p: plots.plot_score_distributions(d["y"], d["scores"], p, threshold=0.5),
        "importance": lambda p: plots.plot_feature_importance(d["importance"], p, top=5),
        "latency": lambda p: plots.plot_latency_histogram(d["latency"], p),
    }
    for name, draw in drawn.items():
        png = draw(None)
        assert isinstance(png, bytes) and png[:8] == PNG_MAGIC and len(png) > 5000, name
        path = draw(tmp_path / "sub" / f"{name}.png")
        assert path == tmp_path / "sub" / f"{name}.png" and path.read_bytes()[:8] == PNG_MAGIC, name
    with pytest.raises(ValueError, match="probabilities"):
        plots.plot_reliability(d["y"], {"margin": d["scores"] * 10}, None)


# ------------------------------------------------------------------ the rendered page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def test_report_renders_in_headless_chromium(report, tmp_path):
    import matplotlib.image

    browser = _chromium()
    if browser is None:
        if os.environ.get("LIBFRAUD_REQUIRE_CHROMIUM") == "1":
            pytest.fail("LIBFRAUD_REQUIRE_CHROMIUM=1 but no chromium binary on PATH "
                        "(apt-get install chromium)")
        pytest.skip("no chromium binary on PATH (set LIBFRAUD_REQUIRE_CHROMIUM=1 to make this an error)")
    shot = tmp_path / "shot.png"
    cmd = [browser, "--headless=new",
           "--no-sandbox",  # root (CI containers) cannot use the sandbox; the page is our own file
           "--disable-gpu", "--disable-dev-shm-usage",  # containers: no GPU, a small /dev/shm
           "--no-first-run", "--hide-scrollbars", "--window-size=1280,2400",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", report.resolve().as_uri()]
    # Its own process group, so a hung browser and its helpers can all be stopped.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        out = b""
        pytest.fail("chromium did not finish the screenshot in 120 s")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
    assert proc.returncode == 0 and shot.exists(), out.decode(errors="replace")[-3000:]

    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (2400, 1280)
    rgb = np.round(img[..., :3] * 255).astype(np.int16)
    # Thresholds sit between this page (~14% non-white, ~370 colours) and the same page with its
    # images broken (~4%, ~90 colours: text and the cards alone).
    non_white = np.any(rgb < 240, axis=-1).mean()
    assert non_white > 0.09, f"only {non_white:.1%} of the page is not white: figures missing?"
    q = rgb // 16  # 4 bits a channel, packed into one int: a 1-D unique is fast
    colours = np.unique(q[..., 0] * 256 + q[..., 1] * 16 + q[..., 2]).size
    assert colours >= 150, f"only {colours} distinct colours: text only, no figures?"
    # matplotlib's blue and orange (the scorers' curves and bars) can only come from the PNGs.
    for name, ref, least in (("tab:blue", (31, 119, 180), 5000), ("tab:orange", (255, 127, 14), 1000)):
        hits = int(np.all(np.abs(rgb - np.array(ref, dtype=np.int16)) <= 12, axis=-1).sum())
        assert hits > least, f"{name} appears in only {hits} pixels: the inline figures did not render"
