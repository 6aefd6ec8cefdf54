"""Keeps a dense key set's vector file in step with the key store: the key store always wins.

Opening a key set compares the file's stamp with one computed from the key store (index-only
scans, no vector read). Equal: the file is used as it is. Different: the file is compared value by
value (passage count and rowid range) and only the values that differ are read from the key
store into RAM beside it; those changes are saved in a small delta file stamped with the key
store's state, so the next open applies them without comparing again. When the changes are
many, or the file is missing, of another model or size, truncated or damaged, it is rebuilt
from the key store, streamed, and replaced atomically. A delta file that does not match both
the file and the key store, or fails its checksums, is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kvdesk.core.keys.store import KeySet, KeyStore
from kvdesk.core.keys.vector_file import (
    VectorFile,
    VectorFileError,
    iter_chunks,
    write_vector_file,
)
from kvdesk.core.keys.vectors import VectorMatrix

log = logging.getLogger("kvdesk.keys")

# Key sets with at least this many passages rest on a vector file; smaller ones load into RAM.
FILE_MIN_PASSAGES = 50000
# A stale file is caught up value by value while the changed passages stay under this share of
# its rows (and always up to CATCH_UP_MIN rows); beyond, it is rebuilt.
CATCH_UP_SHARE = 0.1
CATCH_UP_MIN = 5000


def vector_file_path(directory: Path, key_set_id: int) -> Path:
    return directory / "dense" / f"key-set-{key_set_id}.vectors"


def delta_path(path: Path) -> Path:
    return path.with_name(path.name + ".delta")


def remove_files(directory: Path, key_set_id: int) -> None:
    """Delete a key set's vector file and delta file (a dropped key set)."""
    path = vector_file_path(directory, key_set_id)
    for p in (path, delta_path(path)):
        try:
            p.unlink(missing_ok=True)
        except OSError as exc:  # still mapped (Windows): it goes with the next rebuild
            log.debug("could not delete %s: %s", p, exc)


def file_stamp(store: KeyStore, key_set: KeySet, dim: int) -> dict[str, Any]:
    """The stamp a current file of ``key_set`` carries (key store sums, size, model)."""
    return {
        **store.dense_stamp(key_set.id),
        "dim": dim,
        "model": str(key_set.params.get("model_sha256", "")),
    }


def build_file(store: KeyStore, key_set: KeySet, dim: int, path: Path) -> VectorFile:
    """Write the file of ``key_set`` from the key store (one consistent read) and open it."""
    with store.read_snapshot():
        stamp = file_stamp(store, key_set, dim)
        rows = write_vector_file(
            path,
            dim=dim,
            stamp=stamp,
            chunks=iter_chunks(store.iter_current_vectors(key_set.id), dim),
        )
    delta_path(path).unlink(missing_ok=True)  # it belonged to the file just replaced
    log.info("dense keys: wrote %s (%d passages)", path.name, rows)
    return VectorFile(path, dim=dim)


def load_file_matrix(store: KeyStore, key_set: KeySet, dim: int, path: Path) -> VectorMatrix:
    """The matrix of ``key_set`` over its vector file, caught up or rebuilt as needed."""
    with store.read_snapshot():
        stamp = file_stamp(store, key_set, dim)
        try:
            existing: VectorFile | None = VectorFile(path, dim=dim)
        except VectorFileError as exc:
            if path.exists():
                log.warning("dense keys: %s; rebuilding it from the vault", exc)
            existing = None
        if existing is not None:
            if existing.stamp == stamp:
                return _matrix(store, key_set, dim, path, existing)
            same_build = all(existing.stamp.get(k) == stamp[k] for k in ("key_set", "dim", "model"))
            if same_build:
                matrix = _matrix(store, key_set, dim, path, existing)
                if _apply_delta(path, existing, stamp, matrix):
                    return matrix
                matrix = _matrix(store, key_set, dim, path, existing)
                if _catch_up(store, key_set.id, matrix, existing):
                    if matrix.changed_since_file():
                        _write_delta(path, existing.stamp, stamp, matrix)
                    return matrix
    return _matrix(store, key_set, dim, path, build_file(store, key_set, dim, path))


def _matrix(
    store: KeyStore, key_set: KeySet, dim: int, path: Path, vector_file: VectorFile
) -> VectorMatrix:
    matrix = VectorMatrix.over_file(vector_file)

    def rebuild(_exc: VectorFileError) -> None:
        path.unlink(missing_ok=True)
        matrix.use_file(build_file(store, key_set, dim, path))

    matrix.on_damage = rebuild
    return matrix


def _catch_up(store: KeyStore, key_set_id: int, matrix: VectorMatrix, vf: VectorFile) -> bool:
    """Bring ``matrix`` (fresh over ``vf``) to the key store's state by reading only the values
    whose passages differ; False when too many differ (the caller rebuilds the file)."""
    spans = store.keyed_passage_spans(key_set_id)
    vids = vf.value_ids
    if len(vids):
        starts = np.concatenate([[0], np.flatnonzero(np.diff(vids)) + 1])
        file_values = vids[starts]
        counts = np.diff(np.concatenate([starts, [len(vids)]]))
        low = np.minimum.reduceat(vf.rowids, starts)
        high = np.maximum.reduceat(vf.rowids, starts)
        in_file = {
            int(v): (int(n), int(lo), int(hi))
            for v, n, lo, hi in zip(file_values, counts, low, high, strict=True)
        }
    else:
        in_file = {}
    changed = [v for v, span in spans.items() if in_file.get(v) != span]
    gone = [v for v in in_file if v not in spans]
    budget = max(CATCH_UP_MIN, int(CATCH_UP_SHARE * vf.rows))
    if sum(spans[v][0] for v in changed) + sum(in_file[v][0] for v in gone) > budget:
        return False
    for value_id in gone:
        matrix.remove_value(value_id)
    found: dict[int, list[bytes]] = {v: [] for v in changed}
    for value_id, _idx, _rowid, vector in store.iter_current_vectors(key_set_id, changed):
        found[value_id].append(vector)
    for value_id, vectors in found.items():
        rows = np.frombuffer(b"".join(vectors), dtype=np.float32).reshape(-1, vf.dim)
        matrix.upsert_value(value_id, rows)
    if changed or gone:
        log.info(
            "dense keys: %s caught up (%d values changed, %d gone)",
            vf.path.name,
            len(changed),
            len(gone),
        )
    return True


def _write_delta(
    path: Path, base: dict[str, Any], stamp: dict[str, Any], matrix: VectorMatrix
) -> None:
    """Save the matrix's changes since ``path`` was written, for the next open (atomic)."""
    gone, vids, vecs = matrix.changes_since_file()
    target = delta_path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    meta = json.dumps({"base": base, "stamp": stamp}).encode("utf-8")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.frombuffer(meta, np.uint8), gone=gone, vids=vids, vecs=vecs)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:  # a full disk: the next open compares again
        log.warning("dense keys: could not save %s: %s", target.name, exc)
    finally:
        tmp.unlink(missing_ok=True)


def _apply_delta(path: Path, vf: VectorFile, stamp: dict[str, Any], matrix: VectorMatrix) -> bool:
    """Apply the delta file when it was made over ``vf`` and brings it to ``stamp``."""
    target = delta_path(path)
    if not target.exists():
        return False
    try:
        with np.load(target, allow_pickle=False) as saved:  # zip members are CRC-checked
            meta = json.loads(bytes(saved["meta"]))
            if meta.get("base") != vf.stamp or meta.get("stamp") != stamp:
                return False
            gone = saved["gone"].astype(np.int64)
            vids = saved["vids"].astype(np.int64)
            vecs = saved["vecs"].astype(np.float32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("dense keys: %s is unreadable (%s); comparing with the vault", target.name, exc)
        return False
    if vecs.shape != (len(vids), vf.dim) or gone.ndim != 1:
        return False
    for value_id in gone:
        matrix.remove_value(int(value_id))
    if len(vids):
        cuts = np.flatnonzero(np.diff(vids)) + 1
        for rows in np.split(np.arange(len(vids)), cuts):
            matrix.upsert_value(int(vids[rows[0]]), vecs[rows])
    return True
