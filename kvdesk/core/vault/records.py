"""Records of values as the rest of kvdesk sees them, and the small helpers that store them."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Make text storable: bytes smuggled in as surrogate escapes (odd file names) become U+FFFD,
    and so does any other unpaired surrogate (a JSON ``"\\ud800"`` escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            pass
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


def path_to_db(path: str | os.PathLike[str]) -> bytes:
    """Paths are stored as raw bytes so that names that are not valid UTF-8 survive exactly."""
    return os.fsencode(path)


def path_from_db(raw: bytes | None) -> str | None:
    return None if raw is None else os.fsdecode(raw)


@dataclass(frozen=True)
class ValueContent:
    """What one version of a value holds: the original bytes and what was extracted from them."""

    data: bytes
    media_type: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source_path: str | None = None
    source_mtime: float | None = None

    @functools.cached_property
    def sha256(self) -> str:
        return sha256_hex(self.data)

    @property
    def raw_source_path(self) -> bytes | None:
        return path_to_db(self.source_path) if self.source_path is not None else None


@dataclass(frozen=True)
class VersionRecord:
    """One stored version of a value."""

    version: int
    sha256: str
    size: int
    media_type: str
    title: str
    source_path: str | None
    source_mtime: float | None
    created_at: str


@dataclass(frozen=True)
class ValueRecord:
    """A value as users see it: its current version plus identity and state."""

    id: int
    identifier: str
    external_id: str | None
    title: str
    media_type: str
    source_path: str | None
    source_missing: bool
    version: int
    sha256: str
    size: int
    source_mtime: float | None
    created_at: str
    updated_at: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    tags: tuple[str, ...] = ()
    damaged: str = ""  # why what is stored about it fails its digest (shown, never hidden)


@dataclass(frozen=True)
class KeySource:
    """What a value's keys are built from: the current version's text, title and place."""

    value_id: int
    version: int
    identifier: str
    external_id: str | None
    title: str
    media_type: str
    source_path: str | None
    updated_at: str
    source_mtime: float | None
    text: str
    digest: str | None = None
    metadata: str = "{}"  # the version's metadata (JSON): an image's EXIF, a PDF's author


@dataclass(frozen=True)
class CheckReport:
    ok: bool
    values: int
    values_digest: str
    problems: tuple[str, ...]
