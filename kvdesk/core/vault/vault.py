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
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import filelock

from kvdesk.core.db import SQLITE, Dialect, ThreadConnections, nested_transaction
from kvdesk.core.errors import KvdeskError, NotFoundError, VaultBusyError, VaultFormatError
from kvdesk.core.schema import SCHEMA_VERSION, steps_for
from kvdesk.core.tags.store import TagStore
from kvdesk.core.vault.records import CheckReport
from kvdesk.core.vault.values import ValueStore

APPLICATION_ID = 0x6B766462  # "kvdb": marks the file as a kvdesk vault
WRITER_WAIT_SECONDS = 3.0


class Vault:
    """A kvdesk vault file. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: ThreadConnections[sqlite3.Connection] = ThreadConnections()
        self._thread_write_lock = threading.RLock()
        self._file_lock = filelock.FileLock(str(path) + ".lock", is_singleton=False)
        self._closed = False
        self._patience = WRITER_WAIT_SECONDS
        self._on_wait: Callable[[str], None] | None = None
        self.values = ValueStore(self, tags_of=TagStore(self).tags_of)

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
        elif vault_path.stat().st_size == 0:
            # An empty file is not a vault (a typo'd path someone touched, a failed copy):
            # never turn it into one behind the user's back.
            raise VaultFormatError(
                f"{vault_path} is an empty file, not a kvdesk vault; remove it or choose"
                " another path"
            )
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
        # A damaged byte in stored text must not make a document (or a search) unreadable:
        # it reads as U+FFFD, and check reports the document by its digest.
        conn.text_factory = _decode_text
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
        return conn

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 objects must stay on the thread that made them)."""
        if self._closed:
            raise KvdeskError("the vault is closed")
        return self._connections.get(self._connect)

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
                        if step.backfill is not None:
                            step.backfill(conn)
                    conn.execute(f"PRAGMA user_version = {number + 1}")
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    def close(self) -> None:
        conn = self._connections.current()
        if conn is not None and not self._closed:
            # Fold the write-ahead log back into the vault file, so a closed vault is one file.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._closed = True
        self._connections.close_all(sqlite3.Error)

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self, *, timeout: float | None = None) -> Iterator[None]:
        """Hold the single-writer lock (across threads and processes) for a write session;
        with ``timeout``, give up (VaultBusyError) after that many seconds, whatever the
        patience set by :meth:`wait_for_writers` (an optional write, like a catch-up)."""
        if timeout is not None and not self._thread_write_lock.acquire(timeout=timeout):
            raise VaultBusyError(f"vault is busy: another writer holds {self.path}")
        try:
            with self._thread_write_lock:
                depth = getattr(self._local, "write_depth", 0)
                if depth == 0:
                    self._acquire_file_lock(timeout)
                self._local.write_depth = depth + 1
                try:
                    yield
                finally:
                    self._local.write_depth = depth
                    if depth == 0:
                        self._file_lock.release()
        finally:
            if timeout is not None:
                self._thread_write_lock.release()

    def change_stamp(self) -> tuple[int, int]:
        """Changes when another connection commits to the vault: this thread and SQLite's
        ``data_version`` on its connection (for caches of what the vault holds)."""
        return threading.get_ident(), int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def wait_for_writers(
        self, patience: float, on_wait: Callable[[str], None] | None = None
    ) -> None:
        """Let a write wait up to ``patience`` seconds for another writer (the app, an import),
        telling ``on_wait`` once that it is waiting. The default is to give up after 3 s."""
        self._patience = max(patience, WRITER_WAIT_SECONDS)
        self._on_wait = on_wait

    def _acquire_file_lock(self, timeout: float | None = None) -> None:
        try:
            self._file_lock.acquire(timeout=WRITER_WAIT_SECONDS if timeout is None else timeout)
            return
        except filelock.Timeout:
            if timeout is None and self._patience > WRITER_WAIT_SECONDS:
                if self._on_wait is not None:
                    self._on_wait(
                        f"waiting for another kvdesk process (the app, or another import) to"
                        f" finish writing to {self.path.name}…"
                    )
                try:
                    self._file_lock.acquire(timeout=self._patience - WRITER_WAIT_SECONDS)
                    return
                except filelock.Timeout:
                    pass
        raise VaultBusyError(
            f"vault is busy: another kvdesk process is writing to {self.path}; "
            "try again when it has finished"
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: BEGIN IMMEDIATE ... COMMIT, rolled back on any error.

        Nested use becomes a SAVEPOINT, so a batch can group many documents into one commit
        while each document still succeeds or fails on its own.
        """
        conn = self.conn

        def begin() -> None:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise VaultBusyError(f"vault is busy: {exc}") from exc

        with self.writing(), nested_transaction(conn, self._local, begin):
            yield conn

    # -- integrity ----------------------------------------------------------------------------

    def check(self) -> CheckReport:
        """SQLite integrity check, foreign keys, and the sha256 of every stored byte string."""
        conn = self.conn
        problems: list[str] = []
        count, digest = 0, ""
        try:
            for (line,) in conn.execute("PRAGMA integrity_check"):
                if line != "ok":
                    problems.append(f"sqlite: {line}")
            for row in conn.execute("PRAGMA foreign_key_check"):
                problems.append(f"dangling reference in table {row[0]} (row {row[1]})")
        except sqlite3.DatabaseError as exc:
            problems.append(f"sqlite: {exc}")
        try:
            count, digest, value_problems = self.values.check()
            problems.extend(value_problems)
            identifiers = self.values.identifiers()
            for value_id, what in TagStore(self).check():
                who = identifiers.get(value_id, f"document {value_id}") if value_id else ""
                problems.append(f"{who}: {what}" if who else what)
        except sqlite3.DatabaseError as exc:
            problems.append(f"the values cannot all be read: {exc}")
        return CheckReport(
            ok=not problems, values=count, values_digest=digest, problems=tuple(problems)
        )


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


def _create_private_file(path: Path) -> None:
    """Create the vault readable by its owner only (WAL and SHM files inherit the mode)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
