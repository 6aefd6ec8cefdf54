"""Vector files: exact cosines from a memory-mapped file, damage detected, kept in step with
the key store (caught up value by value, rebuilt when stale or damaged, never trusted)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from kvdesk.core.keys import vector_sync, vectors
from kvdesk.core.keys.vector_file import (
    VectorChunk,
    VectorFile,
    VectorFileError,
    write_vector_file,
)
from kvdesk.core.keys.vectors import VectorMatrix
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.paths import keys_dir_for
from tests.core.test_vectors import assert_same, naive, random_store, unit
from tests.tiny_model import write_model_folder

DIM = 16


def _chunks(store: dict[int, np.ndarray], per_chunk: int = 37) -> list[VectorChunk]:
    """The store's passages in (value id, passage index) order, cut into uneven chunks."""
    vids = np.concatenate([np.full(len(store[v]), v) for v in sorted(store)]).astype(np.int64)
    pidx = np.concatenate([np.arange(len(store[v])) for v in sorted(store)]).astype(np.int32)
    vecs = np.concatenate([store[v] for v in sorted(store)]).astype(np.float32)
    rowids = np.arange(1, len(vids) + 1, dtype=np.int64) * 3
    return [
        VectorChunk(
            vids[s : s + per_chunk],
            pidx[s : s + per_chunk],
            rowids[s : s + per_chunk],
            vecs[s : s + per_chunk],
        )
        for s in range(0, len(vids), per_chunk)
    ]


def _file(tmp_path: Path, store: dict[int, np.ndarray], dim: int = DIM) -> Path:
    path = tmp_path / "k.vectors"
    write_vector_file(path, dim=dim, stamp={"key_set": 1}, chunks=_chunks(store))
    return path


def test_round_trip_keeps_every_vector_bit_for_bit(tmp_path: Path) -> None:
    store = random_store(np.random.default_rng(1), 60)
    vf = VectorFile(_file(tmp_path, store), dim=DIM)
    assert vf.rows == sum(len(v) for v in store.values())
    assert vf.stamp == {"key_set": 1}
    for vid, vecs in store.items():
        start, end = vf.rows_of(vid)
        assert end - start == len(vecs)
        np.testing.assert_array_equal(vf.exact(np.arange(start, end)), vecs)
        np.testing.assert_array_equal(vf.passage_idx[start:end], np.arange(len(vecs)))
    assert vf.rows_of(-5) == (0, 0)
    with pytest.raises(VectorFileError, match="16-d"):
        VectorFile(tmp_path / "k.vectors", dim=32)
    empty = tmp_path / "empty.vectors"
    assert write_vector_file(empty, dim=DIM, stamp={}, chunks=[]) == 0
    assert VectorFile(empty, dim=DIM).rows == 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


@pytest.mark.parametrize(
    "where", ["magic", "header", "vids", "bits", "norm", "truncated", "longer"]
)
def test_damaged_small_parts_are_refused_at_open(tmp_path: Path, where: str) -> None:
    store = random_store(np.random.default_rng(2), 40)
    path = _file(tmp_path, store)
    vf = VectorFile(path, dim=DIM)
    regions = {"vids": 0, "bits": 0, "norm": 0}
    # Offsets of the checked regions: the arrays are views into what was read, so find them
    # by their content in the file.
    raw = path.read_bytes()
    for name, array in (("vids", vf.value_ids), ("bits", vf.bits), ("norm", vf.norms)):
        regions[name] = raw.index(np.ascontiguousarray(array).tobytes()) + 5
    del vf
    if where == "magic":
        _flip(path, 2)
    elif where == "header":
        _flip(path, 40)
    elif where in regions:
        _flip(path, regions[where])
    elif where == "truncated":
        os.truncate(path, path.stat().st_size - 10)
    else:
        with open(path, "ab") as f:
            f.write(b"\0" * 10)
    with pytest.raises(VectorFileError):
        VectorFile(path, dim=DIM)


def test_a_damaged_float_row_is_noticed_when_read(tmp_path: Path) -> None:
    store = random_store(np.random.default_rng(3), 40)
    path = _file(tmp_path, store)
    vf = VectorFile(path, dim=DIM)
    vid = sorted(store)[5]
    start, end = vf.rows_of(vid)
    f32_offset = path.read_bytes().index(store[sorted(store)[0]].tobytes())
    del vf
    _flip(path, f32_offset + (start * DIM + 3) * 4 + 3)  # the exponent byte of one component
    vf = VectorFile(path, dim=DIM)  # the small parts are intact: it opens
    with pytest.raises(VectorFileError, match="damaged"):
        vf.exact(np.arange(start, end))
    other = sorted(store)[20]
    np.testing.assert_array_equal(vf.exact(np.arange(*vf.rows_of(other))), store[other])
    # A matrix over it asks for a rebuild, then answers from the rebuilt file.
    matrix = VectorMatrix.over_file(vf)
    rebuilt: list[str] = []

    def rebuild(exc: VectorFileError) -> None:
        rebuilt.append(str(exc))
        matrix.use_file(VectorFile(_file(tmp_path / "again", store), dim=DIM))

    (tmp_path / "again").mkdir()
    matrix.on_damage = rebuild
    q = store[vid][0]
    assert_same(matrix.search(q, 10), naive(store, q, 10))
    assert len(rebuilt) == 1


def test_matrix_over_file_matches_the_reference_and_takes_updates(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    store = random_store(rng, 300)
    matrix = VectorMatrix.over_file(VectorFile(_file(tmp_path, store), dim=DIM))
    assert matrix.value_count() == 300
    assert len(matrix) == sum(len(v) for v in store.values())
    for k in (1, 10, 300):
        q = unit(rng, 1)[0]
        assert_same(matrix.search(q, k), naive(store, q, k))
    ids = list(store)
    for step in range(400):
        vid = ids[int(rng.integers(len(ids)))] if step % 5 else int(10_000 + step)
        if step % 7 == 0:
            matrix.remove_value(vid)
            store.pop(vid, None)
        else:
            store[vid] = unit(rng, int(rng.integers(1, 6)))
            matrix.upsert_value(vid, store[vid])
    assert matrix.changed_since_file() > 0
    assert matrix.value_count() == len(store)
    assert len(matrix) == sum(len(v) for v in store.values())
    assert sorted(matrix.value_ids()) == sorted(store)
    for vid in ids[:30]:
        assert (vid in matrix) == (vid in store)
        want = store.get(vid, np.zeros((0, DIM), np.float32))
        np.testing.assert_array_equal(matrix.value_vectors(vid), want)
    some = [*ids[:40], 10_005, -1]
    q = unit(rng, 1)[0]
    for vid, found in zip(some, matrix.best_passages(some, q), strict=True):
        if vid not in store:
            assert found is None
        else:
            sims = store[vid] @ q
            assert found == (int(np.argmax(sims)), pytest.approx(float(sims.max()), abs=1e-6))
    for _ in range(5):
        q = unit(rng, 1)[0]
        assert_same(matrix.search(q, 25), naive(store, q, 25))
        allowed = set(ids[::4])
        assert_same(matrix.search(q, 10, allowed=allowed), naive(store, q, 10, allowed))


def _clustered(rng: np.random.Generator, values: int, dim: int) -> dict[int, np.ndarray]:
    """Passages around a few hundred topic centres: the structure real embeddings have."""
    centres = unit(rng, 200, dim)
    store = {}
    for vid in range(1, values + 1):
        n = int(rng.integers(1, 4))
        x = centres[rng.integers(0, len(centres), n)] + 0.6 * unit(rng, n, dim)
        store[vid] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return store


def test_candidate_stage_keeps_cosines_exact_and_recall_high(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over many rows the sign bits and int8 copy only choose candidates: every cosine shown is
    the exact one, and the values found are (nearly always) those exact search finds."""
    monkeypatch.setattr(vectors, "EXACT_BELOW", 0)
    monkeypatch.setattr(vectors, "EXACT_CANDIDATES", 200)
    rng = np.random.default_rng(5)
    dim = 64
    store = _clustered(rng, 12000, dim)
    vf = VectorFile(_file(tmp_path, store, dim), dim=dim)
    matrix = VectorMatrix.over_file(vf)
    assert vectors.bit_candidates(vf.rows, 10) < vf.rows  # the candidate stage really runs
    every = np.concatenate([store[v] for v in sorted(store)])
    starts = np.cumsum([0] + [len(store[v]) for v in sorted(store)])[:-1]
    found = 0
    for _ in range(20):
        q = store[int(rng.integers(1, 12001))][0] + 0.3 * unit(rng, 1, dim)[0]
        q = q / np.linalg.norm(q)
        got = matrix.search(q, 10)
        best = np.maximum.reduceat(every @ q, starts)  # exact max-sim of every value
        want = {sorted(store)[i] for i in np.argsort(-best)[:10]}
        assert len(got) == 10
        assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
        for hit in got:
            exact = store[hit.value_id] @ q
            assert hit.score == pytest.approx(float(exact[hit.passage_index]), abs=1e-6)
            assert hit.score == pytest.approx(float(exact.max()), abs=1e-6)
            if len(exact) > 1:
                assert hit.second_score == pytest.approx(float(np.sort(exact)[-2]), abs=1e-6)
        found += len({h.value_id for h in got} & want)
    assert found / 200 >= 0.97


# -- kept in step with the key store --------------------------------------------------------


def _kb_with_docs(tmp_path: Path, model: Path, docs: int) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    words = ["the man", "a girl", "the baby", "bread", "food", "kvdesk", "eating", "tokyo"]
    rng = np.random.default_rng(6)
    for i in range(docs):
        text = " ".join(words[int(j)] for j in rng.integers(0, len(words), 12))
        (folder / f"d{i:03}.txt").write_text(f"{text} number {i}", encoding="utf-8")
    path = tmp_path / "v.kvdb"
    with KnowledgeBase.open(path, model=model) as kb:
        kb.import_paths([folder])
        kb.build_dense_keys()
    return path


def _dense(path: Path, model: Path, query: str) -> list[tuple[int, float]]:
    with KnowledgeBase.open(path, model=model, create=False) as kb:
        return kb.rank_ids(query, mode="dense", k=50)


def _same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    """The same values in the same order, with the same cosines (to float32 rounding)."""
    assert [v for v, _ in got] == [v for v, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)


def test_vault_keys_from_a_file_match_keys_in_ram_and_follow_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_model_folder(tmp_path / "tiny")
    path = _kb_with_docs(tmp_path, model, 40)
    monkeypatch.setattr(vector_sync, "FILE_MIN_PASSAGES", 10**9)
    in_ram = _dense(path, model, "the girl is eating bread")
    monkeypatch.setattr(vector_sync, "FILE_MIN_PASSAGES", 0)
    from_file = _dense(path, model, "the girl is eating bread")
    assert [v for v, _ in from_file] == [v for v, _ in in_ram]
    assert [s for _, s in from_file] == pytest.approx([s for _, s in in_ram], abs=1e-6)
    files = list((keys_dir_for(path) / "dense").glob("key-set-*.vectors"))
    assert len(files) == 1
    vector_file = files[0]
    written = vector_file.stat().st_mtime_ns

    # Reopened unchanged: the file is used as it is.
    assert _dense(path, model, "tokyo baby") == _dense(path, model, "tokyo baby")
    assert vector_file.stat().st_mtime_ns == written

    # Another process adds a document and deletes one: the next open catches up value by
    # value (the file stays), and search sees exactly the key store's state.
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "new.txt").write_text("kvdesk kvdesk tokyo tokyo", encoding="utf-8")
    with KnowledgeBase.open(path, model=model, create=False) as other:
        other.import_paths([extra])
        other.build_dense_keys()
        gone = other.rank_ids("the man", mode="dense", k=1)[0][0]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM value WHERE id = ?", (gone,))
    conn.commit()
    conn.close()
    after = _dense(path, model, "kvdesk tokyo")
    assert vector_file.stat().st_mtime_ns == written  # caught up, not rewritten
    monkeypatch.setattr(vector_sync, "FILE_MIN_PASSAGES", 10**9)
    reference = _dense(path, model, "kvdesk tokyo")
    assert [v for v, _ in after] == [v for v, _ in reference]
    assert gone not in [v for v, _ in after]
    assert len(after) == 40  # 40 - 1 + 1

    # The changes were saved beside the file: later opens apply them (the delta file is not
    # written again); a damaged delta file is ignored and the vault compared again.
    monkeypatch.setattr(vector_sync, "FILE_MIN_PASSAGES", 0)
    delta = vector_sync.delta_path(vector_file)
    assert delta.exists()
    saved = delta.stat().st_mtime_ns
    _same(_dense(path, model, "kvdesk tokyo"), after)
    assert delta.stat().st_mtime_ns == saved
    _flip(delta, delta.stat().st_size // 2)
    _same(_dense(path, model, "kvdesk tokyo"), after)
    assert delta.stat().st_mtime_ns != saved  # compared again, and saved again
    _same(_dense(path, model, "kvdesk tokyo"), after)

    # Many changes: the file is rebuilt. A truncated or damaged file: rebuilt, never trusted.
    delta.unlink()
    monkeypatch.setattr(vector_sync, "CATCH_UP_MIN", 0)
    monkeypatch.setattr(vector_sync, "CATCH_UP_SHARE", 0.0)
    _same(_dense(path, model, "kvdesk tokyo"), after)
    assert vector_file.stat().st_mtime_ns != written
    assert not delta.exists()
    for damage in ("truncate", "flip"):
        if damage == "truncate":
            os.truncate(vector_file, vector_file.stat().st_size - 100)
        else:
            _flip(vector_file, 30)
        _same(_dense(path, model, "kvdesk tokyo"), after)
        VectorFile(vector_file)  # a good file again


def test_hamming_without_numpy_bitwise_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """numpy < 2 has no bitwise_count: the byte-table popcount gives the same distances."""
    store = random_store(np.random.default_rng(8), 80)
    vf = VectorFile(_file(tmp_path, store), dim=DIM)
    q = unit(np.random.default_rng(9), 1)[0]
    fast = vf.hamming(q, None)
    monkeypatch.delattr(np, "bitwise_count")
    np.testing.assert_array_equal(vf.hamming(q, None), fast)
    assert fast.max() <= DIM


def test_opening_a_big_file_reads_its_int8_rows_ahead_without_changing_a_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from kvdesk.core.keys import vector_file

    store = random_store(np.random.default_rng(5), 80)
    path = _file(tmp_path, store)
    cold = VectorFile(path, dim=DIM)
    q = unit(np.random.default_rng(6), 1)[0]
    rows = np.arange(cold.rows)
    expected = cold.approximate(q, rows)
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def spy(thread: threading.Thread) -> None:
        started.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", spy)
    monkeypatch.setattr(vector_file, "WARM_MIN_BYTES", 1)
    monkeypatch.setattr(vector_file, "WARM_CHUNK", 64)  # many reads for a small file
    warm = VectorFile(path, dim=DIM)
    readers = [t for t in started if t.name == "kvdesk-warm-vectors"]
    assert len(readers) == 1 and readers[0].daemon
    np.testing.assert_array_equal(warm.approximate(q, rows), expected)
    readers[0].join(timeout=30)
    assert not readers[0].is_alive()
    # A file removed while it is read ahead costs nothing but the read-ahead.
    started.clear()
    ahead = VectorFile(path, dim=DIM)
    path.unlink()
    for t in started:
        t.join(timeout=30)
    np.testing.assert_array_equal(ahead.approximate(q, rows), expected)


def test_int8_scores_model_is_the_one_onnx_builds() -> None:
    from onnx import TensorProto, helper

    from kvdesk.core.keys.vector_file import INT8_SCORES_MODEL

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["rows", "query"], ["scores"])],
        "int8_scores",
        [
            helper.make_tensor_value_info("rows", TensorProto.INT8, ["n", "d"]),
            helper.make_tensor_value_info("query", TensorProto.INT8, ["d", 1]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.INT32, ["n", 1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kvdesk"
    )
    model.ir_version = 8
    assert model.SerializeToString() == INT8_SCORES_MODEL


def test_int8_candidate_scores_rank_as_the_float_product_and_fall_back_to_numpy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kvdesk.core.keys import vector_file

    rng = np.random.default_rng(8)
    rows = rng.integers(-127, 128, (5000, 384), dtype=np.int8)
    query = rng.normal(size=384).astype(np.float32)
    reference = rows.astype(np.float32) @ query
    scored = vector_file._int8_scores(rows, query)
    assert scored is not None and scored.dtype == np.float32 and scored.shape == (5000,)
    assert np.corrcoef(scored, reference)[0, 1] > 0.9999
    top = set(np.argsort(-reference)[:100].tolist())
    assert len(top & set(np.argsort(-scored)[:100].tolist())) >= 97
    # Odd queries: nothing to scale by, numpy answers.
    assert vector_file._int8_scores(rows, np.zeros(384, np.float32)) is None
    assert vector_file._int8_scores(rows[:0], query) is None
    # Without ONNX Runtime's kernel the file still scores its rows, with numpy.
    store = random_store(np.random.default_rng(9), 40)
    with_ort = VectorFile(_file(tmp_path, store), dim=DIM)
    q = unit(np.random.default_rng(10), 1)[0]
    picked = np.arange(with_ort.rows)
    fast = with_ort.approximate(q, picked)
    monkeypatch.setattr(vector_file, "_int8_session", False)
    slow = with_ort.approximate(q, picked)
    assert np.corrcoef(fast, slow)[0, 1] > 0.999
