"""The fitted part of tag suggestions: a logistic combination of the evidence features and the
auto-apply threshold, fitted on curated documents and stored as a vault setting."""

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
FEATURES = ("knn", "knn_max", "proto", "proto_gap", "lex", "lex_gap", "lknn", "lknn_max", "prior")
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

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "bias": self.bias,
            "mean": list(self.mean),
            "scale": list(self.scale),
            "threshold": self.threshold,
            "curated": self.curated,
            "fitted": self.fitted,
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
        )

    @classmethod
    def default(cls, curated: int = 0) -> Calibration:
        n = len(FEATURES)
        return cls(_DEFAULT_WEIGHTS, _DEFAULT_BIAS, (0.0,) * n, (1.0,) * n, 0.5, curated, False)

    def probability(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = z @ np.asarray(self.weights) + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30))))


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
    n_true = sum(true_counts[split:]) or int(y_all[held].sum())
    threshold = _best_threshold(cal.probability(x_all[held]), y_all[held], n_true)
    return Calibration(cal.weights, cal.bias, cal.mean, cal.scale, threshold, curated, True)


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
