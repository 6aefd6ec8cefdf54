"""In-memory passage vectors of one dense key set, searched exactly by brute force.

A value has one vector per passage. Search ranks values by their best passage (max-sim), which
is what the explanation shows. Brute force over ~100k x 384 float32 takes ~5-12 ms with numpy on
two cores, so no approximate index is needed at desktop scale, and results are exact.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

_MIN_CAPACITY = 256


@dataclass(frozen=True)
class DenseHit:
    """One value found by the dense key space, with the evidence for its explanation."""

    value_id: int
    score: float  # cosine of the value's best passage
    passage_index: int  # which passage of the value that is
    passage_rank: int  # 1-based rank of that passage among all (allowed) passages
    second_score: float | None  # cosine of the value's second-best passage, if it has one


class VectorMatrix:
    """Normalised passage vectors of one key set, held in RAM, searched by brute-force dot product.

    Rows live in a growable buffer; replacing or removing a value tombstones its old rows and
    appends the new ones, so many small updates cost amortised O(passages changed). The buffer
    is compacted once tombstones make up a quarter of it. All methods are thread-safe.
    """

    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        self._lock = threading.RLock()
        self._reset(0)

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

    def _drop(self, value_id: int) -> None:
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
            return self._size - self._dead

    def value_count(self) -> int:
        with self._lock:
            return len(self._rows)

    def __contains__(self, value_id: object) -> bool:
        with self._lock:
            return value_id in self._rows

    def value_ids(self) -> list[int]:
        with self._lock:
            return list(self._rows)

    def value_vectors(self, value_id: int) -> np.ndarray:
        """A copy of a value's passage vectors [n, dim] (empty if it has none)."""
        with self._lock:
            rows = self._rows.get(value_id)
            if rows is None:
                return np.zeros((0, self.dim), dtype=np.float32)
            return self._vecs[rows].copy()

    def search(
        self, query: np.ndarray, k_values: int = 100, *, allowed: set[int] | None = None
    ) -> list[DenseHit]:
        """The ``k_values`` values whose best passage is most similar to ``query``, best first."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query has {q.shape[0]} dims, expected {self.dim}")
        if k_values <= 0 or (allowed is not None and not allowed):
            return []
        with self._lock:
            size = self._size
            if size == 0:
                return []
            scores = self._vecs[:size] @ q
            usable = self._alive[:size]
            if allowed is not None:
                wanted = np.fromiter(allowed, dtype=np.int64, count=len(allowed))
                usable = usable & np.isin(self._vids[:size], wanted)
            candidates = np.flatnonzero(usable)
            if len(candidates) == 0:
                return []
            cand_scores = scores[candidates]
            cand_vids = self._vids[candidates]
            # The top m passages hold the best passage of every value found among them, in
            # order; grow m until k distinct values appear (or every passage is in).
            m = min(len(candidates), max(4 * k_values, k_values + 64))
            while True:
                if m < len(candidates):
                    top = np.argpartition(-cand_scores, m - 1)[:m]
                else:
                    top = np.arange(len(candidates))
                top = top[np.argsort(-cand_scores[top], kind="stable")]
                _, first = np.unique(cand_vids[top], return_index=True)
                if len(first) >= k_values or m >= len(candidates):
                    break
                m = min(len(candidates), m * 4)
            first.sort()
            hits: list[DenseHit] = []
            for pos in first[:k_values]:
                row = int(candidates[top[pos]])
                vid = int(self._vids[row])
                own = self._rows[vid]
                second: float | None = None
                if len(own) > 1:
                    own_scores = scores[own]
                    second = float(np.partition(own_scores, len(own) - 2)[len(own) - 2])
                hits.append(
                    DenseHit(
                        value_id=vid,
                        score=float(scores[row]),
                        passage_index=int(self._pidx[row]),
                        passage_rank=int(pos) + 1,
                        second_score=second,
                    )
                )
            return hits
