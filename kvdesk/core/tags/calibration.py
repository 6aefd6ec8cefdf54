"""The fitted part of tag suggestions: a logistic combination of the evidence features, how much
to distrust a tag with few examples, and the auto-apply threshold, fitted on curated documents
and stored as a vault setting.

**Few examples.** Evidence for a tag learnt from three documents is weak whatever it looks like
(three documents share words and neighbours by chance), so a tag's probability is scaled by
``n / (n + k)`` for its ``n`` accepted examples: with ``k = 4`` a tag of 1 example reaches at most
0.2, of 3 at most 0.43, of 10 at most 0.71, of 30 at most 0.88. ``k`` is chosen on held-out
curated documents (lowest log-loss, never below :data:`MIN_EXAMPLES_PRIOR`); before there is
enough curated data to fit, :data:`DEFAULT_EXAMPLES_PRIOR` is used. ``bench/bench_tags.py
--examples-per-tag 1,3,10,30`` measures how well this is calibrated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kvdesk.core.errors import KvdeskError
from kvdesk.core.settings import SettingStore

SETTING_KEY = "tagging.calibration"
FIT_SAMPLE = 600  # curated documents used to fit the calibration
MIN_FIT_POSITIVES = 20  # below this, fixed default weights are used
# Dense similarities ("_rel") are relative to the document's language (see tags.index).
FEATURES = (
    "knn_rel",
    "knn_max_rel",
    "proto_rel",
    "proto_rel_gap",
    "lex",
    "lex_gap",
    "lknn",
    "lknn_max",
    "prior",
)
DEFAULT_EXAMPLES_PRIOR = 4.0  # k in n / (n + k) before a fit
MIN_EXAMPLES_PRIOR = 2.0  # a fit never trusts few examples more than this
_PRIOR_GRID = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
# Weights used before there is enough curated data to fit (features standardised as-is).
_DEFAULT_WEIGHTS = (3.0, 1.0, 2.0, 2.0, 0.6, 0.6, 2.0, 1.0, 0.3)
_DEFAULT_BIAS = -3.0


@dataclass(frozen=True)
class Calibration:
    """Logistic weights over standardised evidence features, plus the auto-apply threshold."""

    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    threshold: float
    curated: int  # curated documents when it was fitted
    fitted: bool
    examples_prior: float = DEFAULT_EXAMPLES_PRIOR  # k: a tag of n examples counts n / (n + k)

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "bias": self.bias,
            "mean": list(self.mean),
            "scale": list(self.scale),
            "threshold": self.threshold,
            "curated": self.curated,
            "fitted": self.fitted,
            "examples_prior": self.examples_prior,
            "features": list(FEATURES),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        if data.get("features") != list(FEATURES):
            raise ValueError("calibration for other features")
        return cls(
            weights=tuple(float(x) for x in data["weights"]),
            bias=float(data["bias"]),
            mean=tuple(float(x) for x in data["mean"]),
            scale=tuple(float(x) for x in data["scale"]),
            threshold=float(data["threshold"]),
            curated=int(data["curated"]),
            fitted=bool(data["fitted"]),
            examples_prior=float(data["examples_prior"]),
        )

    @classmethod
    def default(cls, curated: int = 0) -> Calibration:
        n = len(FEATURES)
        return cls(_DEFAULT_WEIGHTS, _DEFAULT_BIAS, (0.0,) * n, (1.0,) * n, 0.5, curated, False)

    def probability(self, x: np.ndarray, examples: np.ndarray | None = None) -> np.ndarray:
        """The confidence of each feature row; ``examples`` (each row's tag's number of accepted
        documents) scales it by :meth:`trust`."""
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = z @ np.asarray(self.weights) + self.bias
        p = np.asarray(1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30))))
        if examples is not None:
            p = p * self.trust(examples)
        return p

    def trust(self, examples: np.ndarray) -> np.ndarray:
        """``n / (n + k)``: how far evidence learnt from ``n`` examples can be trusted."""
        n = np.maximum(np.asarray(examples, dtype=np.float64), 0.0)
        return np.asarray(n / (n + self.examples_prior))


def stored_calibration(settings: SettingStore, curated: int) -> Calibration | None:
    """The vault's stored calibration, unless missing, unreadable, or fitted on a curated part
    that has since grown or shrunk by more than a quarter (then it is refitted)."""
    text = settings.get(SETTING_KEY)
    if not text:
        return None
    try:
        cal = Calibration.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None
    if abs(curated - cal.curated) > 0.25 * max(cal.curated, 1):
        return None
    return cal


def save_calibration(settings: SettingStore, cal: Calibration) -> None:
    """Store a calibration for the next process; a busy vault only means it fits again."""
    try:
        settings.set(SETTING_KEY, json.dumps(cal.to_json()))
    except KvdeskError:
        pass


@dataclass(frozen=True)
class Example:
    """The candidate tags of one sampled curated document: features and whether each is true."""

    group: int  # the document's place in the sample
    x: np.ndarray
    y: np.ndarray
    n: np.ndarray | None = None  # each candidate tag's examples (the document left out)


def fit_calibration(
    examples: Sequence[Example], true_counts: Sequence[int], curated: int
) -> Calibration:
    """Fit on the first two thirds of the sample, choose the threshold on the rest.

    ``true_counts`` holds each sampled document's number of accepted tags (sample order);
    with fewer than ``MIN_FIT_POSITIVES`` true candidates the default weights are used.
    """
    positives = sum(float(e.y.sum()) for e in examples)
    if positives < MIN_FIT_POSITIVES:
        return Calibration.default(curated)
    x_all = np.vstack([e.x for e in examples])
    y_all = np.concatenate([e.y for e in examples])
    g_all = np.concatenate([np.full(len(e.y), e.group) for e in examples])
    split = int(len(true_counts) * 2 / 3)
    train = g_all < split
    cal = _fit_logistic(x_all[train], y_all[train], curated)
    held = ~train if (~train).any() else train
    n_all = np.concatenate([e.n if e.n is not None else np.full(len(e.y), 1e9) for e in examples])
    prior = _best_prior(cal.probability(x_all[held]), y_all[held], n_all[held])
    cal = Calibration(cal.weights, cal.bias, cal.mean, cal.scale, 0.5, curated, True, prior)
    n_true = sum(true_counts[split:]) or int(y_all[held].sum())
    threshold = _best_threshold(cal.probability(x_all[held], n_all[held]), y_all[held], n_true)
    return Calibration(cal.weights, cal.bias, cal.mean, cal.scale, threshold, curated, True, prior)


def _best_prior(p: np.ndarray, y: np.ndarray, n: np.ndarray) -> float:
    """The ``k`` of ``n / (n + k)`` with the lowest log-loss on held-out curated examples."""
    best, best_loss = _PRIOR_GRID[0], float("inf")
    for k in _PRIOR_GRID:
        q = np.clip(p * n / (n + k), 1e-6, 1 - 1e-6)
        loss = float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())
        if loss < best_loss:
            best, best_loss = k, loss
    return max(best, MIN_EXAMPLES_PRIOR)


def _fit_logistic(x: np.ndarray, y: np.ndarray, curated: int) -> Calibration:
    """Plain L2-regularised logistic regression by gradient descent on standardised features."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    w = np.zeros(z.shape[1])
    b = float(np.log((y.mean() + 1e-6) / (1 - y.mean() + 1e-6)))
    lr, l2 = 0.5, 1e-3
    for _ in range(500):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w + b, -30, 30)))
        err = p - y
        w -= lr * (z.T @ err / len(y) + l2 * w)
        b -= lr * float(err.mean())
    return Calibration(
        tuple(float(v) for v in w),
        b,
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        0.5,
        curated,
        True,
    )


def _best_threshold(p: np.ndarray, y: np.ndarray, n_true: int) -> float:
    """The confidence threshold maximising micro-F1 on (curated) examples."""
    best, best_f1 = 0.5, -1.0
    for th in np.arange(0.05, 0.96, 0.01):
        pred = p >= th
        tp = float((pred & (y > 0)).sum())
        f1 = 2 * tp / max(float(pred.sum()) + n_true, 1.0)
        if f1 > best_f1:
            best, best_f1 = float(th), f1
    return round(best, 2)
