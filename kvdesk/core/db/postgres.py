"""PostgreSQL behind the storage seam: the same store code that runs on a vault's SQLite.

A :class:`PostgresDatabase` satisfies :class:`kvdesk.core.db.Database` over psycopg 3: one
connection per thread, ``transaction()`` as BEGIN ... COMMIT with nested SAVEPOINTs (as the
vault's), ``?`` placeholders, and rows readable by index and by column name (as ``sqlite3.Row``).
Where the two engines' Python values differ, the adapter makes PostgreSQL's look like SQLite's:
``bool`` parameters are stored as 0/1 and NUMERIC results come back as ``int`` or ``float``.

:func:`create_schema` creates or migrates the team tables: every schema step whose engines
include ``postgresql``, version by version, in one transaction, with the version kept in the
one-row table ``kvdesk_schema``. psycopg is imported when a database is opened.
"""

from __future__ import annotations

import contextlib
import functools
import re
import select
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from kvdesk.core.db import (
    POSTGRESQL,
    Database,
    Dialect,
    ThreadConnections,
    nested_transaction,
)
from kvdesk.core.errors import KvdeskError, VaultFormatError
from kvdesk.core.schema import SCHEMA_VERSION, steps_for

if TYPE_CHECKING:
    import psycopg

# Serialises migrations of one database (two desks opening a fresh team database at once).
_MIGRATION_LOCK = 0x6B766462  # "kvdb"

# Run before the steps: what the DDL templates rely on that PostgreSQL lacks. json_valid is
# STRICT like SQLite's (NULL in, NULL out: a CHECK on NULL passes on both).
PREAMBLE: tuple[str, ...] = (
    "CREATE EXTENSION IF NOT EXISTS citext",
    """
    CREATE OR REPLACE FUNCTION json_valid(doc text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT AS $body$
    BEGIN
        PERFORM doc::json;
        RETURN true;
    EXCEPTION WHEN others THEN
        RETURN false;
    END
    $body$
    """,
    """
    CREATE TABLE IF NOT EXISTS kvdesk_schema (
        one INTEGER PRIMARY KEY DEFAULT 1 CHECK (one = 1),
        version INTEGER NOT NULL
    )
    """,
)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise KvdeskError(
            "PostgreSQL support needs psycopg 3: pip install 'psycopg[binary]'"
        ) from exc
    return psycopg


# Quoted text and comments, where a ? is not a placeholder.
_QUOTED = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*)""")


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """The stores' SQL in psycopg's terms: ``?`` placeholders become ``%s`` and every literal
    ``%`` becomes ``%%`` (psycopg reads % even inside quotes)."""
    parts = _QUOTED.split(sql)
    for i, part in enumerate(parts):
        part = part.replace("%", "%%")
        parts[i] = part if i % 2 else part.replace("?", "%s")
    return "".join(parts)


class Row(tuple[Any, ...]):
    """A result row read by position or by column name, like ``sqlite3.Row``."""

    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                lowered = key.lower()
                for i, name in enumerate(self._names):
                    if name.lower() == lowered:
                        return tuple.__getitem__(self, i)
                raise IndexError(f"no such column: {key}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@functools.lru_cache(maxsize=512)
def _row_type(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"_names": names, "__slots__": ()})


def _row_factory(cursor: Any) -> Any:
    row_type = _row_type(tuple(col.name for col in cursor.description or ()))

    def make(values: Sequence[Any]) -> Row:
        return row_type(values)

    return make


class PgConnection:
    """One thread's psycopg connection, speaking the stores' ``?`` dialect of DB-API."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        # Always pass a sequence: psycopg then reads %% in the query as a literal %.
        return self.raw.execute(translate(sql), tuple(parameters))

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), [tuple(p) for p in seq_of_parameters])
        return cursor

    def close(self) -> None:
        self.raw.close()


@functools.cache
def _adapters() -> tuple[type[Any], type[Any]]:
    """psycopg adapters that give stores values as SQLite does: no booleans (0/1), no Decimal."""
    psycopg = _psycopg()
    from psycopg.adapt import Dumper, Loader

    class BoolAsInt(Dumper):
        oid = psycopg.adapters.types["int8"].oid

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    class NumericAsNumber(Loader):
        def load(self, data: Any) -> Any:
            text = bytes(data).decode("ascii")
            try:
                return int(text)
            except ValueError:
                return float(text)

    return BoolAsInt, NumericAsNumber


class PostgresDatabase:
    """A PostgreSQL database as a :class:`kvdesk.core.db.Database`.

    ``conninfo`` is a libpq connection string or URI. Connections are opened per thread on
    first use, in autocommit mode; :meth:`transaction` groups writes.
    """

    def __init__(self, conninfo: str, *, connect_timeout: int = 10) -> None:
        self._psycopg = _psycopg()
        self.connect_timeout = connect_timeout
        self.conninfo = conninfo
        self._local = threading.local()
        self._connections: ThreadConnections[PgConnection] = ThreadConnections()
        self._closed = False

    @property
    def dialect(self) -> Dialect:
        return POSTGRESQL

    @property
    def conn(self) -> PgConnection:
        """This thread's connection."""
        if self._closed:
            raise KvdeskError("the database is closed")
        return self._connections.get(self._connect, usable=self._usable)

    def _usable(self, conn: PgConnection) -> bool:
        # A broken connection (the server restarted, the network dropped) is replaced by a
        # new one, except inside a transaction, whose failure the caller must see.
        if getattr(self._local, "tx_depth", 0):
            return True
        raw = conn.raw
        if raw.closed or raw.broken:
            return False
        # psycopg learns that the server ended an idle session (a restart, an idle timeout)
        # only when it is next used. kvdesk never LISTENs, so an idle connection with bytes
        # waiting holds the server's goodbye: replace it instead of failing once.
        from psycopg import pq

        if raw.info.transaction_status == pq.TransactionStatus.IDLE:
            try:
                waiting, _, _ = select.select([raw.fileno()], [], [], 0)
            except (OSError, ValueError):
                return False
            return not waiting
        return True

    def reset(self) -> None:
        """Drop this thread's connection (after a failure): the next use reconnects."""
        conn = self._connections.current()
        if conn is not None:
            self._connections.drop(conn)

    def _connect(self) -> PgConnection:
        try:
            raw = self._psycopg.connect(
                self.conninfo,
                autocommit=True,
                row_factory=_row_factory,
                connect_timeout=self.connect_timeout,
                # A link that drops silently is noticed within about a minute.
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        except self._psycopg.Error as exc:
            raise KvdeskError(f"cannot connect to PostgreSQL: {exc}") from exc
        bool_dumper, numeric_loader = _adapters()
        raw.adapters.register_dumper(bool, bool_dumper)
        raw.adapters.register_loader("numeric", numeric_loader)
        return PgConnection(raw)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """One atomic write: BEGIN ... COMMIT, rolled back on any error; nested use becomes a
        SAVEPOINT, so an inner failure undoes only its own part."""
        conn = self.conn
        with nested_transaction(conn, self._local, lambda: conn.execute("BEGIN")):
            yield conn

    def close(self) -> None:
        self._closed = True
        self._connections.close_all(Exception)

    def __enter__(self) -> PostgresDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def schema_version(db: PostgresDatabase) -> int:
    """The schema version the database is at (0: no kvdesk tables yet)."""
    found = db.conn.execute("SELECT to_regclass('kvdesk_schema') IS NOT NULL").fetchone()
    if not found[0]:
        return 0
    row = db.conn.execute("SELECT version FROM kvdesk_schema").fetchone()
    return 0 if row is None else int(row[0])


def create_schema(db: PostgresDatabase, *, target: int = SCHEMA_VERSION) -> tuple[int, ...]:
    """Create or migrate the team tables up to ``target`` (normally the newest); returns the
    versions applied (none: already there).

    One transaction (PostgreSQL's DDL is transactional): a failed step leaves the database at
    the version it had. Idempotent, and safe from several desks at once (an advisory lock).
    """
    if schema_version(db) == target:
        return ()
    applied: list[int] = []
    with db.transaction() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        for statement in PREAMBLE:
            tx.execute(statement)
        current = schema_version(db)
        if current > SCHEMA_VERSION:
            raise VaultFormatError(
                f"the team database was written by a newer kvdesk (schema {current}); "
                f"this kvdesk understands up to {SCHEMA_VERSION}"
            )
        for number in range(current + 1, min(target, SCHEMA_VERSION) + 1):
            for step in steps_for(number, POSTGRESQL.name):
                for statement in step.statements(POSTGRESQL):
                    tx.execute(statement)
                if step.backfill is not None:
                    step.backfill(tx)
            applied.append(number)
        if applied:
            tx.execute(
                "INSERT INTO kvdesk_schema(one, version) VALUES (1, ?)"
                " ON CONFLICT(one) DO UPDATE SET version = excluded.version",
                (applied[-1],),
            )
    return tuple(applied)


if TYPE_CHECKING:

    def _satisfies_the_protocol(db: PostgresDatabase) -> Database:
        return db  # mypy checks PostgresDatabase against kvdesk.core.db.Database here
