"""Calibrated probabilities: a monotone map from the trees' probability to one that means what it
says (export/BUNDLE.md "calibration").

A model trained with ``scale_pos_weight`` overstates fraud (its mean score is several times the
fraud rate). A Calibrator fitted on held-out labels maps its output back; the bundle carries it
and the core applies it to every score. :meth:`Calibrator.apply` is the Python reference of what
the core computes, with the same arithmetic: the trees' float32 probability widened to float64,
the formula in float64, the result rounded to float32.

- ``platt``: ``p_cal = 1 / (1 + exp(-(a * logit(p) + b)))``, ``logit(p) = log(c / (1 - c))`` with
  ``c = p`` clipped into ``[CLIP, 1 - CLIP]`` (``CLIP = 1e-7``), ``a > 0``.
- ``isotonic``: breakpoints ``x`` (strictly increasing) and ``y`` (non-decreasing, in [0, 1]),
  2 to ``MAX_POINTS`` of them; ``p_cal = numpy.interp(p, x, y)``: linear between breakpoints,
  ``y[0]`` below ``x[0]``, ``y[-1]`` above ``x[-1]`` (what sklearn's
  ``IsotonicRegression(out_of_bounds="clip").predict`` computes from its thresholds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["CLIP", "MAX_POINTS", "MAX_SLOPE", "METHODS", "Calibrator", "fit_calibrator"]

#: Platt clips p into [CLIP, 1 - CLIP] before the logit (Calibration::kClip in the core).
CLIP = 1e-7
#: Most isotonic breakpoints a bundle may carry (Calibration::kMaxPoints in the core).
MAX_POINTS = 1024
#: Default bound on an isotonic calibrator's slope (see fit_calibrator).
MAX_SLOPE = 50.0
METHODS = ("platt", "isotonic")
_KEYS = {"platt": {"method", "a", "b", "fitted_on"}, "isotonic": {"method", "x", "y", "fitted_on"}}


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"calibration.{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"calibration.{name} must be finite, got {value!r}")
    return v


def _points(values: Any, name: str) -> tuple[float, ...]:
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
        raise ValueError(f"calibration.{name} must be a list of numbers, got {type(values).__name__}")
    if not 2 <= len(values) <= MAX_POINTS:
        raise ValueError(f"calibration.{name} has {len(values)} points; an isotonic calibrator has 2 to {MAX_POINTS}")
    return tuple(_finite(v, f"{name}[{i}]") for i, v in enumerate(values))


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibrator (module docstring: the formulas). Construct it with ``fit_calibrator``
    or ``from_manifest``; the constructor validates what the core validates."""

    method: str
    a: float | None = None  # platt
    b: float | None = None  # platt
    x: tuple[float, ...] = ()  # isotonic breakpoints
    y: tuple[float, ...] = ()  # isotonic values
    fitted_on: str | None = None  # what it was fitted on, in words (information only)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"calibration.method is {self.method!r}; known: {', '.join(METHODS)}")
        if self.fitted_on is not None and not isinstance(self.fitted_on, str):
            raise ValueError(f"calibration.fitted_on must be a string, got {self.fitted_on!r}")
        if self.method == "platt":
            if self.x or self.y:
                raise ValueError("a platt calibrator has no x / y breakpoints")
            a, b = _finite(self.a, "a"), _finite(self.b, "b")
            if not a > 0:  # as isotonic's non-decreasing y: the trees' ranking is kept
                raise ValueError(f"calibration.a must be > 0 (a calibrator must keep the trees' ranking), got {a!r}")
            object.__setattr__(self, "a", a)
            object.__setattr__(self, "b", b)
            return
        if self.a is not None or self.b is not None:
            raise ValueError("an isotonic calibrator has no a / b parameters")
        x, y = _points(self.x, "x"), _points(self.y, "y")
        if len(x) != len(y):
            raise ValueError(f"calibration.x has {len(x)} points but calibration.y has {len(y)}")
        for i in range(len(x)):
            if i and not x[i] > x[i - 1]:
                raise ValueError(f"calibration.x must be strictly increasing: x[{i}] = {x[i]!r} after {x[i - 1]!r}")
            if not 0.0 <= y[i] <= 1.0:
                raise ValueError(f"calibration.y must lie in [0, 1]: y[{i}] = {y[i]!r}")
            if i and not y[i] >= y[i - 1]:
                raise ValueError(f"calibration.y must be non-decreasing: y[{i}] = {y[i]!r} after {y[i - 1]!r}")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    def apply(self, p) -> np.ndarray:
        """The calibrated scores of the trees' probabilities ``p`` (any shape), float32, computed
        as the core does: p rounded to float32 (what the trees give the core), widened to float64,
        the formula in float64, the result rounded to float32. NaN stays NaN."""
        q = np.asarray(p, dtype=np.float32).astype(np.float64)
        if self.method == "platt":
            c = np.clip(q, CLIP, 1.0 - CLIP)
            with np.errstate(over="ignore"):  # exp(-z) -> inf gives 0, as in the core
                out = 1.0 / (1.0 + np.exp(-(self.a * np.log(c / (1.0 - c)) + self.b)))
        else:
            out = np.interp(q, np.asarray(self.x), np.asarray(self.y))
        return out.astype(np.float32)

    def to_manifest(self) -> dict:
        """The bundle manifest's ``calibration`` section (JSON-ready)."""
        d: dict[str, Any] = {"method": self.method}
        if self.method == "platt":
            d.update(a=self.a, b=self.b)
        else:
            d.update(x=list(self.x), y=list(self.y))
        if self.fitted_on is not None:
            d["fitted_on"] = self.fitted_on
        return d

    @classmethod
    def from_manifest(cls, d: Mapping) -> "Calibrator":
        """A Calibrator from a manifest's ``calibration`` section; ValueError naming the key for
        anything the core would refuse (unknown method or key, bad numbers, bad breakpoints)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"calibration must be an object, got {type(d).__name__}")
        method = d.get("method")
        if method not in METHODS:
            raise ValueError(f"calibration.method is {method!r}; known: {', '.join(METHODS)}")
        unknown = sorted(set(d) - _KEYS[method])
        if unknown:  # the core refuses them too: it would not apply them
            raise ValueError(f"calibration: unknown keys {unknown} for method {method!r}")
        missing = sorted(_KEYS[method] - {"fitted_on"} - set(d))
        if missing:
            raise ValueError(f"calibration: missing keys {missing} for method {method!r}")
        if method == "platt":
            return cls("platt", a=d["a"], b=d["b"], fitted_on=d.get("fitted_on"))
        return cls("isotonic", x=d["x"], y=d["y"], fitted_on=d.get("fitted_on"))


# ------------------------------------------------------------------------------------------ fitting


def _check_inputs(y, p) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y), np.asarray(p)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y and p must be 1-D, got shapes {y.shape} and {p.shape}")
    if len(y) != len(p):
        raise ValueError(f"y has {len(y)} labels but p has {len(p)} scores")
    if len(y) == 0:
        raise ValueError("y and p are empty")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(f"y must hold 0/1 labels, got dtype {y.dtype}")
    y = y.astype(np.float64)
    bad = ~((y == 0) | (y == 1))
    if bad.any():
        raise ValueError(f"y must hold 0/1 labels; y[{int(np.argmax(bad))}] = {float(y[bad][0])!r}")
    if y.min() == y.max():
        raise ValueError(f"y holds only {'frauds' if y[0] else 'non-frauds'}; a calibrator needs both classes")
    if not np.issubdtype(p.dtype, np.number):
        raise ValueError(f"p must hold probabilities, got dtype {p.dtype}")
    # The trees' probabilities as the core sees them: float32.
    p = p.astype(np.float32).astype(np.float64)
    bad = ~(np.isfinite(p) & (p >= 0) & (p <= 1))
    if bad.any():
        raise ValueError(f"p must hold finite probabilities in [0, 1]; p[{int(np.argmax(bad))}] = {float(p[bad][0])!r}")
    if p.min() == p.max():
        raise ValueError("p has a single distinct value; a calibrator needs scores that vary")
    return y, p


def _fit_platt(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Platt (1999): logistic regression of the label on logit(p), by Newton's method with step
    halving, on his smoothed targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2): they keep the optimum
    finite when the scores separate the classes, and the mean fitted probability is then the
    fraud rate within about 1/N."""
    c = np.clip(p, CLIP, 1.0 - CLIP)
    f = np.log(c / (1.0 - c))
    n_pos = float(y.sum())
    n_neg = len(y) - n_pos
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(a: float, b: float) -> float:
        z = a * f + b  # -log-likelihood, written stably
        return float(np.sum(np.logaddexp(0.0, z) - t * z))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(100):
        with np.errstate(over="ignore"):  # exp -> inf: s = 0, the right limit
            s = 1.0 / (1.0 + np.exp(-(a * f + b)))
        g = np.array([np.dot(s - t, f), np.sum(s - t)])
        w = s * (1 - s)
        h = np.array([[np.dot(w, f * f), np.dot(w, f)], [np.dot(w, f), np.sum(w)]])
        h += np.eye(2) * 1e-12 * max(1.0, float(np.trace(h)))  # singular only for a constant f
        step = np.linalg.solve(h, g)
        scale = 1.0
        while scale > 1e-10:
            na, nb = a - scale * step[0], b - scale * step[1]
            new = loss(na, nb)
            if new <= current:
                break
            scale /= 2
        else:
            break  # no step lowers the loss: at the optimum to rounding
        a, b, current = float(na), float(nb), new
        if max(abs(scale * step[0]), abs(scale * step[1])) < 1e-12:
            break
    return a, b


def _limit_slope(x: np.ndarray, y: np.ndarray, max_slope: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge breakpoints until no segment is steeper than max_slope: the steepest segment (lowest
    index on ties) is replaced by its midpoint, (x_k + x_k+1) / 2, (y_k + y_k+1) / 2, again and
    again. The curve stays non-decreasing (the midpoint lies between its neighbours) and passes
    near sklearn's: its near-vertical steps become ramps."""
    x, y = np.array(x, dtype=np.float64), np.array(y, dtype=np.float64)
    while len(x) > 2:
        slopes = np.diff(y) / np.diff(x)
        k = int(np.argmax(slopes))
        if not slopes[k] > max_slope:
            break
        x[k], y[k] = (x[k] + x[k + 1]) / 2, (y[k] + y[k + 1]) / 2
        x, y = np.delete(x, k + 1), np.delete(y, k + 1)
    if len(x) == 2 and (y[1] - y[0]) / (x[1] - x[0]) > max_slope:
        raise ValueError(f"the isotonic fit rises by {y[1] - y[0]:.3g} over scores [{x[0]:.6g}, {x[1]:.6g}]: "
                         f"it cannot keep its slope <= max_slope={max_slope:g}; use method='platt' or a "
                         "larger max_slope")
    return x, y


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS breakpoints: evenly spaced by index, first and last kept. A subset of a
    monotone curve's points is monotone, and its chords are no steeper than the curve."""
    if len(x) <= MAX_POINTS:
        return x, y
    keep = np.unique(np.round(np.linspace(0, len(x) - 1, MAX_POINTS)).astype(np.int64))
    return x[keep], y[keep]


def fit_calibrator(y, p, method: str = "platt", *, fitted_on: str | None = None,
                   max_slope: float | None = MAX_SLOPE) -> Calibrator:
    """Fit a calibrator of the trees' probabilities ``p`` to the 0/1 labels ``y`` (held-out data the
    trees were not trained on, e.g. the validation split). Deterministic.

    ``platt``: Newton's method on Platt's smoothed targets (see _fit_platt); no sklearn needed.
    ``isotonic``: sklearn's ``IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")``; its
    thresholds are the breakpoints, then (``max_slope``, default 50) segments steeper than
    ``max_slope`` are merged into their midpoints, so a difference d between two float32 tree
    outputs (the compiled trees and xgboost differ by ~1e-7) moves the calibrated score by at most
    ``max_slope * d``: isotonic steps are near-vertical and would otherwise turn a 1-ulp difference
    into a large one, failing the bundle's 1e-5 parity check. ``max_slope=None`` keeps sklearn's
    thresholds exactly (apply then equals its predict). Last, more than MAX_POINTS breakpoints are
    thinned to MAX_POINTS evenly spaced by index, first and last kept.

    ``fitted_on``: what the data was, in words (recorded in the manifest); default
    ``"<n> rows, <k> positive"``. ValueError naming the problem for bad inputs: not 1-D, lengths
    differ, labels not 0/1 or of one class, p not finite in [0, 1] or constant.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if max_slope is not None and (isinstance(max_slope, bool) or not isinstance(max_slope, (int, float))
                                  or not math.isfinite(max_slope) or max_slope <= 0):
        raise ValueError(f"max_slope must be a finite number > 0 or None, got {max_slope!r}")
    y, p = _check_inputs(y, p)
    if fitted_on is None:
        fitted_on = f"{len(y)} rows, {int(y.sum())} positive"
    if method == "platt":
        a, b = _fit_platt(y, p)
        return Calibrator("platt", a=a, b=b, fitted_on=fitted_on)

    from sklearn.isotonic import IsotonicRegression
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(p, y)
    x = np.asarray(iso.X_thresholds_, dtype=np.float64)
    v = np.clip(np.asarray(iso.y_thresholds_, dtype=np.float64), 0.0, 1.0)
    if len(x) < 2:
        raise ValueError("the isotonic fit has a single breakpoint; a calibrator needs scores that vary")
    if max_slope is not None:
        x, v = _limit_slope(x, v, float(max_slope))
    x, v = _thin(x, v)
    return Calibrator("isotonic", x=tuple(x.tolist()), y=tuple(v.tolist()), fitted_on=fitted_on)
