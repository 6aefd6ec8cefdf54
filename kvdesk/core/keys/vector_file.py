"""A dense key set's passage vectors in one file of the key folder, searched without loading them.

A big vault cannot hold every passage vector in RAM as float32 (1.5 GB at a million passages)
nor read them all when it opens. The file holds, per passage, its value id, passage index and
SQLite rowid, the sign bits of its centred vector (48 bytes at 384 dims), a centred int8 copy and
the exact float32 vector. Search scans the bits (Hamming distance), rescores a few thousand
candidates with the int8 copy and scores the best ones exactly in float32: the cosines shown are
the stored vectors' own. Only the small parts (ids, bits, norms: ~80 MB at a million passages)
are read at open; the int8 and float32 parts are memory-mapped and touched row by row.

The file is derived (SQLite's key store is the record): it is written whole into a temporary
file and renamed, and carries the stamp of the key store it was built from. A file whose header,
size or checksums disagree is rebuilt, never trusted; every float32 row read at search time is
checked against its checksummed sign bits and norm, so a damaged page is noticed when used.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"KVDVECS1"
FORMAT = 1
ALIGN = 4096
# Rows scanned per step of the Hamming scan: a few columns of this many fit in the L2 cache.
SCAN_CHUNK = 32768
# Relative error allowed between a float32 row's norm and the one recorded when it was written.
NORM_TOLERANCE = 1e-4
#: int8 regions from this size on are read ahead at open (see _warm_in_background).
WARM_MIN_BYTES = 32 << 20
WARM_CHUNK = 8 << 20

# Regions after the float32 vectors, in file order, with their element types.
_META_REGIONS = (
    ("vids", np.dtype(np.int64)),
    ("pidx", np.dtype(np.int32)),
    ("rowid", np.dtype(np.int64)),
    ("norm", np.dtype(np.float32)),
    ("bits", np.dtype(np.uint64)),
)
_CHECKED = ("vids", "pidx", "rowid", "norm", "bits")


class VectorFileError(Exception):
    """The vector file is missing, of another key set or version, truncated or damaged."""


@dataclass(frozen=True)
class VectorChunk:
    """Consecutive rows for the writer, ordered by (value id, passage index) across chunks."""

    value_ids: np.ndarray  # int64 [n]
    passage_idx: np.ndarray  # int32 [n]
    rowids: np.ndarray  # int64 [n], the passage's SQLite rowid
    vectors: np.ndarray  # float32 [n, dim]


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(words: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 in ``words`` into ``out`` (uint8); numpy < 2 has no
    ``bitwise_count``, so a byte table stands in (slower, same result)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words, out=out)
    out[:] = _POPCOUNT8[words.view(np.uint8)].reshape(len(words), 8).sum(axis=1, dtype=np.uint8)
    return out


def bit_words(dim: int) -> int:
    """64-bit words of sign bits per vector."""
    return (dim + 63) // 64


def sign_bits(centred: np.ndarray) -> np.ndarray:
    """Sign bits of centred vectors [n, dim] as uint64 words [n, words] (zero-padded)."""
    n, dim = centred.shape
    packed = np.packbits(centred > 0, axis=1)  # [n, ceil(dim / 8)]
    padded = np.zeros((n, bit_words(dim) * 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view(np.uint64)


def _align(offset: int) -> int:
    return (offset + ALIGN - 1) // ALIGN * ALIGN


def _bytes(array: np.ndarray) -> memoryview:
    """The bytes of ``array`` in C order, without a copy when it is contiguous."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def _crc(array: np.ndarray) -> int:
    return zlib.crc32(_bytes(array))


def write_vector_file(
    path: Path, *, dim: int, stamp: dict[str, Any], chunks: Iterable[VectorChunk]
) -> int:
    """Write the vectors of ``chunks`` to ``path`` atomically; returns the number of rows.

    The centre and int8 scale come from the first chunk (a sample of the vault is enough to
    centre the sign bits; values beyond the scale are clipped, which only affects candidates).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    header_reserve = _align(8192 + 64 * dim)
    f32_offset = header_reserve
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in _META_REGIONS}
    int8_parts: list[np.ndarray] = []
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    rows = 0
    try:
        with open(tmp, "wb") as out:
            out.truncate(f32_offset)
            out.seek(f32_offset)
            for chunk in chunks:
                vectors = np.ascontiguousarray(chunk.vectors, dtype=np.float32)
                n = len(vectors)
                if n == 0:
                    continue
                if vectors.shape != (n, dim):
                    raise ValueError(f"expected vectors of shape [n, {dim}], got {vectors.shape}")
                if mean is None or scale is None:
                    mean = vectors.mean(axis=0).astype(np.float32)
                    spread = np.abs(vectors - mean).max(axis=0)
                    scale = (np.maximum(spread, 1e-6) / 127.0).astype(np.float32)
                centred = vectors - mean
                out.write(_bytes(vectors))
                parts["vids"].append(np.asarray(chunk.value_ids, dtype=np.int64))
                parts["pidx"].append(np.asarray(chunk.passage_idx, dtype=np.int32))
                parts["rowid"].append(np.asarray(chunk.rowids, dtype=np.int64))
                parts["norm"].append(np.linalg.norm(vectors, axis=1).astype(np.float32))
                parts["bits"].append(sign_bits(centred))
                int8_parts.append(np.clip(np.rint(centred / scale), -127, 127).astype(np.int8))
                rows += n
            if mean is None or scale is None:
                mean = np.zeros(dim, np.float32)
                scale = np.ones(dim, np.float32)
            regions: dict[str, list[int]] = {"f32": [f32_offset, rows * dim * 4]}
            crcs: dict[str, int] = {}
            offset = _align(f32_offset + rows * dim * 4)
            words = bit_words(dim)
            for name, dtype in _META_REGIONS:
                if parts[name]:
                    array = np.concatenate(parts[name])
                else:
                    array = np.zeros((0, words) if name == "bits" else 0, dtype=dtype)
                if name == "bits":
                    array = np.ascontiguousarray(array.reshape(rows, words).T)  # column-major
                parts[name] = []
                out.seek(offset)
                out.write(_bytes(array))
                regions[name] = [offset, array.nbytes]
                crcs[name] = _crc(array)
                offset = _align(offset + array.nbytes)
            out.seek(offset)
            for part in int8_parts:
                out.write(_bytes(part))
            regions["i8"] = [offset, rows * dim]
            end = offset + rows * dim
            header = json.dumps(
                {
                    "format": FORMAT,
                    "dim": dim,
                    "rows": rows,
                    "end": end,
                    "stamp": stamp,
                    "mean": mean.tolist(),
                    "scale": scale.tolist(),
                    "regions": regions,
                    "crc": crcs,
                }
            ).encode("utf-8")
            if len(header) + 16 > header_reserve:
                raise ValueError("vector file header too large")
            out.truncate(end)
            out.seek(0)
            out.write(MAGIC + struct.pack("<II", len(header), zlib.crc32(header)) + header)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return rows


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows: directories cannot be opened; the rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class VectorFile:
    """A validated, read-only vector file. Rows are sorted by (value id, passage index)."""

    def __init__(self, path: Path, *, dim: int | None = None) -> None:
        """Open and check ``path`` (header, size, checksums); raises :class:`VectorFileError`."""
        self.path = path
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                prefix = f.read(16)
                if len(prefix) != 16 or prefix[:8] != MAGIC:
                    raise VectorFileError(f"{path.name} is not a kvdesk vector file")
                length, crc = struct.unpack("<II", prefix[8:])
                raw = f.read(length)
                if len(raw) != length or zlib.crc32(raw) != crc:
                    raise VectorFileError(f"{path.name} has a damaged header")
                header = json.loads(raw)
                if header.get("format") != FORMAT:
                    raise VectorFileError(f"{path.name} is of another format")
                self.dim = int(header["dim"])
                self.rows = int(header["rows"])
                if dim is not None and self.dim != dim:
                    raise VectorFileError(f"{path.name} holds {self.dim}-d vectors, not {dim}-d")
                if size != int(header["end"]):
                    raise VectorFileError(f"{path.name} is truncated ({size} bytes)")
                self.stamp: dict[str, Any] = header["stamp"]
                self.mean = np.asarray(header["mean"], dtype=np.float32)
                self.scale = np.asarray(header["scale"], dtype=np.float32)
                regions = {k: (int(v[0]), int(v[1])) for k, v in header["regions"].items()}
                words = bit_words(self.dim)
                arrays: dict[str, np.ndarray] = {}
                for name, dtype in _META_REGIONS:
                    offset, nbytes = regions[name]
                    f.seek(offset)
                    array = np.frombuffer(f.read(nbytes), dtype=dtype)
                    if _crc(array) != int(header["crc"][name]):
                        raise VectorFileError(f"{path.name}: its {name} are damaged")
                    arrays[name] = array
                self._check_layout(regions, arrays, words)
            self.value_ids = arrays["vids"]
            self.passage_idx = arrays["pidx"]
            self.rowids = arrays["rowid"]
            self.norms = arrays["norm"]
            self.bits = arrays["bits"].reshape(words, self.rows)  # column-major words
            self._map = self._mmap(path, size)
            self._file = open(path, "rb")  # noqa: SIM115 - kept for positioned reads
            self._fd = self._file.fileno()
            f32_offset, _ = regions["f32"]
            i8_offset, _ = regions["i8"]
            self.f32_offset = f32_offset  # where the float32 rows start (for readers that stream)
            self._f32_bytes = self.rows * self.dim * 4
            self._touched = 0  # float32 rows read since the last release
            self.f32 = np.frombuffer(
                self._map, dtype=np.float32, count=self.rows * self.dim, offset=f32_offset
            ).reshape(self.rows, self.dim)
            self.i8 = np.frombuffer(
                self._map, dtype=np.int8, count=self.rows * self.dim, offset=i8_offset
            ).reshape(self.rows, self.dim)
            if self.rows * self.dim >= WARM_MIN_BYTES:
                _warm_in_background(path, i8_offset, self.rows * self.dim)
        except VectorFileError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VectorFileError(f"{path.name} could not be read ({exc})") from exc

    def _check_layout(
        self, regions: dict[str, tuple[int, int]], arrays: dict[str, np.ndarray], words: int
    ) -> None:
        n, dim = self.rows, self.dim
        want = {"vids": n, "pidx": n, "rowid": n, "norm": n, "bits": n * words}
        for name, count in want.items():
            if len(arrays[name]) != count:
                raise VectorFileError(f"{self.path.name}: its {name} have the wrong length")
        for name, nbytes in (("f32", n * dim * 4), ("i8", n * dim)):
            offset, stored = regions[name]
            if stored != nbytes or offset % ALIGN:
                raise VectorFileError(f"{self.path.name}: its {name} region is malformed")
        vids = arrays["vids"]
        if n > 1:
            # Sorted by (value id, passage index): what value lookups rely on.
            step = np.diff(vids)
            same = step == 0
            if (step < 0).any() or (np.diff(arrays["pidx"])[same] <= 0).any():
                raise VectorFileError(f"{self.path.name}: its rows are out of order")
        if self.mean.shape != (dim,) or self.scale.shape != (dim,):
            raise VectorFileError(f"{self.path.name}: its quantiser is malformed")

    @staticmethod
    def _mmap(path: Path, size: int) -> mmap.mmap:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        # Rows are read at random: no read-ahead around each one (it would fill the resident
        # set with neighbours never scored).
        random_access = getattr(mmap, "MADV_RANDOM", None)
        if random_access is not None and hasattr(mapped, "madvise"):
            try:
                mapped.madvise(random_access)
            except OSError:
                pass
        return mapped

    # -- reading ------------------------------------------------------------------------------

    def rows_of(self, value_id: int) -> tuple[int, int]:
        """The [start, end) rows of a value's passages (empty when it has none here)."""
        start = int(np.searchsorted(self.value_ids, value_id, side="left"))
        end = int(np.searchsorted(self.value_ids, value_id, side="right"))
        return start, end

    def exact(self, rows: np.ndarray, *, check: bool = True) -> np.ndarray:
        """The float32 vectors of ``rows``; with ``check``, each checked against its sign bits
        and norm (every row whose cosine is shown is checked; candidates need not be)."""
        rows = np.asarray(rows, dtype=np.int64)
        vectors = self._read_rows(rows)
        if check:
            self.check(rows, vectors)
        return vectors

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows read with positioned reads, not through the mapping: the page cache may hold the
        file in large folios, and mapping one row maps its whole folio (measured: 1,000 rows
        put 630 MB in the resident set at a million passages)."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        size = self.dim * 4
        view = out.reshape(-1).view(np.uint8).data
        base = self.f32_offset
        preadv = getattr(os, "preadv", None)
        for i, row in enumerate(rows.tolist()):
            target = view[i * size : (i + 1) * size]
            offset = base + row * size
            if preadv is not None:
                got = preadv(self._fd, [target], offset)
            else:  # Windows: no positioned reads in os; callers hold the matrix lock
                self._file.seek(offset)
                got = self._file.readinto(target)
            if got != size:
                raise VectorFileError(f"{self.path.name}: row {row} could not be read")
        return out

    def close(self) -> None:
        """Close the file (the mapping goes with the last array that uses it)."""
        self._file.close()

    def __del__(self) -> None:
        try:
            self._file.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def check(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Raise :class:`VectorFileError` unless ``vectors`` (read from ``rows``) are intact."""
        if not len(rows):
            return
        with np.errstate(all="ignore"):  # a damaged row may overflow: it is flagged below
            norms = np.linalg.norm(vectors, axis=1)
            recorded = self.norms[rows]
            bad = ~(np.abs(norms - recorded) <= NORM_TOLERANCE * np.maximum(recorded, 1e-6))
            bits = sign_bits(vectors - self.mean)
        bad |= (bits != self.bits[:, rows].T).any(axis=1)
        if bad.any():
            raise VectorFileError(f"{self.path.name}: {int(bad.sum())} stored vectors are damaged")

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosines of every row (one pass over the mapped float32 rows; used for small files)."""
        self._touched += self.rows
        with np.errstate(all="ignore"):  # damage shows in the checked rows of the results
            return np.asarray(self.f32 @ np.asarray(query, np.float32), dtype=np.float32)

    def hamming(self, query: np.ndarray, usable: np.ndarray | None) -> np.ndarray:
        """Hamming distance of every row's sign bits to the query's (unusable rows: maximal)."""
        qbits = sign_bits((np.asarray(query, np.float32) - self.mean).reshape(1, -1))[0]
        words = len(qbits)
        out = np.empty(self.rows, dtype=np.uint16)
        tmp = np.empty(SCAN_CHUNK, dtype=np.uint64)
        counts = np.empty(SCAN_CHUNK, dtype=np.uint8)
        for start in range(0, self.rows, SCAN_CHUNK):
            end = min(self.rows, start + SCAN_CHUNK)
            m = end - start
            acc = out[start:end]
            acc[:] = 0
            for w in range(words):
                np.bitwise_xor(self.bits[w, start:end], qbits[w], out=tmp[:m])
                _popcount(tmp[:m], counts[:m])
                acc += counts[:m]
        if usable is not None:
            out[~usable] = np.iinfo(np.uint16).max
        return out

    def approximate(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Scores of ``rows`` from the int8 copy, good enough to rank candidates (a positive
        multiple of the int8 rows' dot products with the query: only their order counts)."""
        q = np.asarray(query, np.float32) * self.scale
        gathered = np.take(self.i8, rows, axis=0)
        scored = _int8_scores(gathered, q)
        if scored is not None:
            return scored
        # One gather and one product: blocks measured 2.2x slower here (BLAS start-up per call).
        return gathered.astype(np.float32) @ q

    def release(self, *, after_rows: int = 0) -> None:
        """Let the OS drop the mapped float32 pages read so far from this process's resident
        set (they stay in the page cache) once more than ``after_rows`` rows were read:
        resident memory does not creep towards the file's size."""
        if self._touched <= after_rows:
            return
        self._touched = 0
        advise = getattr(self._map, "madvise", None)
        dont_need = getattr(mmap, "MADV_DONTNEED", None)
        if advise is not None and dont_need is not None and self._f32_bytes:
            try:
                advise(dont_need, self.f32_offset, self._f32_bytes)
            except (OSError, ValueError):
                pass


_int8_session: Any = None
_int8_lock = threading.Lock()


def _int8_scores(rows: np.ndarray, query: np.ndarray) -> np.ndarray | None:
    """``rows @ query`` in integers: the query rounded to int8 too, summed in int32 by ONNX
    Runtime's ``MatMulInteger`` (VNNI where the CPU has it). At a million passages this stage
    scores ~80,000 rows a search; numpy first widens them to float32 (120 MB written), which
    took 47-73 ms here against 16-22 ms. None when ONNX Runtime cannot do it (numpy then)."""
    global _int8_session
    top = float(np.abs(query).max()) if query.size else 0.0
    if not len(rows) or top == 0.0 or not np.isfinite(top):
        return None
    with _int8_lock:
        if _int8_session is None:
            _int8_session = _make_int8_session()
        session = _int8_session
    if session is False:
        return None
    q = np.rint(query * (127.0 / top)).astype(np.int8).reshape(-1, 1)
    try:
        out = session.run(None, {"rows": np.ascontiguousarray(rows), "query": q})[0]
    except Exception:  # noqa: BLE001 - an ORT build without int8 kernels: numpy does it
        return None
    return np.asarray(out, dtype=np.float32).reshape(-1)


#: A one-node ONNX model, int8 ``rows`` (n x d) times int8 ``query`` (d x 1) -> int32 ``scores``,
#: serialized (importing onnx to build it would add a second to the first search).
#: tests/core/test_vector_file.py rebuilds it with ``onnx.helper`` and compares.
INT8_SCORES_MODEL = bytes.fromhex(
    "080812066b766465736b3a82010a240a04726f77730a057175657279120673636f726573220d4d61744d756c"
    "496e7465676572120b696e74385f73636f7265735a180a04726f777312100a0e0803120a0a0312016e0a0312"
    "01645a180a057175657279120f0a0d080312090a031201640a02080162190a0673636f726573120f0a0d0806"
    "12090a0312016e0a02080142040a001011"
)


def _make_int8_session() -> Any:
    """An ONNX Runtime session of :data:`INT8_SCORES_MODEL`, or False when unavailable."""
    try:
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # searches may run side by side
        return onnxruntime.InferenceSession(
            INT8_SCORES_MODEL, options, providers=["CPUExecutionProvider"]
        )
    except Exception:  # noqa: BLE001 - an ORT build without the kernel: numpy does it
        return False


def _warm_in_background(path: Path, offset: int, size: int) -> None:
    """Read ``size`` bytes at ``offset`` once, in a daemon thread, into the page cache only.

    A big vault's first search scores tens of thousands of int8 rows spread over the file:
    fresh from disk, one page fault each took 3.5 s at a million passages here, where one
    sequential read of the whole region takes about 0.5 s. Nothing stays in this process's
    memory (one 8 MiB buffer, reused); a warm cache makes it a quick copy."""

    def read() -> None:
        try:
            with open(path, "rb", buffering=0) as f:
                f.seek(offset)
                buffer = memoryview(bytearray(WARM_CHUNK))
                left = size
                while left > 0:
                    got = f.readinto(buffer[: min(WARM_CHUNK, left)])
                    if not got:
                        break
                    left -= got
        except OSError:
            pass  # the file was replaced or removed: searches read what they need

    threading.Thread(target=read, name="kvdesk-warm-vectors", daemon=True).start()


def candidate_rows(distances: np.ndarray, count: int) -> np.ndarray:
    """The rows of the ``count`` smallest distances (ties at the cut all kept), unsorted."""
    if count >= len(distances):
        return np.flatnonzero(distances < np.iinfo(np.uint16).max)
    histogram = np.bincount(distances, minlength=1)
    cut = int(np.searchsorted(np.cumsum(histogram), count))
    cut = min(cut, np.iinfo(np.uint16).max - 1)
    return np.flatnonzero(distances <= cut)


def iter_chunks(
    rows: Iterator[tuple[int, int, int, bytes]], dim: int, chunk_rows: int = 20000
) -> Iterator[VectorChunk]:
    """Group (value id, passage index, rowid, vector bytes) rows into writer chunks."""
    batch: list[tuple[int, int, int, bytes]] = []

    def flush() -> VectorChunk:
        n = len(batch)
        chunk = VectorChunk(
            value_ids=np.fromiter((r[0] for r in batch), dtype=np.int64, count=n),
            passage_idx=np.fromiter((r[1] for r in batch), dtype=np.int32, count=n),
            rowids=np.fromiter((r[2] for r in batch), dtype=np.int64, count=n),
            vectors=np.frombuffer(b"".join(r[3] for r in batch), dtype=np.float32).reshape(n, dim),
        )
        batch.clear()
        return chunk

    for row in rows:
        if len(row[3]) != dim * 4:
            raise ValueError(f"a stored vector has {len(row[3]) // 4} dims, expected {dim}")
        batch.append(row)
        if len(batch) >= chunk_rows:
            yield flush()
    if batch:
        yield flush()
