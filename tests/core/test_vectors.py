"""VectorMatrix: exact max-sim search checked against a naive reference, and cheap updates."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kvdesk.core.keys.vectors import DenseHit, VectorMatrix

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def naive(
    store: dict[int, np.ndarray], q: np.ndarray, k: int, allowed: set[int] | None = None
) -> list[DenseHit]:
    """Reference: score every passage, rank values by their best one."""
    items = [
        (vid, p, float(s))
        for vid, vecs in store.items()
        if allowed is None or vid in allowed
        for p, s in enumerate(vecs @ q)
    ]
    all_scores = sorted((s for _, _, s in items), reverse=True)
    hits = []
    for vid, vecs in store.items():
        if (allowed is not None and vid not in allowed) or len(vecs) == 0:
            continue
        s = vecs @ q
        order = np.argsort(-s)
        best = float(s[order[0]])
        hits.append(
            DenseHit(
                value_id=vid,
                score=best,
                passage_index=int(order[0]),
                passage_rank=all_scores.index(best) + 1,
                second_score=float(s[order[1]]) if len(s) > 1 else None,
            )
        )
    hits.sort(key=lambda h: -h.score)
    return hits[:k]


def assert_same(got: list[DenseHit], want: list[DenseHit]) -> None:
    assert [h.value_id for h in got] == [h.value_id for h in want]
    for g, w in zip(got, want, strict=True):
        assert g.score == pytest.approx(w.score, abs=1e-5)
        assert g.passage_index == w.passage_index
        assert g.passage_rank == w.passage_rank
        if w.second_score is None:
            assert g.second_score is None
        else:
            assert g.second_score == pytest.approx(w.second_score, abs=1e-5)


def random_store(rng: np.random.Generator, values: int) -> dict[int, np.ndarray]:
    return {
        int(v): unit(rng, int(rng.integers(1, 12))) for v in rng.permutation(values * 3)[:values]
    }


def test_search_matches_naive_reference_random_data() -> None:
    rng = np.random.default_rng(1)
    store = random_store(rng, 400)
    matrix = VectorMatrix(DIM)
    for vid, vecs in store.items():
        matrix.upsert_value(vid, vecs)
    assert matrix.value_count() == 400
    assert len(matrix) == sum(len(v) for v in store.values())
    for k in (1, 5, 50, 400, 1000):
        for _ in range(5):
            q = unit(rng, 1)[0]
            assert_same(matrix.search(q, k), naive(store, q, k))


def test_many_small_updates_and_removals_stay_correct() -> None:
    rng = np.random.default_rng(2)
    store = random_store(rng, 200)
    matrix = VectorMatrix(DIM)
    for vid, vecs in store.items():
        matrix.upsert_value(vid, vecs)
    ids = list(store)
    for step in range(3000):  # enough churn to trigger several compactions
        vid = ids[int(rng.integers(len(ids)))]
        if step % 7 == 0:
            matrix.remove_value(vid)
            store.pop(vid, None)
        else:
            store[vid] = unit(rng, int(rng.integers(1, 6)))
            matrix.upsert_value(vid, store[vid])
    assert matrix.value_count() == len(store)
    assert len(matrix) == sum(len(v) for v in store.values())
    assert matrix._size < 3 * len(matrix) + 1100  # tombstones were compacted away
    for vid, vecs in list(store.items())[:20]:
        np.testing.assert_array_equal(matrix.value_vectors(vid), vecs)
    for _ in range(10):
        q = unit(rng, 1)[0]
        assert_same(matrix.search(q, 30), naive(store, q, 30))


def test_allowed_filter_and_edge_cases() -> None:
    rng = np.random.default_rng(3)
    store = random_store(rng, 100)
    matrix = VectorMatrix(DIM)
    assert matrix.search(unit(rng, 1)[0], 10) == []
    for vid, vecs in store.items():
        matrix.upsert_value(vid, vecs)
    q = unit(rng, 1)[0]
    allowed = set(list(store)[::3])
    got = matrix.search(q, 10, allowed=allowed)
    assert {h.value_id for h in got} <= allowed
    assert_same(got, naive(store, q, 10, allowed))
    assert matrix.search(q, 10, allowed=set()) == []
    assert matrix.search(q, 10, allowed={-12345}) == []
    assert matrix.search(q, 0) == []
    # A value upserted with no passages is removed.
    vid = next(iter(store))
    matrix.upsert_value(vid, np.zeros((0, DIM), np.float32))
    assert vid not in matrix
    assert all(h.value_id != vid for h in matrix.search(q, 1000))
    with pytest.raises(ValueError):
        matrix.upsert_value(1, np.zeros((2, DIM + 1), np.float32))
    with pytest.raises(ValueError):
        matrix.search(np.zeros(DIM + 1, np.float32))


def test_replace_all_then_update() -> None:
    rng = np.random.default_rng(4)
    store = random_store(rng, 150)
    vids = np.concatenate([np.full(len(v), k) for k, v in store.items()])
    pidx = np.concatenate([np.arange(len(v)) for v in store.values()])
    vecs = np.concatenate(list(store.values()))
    shuffle = rng.permutation(len(vids))  # rows need not be grouped or ordered
    matrix = VectorMatrix(DIM)
    matrix.replace_all(vids[shuffle], pidx[shuffle], vecs[shuffle])
    assert len(matrix) == len(vids)
    assert matrix.value_count() == len(store)
    q = unit(rng, 1)[0]
    assert_same(matrix.search(q, 25), naive(store, q, 25))
    some = next(iter(store))
    np.testing.assert_array_equal(matrix.value_vectors(some), store[some])
    store[some] = unit(rng, 3)
    matrix.upsert_value(some, store[some])
    matrix.remove_value(next(k for k in store if k != some))
    store.pop(next(k for k in store if k != some))
    assert_same(matrix.search(q, 200), naive(store, q, 200))


def test_top_value_whose_passages_crowd_the_top() -> None:
    """One value owning the best 500 passages must not hide the runners-up."""
    rng = np.random.default_rng(5)
    q = unit(rng, 1)[0]
    near = q + 0.01 * rng.standard_normal((500, DIM)).astype(np.float32)
    store = {7: near / np.linalg.norm(near, axis=1, keepdims=True)}
    store.update({i: unit(rng, 2) for i in range(100, 160)})
    matrix = VectorMatrix(DIM)
    for vid, vecs in store.items():
        matrix.upsert_value(vid, vecs)
    got = matrix.search(q, 10)
    assert got[0].value_id == 7 and got[0].passage_rank == 1
    assert got[0].second_score is not None and got[0].second_score > 0.99
    assert got[1].passage_rank > 500
    assert_same(got, naive(store, q, 10))


def test_upserts_are_amortised_and_search_is_fast() -> None:
    rng = np.random.default_rng(6)
    matrix = VectorMatrix(384)
    block = unit(rng, 20000, 384)
    t0 = time.perf_counter()
    for i in range(5000):  # 5000 values x 4 passages, one small upsert each
        matrix.upsert_value(i, block[(i * 4) % 19996 : (i * 4) % 19996 + 4])
    assert time.perf_counter() - t0 < 3.0
    assert len(matrix) == 20000
    t0 = time.perf_counter()
    hits = matrix.search(block[123], 100)
    assert time.perf_counter() - t0 < 0.5
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 100


def test_best_passages_are_each_values_exact_best() -> None:
    rng = np.random.default_rng(6)
    store = random_store(rng, 50)
    matrix = VectorMatrix(DIM)
    for vid, vecs in store.items():
        matrix.upsert_value(vid, vecs)
    q = unit(rng, 1)[0]
    ids = [*list(store)[:10], -7]
    got = matrix.best_passages(ids, q)
    assert got[-1] is None
    for vid, found in zip(ids[:-1], got[:-1], strict=True):
        sims = store[vid] @ q
        assert found == (int(np.argmax(sims)), pytest.approx(float(sims.max()), abs=1e-6))
