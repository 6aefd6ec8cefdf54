"""Passage vectors of one dense key set, searched by max-sim with exact cosines.

A value has one vector per passage. Search ranks values by their best passage (max-sim), which
is what the explanation shows. A small key set lives in RAM and is searched by brute force
(~5-12 ms at 100k x 384 float32 on two cores). A big one rests on a memory-mapped
:class:`~kvdesk.core.keys.vector_file.VectorFile` (float32 in RAM would be 1.5 GB at a million
passages): its sign bits pick candidates, an int8 copy narrows them, and the survivors are scored
exactly in float32, so every cosine shown is exact and only the candidate stage approximates
(recall@100 against exact search is measured by bench/bench_scale.py). Changes made after the
file was written live in RAM beside it until the file is rebuilt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kvdesk.core.keys.vector_file import VectorFile, VectorFileError, candidate_rows

log = logging.getLogger("kvdesk.keys")

_MIN_CAPACITY = 256
# Below this many usable rows in the file, every one is scored exactly (no candidate stage).
EXACT_BELOW = 20000
# Candidates taken from the sign bits: 5,000 at 10k rows, growing with rows**0.6 (19,900 at
# 100k, 79,000 at 1M). On bench_scale's MiniLM-like vectors, candidate recall@100 was 0.984 /
# 0.982 with 8,000 / 25,000, 0.996 / 0.990-0.995 with 16,000 / 50,000, 0.999 / 0.9995 with
# 32,000 / 100,000 (100k / 1M passages); the int8 stage to 1,000 rows lost nothing.
BIT_CANDIDATES_AT_10K = 5000
BIT_CANDIDATES_GROWTH = 0.6
# Candidates the int8 copy passes on to exact scoring: at least this many, and 10 per value.
EXACT_CANDIDATES = 1000
# Float32 rows read from the file before their pages leave the resident set again.
RELEASE_AFTER_ROWS = 20000


@dataclass(frozen=True)
class DenseHit:
    """One value found by the dense key space, with the evidence for its explanation."""

    value_id: int
    score: float  # cosine of the value's best passage
    passage_index: int  # which passage of the value that is
    passage_rank: int  # 1-based rank of that passage among all (allowed) passages
    second_score: float | None  # cosine of the value's second-best passage, if it has one


def bit_candidates(rows: int, k_values: int) -> int:
    """How many rows the sign-bit stage keeps for a search of ``k_values`` values."""
    grown = BIT_CANDIDATES_AT_10K * (max(rows, 1) / 10000) ** BIT_CANDIDATES_GROWTH
    return max(40 * k_values, int(grown))


class VectorMatrix:
    """Normalised passage vectors of one key set: an optional file base plus rows in RAM.

    Rows in RAM live in a growable buffer; replacing or removing a value tombstones its old rows
    (in RAM, or in the file base) and appends the new ones, so many small updates cost amortised
    O(passages changed). The buffer is compacted once tombstones make up a quarter of it. All
    methods are thread-safe.
    """

    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._lock = threading.RLock()
        self._base: VectorFile | None = None
        self._base_alive = np.zeros(0, dtype=bool)
        self._base_alive_count = 0
        self._base_values = 0  # distinct values in the file
        self._superseded: set[int] = set()  # values whose file rows are dead
        # Called (outside the lock) when the file turns out damaged; it rebuilds the base
        # (see :meth:`use_file`), after which the search is tried once more.
        self.on_damage: Callable[[VectorFileError], None] | None = None
        self._reset(0)

    @classmethod
    def over_file(cls, vector_file: VectorFile) -> VectorMatrix:
        """A matrix over ``vector_file`` (nothing read beyond its small parts)."""
        matrix = cls(vector_file.dim)
        matrix.use_file(vector_file)
        return matrix

    def use_file(self, vector_file: VectorFile) -> None:
        """Replace every row by those of ``vector_file`` (changes in RAM are dropped)."""
        if vector_file.dim != self.dim:
            raise ValueError(f"the file holds {vector_file.dim}-d vectors, expected {self.dim}")
        with self._lock:
            self._reset(0)
            self._base = vector_file
            self._base_alive = np.ones(vector_file.rows, dtype=bool)
            self._base_alive_count = vector_file.rows
            vids = vector_file.value_ids
            self._base_values = int((np.diff(vids) != 0).sum()) + 1 if len(vids) else 0
            self._superseded = set()

    @property
    def file(self) -> VectorFile | None:
        """The file base, if any."""
        return self._base

    def changed_since_file(self) -> int:
        """Passages replaced or removed in RAM since the file was written (0 without a file)."""
        with self._lock:
            if self._base is None:
                return 0
            return (self._base.rows - self._base_alive_count) + (self._size - self._dead)

    def changes_since_file(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values whose file rows are replaced or gone, the value id of each row in RAM, those
        rows [n, dim]), each value's rows in passage order: what a delta file records."""
        with self._lock:
            gone = np.array(sorted(self._superseded), dtype=np.int64)
            if not self._rows:
                return gone, np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
            rows = np.concatenate(list(self._rows.values()))
            vids = np.concatenate([np.full(len(r), v, np.int64) for v, r in self._rows.items()])
            return gone, vids, self._vecs[rows].copy()

    def _reset(self, capacity: int) -> None:
        capacity = max(capacity, _MIN_CAPACITY)
        self._vecs = np.zeros((capacity, self.dim), dtype=np.float32)
        self._vids = np.zeros(capacity, dtype=np.int64)
        self._pidx = np.zeros(capacity, dtype=np.int32)
        self._alive = np.zeros(capacity, dtype=bool)
        self._size = 0  # rows used, alive or not
        self._rows: dict[int, np.ndarray] = {}  # value id -> its alive rows, in passage order
        self._dead = 0

    # -- building ---------------------------------------------------------------------------

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim == 1 and vectors.size == 0:
            vectors = vectors.reshape(0, self.dim)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape [n, {self.dim}], got {vectors.shape}")
        return vectors

    def replace_all(
        self, value_ids: np.ndarray, passage_idx: np.ndarray, vectors: np.ndarray
    ) -> None:
        """Load a whole key set (e.g. from disk): row i = passage passage_idx[i] of value_ids[i]."""
        vectors = self._check(vectors)
        vids = np.asarray(value_ids, dtype=np.int64).reshape(-1)
        pidx = np.asarray(passage_idx, dtype=np.int32).reshape(-1)
        n = len(vectors)
        if len(vids) != n or len(pidx) != n:
            raise ValueError("value_ids, passage_idx and vectors must have the same length")
        with self._lock:
            self._base = None
            self._base_alive = np.zeros(0, dtype=bool)
            self._base_alive_count = self._base_values = 0
            self._superseded = set()
            self._reset(n)
            self._vecs[:n] = vectors
            self._vids[:n] = vids
            self._pidx[:n] = pidx
            self._alive[:n] = True
            self._size = n
            if n:
                order = np.lexsort((pidx, vids))
                sorted_vids = vids[order]
                cuts = np.flatnonzero(np.diff(sorted_vids)) + 1
                for group in np.split(order, cuts):
                    self._rows[int(vids[group[0]])] = group.astype(np.int64)

    def _grow(self, needed: int) -> None:
        capacity = len(self._vecs)
        if needed <= capacity:
            return
        new_capacity = max(needed, capacity * 3 // 2, _MIN_CAPACITY)
        for name in ("_vecs", "_vids", "_pidx", "_alive"):
            old = getattr(self, name)
            new = np.zeros((new_capacity, *old.shape[1:]), dtype=old.dtype)
            new[: self._size] = old[: self._size]
            setattr(self, name, new)

    def _base_rows(self, value_id: int) -> tuple[int, int]:
        """The file rows of a value that are still alive (empty when superseded or absent)."""
        if self._base is None or value_id in self._superseded:
            return 0, 0
        return self._base.rows_of(value_id)

    def _drop(self, value_id: int) -> None:
        start, end = self._base_rows(value_id)
        if end > start:
            self._base_alive[start:end] = False
            self._base_alive_count -= end - start
            self._superseded.add(value_id)
        rows = self._rows.pop(value_id, None)
        if rows is not None:
            self._alive[rows] = False
            self._dead += len(rows)

    def _maybe_compact(self) -> None:
        if self._dead < max(1024, self._size // 4):
            return
        keep = np.flatnonzero(self._alive[: self._size])
        n = len(keep)
        self._vecs[:n] = self._vecs[keep]
        self._vids[:n] = self._vids[keep]
        self._pidx[:n] = self._pidx[keep]
        self._alive[:n] = True
        self._alive[n : self._size] = False
        remap = np.full(self._size, -1, dtype=np.int64)
        remap[keep] = np.arange(n)
        self._rows = {vid: remap[rows] for vid, rows in self._rows.items()}
        self._size = n
        self._dead = 0

    def upsert_value(self, value_id: int, vectors: np.ndarray) -> None:
        """Replace a value's passages (passage i = row i of ``vectors``); none = remove it."""
        vectors = self._check(vectors)
        with self._lock:
            self._drop(value_id)
            n = len(vectors)
            if n:
                self._grow(self._size + n)
                rows = np.arange(self._size, self._size + n)
                self._vecs[rows] = vectors
                self._vids[rows] = value_id
                self._pidx[rows] = np.arange(n, dtype=np.int32)
                self._alive[rows] = True
                self._size += n
                self._rows[value_id] = rows
            self._maybe_compact()

    def remove_value(self, value_id: int) -> None:
        with self._lock:
            self._drop(value_id)
            self._maybe_compact()

    # -- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of (alive) passages."""
        with self._lock:
            return self._size - self._dead + self._base_alive_count

    def value_count(self) -> int:
        with self._lock:
            return len(self._rows) + self._base_values - len(self._superseded)

    def __contains__(self, value_id: object) -> bool:
        with self._lock:
            if value_id in self._rows:
                return True
            if not isinstance(value_id, (int, np.integer)):
                return False
            start, end = self._base_rows(int(value_id))
            return end > start

    def value_ids(self) -> list[int]:
        with self._lock:
            ids = list(self._rows)
            if self._base is not None:
                vids = self._base.value_ids[self._base_alive]
                ids.extend(int(v) for v in np.unique(vids))
            return ids

    def value_vectors(self, value_id: int) -> np.ndarray:
        """A copy of a value's passage vectors [n, dim] (empty if it has none)."""
        with self._lock:
            rows = self._rows.get(value_id)
            if rows is not None:
                return self._vecs[rows].copy()
            start, end = self._base_rows(value_id)
            if end > start:
                assert self._base is not None
                try:
                    return self._base.exact(np.arange(start, end))
                finally:
                    self._release()
            return np.zeros((0, self.dim), dtype=np.float32)

    def best_passages(
        self, value_ids: list[int], query: np.ndarray
    ) -> list[tuple[int, float] | None]:
        """Each value's best passage (index, exact cosine) for ``query``; None where it has no
        passages. The file rows of all of them are read (and checked) in one go."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        with self._lock:
            spans = [self._base_rows(v) if v not in self._rows else (0, 0) for v in value_ids]
            file_scores = np.zeros(0, np.float32)
            if self._base is not None and any(end > start for start, end in spans):
                rows = np.concatenate([np.arange(start, end) for start, end in spans])
                try:
                    file_scores = self._base.exact(rows) @ q
                finally:
                    self._release()
            out: list[tuple[int, float] | None] = []
            at = 0
            for value_id, (start, end) in zip(value_ids, spans, strict=True):
                own = self._rows.get(value_id)
                if own is not None:
                    sims = self._vecs[own] @ q
                else:
                    sims = file_scores[at : at + end - start]
                    at += end - start
                best = int(np.argmax(sims)) if len(sims) else -1
                out.append((best, float(sims[best])) if best >= 0 else None)
            return out

    def search(
        self, query: np.ndarray, k_values: int = 100, *, allowed: set[int] | None = None
    ) -> list[DenseHit]:
        """The ``k_values`` values whose best passage is most similar to ``query``, best first."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query has {q.shape[0]} dims, expected {self.dim}")
        if k_values <= 0 or (allowed is not None and not allowed):
            return []
        try:
            return self._search(q, k_values, allowed)
        except VectorFileError as exc:
            if self.on_damage is None:
                raise
            log.warning("dense keys: %s; rebuilding them from the vault", exc)
            self.on_damage(exc)  # outside the lock: it may take the key manager's lock
            return self._search(q, k_values, allowed)

    def _search(self, q: np.ndarray, k_values: int, allowed: set[int] | None) -> list[DenseHit]:
        with self._lock:
            try:
                return self._search_locked(q, k_values, allowed)
            finally:
                self._release()

    def _release(self) -> None:
        if self._base is not None:
            self._base.release(after_rows=RELEASE_AFTER_ROWS)

    def _search_locked(
        self, q: np.ndarray, k_values: int, allowed: set[int] | None
    ) -> list[DenseHit]:
        wanted = (
            np.fromiter(allowed, dtype=np.int64, count=len(allowed))
            if allowed is not None
            else None
        )
        # Rows in RAM: every usable one is scored exactly.
        size = self._size
        ram_usable = self._alive[:size]
        if wanted is not None:
            ram_usable = ram_usable & np.isin(self._vids[:size], wanted)
        ram_rows = np.flatnonzero(ram_usable)
        ram_scores = self._vecs[ram_rows] @ q if len(ram_rows) else np.zeros(0, np.float32)
        # Rows in the file: exactly when few, else through the candidate stages.
        base = self._base
        base_usable: np.ndarray | None = None
        usable_count = 0
        if base is not None and self._base_alive_count:
            base_usable = self._base_alive
            if wanted is not None:
                base_usable = base_usable & np.isin(base.value_ids, wanted)
            usable_count = int(base_usable.sum())
        exact_count = max(EXACT_CANDIDATES, 10 * k_values)
        bits_count = bit_candidates(usable_count, k_values)
        while True:
            file_rows, exhaustive = self._file_rows(
                q, base_usable, usable_count, bits_count, exact_count
            )
            if base is None or not len(file_rows):
                file_scores = np.zeros(0, np.float32)
            elif exhaustive and len(file_rows) > base.rows // 2:
                file_scores = base.scores(q)[file_rows]  # one pass over contiguous rows
            else:
                # Candidates are scored unchecked; the rows of the values returned are checked.
                with np.errstate(all="ignore"):
                    file_scores = base.exact(file_rows, check=False) @ q
            hits = self._rank(q, k_values, ram_rows, ram_scores, file_rows, file_scores)
            if len(hits) >= k_values or exhaustive:
                return hits
            exact_count *= 4
            bits_count = max(bits_count * 4, exact_count)

    def _file_rows(
        self,
        q: np.ndarray,
        usable: np.ndarray | None,
        usable_count: int,
        bits_count: int,
        exact_count: int,
    ) -> tuple[np.ndarray, bool]:
        """The file rows to score exactly, and whether they are every usable row."""
        base = self._base
        if base is None or usable is None or usable_count == 0:
            return np.zeros(0, np.int64), True
        if usable_count <= max(EXACT_BELOW, bits_count):
            return np.flatnonzero(usable), True
        distances = base.hamming(q, usable)
        cands = np.sort(candidate_rows(distances, bits_count))
        if exact_count >= len(cands):
            return cands, False
        approx = base.approximate(q, cands)
        keep = np.argpartition(-approx, exact_count - 1)[:exact_count]
        return np.sort(cands[keep]), False

    def candidate_rows(self, query: np.ndarray, k_values: int = 100) -> np.ndarray:
        """The file rows a search for ``k_values`` values scores exactly (its candidate stage,
        first round): what bench/bench_scale.py compares with exact search."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        with self._lock:
            try:
                count = self._base_alive_count
                rows, _ = self._file_rows(
                    q,
                    self._base_alive,
                    count,
                    bit_candidates(count, k_values),
                    max(EXACT_CANDIDATES, 10 * k_values),
                )
                return rows
            finally:
                self._release()

    def _rank(
        self,
        q: np.ndarray,
        k_values: int,
        ram_rows: np.ndarray,
        ram_scores: np.ndarray,
        file_rows: np.ndarray,
        file_scores: np.ndarray,
    ) -> list[DenseHit]:
        """Max-sim over the exactly scored passages: each value at its best passage."""
        base = self._base
        file_vids = base.value_ids[file_rows] if base is not None else np.zeros(0, np.int64)
        file_pidx = base.passage_idx[file_rows] if base is not None else np.zeros(0, np.int32)
        scores = np.concatenate([ram_scores.astype(np.float32), file_scores.astype(np.float32)])
        vids = np.concatenate([self._vids[ram_rows], file_vids])
        pidx = np.concatenate([self._pidx[ram_rows], file_pidx])
        total = len(scores)
        if total == 0:
            return []
        # The top m passages hold the best passage of every value found among them, in order;
        # grow m until k distinct values appear (or every passage is in).
        m = min(total, max(4 * k_values, k_values + 64))
        while True:
            if m < total:
                top = np.argpartition(-scores, m - 1)[:m]
            else:
                top = np.arange(total)
            top = top[np.argsort(-scores[top], kind="stable")]
            _, first = np.unique(vids[top], return_index=True)
            if len(first) >= k_values or m >= total:
                break
            m = min(total, m * 4)
        first.sort()
        chosen = [int(top[pos]) for pos in first[:k_values]]
        seconds = self._second_scores([int(vids[at]) for at in chosen], q)
        return [
            DenseHit(
                value_id=int(vids[at]),
                score=float(scores[at]),
                passage_index=int(pidx[at]),
                passage_rank=int(pos) + 1,
                second_score=second,
            )
            for at, pos, second in zip(chosen, first[:k_values], seconds, strict=True)
        ]

    def _second_scores(self, value_ids: list[int], q: np.ndarray) -> list[float | None]:
        """Each value's second-best cosine; the file rows of these values are read in one go,
        and checked: a damaged row of a value about to be shown raises VectorFileError."""
        spans = [self._base_rows(v) if v not in self._rows else (0, 0) for v in value_ids]
        file_scores = np.zeros(0, np.float32)
        if self._base is not None and any(end > start for start, end in spans):
            rows = np.concatenate([np.arange(start, end) for start, end in spans])
            file_scores = self._base.exact(rows) @ q
        out: list[float | None] = []
        at = 0
        for value_id, (start, end) in zip(value_ids, spans, strict=True):
            own = self._rows.get(value_id)
            if own is not None:
                own_scores = self._vecs[own] @ q
            else:
                own_scores = file_scores[at : at + end - start]
                at += end - start
            n = len(own_scores)
            out.append(None if n < 2 else float(np.partition(own_scores, n - 2)[n - 2]))
        return out
