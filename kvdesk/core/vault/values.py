"""The value tables (blob, value, version, source, and skipped_source, the files an import
passed over): what is stored, verbatim and versioned.

Longer than most modules on purpose: every statement on these tables (schema, writes,
reads and the integrity check) lives here and nowhere else, so one file answers "where is a
value stored, and how is it verified".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from kvdesk.core.db import Connection, Database, ReplicatedTable, SchemaStep
from kvdesk.core.errors import KvdeskError, NotFoundError
from kvdesk.core.vault.records import (
    KeySource,
    ValueContent,
    ValueRecord,
    VersionRecord,
    clean_text,
    now_iso,
    path_from_db,
    sha256_hex,
)


def content_digest(
    external_id: str | None,
    sha256: str,
    size: int,
    media_type: str,
    title: str,
    source_path: bytes | None,
    source_mtime: float | None,
    text: str,
    metadata: str,
) -> str:
    """The hash of everything stored about one version beside its bytes (which have sha256).

    ``check`` recomputes it, so a changed text, title or metadata byte is found, not trusted.
    """
    return _fields_digest(
        (
            external_id,
            sha256,
            size,
            media_type,
            title,
            None if source_path is None else bytes(source_path).hex(),
            None if source_mtime is None else repr(float(source_mtime)),
            text,
            metadata,
        )
    )


def _fields_digest(fields: Sequence[Any]) -> str:
    """sha256 over fields, each typed and delimited (no JSON: the text is hashed as it is)."""
    digest = hashlib.sha256()
    for value in fields:
        if value is None:
            digest.update(b"\x00\x1f")
            continue
        if isinstance(value, bytes | memoryview):
            value = bytes(value).hex()
        digest.update(b"\x01" + str(value).encode("utf-8", "surrogatepass") + b"\x1f")
    return digest.hexdigest()


_VALUE_ROW = (
    "identifier, external_id, title, media_type, source_path, source_missing, current_version,"
    " created_at, updated_at"
)


def row_digest(values: Sequence[Any]) -> str:
    """The hash of a value row's own fields (its identity, place, state and dates)."""
    return _fields_digest(values)


def _backfill_row_digests(conn: Connection) -> None:
    for row in conn.execute(f"SELECT id, {_VALUE_ROW} FROM value").fetchall():
        conn.execute("UPDATE value SET digest = ? WHERE id = ?", (row_digest(row[1:]), row[0]))


_DIGEST_COLUMNS = (
    "v.external_id, ver.sha256, ver.size, ver.media_type, ver.title, ver.source_path,"
    " ver.source_mtime, ver.text, ver.metadata"
)


def _backfill_digests(conn: Connection) -> None:
    """Vaults from before schema 6: digest what is stored now (it was never checked before)."""
    rows = conn.execute(
        f"SELECT ver.value_id, ver.version, {_DIGEST_COLUMNS} FROM version ver"
        " JOIN value v ON v.id = ver.value_id"
    ).fetchall()
    for row in rows:
        conn.execute(
            "UPDATE version SET digest = ? WHERE value_id = ? AND version = ?",
            (content_digest(*row[2:]), row[0], row[1]),
        )


SCHEMA: tuple[SchemaStep, ...] = (
    SchemaStep(
        1,
        "values",
        """
        CREATE TABLE blob (
            id $pk,
            sha256 TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            data $blob NOT NULL
        );
        CREATE TABLE value (
            id $pk,
            identifier TEXT NOT NULL UNIQUE $nocase,
            external_id TEXT UNIQUE,
            title TEXT NOT NULL,
            media_type TEXT NOT NULL,
            source_path $blob,
            source_missing INTEGER NOT NULL DEFAULT 0,
            current_version INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE version (
            value_id INTEGER NOT NULL REFERENCES value(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            sha256 TEXT NOT NULL REFERENCES blob(sha256),
            size INTEGER NOT NULL,
            media_type TEXT NOT NULL,
            title TEXT NOT NULL,
            source_path $blob,
            source_mtime $real,
            text TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
            created_at TEXT NOT NULL,
            PRIMARY KEY (value_id, version)
        );
        CREATE INDEX version_sha ON version(sha256);
        CREATE TABLE source (
            path $blob PRIMARY KEY,
            value_id INTEGER NOT NULL REFERENCES value(id) ON DELETE CASCADE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL
        );
        CREATE INDEX source_value ON source(value_id);
        """,
    ),
    SchemaStep(
        5,
        "values",
        # The one place that says which version of a value is current.
        """
        CREATE VIEW value_current AS
        SELECT v.id, v.identifier, v.external_id, v.title, v.media_type, v.source_path,
               v.source_missing, v.current_version, v.created_at, v.updated_at,
               ver.sha256, ver.size, ver.source_mtime, ver.metadata, ver.text
        FROM value v JOIN version ver
          ON ver.value_id = v.id AND ver.version = v.current_version;
        """,
    ),
    SchemaStep(
        6,
        "values",
        # A digest of each version's text, title and metadata, verified by check.
        """
        ALTER TABLE version ADD COLUMN digest TEXT;
        DROP VIEW value_current;
        CREATE VIEW value_current AS
        SELECT v.id, v.identifier, v.external_id, v.title, v.media_type, v.source_path,
               v.source_missing, v.current_version, v.created_at, v.updated_at,
               ver.sha256, ver.size, ver.source_mtime, ver.metadata, ver.text, ver.digest
        FROM value v JOIN version ver
          ON ver.value_id = v.id AND ver.version = v.current_version;
        """,
        backfill=_backfill_digests,
    ),
    SchemaStep(
        7,
        "values",
        # Files an import skipped, with the stamp they had: the next import says "unchanged
        # since last import" instead of listing them all again. size = mtime_ns = -1 when the
        # reason is in the name (a hidden file, the vault's own files), not in the content.
        """
        CREATE TABLE IF NOT EXISTS skipped_source (
            path $blob PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            reason TEXT NOT NULL
        );
        """,
    ),
    SchemaStep(
        7,
        "values",
        # A digest of each value row (identifier, place, state, dates), verified by check.
        "ALTER TABLE value ADD COLUMN digest TEXT;",
        backfill=_backfill_row_digests,
    ),
)

# What desks of a team copy from the server (see kvdesk.core.team), parents first.
REPLICATED: tuple[ReplicatedTable, ...] = (
    ReplicatedTable("blob", (("id", "bigint"),)),
    ReplicatedTable("value", (("id", "bigint"),)),
    ReplicatedTable("version", (("value_id", "bigint"), ("version", "bigint"))),
    ReplicatedTable("source", (("path", "bytea"),)),
    ReplicatedTable("skipped_source", (("path", "bytea"),)),
)


IDENTIFIER_PREFIX = "DOC-"

_RECORD_COLUMNS = (
    "id, identifier, external_id, title, media_type, source_path, source_missing,"
    " current_version, created_at, updated_at, sha256, size, source_mtime, metadata"
)


@dataclass(frozen=True)
class SourceRow:
    """What the vault knows of one source file path: the value it feeds and when it was read."""

    value_id: int
    size: int
    mtime_ns: int
    sha256: str
    identifier: str
    value_source_path: bytes | None
    source_missing: bool


class ValueStore:
    """Every statement on blob, value, version and source, and the value_current view.

    Writes take the caller's transaction (``tx``), so an import can group a value, its source
    row and its tags into one atomic step; reads use this thread's connection.
    """

    def __init__(
        self, db: Database, *, tags_of: Callable[[int], tuple[str, ...]] | None = None
    ) -> None:
        self._db = db
        self._tags_of = tags_of

    # -- writing ------------------------------------------------------------------------------

    def store_blob(self, tx: Connection, data: bytes, sha: str) -> None:
        tx.execute(
            "INSERT INTO blob(sha256, size, data) VALUES (?, ?, ?) ON CONFLICT(sha256) DO NOTHING",
            (sha, len(data), data),
        )

    def create_value(
        self, tx: Connection, content: ValueContent, *, external_id: str | None = None
    ) -> tuple[int, str]:
        """Insert a new value with its first version; returns (value id, identifier)."""
        stamp = now_iso()
        title = clean_text(content.title)
        row = tx.execute(
            "INSERT INTO value(identifier, external_id, title, media_type, source_path,"
            " current_version, created_at, updated_at) VALUES ('', ?, ?, ?, ?, 1, ?, ?)"
            " RETURNING id",
            (external_id, title, content.media_type, content.raw_source_path, stamp, stamp),
        ).fetchone()
        value_id = int(row[0])
        identifier = f"{IDENTIFIER_PREFIX}{value_id}"
        # The row as it now reads (the _VALUE_ROW columns), sealed in the same statement.
        stored = (identifier, external_id, title, content.media_type, content.raw_source_path,
                  0, 1, stamp, stamp)  # fmt: skip
        tx.execute(
            "UPDATE value SET identifier = ?, digest = ? WHERE id = ?",
            (identifier, row_digest(stored), value_id),
        )
        self._insert_version(tx, value_id, 1, content, external_id)
        return value_id, identifier

    def add_version(self, tx: Connection, value_id: int, content: ValueContent) -> int:
        """Append a new version to a value; earlier versions stay retrievable."""
        row = tx.execute(
            "SELECT max(version) FROM version WHERE value_id = ?", (value_id,)
        ).fetchone()
        number = int(row[0] or 0) + 1
        external_id = tx.execute(
            "SELECT external_id FROM value WHERE id = ?", (value_id,)
        ).fetchone()[0]
        self._insert_version(tx, value_id, number, content, external_id)
        tx.execute(
            "UPDATE value SET current_version = ?, title = ?, media_type = ?, updated_at = ?,"
            " source_missing = 0 WHERE id = ?",
            (number, clean_text(content.title), content.media_type, now_iso(), value_id),
        )
        self._seal(tx, value_id)
        return number

    def _seal(self, tx: Connection, value_id: int) -> None:
        """Record the digest of the value row as it is now (every write to it ends here)."""
        row = tx.execute(f"SELECT {_VALUE_ROW} FROM value WHERE id = ?", (value_id,)).fetchone()
        if row is not None:
            digest = row_digest(tuple(row))
            tx.execute("UPDATE value SET digest = ? WHERE id = ?", (digest, value_id))

    def _insert_version(
        self,
        tx: Connection,
        value_id: int,
        number: int,
        content: ValueContent,
        external_id: str | None,
    ) -> None:
        self.store_blob(tx, content.data, content.sha256)
        title = clean_text(content.title)
        text = clean_text(content.text)
        metadata = clean_text(json.dumps(content.metadata, ensure_ascii=False, default=str))
        # The digested fields after external_id are the version columns, in the same order.
        stored = (
            content.sha256,
            len(content.data),
            content.media_type,
            title,
            content.raw_source_path,
            content.source_mtime,
            text,
            metadata,
        )
        digest = content_digest(external_id, *stored)
        tx.execute(
            "INSERT INTO version(value_id, version, sha256, size, media_type, title, source_path,"
            " source_mtime, text, metadata, created_at, digest) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (value_id, number, *stored, now_iso(), digest),
        )

    # -- sources ------------------------------------------------------------------------------

    def source(self, raw_path: bytes) -> SourceRow | None:
        row = self._db.conn.execute(
            "SELECT s.value_id, s.size, s.mtime_ns, s.sha256, v.identifier, v.source_path,"
            " v.source_missing FROM source s JOIN value v ON v.id = s.value_id WHERE s.path = ?",
            (raw_path,),
        ).fetchone()
        if row is None:
            return None
        return SourceRow(
            value_id=int(row[0]),
            size=int(row[1]),
            mtime_ns=int(row[2]),
            sha256=str(row[3]),
            identifier=str(row[4]),
            value_source_path=None if row[5] is None else bytes(row[5]),
            source_missing=bool(row[6]),
        )

    def touch_source(self, tx: Connection, raw_path: bytes, size: int, mtime_ns: int) -> None:
        """The same bytes under a new size/mtime stamp (a file touched but not changed)."""
        tx.execute(
            "UPDATE source SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, raw_path)
        )

    def record_source(
        self, tx: Connection, raw_path: bytes, value_id: int, size: int, mtime_ns: int, sha: str
    ) -> None:
        tx.execute(
            "INSERT INTO source(path, value_id, size, mtime_ns, sha256) VALUES (?,?,?,?,?)"
            " ON CONFLICT(path) DO UPDATE SET value_id = excluded.value_id,"
            " size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256",
            (raw_path, value_id, size, mtime_ns, sha),
        )

    def set_source_missing(
        self, tx: Connection, value_id: int, raw_path: bytes, missing: bool
    ) -> None:
        """Mark (or clear) a value whose own source file is gone; other paths do not count."""
        tx.execute(
            "UPDATE value SET source_missing = ? WHERE id = ? AND source_path = ?",
            (int(missing), value_id, raw_path),
        )
        self._seal(tx, value_id)

    def sources_under(self, exact: bytes, prefix: bytes) -> list[tuple[bytes, int]]:
        """Source rows at ``exact`` or under the folder ``prefix`` (raw path bytes)."""
        rows = self._db.conn.execute(
            "SELECT path, value_id FROM source WHERE path = ? OR substr(path, 1, ?) = ?",
            (exact, len(prefix), prefix),
        ).fetchall()
        return [(bytes(p), int(v)) for p, v in rows]

    # -- skipped sources ----------------------------------------------------------------------

    def skipped_source(self, raw_path: bytes) -> tuple[int, int, str] | None:
        """(size, mtime_ns, reason) of a path the last import that met it skipped."""
        row = self._db.conn.execute(
            "SELECT size, mtime_ns, reason FROM skipped_source WHERE path = ?", (raw_path,)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), str(row[2]))

    def remember_skipped(self, tx: Connection, rows: Sequence[tuple[bytes, int, int, str]]) -> None:
        """Record (path, size, mtime_ns, reason) of each file this import skipped."""
        tx.executemany(
            "INSERT INTO skipped_source(path, size, mtime_ns, reason) VALUES (?,?,?,?)"
            " ON CONFLICT(path) DO UPDATE SET size = excluded.size,"
            " mtime_ns = excluded.mtime_ns, reason = excluded.reason",
            rows,
        )

    def forget_skipped(self, tx: Connection, exact: bytes, prefix: bytes, keep: set[bytes]) -> None:
        """Forget skipped paths at ``exact`` or under the folder ``prefix`` that are not in
        ``keep`` (gone, or imported this time)."""
        rows = tx.execute(
            "SELECT path FROM skipped_source WHERE path = ? OR substr(path, 1, ?) = ?",
            (exact, len(prefix), prefix),
        ).fetchall()
        gone = [(bytes(row[0]),) for row in rows if bytes(row[0]) not in keep]
        if gone:
            tx.executemany("DELETE FROM skipped_source WHERE path = ?", gone)

    # -- reading ------------------------------------------------------------------------------

    def resolve(self, ref: str) -> int:
        """Turn anything a user may type for a value (identifier, external id) into its id."""
        text = ref.strip()
        conn = self._db.conn
        row = conn.execute("SELECT id FROM value WHERE identifier = ?", (text,)).fetchone()
        if row is None:
            row = conn.execute("SELECT id FROM value WHERE external_id = ?", (text,)).fetchone()
        if row is None:
            raise NotFoundError(f"no document with identifier or external id {ref!r}")
        return int(row[0])

    def get(self, ref: str | int) -> ValueRecord:
        value_id = ref if isinstance(ref, int) else self.resolve(ref)
        row = self._db.conn.execute(
            f"SELECT {_RECORD_COLUMNS} FROM value_current WHERE id = ?", (value_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no document with id {value_id}")
        return self._record(row, with_tags=True)

    def list_values(self, *, limit: int | None = None, offset: int = 0) -> list[ValueRecord]:
        sql = f"SELECT {_RECORD_COLUMNS} FROM value_current ORDER BY id"
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params = (limit, offset)
        return [self._record(r) for r in self._db.conn.execute(sql, params)]

    def image_hashes(self) -> dict[int, str]:
        """``value id`` → perceptual hash of every image value's current version."""
        out: dict[int, str] = {}
        for value_id, metadata in self._db.conn.execute(
            "SELECT id, metadata FROM value_current WHERE media_type LIKE 'image/%'"
        ):
            found = _metadata(metadata).get("phash")
            if isinstance(found, str) and found:
                out[int(value_id)] = found
        return out

    def versions_of_types(self, media_types: Collection[str]) -> dict[int, int]:
        """``value id`` → current version of the values of ``media_types`` (scans to read)."""
        types = sorted(media_types)
        rows = self._db.conn.execute(
            "SELECT id, current_version FROM value"
            f" WHERE media_type IN ({', '.join('?' * len(types))})",
            types,
        )
        return {int(r[0]): int(r[1]) for r in rows}

    def current_version(self, value_id: int) -> int | None:
        row = self._db.conn.execute(
            "SELECT current_version FROM value WHERE id = ?", (value_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def existing(self, value_ids: Collection[int]) -> set[int]:
        """Which of ``value_ids`` the vault holds."""
        wanted = sorted(set(value_ids))
        found: set[int] = set()
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            rows = self._db.conn.execute(
                f"SELECT id FROM value WHERE id IN ({', '.join('?' * len(part))})", part
            ).fetchall()
            found.update(int(r[0]) for r in rows)
        return found

    def count(self) -> int:
        return int(self._db.conn.execute("SELECT count(*) FROM value").fetchone()[0])

    def identifier(self, value_id: int) -> str:
        row = self._db.conn.execute(
            "SELECT identifier FROM value WHERE id = ?", (value_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no document with id {value_id}")
        return str(row[0])

    def identifiers(self) -> dict[int, str]:
        return {
            int(i): str(s) for i, s in self._db.conn.execute("SELECT id, identifier FROM value")
        }

    def external_ids(self) -> dict[int, str]:
        """``value id`` → external id, for values imported from records (with an ``_id``)."""
        return {
            int(i): str(e)
            for i, e in self._db.conn.execute(
                "SELECT id, external_id FROM value WHERE external_id IS NOT NULL"
            )
        }

    def current_versions(self) -> dict[int, int]:
        """``value id`` → current version number, for key catch-up."""
        return {
            int(i): int(v)
            for i, v in self._db.conn.execute("SELECT id, current_version FROM value")
        }

    def recency(self) -> dict[int, float]:
        """``value id`` → its date as POSIX seconds: the source file's modification time when
        known, else when the value was last stored (``updated_at``; 0.0 when unreadable); to
        key the newest first."""
        out: dict[int, float] = {}
        for i, mtime, updated in self._db.conn.execute(
            "SELECT id, source_mtime, updated_at FROM value_current"
        ):
            if mtime is not None:
                out[int(i)] = float(mtime)
                continue
            try:
                stamp = dt.datetime.fromisoformat(str(updated))
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=dt.UTC)
                out[int(i)] = stamp.timestamp()
            except (ValueError, OverflowError, OSError):
                out[int(i)] = 0.0
        return out

    def text_lengths(self) -> dict[int, int]:
        """``value id`` → characters of its current text (what keying it costs)."""
        return {
            int(i): int(n or 0)
            for i, n in self._db.conn.execute("SELECT id, length(text) FROM value_current")
        }

    def key_states(self) -> dict[int, tuple[str | None, str, str, int]]:
        """``value id`` → (version digest, identifier, updated_at, version): what keys are
        built from."""
        return {
            int(r[0]): (r[1], str(r[2]), str(r[3]), int(r[4]))
            for r in self._db.conn.execute(
                "SELECT id, digest, identifier, updated_at, current_version FROM value_current"
            )
        }

    def current_sha(self, value_id: int) -> str | None:
        row = self._db.conn.execute(
            "SELECT sha256 FROM value_current WHERE id = ?", (value_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def versions(self, value_id: int) -> list[VersionRecord]:
        rows = self._db.conn.execute(
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
        row = self._db.conn.execute(
            "SELECT text FROM version WHERE value_id = ? AND version ="
            " coalesce(?, (SELECT current_version FROM value WHERE id = ?))",
            (value_id, version, value_id),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no version {version} of document {value_id}")
        return str(row[0])

    def original_bytes(self, value_id: int, version: int | None = None) -> bytes:
        row = self._db.conn.execute(
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
        row = self._db.conn.execute(
            "SELECT id FROM value_current WHERE sha256 = ? ORDER BY id LIMIT 1", (sha,)
        ).fetchone()
        return None if row is None else int(row[0])

    def find_by_external_id(self, external_id: str) -> int | None:
        row = self._db.conn.execute(
            "SELECT id FROM value WHERE external_id = ?", (external_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def key_sources(self, value_ids: Sequence[int]) -> list[KeySource]:
        """What the keys of ``value_ids`` are built from (current versions), in id order."""
        out: list[KeySource] = []
        for start in range(0, len(value_ids), 500):
            batch = list(value_ids[start : start + 500])
            rows = self._db.conn.execute(
                "SELECT id, current_version, identifier, external_id, title, media_type,"
                " source_path, updated_at, source_mtime, text, digest, metadata"
                " FROM value_current"
                f" WHERE id IN ({','.join('?' * len(batch))}) ORDER BY id",
                batch,
            ).fetchall()
            out.extend(
                KeySource(
                    value_id=int(r[0]),
                    version=int(r[1]),
                    identifier=r[2],
                    external_id=r[3],
                    title=r[4],
                    media_type=r[5],
                    source_path=path_from_db(r[6]),
                    updated_at=r[7],
                    source_mtime=r[8],
                    text=r[9],
                    digest=r[10],
                    metadata=r[11] or "{}",
                )
                for r in rows
            )
        return out

    def filtered_ids(
        self,
        *,
        media_types: Sequence[str] = (),
        media_prefixes: Sequence[str] = (),
        before: str | None = None,
        after: str | None = None,
    ) -> set[int]:
        """Values whose current version passes type and date filters (dates: ISO strings).

        A value's date is its source file's modification time, else when it was last updated.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if media_types or media_prefixes:
            ors = []
            if media_types:
                ors.append(f"media_type IN ({','.join('?' * len(media_types))})")
                params += list(media_types)
            for prefix in media_prefixes:
                ors.append("media_type LIKE ?")
                params.append(prefix + "%")
            clauses.append("(" + " OR ".join(ors) + ")")
        date_expr = "coalesce(datetime(source_mtime, 'unixepoch'), datetime(updated_at))"
        if before is not None:
            clauses.append(f"{date_expr} < ?")
            params.append(before)
        if after is not None:
            clauses.append(f"{date_expr} >= ?")
            params.append(after)
        sql = "SELECT id FROM value_current"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return {int(r[0]) for r in self._db.conn.execute(sql, params)}

    def _record(self, row: Any, *, with_tags: bool = False) -> ValueRecord:
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
            metadata=_metadata(row["metadata"]),
            tags=self._tags_of(row["id"]) if with_tags and self._tags_of else (),
            damaged=(self.verify(row["id"]) or "") if with_tags else "",
        )

    # -- integrity ----------------------------------------------------------------------------

    def verify(self, value_id: int) -> str | None:
        """None if what is stored about ``value_id``'s current version is intact, else why not."""
        row = self._db.conn.execute(
            f"SELECT v.identifier, v.current_version, ver.digest, {_DIGEST_COLUMNS}"
            " FROM value v JOIN version ver ON ver.value_id = v.id"
            " AND ver.version = v.current_version WHERE v.id = ?",
            (value_id,),
        ).fetchone()
        if row is None:
            return f"document {value_id}: its current version is missing"
        return _version_problem(row[0], row[1], row[2], row[3:])

    def check(self) -> tuple[int, str, list[str]]:
        """Re-hash every stored byte string and every version's digest; per-document problems.

        Returns (values, digest of the current versions' sha256s, problems).
        """
        conn = self._db.conn
        problems: list[str] = []
        for sha, data in conn.execute("SELECT sha256, data FROM blob"):
            if sha256_hex(bytes(data)) != sha:
                owners = [
                    str(r[0])
                    for r in self._db.conn.execute(
                        "SELECT DISTINCT v.identifier FROM version ver"
                        " JOIN value v ON v.id = ver.value_id WHERE ver.sha256 = ?",
                        (sha,),
                    )
                ]
                who = ", ".join(owners) or f"sha256 {sha[:12]}…"
                problems.append(f"{who}: stored bytes do not match their sha256")
        for ident, version in conn.execute(
            "SELECT v.identifier, v.current_version FROM value v LEFT JOIN version ver"
            " ON ver.value_id = v.id AND ver.version = v.current_version WHERE ver.value_id IS NULL"
        ):
            problems.append(f"{ident}: current version {version} is missing")
        for row in conn.execute(
            f"SELECT v.identifier, ver.version, ver.digest, {_DIGEST_COLUMNS}"
            " FROM version ver JOIN value v ON v.id = ver.value_id ORDER BY v.id, ver.version"
        ):
            problem = _version_problem(row[0], row[1], row[2], row[3:])
            if problem:
                problems.append(problem)
        for row in conn.execute(f"SELECT id, digest, {_VALUE_ROW} FROM value ORDER BY id"):
            if row[1] is None or row_digest(tuple(row)[2:]) != row[1]:
                problems.append(
                    f"{row[2]}: its identity, place, state or dates changed since they were written"
                )
        for value_id, ident, title, media, vtitle, vmedia in conn.execute(
            "SELECT v.id, v.identifier, v.title, v.media_type, ver.title, ver.media_type"
            " FROM value v JOIN version ver ON ver.value_id = v.id"
            " AND ver.version = v.current_version ORDER BY v.id"
        ):
            if ident != f"{IDENTIFIER_PREFIX}{value_id}":
                problems.append(f"document {value_id}: its identifier was changed to {ident!r}")
            elif (title, media) != (vtitle, vmedia):
                problems.append(f"{ident}: title or type differs from its current version")
        digest = hashlib.sha256()
        count = 0
        for (sha,) in conn.execute("SELECT sha256 FROM value_current ORDER BY id"):
            digest.update(str(sha).encode("ascii", "replace"))
            count += 1
        return count, digest.hexdigest(), problems


def _version_problem(
    identifier: str, version: int, stored: str | None, fields: Sequence[Any]
) -> str | None:
    if stored is None:
        return f"{identifier}: version {version} has no digest"
    if content_digest(*fields) != stored:
        return (
            f"{identifier}: the stored text, title or metadata of version {version} changed"
            " since it was written"
        )
    return None


def _metadata(raw: str) -> dict[str, Any]:
    """Stored metadata, or an empty dict when it no longer parses (check reports the damage)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
