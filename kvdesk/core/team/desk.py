"""A desk: a local vault that replicates a team vault on PostgreSQL and keys it locally.

What a desk holds:

- a replica of the server's replicated tables (values, tags, rules, golden sets), with the
  server's own ids, so an id means the same document on every desk and on the server;
- its own keys (never sent anywhere) and its own pilot sessions, which it delivers to the
  server (the pilot store's outbox: recorded locally first, so they survive being offline);
- in its settings: the server's connection string *without* a password (libpq finds that in
  PGPASSWORD, ``~/.pgpass`` or a service file), the last change number applied, and when it
  last reached the server.

Writes that belong to the team never touch the replica directly: they run in a server
transaction (:class:`TeamWrites`), and once that commits the desk pulls, so the writer sees
its own change at once and every other desk sees it at its next sync.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvdesk.core.db import POSTGRESQL, Connection, Dialect, ReplicatedTable
from kvdesk.core.db.postgres import PostgresDatabase, create_schema, schema_version
from kvdesk.core.errors import KvdeskError
from kvdesk.core.pilot.log import TEAM_SETTINGS
from kvdesk.core.pilot.store import PilotStore
from kvdesk.core.schema import SCHEMA_VERSION, replicated_tables
from kvdesk.core.settings import SettingStore
from kvdesk.core.tags.store import TagStore
from kvdesk.core.team.store import ROLES, ChangeLog, grant, server_role, table_columns
from kvdesk.core.vault.values import ValueStore
from kvdesk.core.vault.vault import Vault

SERVER = "team.server"
LAST_SEQ = "team.last_seq"
SYNCED_AT = "team.synced_at"
OFFLINE_SINCE = "team.offline_since"
ROLE, USER = "team.role", "team.user"  # as the server last said (shown while offline)

PULL_BATCH = 5000  # changes per local transaction
PUSH_BATCH = 100  # pilot sessions per server transaction
CONNECT_TIMEOUT = 3  # seconds: an offline server is said quickly (libpq's least is 2)


class TeamError(KvdeskError):
    """Something about the team vault (not joined, wrong server, schema missing)."""


class TeamOfflineError(TeamError):
    """The team server cannot be reached; the desk's replica still answers reads."""


class TeamRoleError(TeamError):
    """The server refused a change this user's role does not allow."""


def without_password(conninfo: str) -> str:
    """The connection string with any password removed (what a desk stores and shows)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(conninfo)
    except Exception as exc:  # noqa: BLE001 - psycopg's ProgrammingError, said plainly
        raise TeamError(f"not a PostgreSQL connection string or URL: {exc}") from None
    if "password" not in params:
        return conninfo
    params.pop("password")
    return make_conninfo(**{k: str(v) for k, v in params.items()})


@dataclass(frozen=True)
class TeamCreated:
    server: str  # without a password
    schema_version: int
    applied: tuple[int, ...]  # versions applied now (none: it was up to date)

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "schema_version": self.schema_version,
            "applied": list(self.applied),
        }


def create_team(conninfo: str) -> TeamCreated:
    """Create or upgrade the team schema in an existing database (idempotent)."""
    import psycopg

    server = without_password(conninfo)
    with PostgresDatabase(conninfo, connect_timeout=CONNECT_TIMEOUT) as db:
        try:
            applied = create_schema(db)
        except KvdeskError:
            raise
        except psycopg.errors.InsufficientPrivilege as exc:
            raise TeamError(
                "cannot create the team schema: this user lacks the rights (the database's"
                f" owner, with CREATEROLE, runs team create): {_first_line(exc)}"
            ) from None
        except psycopg.Error as exc:
            raise TeamError(f"cannot create the team schema: {_first_line(exc)}") from None
    return TeamCreated(server, SCHEMA_VERSION, applied)


@dataclass(frozen=True)
class SyncReport:
    pulled: int  # changes applied
    pushed: int  # pilot sessions delivered
    last_seq: int
    lag_seconds: float  # how old the oldest change applied was (0: nothing to apply)
    value_ids: frozenset[int] = field(default=frozenset(), repr=False)  # keys must follow

    def to_json(self) -> dict[str, Any]:
        return {
            "pulled": self.pulled,
            "pushed": self.pushed,
            "last_seq": self.last_seq,
            "lag_seconds": round(self.lag_seconds, 3),
        }


@dataclass(frozen=True)
class TeamStatus:
    server: str
    user: str
    role: str
    online: bool
    last_seq: int
    pending: int
    synced_at: str = ""
    offline_since: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "user": self.user,
            "role": self.role,
            "online": self.online,
            "last_seq": self.last_seq,
            "pending": self.pending,
        }


class Desk:
    """The team side of one vault. :meth:`of` finds it (None: a vault on its own)."""

    def __init__(self, vault: Vault, conninfo: str) -> None:
        self.vault = vault
        self.settings = SettingStore(vault)
        self.conninfo = conninfo
        self.server = PostgresDatabase(conninfo, connect_timeout=CONNECT_TIMEOUT)
        self._role: str | None = None
        self._user: str | None = None
        self._lock = threading.RLock()  # one pull or push at a time
        self._pulled: set[int] = set()
        self._local_columns: dict[str, Sequence[str]] = {}

    @classmethod
    def of(cls, vault: Vault) -> Desk | None:
        conninfo = SettingStore(vault).get(SERVER)
        return cls(vault, conninfo) if conninfo else None

    @classmethod
    def join(cls, vault: Vault, conninfo: str) -> Desk:
        """Make ``vault`` a desk of the team at ``conninfo`` and copy the team vault into it."""
        stored = without_password(conninfo)
        settings = SettingStore(vault)
        current = settings.get(SERVER)
        if current and current != stored:
            raise TeamError(f"this vault is already a desk of another team ({current})")
        if not current and vault.values.count():
            raise TeamError(
                f"{vault.path} already holds documents: a desk starts from a new vault"
                " (choose another --vault path)"
            )
        desk = cls(vault, conninfo)
        try:
            desk._check_server()
        except BaseException:
            desk.close()
            raise
        settings.set(SERVER, stored)
        PilotStore(vault).track_for_team()
        return desk

    def _check_server(self) -> None:
        """The server holds a team vault this kvdesk speaks, and says who we are."""
        with self._online("join the team"):
            version = schema_version(self.server)
            if version == 0:
                raise TeamError(
                    "this database has no team vault yet: an administrator runs"
                    " 'kvdesk team create URL' first"
                )
            if version != SCHEMA_VERSION:
                raise TeamError(
                    f"the team vault is at schema {version}, this kvdesk speaks {SCHEMA_VERSION}:"
                    " " + ("upgrade kvdesk" if version > SCHEMA_VERSION else
                           "an administrator runs 'kvdesk team create URL' to upgrade it")
                )  # fmt: skip
            self.role()

    def close(self) -> None:
        self.server.close()

    # -- the server --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _online(self, action: str) -> Iterator[None]:
        """Server errors in the desk's words: offline, or a role that may not do ``action``."""
        import psycopg

        try:
            yield
        except psycopg.errors.InsufficientPrivilege as exc:
            raise TeamRoleError(f"your role ({self._role or 'none'}) cannot {action}") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.server.reset()
            self._went_offline()
            raise TeamOfflineError(
                f"the team server is offline ({_first_line(exc)}): {action} needs it."
                " Search, show and export work from this desk's copy"
            ) from None
        except KvdeskError as exc:
            if "cannot connect to PostgreSQL" not in str(exc):
                raise
            self.server.reset()
            self._went_offline()
            raise TeamOfflineError(
                f"the team server is offline: {action} needs it. Search, show and export"
                f" work from this desk's copy ({_first_line(exc)})"
            ) from None

    def _went_offline(self) -> None:
        with contextlib.suppress(KvdeskError):
            if not self.settings.get(OFFLINE_SINCE):
                self.settings.set(OFFLINE_SINCE, _now())

    def _reached(self) -> None:
        with contextlib.suppress(KvdeskError):
            self.settings.set(SYNCED_AT, _now())
            if self.settings.get(OFFLINE_SINCE):
                self.settings.delete(OFFLINE_SINCE)

    def role(self) -> str:
        """This login's role on the team ('' for none), asked once per desk object (and again
        at each sync: an admin may have changed it)."""
        if self._role is None:
            self.refresh_role()
        return self._role or ""

    def user(self) -> str:
        self.role()
        return self._user or ""

    def refresh_role(self) -> str:
        """Ask the server who we are and what we may do; remembered for offline display."""
        with self._online("read the team vault"):
            role = server_role(self.server)
            user = str(self.server.conn.execute("SELECT current_user").fetchone()[0])
        self._role, self._user = role, user
        if (self.settings.get(ROLE), self.settings.get(USER)) != (role, user):
            self.settings.set(ROLE, role)
            self.settings.set(USER, user)
        return role

    def known_role(self) -> str:
        """The role the server last said (no server asked: for display while offline)."""
        return self._role if self._role is not None else self.settings.get(ROLE)

    def known_user(self) -> str:
        return self._user if self._user is not None else self.settings.get(USER)

    def changes_waiting(self) -> bool:
        """Whether the server has changes this desk has not applied (one cheap query)."""
        with self._online("sync"):
            return ChangeLog(self.server).last_seq_after(self.last_seq)

    def touch(self) -> SyncReport:
        """A sync with nothing to move: role and shared settings refreshed, contact noted."""
        with self._lock:
            self.refresh_role()
            self._pull_settings()
            self._reached()
            return SyncReport(0, 0, self.last_seq, 0.0)

    def require(self, role: str, action: str) -> None:
        """Refuse ``action`` before it starts unless this user holds at least ``role`` (the
        server enforces it regardless: this is for a clear message, and for nothing to start)."""
        mine = self.role()
        if ROLES.index(role) > (ROLES.index(mine) if mine in ROLES else -1):
            raise TeamRoleError(f"your role ({mine or 'none'}) cannot {action}")

    def grant(self, user: str, role: str) -> None:
        if role not in ROLES:
            raise TeamError(f"unknown role {role!r}: choose reader, curator or admin")
        self.require("admin", "grant roles")
        import psycopg

        with self._online("grant roles"):
            try:
                grant(self.server, user, role)
            except psycopg.errors.UndefinedObject as exc:
                raise TeamError(_first_line(exc)) from None

    def writes(self, action: str, role: str) -> TeamWrites:
        """The vault as team writes see it: reads local, transactions on the server (refused
        at once, with a clear message, for a user without ``role``)."""
        return TeamWrites(self, action, role)

    # -- sync ----------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        text = self.settings.get(LAST_SEQ, "0")
        return int(text) if text.isdigit() else 0

    def take_pulled(self) -> set[int]:
        """Values pulled since last asked (their keys must follow), forgotten once taken."""
        with self._lock:
            pulled, self._pulled = self._pulled, set()
        return pulled

    def sync(self, *, push: bool = True) -> SyncReport:
        """Deliver pending pilot sessions, then apply every change the server has."""
        with self._lock:
            pushed = self.push() if push else 0
            self.refresh_role()
            before = self.last_seq
            with self._online("sync"):
                lag = ChangeLog(self.server).oldest_after(before)
            applied, value_ids = self.pull()
            self._pull_settings()
            self._reached()
            return SyncReport(
                applied, pushed, self.last_seq, lag or 0.0 if applied else 0.0,
                frozenset(value_ids),
            )  # fmt: skip

    def pull(self, *, deadline: float | None = None, action: str = "sync") -> tuple[int, set[int]]:
        """Apply the server's changes after :attr:`last_seq`, a batch per local transaction;
        returns (changes applied, values touched). Stops early at ``deadline`` (monotonic)."""
        tables = {t.name: t for t in replicated_tables()}
        log = ChangeLog(self.server)
        total = 0
        touched: set[int] = set()
        with self._lock:
            while deadline is None or time.monotonic() < deadline:
                last = self.last_seq
                # One snapshot for the changes and the rows behind them: the batch is the
                # team vault as it was at one moment (no child without its parent).
                with self._online(action), self.server.transaction() as snapshot:
                    snapshot.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    changes = log.since(last, PULL_BATCH)
                    if not changes:
                        break
                    wanted: dict[str, dict[str, dict[str, Any]]] = {}
                    for change in changes:
                        if change.table in tables:
                            key = json.dumps(change.key, sort_keys=True)
                            wanted.setdefault(change.table, {})[key] = change.key
                    fetched = {
                        name: _fetch(self.server, tables[name], list(keys.values()))
                        for name, keys in wanted.items()
                    }
                    _add_current_versions(self.server, tables, wanted, fetched)
                touched |= self._apply(tables, wanted, fetched, changes[-1].seq)
                total += len(changes)
            self._pulled |= touched
        if total:
            self._reached()
        return total, touched

    def _apply(
        self,
        tables: dict[str, ReplicatedTable],
        wanted: dict[str, dict[str, dict[str, Any]]],
        fetched: dict[str, dict[str, Any]],
        last_seq: int,
    ) -> set[int]:
        """Write one batch into the replica and move :attr:`last_seq`, in one transaction."""
        touched: set[int] = set()
        order = list(tables)
        with self.vault.transaction() as tx:
            tx.execute("PRAGMA defer_foreign_keys = ON")
            for name in reversed(order):  # deletes, children first
                gone = [k for s, k in wanted.get(name, {}).items() if s not in fetched[name]]
                if gone:
                    _delete(tx, tables[name], gone)
                    touched |= _value_ids(name, gone)
            for name in order:  # upserts, parents first
                rows = list(fetched.get(name, {}).values())
                if rows:
                    _upsert(tx, tables[name], self._columns(name), rows)
                    touched |= _value_ids(name, rows)
            self.settings.set(LAST_SEQ, str(last_seq))  # in the same transaction
        return touched

    def _pull_settings(self) -> None:
        """The team's pilot settings (on, idle minutes), as a curator last shared them."""
        server = SettingStore(self.server)
        with self._online("sync"):
            shared = {key: server.get(key) for key in TEAM_SETTINGS}
        for key, value in shared.items():
            if value and self.settings.get(key) != value:
                self.settings.set(key, value)

    def share_settings(self) -> bool:
        """Make this desk's pilot settings the team's (curators and admins); False for a
        reader, whose settings stay on this desk until the team's next sync."""
        if self.role() not in ("curator", "admin"):
            return False
        server = SettingStore(self.server)
        with self._online("share the pilot settings"), self.server.transaction():
            for key in TEAM_SETTINGS:
                server.set(key, self.settings.get(key))
        return True

    def _columns(self, table: str) -> Sequence[str]:
        """The replica's columns of ``table`` (read once per desk)."""
        if table not in self._local_columns:
            self._local_columns[table] = table_columns(self.vault, table)
        return self._local_columns[table]

    def push(self) -> int:
        """Deliver this desk's undelivered pilot sessions (each exactly once: a session
        delivered again replaces itself). Returns how many were delivered."""
        local = PilotStore(self.vault)
        remote = PilotStore(self.server)
        origin = self.settings.vault_id()
        delivered = 0
        with self._lock:
            while batch := local.undelivered(PUSH_BATCH):
                sessions = local.sessions(ids=[sid for sid, _ in batch])
                with self._online("record pilot sessions"):
                    # A document found, then deleted from the team, is recorded as none.
                    found = {s.found_value_id for s in sessions} - {None}
                    kept = ValueStore(self.server).existing(found)  # type: ignore[arg-type]
                sessions = [
                    s if s.found_value_id in kept or s.found_value_id is None
                    else dataclasses.replace(s, found_value_id=None)
                    for s in sessions
                ]  # fmt: skip
                with self._online("record pilot sessions"), self.server.transaction() as tx:
                    for session in sessions:
                        remote.deliver(tx, session, f"{origin}:{session.id}", session.team)
                local.mark_delivered(batch)
                delivered += len(sessions)
                if local.undelivered(PUSH_BATCH) == batch:
                    break  # (cannot happen: a delivered batch is forgotten) never spin
        return delivered

    def pending(self) -> int:
        return PilotStore(self.vault).undelivered_count()

    def status(self) -> TeamStatus:
        """Where the desk stands; asks the server (briefly) whether it is reachable."""
        server = without_password(self.conninfo)
        try:
            role = self.role()
            with self._online("read the team vault"):
                self.server.conn.execute("SELECT 1")
            self._reached()
            online, reason = True, ""
        except TeamOfflineError as exc:
            online, reason, role = False, str(exc), self._role or ""
        return TeamStatus(
            server=server,
            user=self._user or "",
            role=role,
            online=online,
            last_seq=self.last_seq,
            pending=self.pending(),
            synced_at=self.settings.get(SYNCED_AT),
            offline_since=self.settings.get(OFFLINE_SINCE),
            reason=reason,
        )


class TeamWrites:
    """The vault as a team write sees it: reads from the desk's replica, transactions on the
    server (refused with a clear message offline or without the role), each committed one
    followed by a pull. Stores built on it (values, tags, golden sets) work unchanged."""

    def __init__(self, desk: Desk, action: str, role: str) -> None:
        self.desk = desk
        self.action = action
        self.role = role
        self.vault = desk.vault
        self.path: Path = desk.vault.path
        self._local = threading.local()
        self.values = ValueStore(self, tags_of=TagStore(self).tags_of)

    @property
    def dialect(self) -> Dialect:
        return POSTGRESQL if self._depth else self.vault.dialect

    @property
    def _depth(self) -> int:
        return int(getattr(self._local, "depth", 0))

    @property
    def conn(self) -> Any:
        return self.desk.server.conn if self._depth else self.vault.conn

    def writing(self) -> contextlib.AbstractContextManager[None]:
        return self.vault.writing()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        depth = self._depth
        self._local.depth = depth + 1
        try:
            if depth:
                with self.desk.server.transaction() as tx:
                    yield tx
                return
            self.desk.require(self.role, self.action)
            with self.desk._online(self.action), self.desk.server.transaction() as tx:
                yield tx
        finally:
            self._local.depth = depth
        # Committed on the server: bring it into the replica (the writer reads its own write).
        with contextlib.suppress(TeamOfflineError):
            self.desk.pull()


def _fetch(
    server: PostgresDatabase, table: ReplicatedTable, keys: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The current server rows of ``keys`` (absent: deleted), by their key's JSON."""
    names = [col for col, _ in table.key]
    columns = ", ".join(f"{col} {kind}" for col, kind in table.key)
    rows = server.conn.execute(
        f"SELECT t.* FROM {table.name} t"
        f" JOIN jsonb_to_recordset(?::jsonb) AS k({columns}) USING ({', '.join(names)})",
        (json.dumps(list(keys)),),
    ).fetchall()
    out: dict[str, Any] = {}
    for row in rows:
        key = {col: _json_key(row[col]) for col in names}
        out[json.dumps(key, sort_keys=True)] = row
    return out


def _add_current_versions(
    server: PostgresDatabase,
    tables: dict[str, ReplicatedTable],
    wanted: dict[str, dict[str, dict[str, Any]]],
    fetched: dict[str, dict[str, Any]],
) -> None:
    """Bring each fetched value's current version, and its bytes, along in the same snapshot.

    A value row is fetched as it is now, which may name a version whose own change lies in a
    later batch; a sync that stops between batches would then leave a value without its
    current version. Only rows found are added, so nothing is taken for deleted.
    """
    values = fetched.get("value", {})
    if not values or "version" not in tables or "blob" not in tables:
        return
    have = wanted.setdefault("version", {})
    need = []
    for row in values.values():
        key = {"value_id": row["id"], "version": row["current_version"]}
        if json.dumps(key, sort_keys=True) not in have:
            need.append(key)
    for text, row in _fetch(server, tables["version"], need).items():
        have[text] = json.loads(text)
        fetched.setdefault("version", {})[text] = row
    shas = sorted({row["sha256"] for row in fetched.get("version", {}).values()})
    if not shas:
        return
    ids = server.conn.execute(
        f"SELECT id FROM {tables['blob'].name} WHERE sha256 = ANY(?)", (shas,)
    ).fetchall()
    blobs = wanted.setdefault("blob", {})
    more = [{"id": r[0]} for r in ids if json.dumps({"id": r[0]}) not in blobs]
    for text, row in _fetch(server, tables["blob"], more).items():
        blobs[text] = json.loads(text)
        fetched.setdefault("blob", {})[text] = row


def _json_key(value: Any) -> Any:
    # How jsonb_build_object writes a key column: bytea as \x-prefixed hex.
    if isinstance(value, bytes | memoryview):
        return "\\x" + bytes(value).hex()
    return value


def _upsert(
    tx: Connection, table: ReplicatedTable, local: Sequence[str], rows: Sequence[Any]
) -> None:
    """Write server rows into the replica by primary key (``local``: the replica's columns,
    which a server row's extra columns are not written to)."""
    names = [c for c in rows[0].keys() if c in local]
    key = [col for col, _ in table.key]
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in key)
    sql = (
        f"INSERT INTO {table.name}({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        f" ON CONFLICT({', '.join(key)}) DO " + (f"UPDATE SET {updates}" if updates else "NOTHING")
    )
    tx.executemany(sql, [tuple(_local_value(row[c]) for c in names) for row in rows])


def _local_value(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _delete(tx: Connection, table: ReplicatedTable, keys: Sequence[dict[str, Any]]) -> None:
    names = [col for col, _ in table.key]
    where = " AND ".join(f"{col} = ?" for col in names)
    params = [tuple(_from_json_key(k[col], kind) for col, kind in table.key) for k in keys]
    tx.executemany(f"DELETE FROM {table.name} WHERE {where}", params)


def _from_json_key(value: Any, kind: str) -> Any:
    if kind == "bytea" and isinstance(value, str) and value.startswith("\\x"):
        return bytes.fromhex(value[2:])
    return value


def _value_ids(table: str, rows: Sequence[Any]) -> set[int]:
    """The values a replicated row belongs to (their keys follow it)."""
    column = {"value": "id", "version": "value_id", "value_tag": "value_id"}.get(table)
    if column is None:
        return set()
    return {int(row[column]) for row in rows}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
