"""The tag-suggestion protocol of shared/eval/README.md: an 80/20 split of a tagged corpus,
suggestions for the held-out part, p@3, r@5 and micro-F1 at the calibrated threshold.

``examples_per_tag=N`` runs the few-examples variant: of the curated 80% (in shuffled order) each
tag stays accepted on its first N documents only (in memory: the vault keeps its tags), so the
suggester learns every tag from at most N examples, as a new user's vault does. Besides the
ranking figures the report then measures whether confidence means what it says: the expected
calibration error over all suggestions (10 bins), the mean confidence and precision of the top
suggestion, and how many suggestions per document reach 0.5 and how often those are right.
"""

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
    examples_per_tag: int | None = None,
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
    index = suggester.load()
    if examples_per_tag is not None:
        if examples_per_tag < 1:
            raise KvdeskError("examples per tag must be at least 1")
        kept: dict[str, int] = {}
        for r in curated:
            vid = ids[str(r["_id"])]
            for name in sorted(want[vid]):
                key = name.lower()
                kept[key] = kept.get(key, 0) + 1
                if kept[key] > examples_per_tag:
                    index.apply(vid, index.tag(name), "none")
    cal = suggester.fit(save=False)
    fit_seconds = time.perf_counter() - t0
    ranked: list[list[str]] = []
    truth: list[set[str]] = []
    predicted: list[set[str]] = []
    latencies: list[float] = []
    scored: list[tuple[float, bool]] = []  # every suggestion: confidence, right or not
    few_reasons = 0
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
        true_l = {t.lower() for t in truth[-1]}
        scored.extend((s.confidence, s.tag.lower() in true_l) for s in sugg)
        few_reasons += bool(sugg and sugg[0].reason.startswith("only "))
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
        extra={
            "dense": suggester.dense,
            "examples_per_tag": examples_per_tag,
            "curated_docs_used": sum(1 for tags_ in index.accepted.values() if tags_),
            "examples_prior": cal.examples_prior,
            "top1_few_examples_share": round(few_reasons / max(len(held), 1), 4),
            **confidence_report(scored, len(held)),
        },
    )


def confidence_report(scored: Sequence[tuple[float, bool]], docs: int) -> dict[str, float]:
    """Whether confidences mean what they say: expected calibration error over 10 equal-width
    bins, suggestions per document at confidence >= 0.5 and their precision."""
    if not scored:
        return {"ece": 0.0, "per_doc_at_0.5": 0.0, "precision_at_0.5": 0.0, "mean_conf": 0.0}
    conf = np.asarray([c for c, _ok in scored])
    right = np.asarray([ok for _c, ok in scored], dtype=np.float64)
    bins = np.minimum((conf * 10).astype(int), 9)
    ece = sum(
        abs(float(conf[bins == b].mean()) - float(right[bins == b].mean())) * (bins == b).sum()
        for b in range(10)
        if (bins == b).any()
    ) / len(conf)
    high = conf >= 0.5
    return {
        "ece": round(float(ece), 4),
        "mean_conf": round(float(conf.mean()), 4),
        "precision": round(float(right.mean()), 4),
        "per_doc_at_0.5": round(float(high.sum()) / max(docs, 1), 4),
        "precision_at_0.5": round(float(right[high].mean()) if high.any() else 0.0, 4),
    }


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
