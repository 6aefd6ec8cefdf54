"""The tag-suggestion protocol of shared/eval/README.md: an 80/20 split of a tagged corpus,
suggestions for the held-out part, p@3, r@5 and micro-F1 at the calibrated threshold."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kvdesk.core.errors import Cancelled, KvdeskError
from kvdesk.core.progress import CancelToken, Progress, ProgressSink, no_progress
from kvdesk.core.tags.manager import TagManager
from kvdesk.core.tags.store import TagState, normalise_tag


class EvalBase(Protocol):
    """What the protocol needs of a knowledge base: import, dense keys, and its tags."""

    @property
    def tags(self) -> TagManager: ...

    def import_records(
        self,
        records_file: str | os.PathLike[str],
        *,
        progress: ProgressSink = ...,
        cancel: CancelToken | None = ...,
    ) -> Any: ...

    def build_dense_keys(
        self, *, progress: ProgressSink = ..., cancel: CancelToken | None = ...
    ) -> int: ...


@dataclass(frozen=True)
class TagEvalReport:
    """The tag-suggestion protocol's figures on held-out documents."""

    held_out: int
    curated: int
    p_at_3: float
    r_at_5: float
    f1: float
    suggest_ms_p50: float
    threshold: float
    fit_seconds: float
    seed: int
    calibration_fitted: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "held_out": self.held_out,
            "p@3": round(self.p_at_3, 4),
            "r@5": round(self.r_at_5, 4),
            "f1": round(self.f1, 4),
            "suggest_ms_p50": round(self.suggest_ms_p50, 2),
            "curated": self.curated,
            "threshold": round(self.threshold, 4),
            "fit_seconds": round(self.fit_seconds, 2),
            "seed": self.seed,
            **self.extra,
        }


def split_corpus(
    rows: list[dict[str, Any]], seed: int = 7
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shuffle with ``random.Random(seed)``: the first 80% are curated, the last 20% held out."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    cut = int(len(shuffled) * 0.8)
    return shuffled[:cut], shuffled[cut:]


def read_corpus(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    rows.append(json.loads(line))
    except (OSError, ValueError) as exc:
        raise KvdeskError(f"cannot read tagged corpus {path}: {exc}") from exc
    return rows


def score_ranking(
    ranked: Sequence[Sequence[str]], truth: Sequence[set[str]], predicted: Sequence[set[str]]
) -> tuple[float, float, float]:
    """Mean p@3, mean r@5 and micro-F1 of the predicted sets (tag names compared lower-case)."""
    p3 = r5 = 0.0
    tp = n_pred = n_true = 0
    n = 0
    for rank, true, pred in zip(ranked, truth, predicted, strict=True):
        true_l = {t.lower() for t in true}
        if not true_l:
            continue
        n += 1
        low = [t.lower() for t in rank]
        p3 += len(set(low[:3]) & true_l) / 3
        r5 += len(set(low[:5]) & true_l) / len(true_l)
        pred_l = {t.lower() for t in pred}
        tp += len(pred_l & true_l)
        n_pred += len(pred_l)
        n_true += len(true_l)
    f1 = 2 * tp / max(n_pred + n_true, 1)
    return p3 / max(n, 1), r5 / max(n, 1), f1


def evaluate(
    kb: EvalBase,
    corpus: str | Path,
    *,
    seed: int = 7,
    dense: bool = True,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> TagEvalReport:
    """Run the tag-suggestion protocol on a JSONL corpus (``_id``, ``title``, ``text``, ``tags``).

    Imports the corpus (incremental: a reused vault only adds what is missing), sets the curated
    80% to their tags and strips every tag from the held-out 20%, fits on the curated part, then
    ranks tags for each held-out document.
    """
    rows = read_corpus(corpus)
    curated, held = split_corpus(rows, seed)
    kb.import_records(corpus, progress=progress, cancel=cancel)
    if dense:
        kb.build_dense_keys(progress=progress, cancel=cancel)
    tags = kb.tags
    ids = {ext: vid for vid, ext in tags.values.external_ids().items()}
    want: dict[int, set[str]] = {ids[str(r["_id"])]: set() for r in held}
    for r in curated:
        want[ids[str(r["_id"])]] = {normalise_tag(str(t)) for t in r.get("tags") or []}
    _reset_tags(tags, want, progress)
    suggester = tags.suggester(use_dense=dense)
    t0 = time.perf_counter()
    suggester.load()
    cal = suggester.fit(save=False)
    fit_seconds = time.perf_counter() - t0
    ranked: list[list[str]] = []
    truth: list[set[str]] = []
    predicted: list[set[str]] = []
    latencies: list[float] = []
    for i, r in enumerate(held):
        if cancel is not None and cancel.cancelled:
            raise Cancelled("evaluation cancelled")
        vid = ids[str(r["_id"])]
        start = time.perf_counter()
        sugg = suggester.suggest(vid, k=10)
        latencies.append((time.perf_counter() - start) * 1000)
        ranked.append([s.tag for s in sugg])
        predicted.append({s.tag for s in sugg if s.confidence >= cal.threshold})
        truth.append({str(t) for t in r.get("tags") or []})
        if i % 200 == 0:
            progress(Progress("suggest", i, len(held)))
    p3, r5, f1 = score_ranking(ranked, truth, predicted)
    return TagEvalReport(
        held_out=len(held),
        curated=len(curated),
        p_at_3=p3,
        r_at_5=r5,
        f1=f1,
        suggest_ms_p50=float(np.percentile(latencies, 50)) if latencies else 0.0,
        threshold=cal.threshold,
        fit_seconds=fit_seconds,
        seed=seed,
        calibration_fitted=cal.fitted,
        extra={"dense": suggester.dense},
    )


def _reset_tags(tags: TagManager, want: dict[int, set[str]], progress: ProgressSink) -> None:
    """Make the given documents carry exactly the wanted accepted tags (and nothing else)."""
    have: dict[int, set[str]] = {v: set() for v in want}
    other: set[int] = set()
    for vid, name, state in tags.store.rows():
        if vid in have:
            if state is TagState.ACCEPTED:
                have[vid].add(name)
            else:
                other.add(vid)
    changed = [
        v
        for v in want
        if v in other or {t.lower() for t in have[v]} != {t.lower() for t in want[v]}
    ]
    if changed:
        tags.replace_accepted({v: want[v] for v in changed}, actor="eval", progress=progress)
