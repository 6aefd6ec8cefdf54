"""Import of files, folders and JSONL records into the vault.

Each file is imported in its own transaction, so a crash or a bad file costs at most the file
in hand. Records (JSONL) are committed in batches of ``RECORDS_PER_COMMIT`` (one savepoint per
record: a bad record fails alone), so a kill costs at most the uncommitted batch, none of which
was reported as imported; running the same import again completes it. Unchanged files are
recognised from their size and modification time without being read again; so are files
skipped for the same reason by the last import (reported as "unchanged since last import", so
a re-import does not list them all again). Nothing here follows folder symlinks, opens special
files, or trusts a name: names without a telling extension are judged by their first bytes.

Longer than most modules: files, folders and records share one reporting and one transaction
protocol (what a kill can cost), which is easier to keep true in one place.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kvdesk.core.db import Dialect
from kvdesk.core.errors import Cancelled, ExtractionError, KvdeskError
from kvdesk.core.extract import (
    Extractor,
    Limits,
    format_size,
    media_type_for,
    mismatch_reason,
)
from kvdesk.core.extract.sniff import is_supported_name, reads_by_content
from kvdesk.core.paths import keys_dir_for
from kvdesk.core.progress import CancelToken, Progress, ProgressSink, no_progress
from kvdesk.core.tags.store import TagState, TagStore
from kvdesk.core.vault.records import ValueContent, path_to_db, sha256_hex
from kvdesk.core.vault.values import IDENTIFIER_PREFIX, SourceRow, ValueStore
from kvdesk.core.vault.vault import Vault

log = logging.getLogger("kvdesk.import")


def _record_errors() -> tuple[type[Exception], ...]:
    """What storing one record may raise that fails that record alone (either engine)."""
    errors: list[type[Exception]] = [sqlite3.IntegrityError, sqlite3.DataError, ValueError]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a desk alone needs no PostgreSQL driver
        pass
    else:
        errors += [psycopg.IntegrityError, psycopg.DataError]
    return tuple(errors)


_RECORD_ERRORS = _record_errors()

RECORD_MEDIA_TYPE = "application/x-kvdesk-record+json"
MAX_FOLDER_DEPTH = 64
RECORDS_PER_COMMIT = 256
NEAR_DUPLICATE_BITS = 8  # of a 64-bit perceptual hash: a rescan, not another page
# Files beside the vault that belong to it: never imported, even when a folder holds the vault.
_VAULT_SIDECARS = ("-wal", "-shm", "-journal", ".lock")
SNIFF_BYTES = 4096
SKIPPED_AGAIN = "unchanged since last import"
_NO_STAMP = (-1, -1)  # a skip decided by the name alone: remembered whatever the file's stamp

ValueCallback = Callable[[Sequence[int]], None]  # committed values, to be keyed


@dataclass
class ImportReport:
    """What an import did, file by file; its JSON form is part of the CLI contract."""

    imported: list[dict[str, Any]] = field(default_factory=list)
    updated: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    # Images imported that look like one already stored (the same page scanned twice).
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    cancelled: bool = False
    # The entries of ``skipped`` that the last import skipped for the same reason, unchanged.
    skipped_again: list[dict[str, Any]] = field(default_factory=list)

    def skipped_new(self) -> list[dict[str, Any]]:
        """Skipped entries that the last import did not already skip (worth listing)."""
        again = {id(entry) for entry in self.skipped_again}
        return [entry for entry in self.skipped if id(entry) not in again]

    def to_json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "failed": self.failed,
        }

    def summary(self) -> str:
        parts = [
            f"{len(self.imported)} imported",
            f"{len(self.updated)} updated",
            f"{len(self.unchanged)} unchanged",
            f"{len(self.duplicates)} duplicates",
            f"{len(self.skipped)} skipped{self._skipped_again_note()}",
            f"{len(self.failed)} failed",
        ]
        if self.near_duplicates:
            parts.insert(4, f"{len(self.near_duplicates)} like an image already stored")
        return ", ".join(parts) + (" (cancelled)" if self.cancelled else "")

    def _skipped_again_note(self) -> str:
        again = len(self.skipped_again)
        if not again:
            return ""
        if again == len(self.skipped):
            return f" ({SKIPPED_AGAIN})"
        return f" ({again} {SKIPPED_AGAIN})"


@dataclass(frozen=True)
class _Stored:
    """A record written inside a batch, reported once the batch commits."""

    bucket: list[dict[str, Any]]
    entry: dict[str, Any]
    value_id: int


@dataclass(frozen=True)
class _Candidate:
    path: str  # as given / walked; may hold surrogate escapes
    root: str | None  # the folder it was found under, for missing-source detection


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "named pipe"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISDIR, "folder"),
)


class ImportTarget(Protocol):
    """Where an import writes: a vault, or a desk's team writes (server first, then replica)."""

    path: Path
    values: ValueStore

    @property
    def dialect(self) -> Dialect: ...

    @property
    def conn(self) -> Any: ...

    def writing(self) -> AbstractContextManager[None]: ...

    def transaction(self) -> AbstractContextManager[Any]: ...


class Importer:
    """Imports into one vault; holds the vault's writer lock while it runs."""

    def __init__(
        self,
        vault: ImportTarget,
        *,
        limits: Limits | None = None,
        progress: ProgressSink = no_progress,
        cancel: CancelToken | None = None,
        on_values: ValueCallback | None = None,
    ) -> None:
        self.vault = vault
        self.limits = limits or Limits()
        self.progress = progress
        self.cancel = cancel or CancelToken()
        self.on_values = on_values
        self.report = ImportReport()
        self._own_paths, self._own_inodes = _vault_files(vault)
        self._roots: list[str] = []
        self._skips: dict[bytes, tuple[int, int, str]] = {}  # to remember for the next import
        self._image_hashes: dict[int, str] | None = None  # loaded at the first image

    # -- files and folders -------------------------------------------------------------------

    def import_paths(self, paths: Iterable[str | os.PathLike[str]]) -> ImportReport:
        self._roots = []  # folders walked, and given paths that are gone
        given = [_absolute(os.fspath(p)) for p in paths]
        candidates = list(self._walk_all(given))
        total = len(candidates)
        self.progress(Progress("import", 0, total))
        seen: set[bytes] = set()
        roots: set[str] = set(self._roots)
        with self.vault.writing(), Extractor(self.limits) as extractor:
            try:
                for done, cand in enumerate(candidates, start=1):
                    self.cancel.raise_if_cancelled()
                    seen.add(path_to_db(cand.path))
                    self._import_file(cand.path, extractor)
                    self.progress(Progress("import", done, total, cand.path))
            except Cancelled:
                self.report.cancelled = True
            if not self.report.cancelled:
                self._mark_missing_sources(roots, seen)
            self._remember_skips(None if self.report.cancelled else roots | set(given))
        return self.report

    def _remember_skips(self, scope: set[str] | None) -> None:
        """Store this run's skips; forget earlier ones in ``scope`` that were not skipped now
        (a whole walk only: a cancelled import forgets nothing)."""
        values = self.vault.values
        with self.vault.transaction() as tx:
            if self._skips:
                values.remember_skipped(tx, [(raw, *stamp) for raw, stamp in self._skips.items()])
            for root in sorted(scope or ()):
                values.forget_skipped(
                    tx, path_to_db(root), path_to_db(os.path.join(root, "")), set(self._skips)
                )

    def _walk_all(self, paths: list[str]) -> Iterator[_Candidate]:
        for given in paths:
            if self._is_own_file(given, None):
                self._skip(given, "part of this vault (not imported)", stamp=_NO_STAMP)
                continue
            try:
                info = os.stat(given)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    # A file or folder imported before and gone now: its values are marked.
                    self._roots.append(given)
                self._skip_unreadable(given, exc)
                continue
            if stat.S_ISDIR(info.st_mode):
                self._roots.append(given)  # a root: its gone files are marked (even all)
                yield from self._walk_folder(given, given, 0)
            else:
                yield _Candidate(given, None)

    def _walk_folder(self, folder: str, root: str, depth: int) -> Iterator[_Candidate]:
        if depth > MAX_FOLDER_DEPTH:
            self._skip(folder, f"folder nested deeper than {MAX_FOLDER_DEPTH} levels")
            return
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self._skip(folder, f"cannot read folder: {exc.strerror or exc}")
            return
        for entry in entries:
            path = entry.path
            if entry.name.startswith("."):
                self._skip(path, "hidden file or folder", stamp=_NO_STAMP)
                continue
            if self._is_own_file(path, entry):
                self._skip(path, "part of this vault (not imported)", stamp=_NO_STAMP)
                continue
            try:
                if entry.is_symlink():
                    target = os.stat(path)  # raises for loops and dangling links
                    if stat.S_ISDIR(target.st_mode):
                        self._skip(
                            path, "symbolic link to a folder (not followed)", stamp=_NO_STAMP
                        )
                        continue
                    yield _Candidate(path, root)
                elif entry.is_dir(follow_symlinks=False):
                    yield from self._walk_folder(path, root, depth + 1)
                else:
                    yield _Candidate(path, root)
            except OSError as exc:
                self._skip_unreadable(path, exc)

    def _import_file(self, path: str, extractor: Extractor) -> None:
        try:
            info = os.stat(path)
        except OSError as exc:
            self._skip_unreadable(path, exc)
            return
        stamp = (info.st_size, info.st_mtime_ns)
        for test, kind in _SPECIAL_KINDS:
            if test(info.st_mode):
                self._skip(path, f"not a regular file ({kind})", stamp=stamp)
                return
        if info.st_size > self.limits.max_file_bytes:
            self._skip(
                path,
                f"file too large ({format_size(info.st_size)}"
                f" > limit {format_size(self.limits.max_file_bytes)})",
                stamp=stamp,
            )
            return
        raw_path = path_to_db(path)
        values = self.vault.values
        source = values.source(raw_path)
        if source is not None and (source.size, source.mtime_ns) == (
            info.st_size,
            info.st_mtime_ns,
        ):
            self._source_is_back(source, raw_path)
            self.report.unchanged.append({"path": path, "id": source.identifier})
            return
        if not is_supported_name(path):
            self._skip(path, "unsupported file type", stamp=stamp)
            return
        by_content = reads_by_content(path)
        try:
            if by_content:
                # README, ls.1, changelog.gz: the first bytes decide, before the rest is read.
                head = _read_regular_file(path, SNIFF_BYTES, truncate=True)
                if media_type_for(path, head) is None:
                    self._skip(path, mismatch_reason(path, head), stamp=stamp)
                    return
            data = _read_regular_file(path, self.limits.max_file_bytes)
        except OSError as exc:
            self._fail(path, f"cannot read file: {exc.strerror or exc}")
            return
        except KvdeskError as exc:
            self._skip(path, str(exc))
            return
        sha = sha256_hex(data)
        if source is not None and source.sha256 == sha:
            with self.vault.transaction() as tx:
                values.touch_source(tx, raw_path, info.st_size, info.st_mtime_ns)
            self._source_is_back(source, raw_path)
            self.report.unchanged.append({"path": path, "id": source.identifier})
            return
        media_type = media_type_for(path, data[:4096])
        if media_type is None:
            # A supported extension whose content is something else (encrypted .docx, HTML
            # saved as .pdf, an empty file): say what it really is.
            self._fail(path, mismatch_reason(path, data[:4096]))
            return
        try:
            extracted = extractor.extract(data, os.path.basename(path))
        except ExtractionError as exc:
            self._fail(path, str(exc))
            return
        content = ValueContent(
            data=data,
            media_type=extracted.media_type,
            title=extracted.title,
            text=extracted.text,
            metadata=extracted.metadata,
            source_path=path,
            source_mtime=info.st_mtime,
        )
        owns_source = source is not None and source.value_source_path == raw_path
        with self.vault.transaction() as tx:
            if source is not None and owns_source:
                value_id = source.value_id
                number = values.add_version(tx, value_id, content)
                entry = {"path": path, "id": source.identifier, "version": number}
                bucket = self.report.updated
            else:
                duplicate_of = values.find_by_sha(sha)
                if duplicate_of is not None:
                    value_id = duplicate_of
                    entry = {"path": path, "id": values.identifier(value_id)}
                    bucket = self.report.duplicates
                else:
                    value_id, ident = values.create_value(tx, content)
                    entry = {"path": path, "id": ident}
                    bucket = self.report.imported
                    self._near_duplicate(entry, value_id, content.metadata)
            values.record_source(tx, raw_path, value_id, info.st_size, info.st_mtime_ns, sha)
            self._skips.pop(raw_path, None)
        bucket.append(entry)
        log.info("%s %s %s", _VERBS[bucket is self.report.imported], entry["id"], path)
        if bucket is not self.report.duplicates and self.on_values is not None:
            self.on_values([value_id])

    def _near_duplicate(
        self, entry: dict[str, Any], value_id: int, metadata: dict[str, Any]
    ) -> None:
        """Mark an imported image that looks like one already stored (a perceptual hash
        within ``NEAR_DUPLICATE_BITS`` of 64): both are kept, they are different files. The
        entry says ``"looks_like": {"id", "distance"}``; the report's keys stay as they were."""
        phash = metadata.get("phash")
        if not isinstance(phash, str) or not phash:
            return
        if self._image_hashes is None:
            self._image_hashes = self.vault.values.image_hashes()
        mine = int(phash, 16)
        best: tuple[int, int] | None = None
        for other, other_hash in self._image_hashes.items():
            if other == value_id:
                continue
            distance = (mine ^ int(other_hash, 16)).bit_count()
            if distance <= NEAR_DUPLICATE_BITS and (best is None or distance < best[1]):
                best = (other, distance)
        self._image_hashes[value_id] = phash
        if best is not None:
            like = self.vault.values.identifier(best[0])
            entry["looks_like"] = {"id": like, "distance": best[1]}
            self.report.near_duplicates.append(entry)

    def _source_is_back(self, source: SourceRow, raw_path: bytes) -> None:
        """A restored source file clears its value's source-missing mark."""
        if source.source_missing and source.value_source_path == raw_path:
            with self.vault.transaction() as tx:
                self.vault.values.set_source_missing(tx, source.value_id, raw_path, False)

    def _is_own_file(self, path: str, entry: os.DirEntry[str] | None) -> bool:
        """The vault file, its sidecars (-wal, -shm, .lock) and its keys folder."""
        if path in self._own_paths:
            return True
        try:
            inode = entry.inode() if entry is not None else os.stat(path).st_ino
            if inode not in {ino for _, ino in self._own_inodes}:
                return False
            info = entry.stat(follow_symlinks=False) if entry is not None else os.stat(path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) in self._own_inodes

    def _mark_missing_sources(self, roots: set[str], seen: set[bytes]) -> None:
        """A source file that disappeared leaves its value in place, marked as source missing.

        ``roots`` are folders that were walked and given paths that no longer exist: sources
        at or under them that are gone are marked.
        """
        for root in roots:
            rows = self.vault.values.sources_under(
                path_to_db(root), path_to_db(os.path.join(root, ""))
            )
            gone = [(p, v) for p, v in rows if p not in seen and not os.path.exists(p)]
            if not gone:
                continue
            with self.vault.transaction() as tx:
                for raw, value_id in gone:
                    self.vault.values.set_source_missing(tx, value_id, raw, True)

    # -- records -----------------------------------------------------------------------------

    def import_records(self, records_file: str | os.PathLike[str]) -> ImportReport:
        """Import one document per JSONL line: ``_id``, ``title``, ``text``, optional ``tags``.

        The file is streamed line by line; a line longer than ``limits.max_file_bytes`` fails on
        its own, a file larger than ``limits.max_records_file_bytes`` is refused. A named pipe
        or device is refused before anything is read from it.
        """
        file_path = os.fspath(records_file)
        handle = _open_records_file(file_path, self.limits)
        with handle:
            total = _count_lines(handle)
            handle.seek(0)
            lines = _record_lines(handle, self.limits, file_path)
            self.progress(Progress("import", 0, total))
            first_line: dict[str, int] = {}
            number = 0
            exhausted = False
            with self.vault.writing():
                while not exhausted and not self.report.cancelled:
                    # Group commit: one transaction per batch, one savepoint per record, and a
                    # record is reported only once its batch has committed.
                    done: list[_Stored] = []
                    with self.vault.transaction():
                        for _ in range(RECORDS_PER_COMMIT):
                            if self.cancel.cancelled:
                                self.report.cancelled = True
                                break
                            item = next(lines, None)
                            if item is None:
                                exhausted = True
                                break
                            number, line, error = item
                            if error is not None:
                                self._fail(f"{file_path}:{number}", error)
                            elif line.strip():
                                stored = self._import_record(file_path, number, line, first_line)
                                if stored is not None:
                                    done.append(stored)
                    for stored in done:
                        stored.bucket.append(stored.entry)
                        verb = _VERBS[stored.bucket is self.report.imported]
                        log.info("%s %s %s", verb, stored.entry["id"], stored.entry["path"])
                    if self.on_values is not None and done:
                        self.on_values([stored.value_id for stored in done])  # one batch
                    self.progress(
                        Progress("import", number, max(total, number), f"{file_path}:{number}")
                    )
        return self.report

    def _import_record(
        self, file_path: str, number: int, line: bytes, first_line: dict[str, int]
    ) -> _Stored | None:
        where = f"{file_path}:{number}"
        try:
            record = json.loads(line, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            self._fail(where, f"line {number} is not valid JSON: {exc}")
            return None
        if not isinstance(record, dict):
            self._fail(where, f"line {number} is not a JSON object")
            return None
        # Valid UTF-8 holds no surrogates: only a JSON \\uD800-\\uDFFF escape can bring one.
        surrogate = _first_lone_surrogate(record) if _SURROGATE_ESCAPE.search(line) else None
        if surrogate is not None:
            self._fail(
                where,
                f"line {number}: {surrogate} holds an unpaired UTF-16 surrogate (\\uXXXX escape"
                " of half a character); fix the text and import again",
            )
            return None
        external_id = record.get("_id")
        if external_id is None or (isinstance(external_id, str) and not external_id.strip()):
            self._fail(where, f"line {number} has no _id")
            return None
        if isinstance(external_id, bool) or not isinstance(external_id, str | int):
            kind = type(external_id).__name__
            self._fail(where, f"line {number}: _id must be a string or an integer, not {kind}")
            return None
        external_id = str(external_id)
        if _IDENTIFIER_LIKE.fullmatch(external_id.strip()):
            # DOC-5 would name two documents: the fifth one stored, and this record.
            self._fail(
                where,
                f"line {number}: _id {external_id!r} has the form of a kvdesk identifier"
                f" ({IDENTIFIER_PREFIX}<number>), which would make it ambiguous; rename it",
            )
            return None
        if external_id in first_line:
            # Keeping both would make each run flip the value between the two lines.
            self._fail(
                where,
                f"line {number}: duplicate _id {external_id!r} in file"
                f" (first on line {first_line[external_id]}; this line is ignored)",
            )
            return None
        first_line[external_id] = number
        title = str(record.get("title") or "").strip() or external_id
        text = record.get("text") or ""
        text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
        text = text.replace("\x00", "")
        raw_tags = record.get("tags") or []
        tags = [str(t) for t in raw_tags] if isinstance(raw_tags, list) else [str(raw_tags)]
        metadata = {k: v for k, v in record.items() if k not in ("_id", "title", "text", "tags")}
        metadata["records_file"] = os.path.basename(file_path)
        content = ValueContent(
            data=line.rstrip(b"\r"),
            media_type=RECORD_MEDIA_TYPE,
            title=title,
            text=text,
            metadata=metadata,
        )
        existing = self.vault.values.find_by_external_id(external_id)
        entry: dict[str, Any] = {"path": where, "external_id": external_id}
        try:
            with self.vault.transaction() as tx:
                if existing is not None:
                    entry["id"] = self.vault.values.identifier(existing)
                    if self.vault.values.current_sha(existing) == content.sha256:
                        self.report.unchanged.append(entry)
                        return None
                    value_id = existing
                    entry["version"] = self.vault.values.add_version(tx, value_id, content)
                    bucket = self.report.updated
                else:
                    value_id, entry["id"] = self.vault.values.create_value(
                        tx, content, external_id=external_id
                    )
                    bucket = self.report.imported
                tag_store = TagStore(self.vault)
                for tag in tags:
                    try:
                        tag_store.set_state(tx, value_id, tag, TagState.ACCEPTED, "import")
                    except KvdeskError:
                        continue  # an empty tag name in a record is ignored, not fatal
        except KvdeskError as exc:
            self._fail(where, str(exc))
            return None
        except _RECORD_ERRORS as exc:
            # This record only (its savepoint rolled back); the batch goes on.
            self._fail(where, f"line {number} cannot be stored: {exc}")
            return None
        return _Stored(bucket, entry, value_id)

    # -- reporting -----------------------------------------------------------------------------

    def _skip(self, path: str, reason: str, *, stamp: tuple[int, int] | None = None) -> None:
        """List a skipped path. With a ``stamp`` (size, mtime_ns) the skip is remembered, and
        one the last import made the same way is marked "unchanged since last import"."""
        entry = {"path": path, "reason": reason}
        self.report.skipped.append(entry)
        if stamp is None:
            return  # gone, unreadable, a loop: worth saying every time
        raw = path_to_db(path)
        remembered = (*stamp, reason)
        if self.vault.values.skipped_source(raw) == remembered:
            entry["reason"] = f"{reason}; {SKIPPED_AGAIN}"
            self.report.skipped_again.append(entry)
        self._skips[raw] = remembered

    def _fail(self, path: str, error: str) -> None:
        self.report.failed.append({"path": path, "error": error})

    def _skip_unreadable(self, path: str, exc: OSError) -> None:
        if exc.errno == errno.ELOOP:
            self._skip(path, "symbolic link loop")
        elif exc.errno == errno.ENOENT and os.path.islink(path):
            self._skip(path, "dangling symbolic link (its target does not exist)")
        elif exc.errno == errno.ENOENT:
            self._skip(path, "no such file or folder")
        else:
            self._skip(path, f"cannot read: {exc.strerror or exc}")


_VERBS = {True: "imported", False: "stored"}
_IDENTIFIER_LIKE = re.compile(rf"{IDENTIFIER_PREFIX}\d+", re.IGNORECASE)


def _refuse_constant(name: str) -> Any:
    """JSON has no NaN or Infinity (Python's parser accepts them); a record with one fails."""
    raise ValueError(f"{name} is not a JSON number")


def _first_lone_surrogate(value: Any, where: str = "the record") -> str | None:
    """Where in a parsed record an unpaired surrogate sits (keys and values), if anywhere."""
    if isinstance(value, str):
        return where if _LONE_SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            label = f"field {key!r}" if where == "the record" else where
            found = _first_lone_surrogate(key, label) or _first_lone_surrogate(item, label)
            if found:
                return found
    if isinstance(value, list):
        for item in value:
            found = _first_lone_surrogate(item, where)
            if found:
                return found
    return None


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _read_regular_file(path: str, limit: int, *, truncate: bool = False) -> bytes:
    """Read at most ``limit`` bytes (the first ``limit`` with ``truncate``, else a longer file
    is an error); O_NONBLOCK so that a file swapped for a pipe cannot hang us."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise KvdeskError("not a regular file")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size) if truncate else 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if truncate and size >= limit:
                chunks.append(chunk)
                return b"".join(chunks)[:limit]
            if size > limit:
                raise KvdeskError(
                    f"file too large (grew beyond {format_size(limit)} while reading)"
                )
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _open_records_file(path: str, limits: Limits) -> io.BufferedReader:
    """Open a records file without blocking; only regular files of bounded size are read."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise KvdeskError(f"cannot read records file {path}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((k for test, k in _SPECIAL_KINDS if test(info.st_mode)), "special file")
            raise KvdeskError(f"records file {path} is not a regular file ({kind})")
        if info.st_size > limits.max_records_file_bytes:
            raise KvdeskError(
                f"records file {path} is too large ({format_size(info.st_size)} >"
                f" limit {format_size(limits.max_records_file_bytes)})"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a regular file: ordinary reads from here on
        return io.BufferedReader(io.FileIO(fd, "rb", closefd=True), buffer_size=1 << 20)
    except BaseException:
        os.close(fd)
        raise


def _count_lines(handle: io.BufferedReader) -> int:
    """Lines in the file (for progress), counted in chunks without holding the file."""
    count = 0
    last = b"\n"
    while chunk := handle.read(1 << 20):
        count += chunk.count(b"\n")
        last = chunk[-1:]
    return count + (last != b"\n")


def _record_lines(
    handle: io.BufferedReader, limits: Limits, path: str
) -> Iterator[tuple[int, bytes, str | None]]:
    """(line number, line, error): over-long lines come back with an error and no bytes."""
    max_line = limits.max_file_bytes
    read = 0
    number = 0
    while True:
        line = handle.readline(max_line + 1)
        if not line:
            return
        number += 1
        read += len(line)
        if len(line) > max_line and not line.endswith(b"\n"):
            while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                read += len(rest)
            read += len(rest)
            yield number, b"", f"line {number} is too long (over {format_size(max_line)})"
        else:
            yield number, line.rstrip(b"\n"), None
        if read > limits.max_records_file_bytes:
            raise KvdeskError(
                f"records file {path} grew beyond {format_size(limits.max_records_file_bytes)}"
                " while reading; stopped"
            )


def _absolute(path: str) -> str:
    """Absolute and normalised (``./docs/`` and ``$PWD/docs`` are one path); links are kept."""
    return os.path.normpath(os.path.abspath(path))


def _vault_files(vault: ImportTarget) -> tuple[frozenset[str], frozenset[tuple[int, int]]]:
    """Paths (and device/inode pairs of those that exist) that make up the vault itself."""
    main = _absolute(os.fspath(vault.path))
    names = {main, *(main + suffix for suffix in _VAULT_SIDECARS)}
    names.add(_absolute(os.fspath(keys_dir_for(Path(main)))))
    inodes: set[tuple[int, int]] = set()
    for name in list(names):
        try:
            info = os.stat(name)
        except OSError:
            continue
        inodes.add((info.st_dev, info.st_ino))
    return frozenset(names), frozenset(inodes)


def import_paths(vault: Vault, paths: Iterable[str | os.PathLike[str]], **kw: Any) -> ImportReport:
    return Importer(vault, **kw).import_paths(paths)


def import_records(vault: Vault, records_file: str | os.PathLike[str], **kw: Any) -> ImportReport:
    return Importer(vault, **kw).import_records(records_file)
