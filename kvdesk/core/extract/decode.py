"""Bytes of a text file to text: BOMs, UTF-16 without a BOM, charset detection, binary checks,
and gzip streams inflated under a hard cap."""

from __future__ import annotations

import codecs
import re
import zlib

from kvdesk.core.errors import ExtractionError

GZIP_MAGIC = b"\x1f\x8b"
# Past this size, a gzip stream must not expand more than _MAX_GZIP_RATIO : 1 (the zip-bomb
# rule the DOCX reader applies to its parts: real text compresses 3-30x, bombs near 1000x).
_GZIP_RATIO_MIN_BYTES = 1024 * 1024
_MAX_GZIP_RATIO = 200
_GZIP_CHUNK = 1 << 20

# A text file is binary when more than this share of its characters are control characters.
_MAX_CONTROL_SHARE = 0.05
_MAX_NUL_SHARE = 0.10
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27)) + b"\x7f"
_CONTROL_CHARS = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")


def normalise(text: str) -> str:
    """Line ends as LF only, and no NUL characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\x00", "") if "\x00" in text else text


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode bytes of a text file; returns (text, encoding). Raises on binary content."""
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return _check_not_binary(data.decode(encoding)), encoding
            except UnicodeDecodeError:
                raise ExtractionError("binary content in a text file") from None
    if not data:
        return "", "utf-8"
    bom_less_16 = _utf16_without_bom(data)
    if bom_less_16 is not None:
        return bom_less_16
    nuls = data.count(0)
    if nuls > len(data) * _MAX_NUL_SHARE:
        raise ExtractionError("binary content in a text file")
    if nuls:
        data = data.replace(b"\x00", b"")
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if controls > len(data) * _MAX_CONTROL_SHARE:
        raise ExtractionError("binary content in a text file")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if declared:
        try:
            return _check_not_binary(data.decode(declared)), declared
        except (LookupError, UnicodeDecodeError):
            pass
    # Mostly valid UTF-8 with a few damaged bytes is still UTF-8; guessing would garble it.
    lenient = data.decode("utf-8", errors="replace")
    replaced = lenient.count("\ufffd")
    damaged = replaced - data.count(b"\xef\xbf\xbd")
    multibyte = len(lenient) - len(lenient.encode("ascii", "ignore")) - replaced
    if multibyte >= 4 * damaged:
        return lenient, "utf-8 (damaged bytes replaced)"
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise ExtractionError("binary content in a text file (no text encoding fits)")
    if best.encoding in _WESTERN_LOOKALIKES and _reads_as_western(data):
        # charset-normalizer labels short French/German/Spanish text cp1250 ("naďve"); when
        # every non-ASCII byte is a common Western accented letter in cp1252, that is the answer.
        return _check_not_binary(data.decode("cp1252")), "cp1252"
    return _check_not_binary(data.decode(best.encoding, errors="replace")), best.encoding


_WESTERN_LOOKALIKES = frozenset(
    {
        "cp1250",
        "iso8859_2",
        "cp1257",
        "iso8859_13",
        "iso8859_4",
        "cp1254",
        "iso8859_9",
        "mac_latin2",
        "cp852",
        "iso8859_15",
        "latin_1",
        "iso8859_1",
    }
)
_WESTERN_LETTERS = frozenset(
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝœŒ€«»°–—’‘“”…"
)


def _reads_as_western(data: bytes) -> bool:
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return all(ch in _WESTERN_LETTERS for ch in text if ord(ch) > 127)


def _utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """UTF-16 text without a BOM shows NULs in every other byte (for Latin text)."""
    sample = data[:65536]
    if len(sample) < 4 or len(sample) % 2:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd > 0.6 * half and even < 0.05 * half:
        encoding = "utf-16-le"
    elif even > 0.6 * half and odd < 0.05 * half:
        encoding = "utf-16-be"
    else:
        return None
    try:
        return _check_not_binary(data.decode(encoding)), encoding
    except UnicodeDecodeError:
        return None


def _check_not_binary(text: str) -> str:
    sample = text[:1_000_000]
    if len(_CONTROL_CHARS.findall(sample)) > len(sample) * _MAX_CONTROL_SHARE:
        raise ExtractionError("binary content in a text file")
    return text


def looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a file with no telling name read as text (a cheap sniff).

    A BOM, or UTF-16 without one, is text; otherwise a NUL byte or more than 5% control bytes
    is binary. Any 8-bit encoding passes: `decode_text` decides it on the whole file.
    """
    if not head:
        return False
    if head.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    sample = head[: len(head) - len(head) % 2]
    try:
        if len(sample) >= 4 and _utf16_without_bom(sample) is not None:
            return True
    except ExtractionError:
        return False
    if b"\x00" in head:
        return False
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls <= len(head) * _MAX_CONTROL_SHARE


def peek_gunzip(head: bytes, size: int = 4096) -> bytes:
    """Up to ``size`` bytes of what a gzip file starts with, from its first bytes only.

    Raises ExtractionError when the header or the start of the stream is damaged.
    """
    try:
        return zlib.decompressobj(wbits=31).decompress(head, size)
    except zlib.error as exc:
        raise ExtractionError(f"damaged gzip data ({exc})") from None


def gunzip(data: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip file (every member), streamed in chunks and refused as soon as it grows
    past ``max_bytes`` or expands like a bomb; raises ExtractionError with the reason."""
    out: list[bytes] = []
    total = 0
    rest = memoryview(data)
    while True:
        inflater = zlib.decompressobj(wbits=31)
        try:
            chunk = inflater.decompress(rest, _GZIP_CHUNK)
            while True:
                total += len(chunk)
                _check_inflated(total, len(data), max_bytes)
                out.append(chunk)
                tail = inflater.unconsumed_tail
                if inflater.eof or not (tail or chunk):
                    break  # the member ended, or no input is left and nothing came out
                chunk = inflater.decompress(tail, _GZIP_CHUNK)
        except zlib.error as exc:
            raise ExtractionError(f"damaged gzip data ({exc})") from None
        if not inflater.eof:
            raise ExtractionError("damaged gzip data (the file is truncated)")
        rest = memoryview(inflater.unused_data)
        if bytes(rest[:2]) != GZIP_MAGIC:
            # Like gzip(1): zero padding or trailing bytes after the last member are ignored.
            return b"".join(out)


def _check_inflated(total: int, compressed: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise ExtractionError(
            f"gzip file expands beyond the limit of {max_bytes / 2**20:.0f} MiB; refused"
        )
    if total > _GZIP_RATIO_MIN_BYTES and total > _MAX_GZIP_RATIO * compressed:
        raise ExtractionError(
            f"gzip file looks like a decompression bomb: it expands more than"
            f" {_MAX_GZIP_RATIO} times its size; refused"
        )
