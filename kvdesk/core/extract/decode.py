"""Bytes of a text file to text: BOMs, UTF-16 without a BOM, charset detection, binary checks."""

from __future__ import annotations

import codecs
import re

from kvdesk.core.errors import ExtractionError

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
