"""Identifier keys: invoice and order numbers, IBANs, e-mail addresses, phone numbers, dates
and ``DOC-`` ids, found in every document's text as an exact-match key space.

A scan reads ``INV-2024-0117`` as ``INV-2O24-0117`` often enough that exact matching alone
fails, and loose matching alone claims documents that do not hold the number. So matching
goes through a *canonical* form (upper case, no separators, O→0, I/L→1, S→5, B→8, Z→2), and
every candidate is then **verified** against the identifier as stored in the document: the
explanation shows the stored form and how many characters were corrected. A number that no
document holds is reported as absent, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

# Letters a scan (or a hurried typist) confuses with digits, mapped to the digit.
_CONFUSABLE = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1", "S": "5",
                             "B": "8", "Z": "2", "G": "6"})  # fmt: skip
_SEPARATORS = re.compile(r"[\s\-_./:#]+")

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", re.UNICODE)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_DATE = re.compile(
    r"\b(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}|\d{4}年\d{1,2}月\d{1,2}日)"
)
_PHONE = re.compile(r"(?<![\w+\-/.])\+?\d[\d ()\-]{7,}\d\b")
_AMOUNT = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d{2})?(?![\w])|\b\d+\.\d{2}\b")
# A digit as a scan may have read it: a digit, or a letter OCR confuses with one.
_D = "[0-9OQDILSBZGl]"
# Codes with a letter prefix (INV-2024-0117, INV 2024 0117, PO 44817, DOC-12, AB12CD). After a
# separator the first digit may have been read as a letter (INV-Z022-1692).
_PREFIXED_CODE = re.compile(
    r"(?<![\w@])(?:[A-Za-z]{1,6}[-_/.#]" + _D + r"[0-9A-Za-z]*(?:[-_/.][0-9A-Za-z]+)*"
    r"|[A-Za-z]{1,6}\d[0-9A-Za-z]*(?:[-_/.][0-9A-Za-z]+)*"
    r"|[A-Z]{1,6} " + _D + r"[0-9A-Z]*(?:[-_/. ]\d[0-9A-Z]*)*)(?![\w@])"
)
# Codes of digits (2024-0117, 44817-22, a long order number).
_NUMBER_CODE = re.compile(r"(?<![\w@])(?:\d[0-9A-Za-z]*(?:[-_/.][0-9A-Za-z]+)+|\d{5,})(?![\w@])")
# Dashes a document may use between the groups of a number.
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d"})


_KVDESK_ID = re.compile(r"DOC-\d+", re.IGNORECASE)


@dataclass(frozen=True)
class Identifier:
    """An identifier as written in a document (``raw``), its matching form and its kind."""

    raw: str
    canonical: str
    kind: str  # email, iban, date, phone, code


@dataclass(frozen=True)
class IdentifierMatch:
    """A query identifier verified against the identifier a document holds."""

    query: str  # as the user typed it
    stored: str  # as the document holds it (on a scan: as OCR read it)
    kind: str
    corrections: int  # characters that differ (0: exact, separators and case aside)

    def describe(self) -> str:
        if self.corrections == 0:
            return f"{self.stored} (exact)"
        noun = "character" if self.corrections == 1 else "characters"
        return (
            f"{self.query}: read in the document as {self.stored},"
            f" {self.corrections} {noun} corrected"
        )


def canonical(text: str) -> str:
    """The form identifiers are matched by: upper case, no separators, confusables unified."""
    return _SEPARATORS.sub("", text.upper()).translate(_CONFUSABLE)


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


_DIGIT_RUN = re.compile(r"\d{3,}")


def _looks_like_a_number(raw: str) -> bool:
    """Four digits or more, three of them in a row (INV-2024-0117, rs647161), counting the
    letters a scan confuses with digits after the prefix (INV-2O24-0117); not a fraction
    ("1/2000") nor a name with digits in it ("H3K79me2")."""
    body = re.sub(r"^[A-Za-z]{1,6}[-_/.# ]?", "", raw) if raw[:1].isalpha() else raw
    if _digits(body) < 2:
        return False
    read = body.upper().translate(_CONFUSABLE)
    if _digits(read) < 4 or not _DIGIT_RUN.search(read):
        return False
    if not any(ch.isalpha() for ch in raw):
        return all(len(part) >= 2 for part in _SEPARATORS.split(raw) if part)
    return True


def extract(text: str, *, limit: int = 500) -> tuple[Identifier, ...]:
    """Identifiers in ``text`` (first ``limit``, each canonical form once)."""
    found: dict[str, Identifier] = {}

    def keep(raw: str, kind: str) -> None:
        raw = raw.strip(" .-_/")
        key = canonical(raw) if kind != "email" else raw.lower()
        if (len(key) < 4 and kind != "code") or key in found or len(found) >= limit:
            return
        found[key] = Identifier(raw, key, kind)

    taken: list[tuple[int, int]] = []

    def free(m: re.Match[str]) -> bool:
        return all(m.end() <= a or m.start() >= b for a, b in taken)

    text = text.translate(_DASHES)

    def codes(pattern: re.Pattern[str]) -> None:
        for m in pattern.finditer(text):
            raw = m.group()
            if not free(m):
                continue
            # Numbers people look up have four digits or more (INV-2024-0117, PO 44817);
            # fewer is a word ("mp3", "p53", "IL-10", "COVID-19"), except DOC- ids.
            if not _KVDESK_ID.fullmatch(raw) and not _looks_like_a_number(raw):
                continue
            keep(raw, "code")
            taken.append(m.span())

    for pattern, kind in ((_EMAIL, "email"), (_IBAN, "iban")):
        for m in pattern.finditer(text):
            if free(m):
                keep(m.group(), kind)
                taken.append(m.span())
    codes(_PREFIXED_CODE)  # before dates and phones: "INV 2024 0117" is one number
    for pattern, kind in ((_DATE, "date"), (_PHONE, "phone"), (_AMOUNT, "")):
        for m in pattern.finditer(text):
            if free(m) and (kind != "phone" or _digits(m.group()) >= 8):
                if kind:  # an amount (2,832.93) is not an identifier: only set aside
                    keep(m.group(), kind)
                taken.append(m.span())
    codes(_NUMBER_CODE)
    return tuple(found.values())


def query_identifiers(query: str) -> tuple[Identifier, ...]:
    """The identifiers a query names (the same rules as for documents)."""
    return extract(query, limit=20)


def verify(query: Identifier, held: Iterable[Identifier]) -> IdentifierMatch | None:
    """The stored identifier ``query`` names, if one of ``held`` has its canonical form; the
    closest one when several do."""
    best: IdentifierMatch | None = None
    typed = _SEPARATORS.sub("", query.raw.upper())
    for ident in held:
        if ident.canonical != query.canonical:
            continue
        if (ident.kind == "date") != (query.kind == "date"):
            continue  # a date is not an invoice number that happens to share its digits
        stored = _SEPARATORS.sub("", ident.raw.upper())
        corrections = Levenshtein.distance(typed, stored)
        if best is None or corrections < best.corrections:
            best = IdentifierMatch(query.raw, ident.raw, ident.kind, corrections)
    return best


def encode(identifiers: Iterable[Identifier]) -> str:
    """The stored form of a document's identifiers (one per line: kind, raw)."""
    return "\n".join(f"{i.kind}\t{i.raw}" for i in identifiers)


def decode(stored: str) -> tuple[Identifier, ...]:
    out = []
    for line in stored.splitlines():
        kind, _, raw = line.partition("\t")
        if raw:
            out.append(Identifier(raw, canonical(raw) if kind != "email" else raw.lower(), kind))
    return tuple(out)
