"""Dense keys are built most recently modified first, and the rate estimator behind the ETA."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kvdesk.core.errors import Cancelled
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.progress import CancelToken, Progress, RateEstimator
from tests.tiny_model import write_model_folder

DAY = 86_400.0


def test_missing_dense_is_newest_first_with_stored_date_fallback(tmp_path: Path) -> None:
    model = write_model_folder(tmp_path / "tiny")
    docs = tmp_path / "docs"
    docs.mkdir()
    # Written (and so imported, by name) in an order unrelated to their modification times.
    ages = {"a-old.txt": 300, "b-newest.txt": 1, "c-middle.txt": 30, "d-ancient.txt": 3000}
    base = 1_700_000_000.0
    for name, days in ages.items():
        path = docs / name
        path.write_text(f"notes about {name}", encoding="utf-8")
        os.utime(path, (base - days * DAY, base - days * DAY))
    records = tmp_path / "records.jsonl"  # no source file: dated when stored (now, the newest)
    records.write_text(json.dumps({"_id": "r1", "title": "record", "text": "a record"}) + "\n")
    with KnowledgeBase.open(tmp_path / "v.kvdb", model=model) as kb:
        kb.import_paths([docs])
        kb.import_records(records)
        keys = kb._keys
        key_set = keys.ensure_dense_key_set()
        titles = {r.id: r.title for r in kb.values.list_values()}
        order = [titles[v] for v in keys.missing_dense(key_set)]
        assert order == ["record", "b-newest", "c-middle", "a-old", "d-ancient"]

        built: list[str] = []
        works: list[tuple[int | None, int | None]] = []
        cancel = CancelToken()
        lengths = {r.id: len(kb.values.text(r.id)) + 1 for r in kb.values.list_values()}

        def sink(p: Progress) -> None:
            works.append((p.work_done, p.work_total))
            if p.done:
                built.append(p.current)
            if p.done == 2:
                cancel.cancel()  # stop between batches; what is built stays built

        with pytest.raises(Cancelled):
            keys.build_dense(key_set, progress=sink, cancel=cancel, batch_values=1)
        assert built == ["record", "b-newest"]
        # The time-left estimate counts characters: a value's cost grows with its text.
        ids = keys.missing_dense(key_set)  # what is left: the three oldest
        total_work = sum(lengths.values())
        assert works[0] == (0, total_work)
        assert works[-1] == (total_work - sum(lengths[v] for v in ids), total_work)
        # Resuming continues with the next newest, never redoing the first two.
        rest: list[str] = []
        keys.build_dense(
            key_set, progress=lambda p: rest.append(p.current) if p.done else None, batch_values=1
        )
        assert rest == ["c-middle", "a-old", "d-ancient"]
        assert kb.dense_status().ready


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_estimator_smooths_and_ignores_paused_time() -> None:
    clock = FakeClock()
    est = RateEstimator(clock, smoothing=0.5, min_interval_s=1.0)
    est.update(0, 1000)
    assert est.remaining_s is None  # no rate measured yet
    clock.now += 10
    est.update(100, 1000)  # 10 items/s
    assert est.rate == pytest.approx(10.0)
    assert est.remaining_s == pytest.approx(90.0)
    clock.now += 0.2
    est.update(150, 1000)  # too soon to sample: the rate holds, the items left follow
    assert est.rate == pytest.approx(10.0)
    assert est.remaining_s == pytest.approx(85.0)
    clock.now += 9.8
    est.update(200, 1000)  # 100 items in 10 s since the last sample: 10/s again
    assert est.rate == pytest.approx(10.0)
    clock.now += 25
    est.update(300, 1000)  # a slow stretch (4/s) moves the estimate half way, not all the way
    assert est.rate == pytest.approx(7.0)
    est.pause()
    clock.now += 3600  # an hour paused
    est.update(300, 1000)
    clock.now += 10
    est.update(370, 1000)  # 7/s since resuming: the hour does not count
    assert est.rate == pytest.approx(7.0)
    assert est.remaining_s == pytest.approx(90.0)


def test_rate_estimator_prefers_the_work_unit() -> None:
    clock = FakeClock()
    est = RateEstimator(clock)
    est.report(Progress("dense keys", 0, 10, work_done=0, work_total=10_000))
    clock.now += 10
    # One item done, but it was a tenth of the text: nine tenths of the time are left.
    est.report(Progress("dense keys", 1, 10, work_done=1_000, work_total=10_000))
    assert est.remaining_s == pytest.approx(90.0)
    items = RateEstimator(clock)
    items.report(Progress("import", 0, 10))
    clock.now += 10
    items.report(Progress("import", 5, 10))
    assert items.remaining_s == pytest.approx(10.0)


def test_rate_estimator_seed_and_restart() -> None:
    clock = FakeClock()
    est = RateEstimator(clock)
    est.seed(5.0)
    est.update(0, 50)
    assert est.remaining_s == pytest.approx(10.0)
    est.seed(None)
    assert est.rate == 5.0
    with pytest.raises(ValueError, match="smoothing"):
        RateEstimator(clock, smoothing=0.0)
