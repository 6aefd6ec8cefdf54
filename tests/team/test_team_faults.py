"""A team vault under faults, against real PostgreSQL servers and real desk processes.

The tests that stop and restart a server use a server of their own (``fault_server``, one per
module), so the session's server, which other tests share, is never disturbed. The others
(a desk killed mid-upload, roles, concurrent curators, row-level security) use the session's
server through the ``team`` fixture of tests/team/conftest.py.

Nothing here is mocked: a stopped server is a PostgreSQL postmaster shut down (fast shutdown,
as an administrator would), a killed desk is a ``kvdesk import`` process sent SIGKILL, and
what the server enforces is checked on direct connections as each user. Where a fault must
land at a given step of a sync, a wrapper around the desk's own function (which still runs)
chooses the moment.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.team import desk as desk_module
from kvdesk.core.team.desk import Desk, TeamOfflineError, TeamRoleError
from kvdesk.core.team.store import ChangeLog
from kvdesk.core.vault.importer import RECORDS_PER_COMMIT
from tests.db.pgserver import PgServer, PgServerError
from tests.team.conftest import Team, create_team_database, create_users

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL, Unix sockets")

TOPICS = (
    "harbour crane maintenance",
    "budget review for the quarter",
    "vendor contract renewal",
    "server migration plan",
    "safety inspection of the warehouse",
)
OFFLINE = "the team server is offline"
READS_STILL_WORK = "Search, show and export work from this desk's copy"
_numbers = itertools.count(1)


# -- a server of this module's own, stopped and started by the tests -------------------------


@pytest.fixture(scope="module")
def fault_server() -> Iterator[PgServer]:
    """A PostgreSQL server for this module only: halting it disturbs no other test."""
    try:
        server = PgServer.start()
    except PgServerError as exc:
        pytest.fail(f"PostgreSQL test server: {exc}", pytrace=False)
    try:
        create_users(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_team(fault_server: PgServer, tmp_path: Path) -> Iterator[Team]:
    """Like ``team``, on :func:`fault_server`; the server is running again afterwards."""
    database = f"fault{next(_numbers)}"
    made = create_team_database(fault_server, database, tmp_path)
    try:
        yield made
    finally:
        fault_server.resume()  # a test that failed while the server was down
        for kb in made.desks:
            kb.close()
        fault_server.admin(f"DROP DATABASE {database} WITH (FORCE)")


# -- helpers ----------------------------------------------------------------------------------


def _records(path: Path, count: int, *, prefix: str = "r", tagged: bool = True) -> Path:
    """A JSONL records file: ``count`` short documents, every third one tagged."""
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            record: dict[str, Any] = {
                "_id": f"{prefix}{i}",
                "title": f"Note {i}",
                "text": f"note {i} on the {TOPICS[i % len(TOPICS)]}",
            }
            if tagged and i % 3 == 0:
                record["tags"] = ["filed", f"topic{i % len(TOPICS)}"]
            out.write(json.dumps(record) + "\n")
    return path


def _server_rows(team: Team, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read on the server as its superuser (who sees every row)."""
    with psycopg.connect(team.server.conninfo(team.database)) as conn:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]


def _server_count(team: Team, sql: str, params: tuple[Any, ...] = ()) -> int:
    return int(_server_rows(team, sql, params)[0][0])


def _replica_rows(vault: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows read from a desk's vault file with a connection of its own (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{vault}?mode=ro", uri=True)) as conn:
        return [tuple(row) for row in conn.execute(sql).fetchall()]


SNAPSHOT = {
    "values": "SELECT id, identifier, external_id, title FROM value ORDER BY id",
    "versions": "SELECT value_id, version FROM version ORDER BY value_id, version",
    "tags": "SELECT id, name FROM tag ORDER BY id",
    "value_tags": "SELECT value_id, tag_id, state FROM value_tag ORDER BY value_id, tag_id",
}


def _server_snapshot(team: Team) -> dict[str, list[tuple[Any, ...]]]:
    return {name: _server_rows(team, sql) for name, sql in SNAPSHOT.items()}


def _replica_snapshot(kb: KnowledgeBase) -> dict[str, list[tuple[Any, ...]]]:
    return {name: _replica_rows(kb.path, sql) for name, sql in SNAPSHOT.items()}


def _kvdesk(vault: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvdesk", "--vault", str(vault), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _desk(kb: KnowledgeBase) -> Desk:
    """The team side of a joined desk."""
    assert kb.team is not None, f"{kb.path} is not a desk"
    return kb.team


def _pilot_session(kb: KnowledgeBase, query: str, found_external_id: str) -> int:
    """One recorded pilot session: a lexical search and the document found."""
    session_id = kb.pilot.start_session()
    kb.pilot.record_search(session_id, query, kb.search(query, mode="lexical"))
    found = kb.values.find_by_external_id(found_external_id)
    assert found is not None
    kb.pilot.mark(session_id, "found", found)
    return session_id


def _origins(team: Team, kb: KnowledgeBase) -> list[str]:
    """The origins of the pilot sessions the server holds from this desk."""
    prefix = kb.settings.vault_id() + ":"
    rows = _server_rows(
        team,
        "SELECT origin FROM pilot_session WHERE starts_with(origin, %s) ORDER BY origin",
        (prefix,),
    )
    return [str(row[0]) for row in rows]


def _wait_for(what: str, condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {seconds} s")
        time.sleep(0.02)


# -- 1. the server stopped ------------------------------------------------------------------


def test_server_down_desk_reads_its_copy_refuses_writes_and_keeps_pilot_sessions(
    fault_team: Team, tmp_path: Path
) -> None:
    team = fault_team
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "docs.jsonl", 20))
    desk = team.desk("cal", "cal")
    desk.pilot.configure(enabled=True, user="cal", team="ops")
    crane = desk.values.find_by_external_id("r5")
    assert crane is not None
    ident = desk.values.identifier(crane)
    original = desk.values.original_bytes(crane)
    assert json.loads(original)["_id"] == "r5"
    server_before = _server_snapshot(team)
    seq_before = _server_count(team, "SELECT coalesce(max(seq), 0) FROM change_log")
    assert _replica_snapshot(desk) == server_before

    team.server.halt()

    # Reads: the desk's copy answers.
    hits = desk.search("crane", mode="lexical").hits
    assert {hit.external_id for hit in hits} == {f"r{i}" for i in range(0, 20, 5)}
    assert desk.values.get(ident).title == "Note 5"
    assert "harbour crane maintenance" in desk.values.text(crane)
    assert desk.values.original_bytes(crane) == original
    exported = tmp_path / "exported.json"
    cli_export = _kvdesk(desk.path, "export", ident, str(exported))
    assert cli_export.returncode == 0, cli_export.stderr
    assert exported.read_bytes() == original
    cli_search = _kvdesk(desk.path, "search", "--mode", "lexical", "--json", "--pilot", "crane")
    assert cli_search.returncode == 0, cli_search.stderr
    assert OFFLINE in cli_search.stderr and "searching this desk's copy" in cli_search.stderr
    assert {h["external_id"] for h in json.loads(cli_search.stdout)["hits"]} >= {"r5"}

    # Status: offline, and why.
    status = _desk(desk).status()
    assert not status.online
    assert OFFLINE in status.reason and READS_STILL_WORK in status.reason
    assert status.offline_since and status.role == "curator" and status.user == "cal"
    cli_status = _kvdesk(desk.path, "team", "status")
    assert cli_status.returncode == 1, cli_status.stdout + cli_status.stderr
    assert "offline since" in cli_status.stdout and OFFLINE in cli_status.stdout

    # Writes: refused, plainly, and nothing half-done.
    with pytest.raises(TeamOfflineError) as refused:
        desk.set_tag(ident, "urgent", "accepted")
    assert str(refused.value).startswith(OFFLINE)
    assert "change tags needs it" in str(refused.value)
    assert READS_STILL_WORK in str(refused.value)
    with pytest.raises(TeamOfflineError) as refused:
        desk.tags.reject(crane, "filed")
    assert "change tags needs it" in str(refused.value)
    with pytest.raises(TeamOfflineError) as refused:
        admin.import_records(_records(tmp_path / "more.jsonl", 5, prefix="m"))
    assert str(refused.value).startswith(OFFLINE) and READS_STILL_WORK in str(refused.value)
    assert _replica_snapshot(desk) == server_before
    assert _replica_snapshot(admin) == server_before

    # Pilot sessions: recorded here, waiting for the server.
    _pilot_session(desk, "crane", "r5")
    _pilot_session(desk, "budget review", "r1")
    desk.deliver_pilot()  # tries, and keeps them
    assert _desk(desk).status().pending == 3  # + the CLI search's

    team.server.resume()

    # Nothing reached the server while it was down.
    assert _server_snapshot(team) == server_before
    assert _server_count(team, "SELECT coalesce(max(seq), 0) FROM change_log") == seq_before
    assert _origins(team, desk) == []

    report = desk.sync_team()
    assert report.pushed == 3 and report.pulled == 0
    local_ids = [r[0] for r in _replica_rows(desk.path, "SELECT id FROM pilot_session")]
    vault_id = desk.settings.vault_id()
    assert _origins(team, desk) == sorted(f"{vault_id}:{sid}" for sid in local_ids)
    assert _server_count(team, "SELECT count(*) FROM pilot_session WHERE \"user\" = 'cal'") == 3
    status = _desk(desk).status()
    assert status.online and status.pending == 0 and not status.offline_since
    assert desk.sync_team().pushed == 0  # exactly once
    assert len(_origins(team, desk)) == 3
    assert _replica_snapshot(desk) == server_before


def test_import_refused_offline_says_that_the_import_needs_the_server(
    fault_team: Team, tmp_path: Path
) -> None:
    """The refusal names what the user asked for (an import), not an internal step."""
    admin = fault_team.desk("admin", "ann")
    _desk(admin).status()
    fault_team.server.halt()
    with pytest.raises(TeamOfflineError) as refused:
        admin.import_records(_records(tmp_path / "docs.jsonl", 5))
    assert str(refused.value).startswith(OFFLINE) and READS_STILL_WORK in str(refused.value)
    assert "import documents needs it" in str(refused.value)
    fault_team.server.resume()
    assert _server_count(fault_team, "SELECT count(*) FROM value") == 0
    assert admin.values.count() == 0


def test_desks_idle_across_a_server_restart_work_at_once(fault_team: Team, tmp_path: Path) -> None:
    """Desks connected when the server restarted (the app left open overnight): the server is
    up again, so their next status, import and sync work, without a first "offline"."""
    team = fault_team
    admin = team.desk("admin", "ann")
    desk = team.desk("rex", "rex")
    assert _desk(admin).status().online and _desk(desk).status().online
    team.server.halt()
    team.server.resume()
    status = _desk(desk).status()
    assert status.online, status.reason
    assert len(admin.import_records(_records(tmp_path / "docs.jsonl", 5)).imported) == 5
    assert desk.sync_team().pulled > 0
    assert _replica_snapshot(desk) == _server_snapshot(team)


# -- 2. a desk killed mid-upload ------------------------------------------------------------


def test_desk_killed_mid_upload_leaves_no_duplicates_and_the_same_import_completes(
    team: Team, tmp_path: Path
) -> None:
    total = 2000
    records = _records(tmp_path / "bulk.jsonl", total)
    vault = tmp_path / "uploader.kvdb"
    with KnowledgeBase.open(vault) as kb:
        kb.join_team(team.url("ann"))
    command = [sys.executable, "-m", "kvdesk", "--vault", str(vault), "import", "--records"]
    command += [str(records), "--no-dense", "-q"]
    upload = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def batch_in_flight() -> bool:
            """Some batches committed, and the uploader's next one open on the server."""
            if upload.poll() is not None:
                return True
            writing = _server_count(
                team,
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'ann'"
                " AND datname = current_database() AND backend_xid IS NOT NULL",
            )
            return bool(writing) and _server_count(team, "SELECT count(*) FROM value") > 0

        _wait_for("an upload under way", batch_in_flight)
        os.kill(upload.pid, signal.SIGKILL)
        upload.wait(timeout=30)
    finally:
        if upload.poll() is None:
            upload.kill()
            upload.wait()
        assert upload.stderr is not None
        stderr = upload.stderr.read().decode(errors="replace")
        upload.stderr.close()
    assert upload.returncode == -signal.SIGKILL, f"the import ended before the kill: {stderr}"

    # What the server kept: whole batches, each value once, each with its version.
    kept = _server_count(team, "SELECT count(*) FROM value")
    assert 0 < kept < total
    assert kept % RECORDS_PER_COMMIT == 0, kept
    assert _server_count(team, "SELECT count(DISTINCT external_id) FROM value") == kept
    assert _server_count(team, "SELECT count(*) FROM version") == kept
    assert (
        _server_count(
            team,
            "SELECT count(*) FROM value v LEFT JOIN version ver"
            " ON ver.value_id = v.id AND ver.version = v.current_version"
            " WHERE ver.value_id IS NULL",
        )
        == 0
    )

    rerun = _kvdesk(vault, "import", "--records", str(records), "--no-dense", "-q", "--json")
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert not report["failed"] and not report["duplicates"]
    assert len(report["imported"]) + len(report["unchanged"]) == total
    assert len(report["unchanged"]) >= kept  # what the killed run stored is recognised

    assert _server_count(team, "SELECT count(*) FROM value") == total
    assert _server_count(team, "SELECT count(DISTINCT external_id) FROM value") == total
    assert _server_count(team, "SELECT count(*) FROM version") == total
    desk = team.open("uploader")
    assert desk.values.count() == total
    assert _replica_snapshot(desk) == _server_snapshot(team)
    check = desk.check()
    assert check.ok, check


# -- 3. the server restarted mid-sync --------------------------------------------------------

# "halted-after-N": down right after the Nth batch was applied (each batch boundary may fall
# between a value's row and its current version's).
RESTARTS = (
    "halted-mid-batch",
    "restarted-between-batches",
    "halted-concurrently",
    *(f"halted-after-{n}" for n in range(1, 8)),
)


@pytest.mark.parametrize("fault", RESTARTS)
def test_server_restart_mid_sync_then_the_next_sync_catches_up(
    fault_team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    team = fault_team
    admin = team.desk("admin", "ann")
    desk = team.desk("late", "rex")  # joined before the backlog: all of it is to pull
    admin.import_records(_records(tmp_path / "backlog.jsonl", 700))
    for external_id in ("r1", "r2", "r4"):
        found = admin.values.find_by_external_id(external_id)
        assert found is not None
        admin.set_tag(found, "reviewed", "accepted")
    server = _server_snapshot(team)
    last_seq = _server_count(team, "SELECT max(seq) FROM change_log")
    assert last_seq > 3000
    seqs = [int(row[0]) for row in _server_rows(team, "SELECT seq FROM change_log ORDER BY seq")]
    monkeypatch.setattr(desk_module, "PULL_BATCH", 100)

    batches = 0
    halted_once = False
    started = threading.Event()
    halter: threading.Thread | None = None
    real_fetch, real_apply = desk_module._fetch, desk_module.Desk._apply

    def fetch(*args: Any) -> Any:
        nonlocal halted_once
        if fault == "halted-mid-batch" and batches == 5 and not halted_once:
            halted_once = True
            team.server.halt()  # between reading the changes and fetching their rows
        return real_fetch(*args)

    def apply(self: Any, *args: Any) -> Any:
        nonlocal batches
        applied = real_apply(self, *args)
        batches += 1
        started.set()
        if fault == "restarted-between-batches" and batches == 5:
            team.server.halt()
            team.server.resume()
        if fault == f"halted-after-{batches}":
            team.server.halt()
        return applied

    def halt_when_started() -> None:
        # Only the halt happens here: a server started from this thread would be told to stop
        # when the thread ends (Linux's parent-death signal follows the starting thread).
        if started.wait(timeout=60):
            team.server.halt()

    monkeypatch.setattr(desk_module, "_fetch", fetch)
    monkeypatch.setattr(desk_module.Desk, "_apply", apply)
    if fault == "halted-concurrently":
        halter = threading.Thread(target=halt_when_started)
        halter.start()
    try:
        desk.sync_team()
    except TeamOfflineError as exc:
        assert str(exc).startswith(OFFLINE) and "sync needs it" in str(exc)
        outcome = "offline"
    else:
        outcome = "completed"
    finally:
        if halter is not None:
            halter.join(timeout=120)
    assert batches >= 1

    # Whatever the sync got is whole batches, each row as the server has it.
    reached = _desk(desk).last_seq
    assert (reached == last_seq) == (outcome == "completed")
    assert reached == seqs[min(batches * 100, len(seqs)) - 1]
    partial = _replica_snapshot(desk)
    for table, rows in partial.items():
        assert set(rows) <= set(server[table]), table
    assert desk.check().ok

    if fault != "restarted-between-batches":  # the server is still down
        assert outcome == "offline"
        with pytest.raises(TeamOfflineError):
            desk.sync_team()  # still down: said at once, nothing applied
        assert _desk(desk).last_seq == reached
    team.server.resume()

    report = desk.sync_team()  # reconnects
    assert report.last_seq == last_seq
    assert _replica_snapshot(desk) == server
    assert desk.values.count() == 700
    assert desk.search("crane", mode="lexical", k=200).hits
    assert desk.sync_team().pulled == 0


# -- pilot sessions delivered twice ------------------------------------------------------------


def test_pilot_sessions_delivered_twice_stay_one_session_each(team: Team, tmp_path: Path) -> None:
    """A desk restored from a copy taken before a delivery delivers the same sessions again
    (the server's commit happened, the desk's note of it is gone): one session each remains.
    A session changed after its delivery is delivered again and replaced, not doubled."""
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "docs.jsonl", 10))
    path = tmp_path / "cal.kvdb"
    kb = KnowledgeBase.open(path)
    try:
        kb.join_team(team.url("cal"))
        kb.pilot.configure(enabled=True, user="cal", team="ops")
        first = _pilot_session(kb, "crane", "r5")
        _pilot_session(kb, "vendor contract", "r2")
        copy = tmp_path / "cal-before-delivery.kvdb"
        with (
            contextlib.closing(sqlite3.connect(path)) as live,
            contextlib.closing(sqlite3.connect(copy)) as saved,
        ):
            live.backup(saved)
        assert kb.sync_team().pushed == 2
        delivered = _origins(team, kb)
        assert len(delivered) == 2
    finally:
        kb.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    copy.rename(path)

    restored = team.open("cal")
    assert _desk(restored).pending() == 2
    assert restored.sync_team().pushed == 2  # the same two, again
    assert _origins(team, restored) == delivered
    assert _server_count(team, "SELECT count(*) FROM pilot_session") == 2

    restored.pilot.record_search(first, "crane hook", restored.search("crane", mode="lexical"))
    assert _desk(restored).pending() == 1
    assert restored.sync_team().pushed == 1
    assert _origins(team, restored) == delivered
    origin = f"{restored.settings.vault_id()}:{first}"
    queries = _server_rows(
        team,
        "SELECT q.query FROM pilot_query q JOIN pilot_session s ON s.id = q.session_id"
        " WHERE s.origin = %s ORDER BY q.seq",
        (origin,),
    )
    assert queries == [("crane",), ("crane hook",)]
    assert restored.sync_team().pushed == 0


# -- 4. roles, enforced by the server itself --------------------------------------------------


def test_reader_cannot_curate_neither_through_kvdesk_nor_directly(
    team: Team, tmp_path: Path
) -> None:
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "docs.jsonl", 6))
    reader = team.desk("rex", "rex")
    server_before = _server_snapshot(team)
    seq_before = _server_count(team, "SELECT max(seq) FROM change_log")
    doc = reader.values.find_by_external_id("r0")
    assert doc is not None

    for attempt in (
        lambda: reader.set_tag(doc, "urgent", "accepted"),
        lambda: reader.tags.accept(doc, "filed"),
        lambda: reader.tags.reject(doc, "filed"),
        lambda: reader.remove_tag(doc, "filed"),
    ):
        with pytest.raises(TeamRoleError) as refused:
            attempt()
        assert "your role (reader) cannot change tags" in str(refused.value)
    with pytest.raises(TeamRoleError) as refused:
        reader.import_records(_records(tmp_path / "more.jsonl", 2, prefix="m"))
    assert "your role (reader) cannot import documents" in str(refused.value)
    assert _server_snapshot(team) == server_before
    assert _server_count(team, "SELECT max(seq) FROM change_log") == seq_before
    assert _replica_snapshot(reader) == server_before

    # The server refuses the reader itself (the desk's check is only for a clear message).
    statements = (
        "INSERT INTO tag(name) VALUES ('x')",
        f"UPDATE value_tag SET state = 'rejected' WHERE value_id = {doc}",
        f"DELETE FROM value_tag WHERE value_id = {doc}",
        f"UPDATE value SET title = 'renamed' WHERE id = {doc}",
        "DELETE FROM change_log",
    )
    with team.db("rex") as rex:
        for sql in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                rex.conn.execute(sql)
        assert int(rex.conn.execute("SELECT count(*) FROM value").fetchone()[0]) == 6
    with team.db("nemo") as nobody, pytest.raises(psycopg.errors.InsufficientPrivilege):
        nobody.conn.execute("SELECT count(*) FROM value")
    assert _server_snapshot(team) == server_before

    # A curator and an admin can, and the change log names them.
    for user, name in (("cal", "x"), ("ann", "y")):
        with team.db(user) as db:
            db.conn.execute(f"INSERT INTO tag(name) VALUES ('{name}')")
        assert _server_rows(
            team, "SELECT actor FROM change_log WHERE tbl = 'tag' ORDER BY seq DESC LIMIT 1"
        ) == [(user,)]
    assert reader.sync_team().pulled == 2
    assert {"x", "y"} <= set(reader.all_tags())
    assert _replica_snapshot(reader) == _server_snapshot(team)


# -- 5. two curators, one tag ---------------------------------------------------------------


def test_two_curators_on_one_tag_the_later_wins_and_the_log_keeps_both(
    team: Team, tmp_path: Path
) -> None:
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "docs.jsonl", 4, tagged=False))
    cal = team.desk("cal", "cal")
    cora = team.desk("cora", "cora")
    doc = cal.values.find_by_external_id("r2")
    assert doc is not None and cora.values.find_by_external_id("r2") == doc

    cal.set_tag(doc, "urgent", "accepted")
    cora.set_tag(doc, "urgent", "rejected")  # her desk had not seen cal's change yet
    cal.sync_team()
    cora.sync_team()

    tag_id = _server_count(team, "SELECT id FROM tag WHERE name = 'urgent'")
    expected = [(doc, tag_id, "rejected")]
    sql = f"SELECT value_id, tag_id, state FROM value_tag WHERE value_id = {doc}"
    assert _server_rows(team, sql) == expected
    assert _replica_rows(cal.path, sql) == expected
    assert _replica_rows(cora.path, sql) == expected
    with team.db() as db:
        history = ChangeLog(db).history("value_tag", {"value_id": doc, "tag_id": tag_id})
    changes = [(c.actor, (c.detail or {}).get("state")) for c in history]
    # Oldest first; a set_state may log its row twice (the write, then the digest sealing it).
    assert [change for change, _ in itertools.groupby(changes)] == [
        ("cal", "accepted"),
        ("cora", "rejected"),
    ], changes
    assert _replica_snapshot(cal) == _replica_snapshot(cora) == _server_snapshot(team)


# -- 6. row-level security on pilot sessions ------------------------------------------------


def test_pilot_sessions_readers_see_and_write_only_their_own(team: Team, tmp_path: Path) -> None:
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "docs.jsonl", 10))
    desks = {user: team.desk(user, user) for user in ("cal", "rex")}
    for user, kb in desks.items():
        kb.pilot.configure(enabled=True, user=user, team="ops")
        _pilot_session(kb, "crane", "r5")
        _pilot_session(kb, "vendor contract", "r2")
        assert kb.sync_team().pushed == 2
    cal_ids = [
        int(r[0])
        for r in _server_rows(
            team, "SELECT id FROM pilot_session WHERE \"user\" = 'cal' ORDER BY id"
        )
    ]
    assert len(cal_ids) == 2
    assert _server_count(team, "SELECT count(*) FROM pilot_session") == 4

    with team.db("rex") as rex:
        own = rex.conn.execute('SELECT DISTINCT "user" FROM pilot_session').fetchall()
        assert [row[0] for row in own] == ["rex"]
        assert int(rex.conn.execute("SELECT count(*) FROM pilot_session").fetchone()[0]) == 2
        hidden = ", ".join(map(str, cal_ids))
        for sql in (
            f"SELECT count(*) FROM pilot_session WHERE id IN ({hidden})",
            f"SELECT count(*) FROM pilot_query WHERE session_id IN ({hidden})",
            f"SELECT count(*) FROM pilot_open WHERE session_id IN ({hidden})",
        ):
            assert int(rex.conn.execute(sql).fetchone()[0]) == 0, sql
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rex.conn.execute(
                'INSERT INTO pilot_session(origin, "user", team, started_at)'
                " VALUES ('forged:1', 'cal', 'ops', '2024-01-01T00:00:00+00:00')"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rex.conn.execute(
                "INSERT INTO pilot_query(session_id, seq, query, mode, at, hit_count, confident)"
                f" VALUES ({cal_ids[0]}, 9, 'forged', 'lexical', '2024-01-01', 0, 0)"
            )
        changed = rex.conn.execute(
            f"UPDATE pilot_session SET outcome = 'notfound' WHERE id IN ({hidden})"
        )
        assert changed.rowcount == 0
        gone = rex.conn.execute(f"DELETE FROM pilot_session WHERE id IN ({hidden})")
        assert gone.rowcount == 0
    assert _server_rows(team, f"SELECT outcome FROM pilot_session WHERE id IN ({hidden})") == [
        ("found",),
        ("found",),
    ]
    assert _server_count(team, "SELECT count(*) FROM pilot_session WHERE origin = 'forged:1'") == 0

    for user in ("cora", "ann"):  # a curator (and so an admin) sees every session
        with team.db(user) as db:
            rows = db.conn.execute(
                'SELECT "user", count(*) FROM pilot_session GROUP BY 1 ORDER BY 1'
            ).fetchall()
            assert [tuple(r) for r in rows] == [("cal", 2), ("rex", 2)], user
            queries = int(db.conn.execute("SELECT count(*) FROM pilot_query").fetchone()[0])
            assert queries == 4
