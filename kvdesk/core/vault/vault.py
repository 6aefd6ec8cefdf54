"""The vault: one SQLite file holding every value verbatim, its versions, tags and key metadata.

Values are sacred: each write is its own transaction, bytes are stored once by sha256, and
``check`` re-hashes everything. Keys (derived data) live in other tables or beside the file and
can always be rebuilt from what is here.

Concurrency: SQLite in WAL mode, so readers never block. Writers are serialised across processes
by a lock file (``filelock``) held for the length of a write session, and within a process by a
thread lock; each thread gets its own connection.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock

from kvdesk.core.db import SQLITE, Dialect
from kvdesk.core.errors import KvdeskError, NotFoundError, VaultBusyError, VaultFormatError
from kvdesk.core.schema import SCHEMA_VERSION, steps_for

APPLICATION_ID = 0x6B766462  # "kvdb": marks the file as a kvdesk vault
IDENTIFIER_PREFIX = "DOC-"
WRITER_WAIT_SECONDS = 3.0



def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def clean_text(text: str) -> str:
    """Make text storable: bytes smuggled in as surrogate escapes (odd file names) become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return (
            text.encode("utf-8", "surrogateescape")
            .decode("utf-8", "replace")
            .encode("utf-8", "replace")
            .decode("utf-8")
        )
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


@dataclass(frozen=True)
class CheckReport:
    ok: bool
    values: int
    values_digest: str
    problems: tuple[str, ...]


class Vault:
    """A kvdesk vault file. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._thread_write_lock = threading.RLock()
        self._file_lock = filelock.FileLock(str(path) + ".lock", is_singleton=False)
        self._closed = False

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> Vault:
        """Open (and create or migrate) the vault at ``path``."""
        vault_path = Path(path)
        if not vault_path.exists():
            if not create:
                raise NotFoundError(f"no vault at {vault_path}")
            _create_private_file(vault_path)
        elif vault_path.is_dir():
            raise VaultFormatError(f"{vault_path} is a folder, not a vault file")
        vault = cls(vault_path)
        try:
            vault._migrate()
        except BaseException:
            vault.close()
            raise
        return vault

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=WRITER_WAIT_SECONDS, isolation_level=None)
        except sqlite3.Error as exc:
            raise VaultFormatError(f"cannot open vault {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise VaultFormatError(f"{self.path} is not a kvdesk vault ({exc})") from exc
        if str(mode).lower() != "wal":
            conn.close()
            raise VaultFormatError(f"cannot use write-ahead logging on {self.path}")
        # NORMAL is durable against process crashes in WAL mode (FULL: an fsync per document).
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 objects must stay on the thread that made them)."""
        if self._closed:
            raise KvdeskError("the vault is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _migrate(self) -> None:
        conn = self.conn
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        user_version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id not in (0, APPLICATION_ID):
            raise VaultFormatError(f"{self.path} is an SQLite file, but not a kvdesk vault")
        if app_id == 0 and user_version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise VaultFormatError(f"{self.path} is an SQLite file, but not a kvdesk vault")
        if user_version > SCHEMA_VERSION:
            raise VaultFormatError(
                f"{self.path} was written by a newer kvdesk (schema {user_version}); "
                f"this kvdesk understands up to {SCHEMA_VERSION}"
            )
        if user_version == SCHEMA_VERSION:
            return
        with self.writing():
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for number in range(current, SCHEMA_VERSION):
                with self.transaction():
                    for step in steps_for(number + 1, SQLITE.name):
                        for statement in step.statements(SQLITE):
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number + 1}")
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self._closed:
            # Fold the write-ahead log back into the vault file, so a closed vault is one file.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._closed = True
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the single-writer lock (across threads and processes) for a write session."""
        with self._thread_write_lock:
            depth = getattr(self._local, "write_depth", 0)
            if depth == 0:
                try:
                    self._file_lock.acquire(timeout=WRITER_WAIT_SECONDS)
                except filelock.Timeout as exc:
                    raise VaultBusyError(
                        f"vault is busy: another kvdesk process is writing to {self.path}; "
                        "try again when it has finished"
                    ) from exc
            self._local.write_depth = depth + 1
            try:
                yield
            finally:
                self._local.write_depth = depth
                if depth == 0:
                    self._file_lock.release()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE ... COMMIT, rolled back on any error.

        Nested use becomes a SAVEPOINT, so a batch can group many documents into one commit
        while each document still succeeds or fails on its own.
        """
        conn = self.conn
        with self.writing():
            depth = getattr(self._local, "tx_depth", 0)
            if depth:
                name = f"sp{depth}"
                conn.execute(f"SAVEPOINT {name}")
                self._local.tx_depth = depth + 1
                try:
                    yield conn
                except BaseException:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                    raise
                else:
                    conn.execute(f"RELEASE {name}")
                finally:
                    self._local.tx_depth = depth
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise VaultBusyError(f"vault is busy: {exc}") from exc
            self._local.tx_depth = 1
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                self._local.tx_depth = 0

    def store_blob(self, conn: sqlite3.Connection, data: bytes, sha: str) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO blob(sha256, size, data) VALUES (?, ?, ?)",
            (sha, len(data), data),
        )

    def create_value(
        self, conn: sqlite3.Connection, content: ValueContent, *, external_id: str | None = None
    ) -> tuple[int, str]:
        """Insert a new value with its first version; returns (value id, identifier)."""
        stamp = now_iso()
        cur = conn.execute(
            "INSERT INTO value(identifier, external_id, title, media_type, source_path,"
            " current_version, created_at, updated_at) VALUES ('', ?, ?, ?, ?, 1, ?, ?)",
            (
                external_id, clean_text(content.title), content.media_type,
                content.raw_source_path, stamp, stamp,
            ),
        )  # fmt: skip
        value_id = int(cur.lastrowid or 0)
        identifier = f"{IDENTIFIER_PREFIX}{value_id}"
        conn.execute("UPDATE value SET identifier = ? WHERE id = ?", (identifier, value_id))
        self._insert_version(conn, value_id, 1, content)
        return value_id, identifier

    def add_version(self, conn: sqlite3.Connection, value_id: int, content: ValueContent) -> int:
        """Append a new version to a value; earlier versions stay retrievable."""
        row = conn.execute(
            "SELECT max(version) FROM version WHERE value_id = ?", (value_id,)
        ).fetchone()
        number = int(row[0] or 0) + 1
        self._insert_version(conn, value_id, number, content)
        conn.execute(
            "UPDATE value SET current_version = ?, title = ?, media_type = ?, updated_at = ?,"
            " source_missing = 0 WHERE id = ?",
            (number, clean_text(content.title), content.media_type, now_iso(), value_id),
        )
        return number

    def _insert_version(
        self, conn: sqlite3.Connection, value_id: int, number: int, content: ValueContent
    ) -> None:
        self.store_blob(conn, content.data, content.sha256)
        conn.execute(
            "INSERT INTO version(value_id, version, sha256, size, media_type, title, source_path,"
            " source_mtime, text, metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                value_id,
                number,
                content.sha256,
                len(content.data),
                content.media_type,
                clean_text(content.title),
                content.raw_source_path,
                content.source_mtime,
                clean_text(content.text),
                clean_text(json.dumps(content.metadata, ensure_ascii=False, default=str)),
                now_iso(),
            ),
        )

    # -- tags ---------------------------------------------------------------------------------

    def tag_id(self, conn: sqlite3.Connection, name: str, *, create: bool = True) -> int | None:
        clean = normalise_tag(name)
        row = conn.execute("SELECT id FROM tag WHERE name = ?", (clean,)).fetchone()
        if row:
            return int(row[0])
        if not create:
            return None
        cur = conn.execute("INSERT INTO tag(name) VALUES (?)", (clean,))
        return int(cur.lastrowid or 0)

    def set_tag_state(
        self, conn: sqlite3.Connection, value_id: int, tag: str, state: str, actor: str = ""
    ) -> None:
        tag_id = self.tag_id(conn, tag)
        conn.execute(
            "INSERT INTO value_tag(value_id, tag_id, state, actor, at) VALUES (?,?,?,?,?)"
            " ON CONFLICT(value_id, tag_id) DO UPDATE SET state = excluded.state,"
            " actor = excluded.actor, at = excluded.at",
            (value_id, tag_id, state, actor, now_iso()),
        )

    def tags_of(self, value_id: int, state: str = "accepted") -> tuple[str, ...]:
        rows = self.conn.execute(
            "SELECT t.name FROM value_tag vt JOIN tag t ON t.id = vt.tag_id"
            " WHERE vt.value_id = ? AND vt.state = ? ORDER BY t.name",
            (value_id, state),
        ).fetchall()
        return tuple(r[0] for r in rows)

    # -- reading ------------------------------------------------------------------------------

    def resolve(self, ref: str) -> int:
        """Turn anything a user may type for a value (identifier, external id) into its id."""
        text = ref.strip()
        conn = self.conn
        row = conn.execute("SELECT id FROM value WHERE identifier = ?", (text,)).fetchone()
        if row is None:
            row = conn.execute("SELECT id FROM value WHERE external_id = ?", (text,)).fetchone()
        if row is None:
            raise NotFoundError(f"no document with identifier or external id {ref!r}")
        return int(row[0])

    def get(self, ref: str | int) -> ValueRecord:
        value_id = ref if isinstance(ref, int) else self.resolve(ref)
        row = self.conn.execute(_VALUE_SELECT + " WHERE v.id = ?", (value_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no document with id {value_id}")
        return self._record(row, with_tags=True)

    def list_values(self, *, limit: int | None = None, offset: int = 0) -> list[ValueRecord]:
        sql = _VALUE_SELECT + " ORDER BY v.id"
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params = (limit, offset)
        return [self._record(r) for r in self.conn.execute(sql, params)]

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM value").fetchone()[0])

    def versions(self, value_id: int) -> list[VersionRecord]:
        rows = self.conn.execute(
            "SELECT version, sha256, size, media_type, title, source_path, source_mtime,"
            " created_at FROM version WHERE value_id = ? ORDER BY version",
            (value_id,),
        ).fetchall()
        return [
            VersionRecord(
                version=r[0],
                sha256=r[1],
                size=r[2],
                media_type=r[3],
                title=r[4],
                source_path=path_from_db(r[5]),
                source_mtime=r[6],
                created_at=r[7],
            )
            for r in rows
        ]

    def text(self, value_id: int, version: int | None = None) -> str:
        row = self.conn.execute(
            "SELECT text FROM version WHERE value_id = ? AND version ="
            " coalesce(?, (SELECT current_version FROM value WHERE id = ?))",
            (value_id, version, value_id),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no version {version} of document {value_id}")
        return str(row[0])

    def original_bytes(self, value_id: int, version: int | None = None) -> bytes:
        row = self.conn.execute(
            "SELECT b.data, b.sha256 FROM version ver JOIN blob b ON b.sha256 = ver.sha256"
            " WHERE ver.value_id = ? AND ver.version ="
            " coalesce(?, (SELECT current_version FROM value WHERE id = ?))",
            (value_id, version, value_id),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no version {version} of document {value_id}")
        data = bytes(row[0])
        if sha256_hex(data) != row[1]:
            raise KvdeskError(f"stored bytes of document {value_id} fail their sha256 check")
        return data

    def find_by_sha(self, sha: str) -> int | None:
        row = self.conn.execute(
            "SELECT v.id FROM value v JOIN version ver ON ver.value_id = v.id"
            " AND ver.version = v.current_version WHERE ver.sha256 = ? ORDER BY v.id LIMIT 1",
            (sha,),
        ).fetchone()
        return None if row is None else int(row[0])

    def find_by_external_id(self, external_id: str) -> int | None:
        row = self.conn.execute(
            "SELECT id FROM value WHERE external_id = ?", (external_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def _record(self, row: sqlite3.Row, *, with_tags: bool = False) -> ValueRecord:
        return ValueRecord(
            id=row["id"],
            identifier=row["identifier"],
            external_id=row["external_id"],
            title=row["title"],
            media_type=row["media_type"],
            source_path=path_from_db(row["source_path"]),
            source_missing=bool(row["source_missing"]),
            version=row["current_version"],
            sha256=row["sha256"],
            size=row["size"],
            source_mtime=row["source_mtime"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            metadata=json.loads(row["metadata"]),
            tags=self.tags_of(row["id"]) if with_tags else (),
        )

    # -- integrity ----------------------------------------------------------------------------

    def check(self) -> CheckReport:
        """SQLite integrity check, foreign keys, and the sha256 of every stored byte string."""
        conn = self.conn
        problems: list[str] = []
        for (line,) in conn.execute("PRAGMA integrity_check"):
            if line != "ok":
                problems.append(f"sqlite: {line}")
        for row in conn.execute("PRAGMA foreign_key_check"):
            problems.append(f"dangling reference in table {row[0]} (row {row[1]})")
        for sha, data in conn.execute("SELECT sha256, data FROM blob"):
            if sha256_hex(bytes(data)) != sha:
                problems.append(f"bytes stored under sha256 {sha[:12]}… do not match their hash")
        for ident, version in conn.execute(
            "SELECT v.identifier, v.current_version FROM value v LEFT JOIN version ver"
            " ON ver.value_id = v.id AND ver.version = v.current_version WHERE ver.value_id IS NULL"
        ):
            problems.append(f"{ident}: current version {version} is missing")
        digest = hashlib.sha256()
        count = 0
        for (sha,) in conn.execute(
            "SELECT ver.sha256 FROM value v JOIN version ver ON ver.value_id = v.id"
            " AND ver.version = v.current_version ORDER BY v.id"
        ):
            digest.update(sha.encode("ascii"))
            count += 1
        return CheckReport(
            ok=not problems,
            values=count,
            values_digest=digest.hexdigest(),
            problems=tuple(problems),
        )


_VALUE_SELECT = (
    "SELECT v.id, v.identifier, v.external_id, v.title, v.media_type, v.source_path,"
    " v.source_missing, v.current_version, v.created_at, v.updated_at, ver.sha256, ver.size,"
    " ver.source_mtime, ver.metadata FROM value v JOIN version ver ON ver.value_id = v.id"
    " AND ver.version = v.current_version"
)


def normalise_tag(name: str) -> str:
    """Tags are trimmed, inner whitespace collapsed; ``parent::child`` marks hierarchy."""
    parts = [" ".join(p.split()) for p in name.split("::")]
    clean = "::".join(p for p in parts if p)
    if not clean:
        raise KvdeskError(f"{name!r} is not a usable tag name")
    return clean


def _create_private_file(path: Path) -> None:
    """Create the vault readable by its owner only (WAL and SHM files inherit the mode)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
