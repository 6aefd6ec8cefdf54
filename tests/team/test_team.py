"""A team vault on a real PostgreSQL server: create, grant, join, sync, status, and every
command acting on the team from a desk. (Faults: test_team_faults.py; the app: test_team_app.)"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from kvdesk.core.errors import KvdeskError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.metrics import pilot_report
from kvdesk.core.schema import SCHEMA_VERSION
from kvdesk.core.team.desk import TeamError, TeamRoleError, create_team
from kvdesk.core.team.store import ChangeLog
from tests.cli.runner import run
from tests.team.conftest import Team


def _records(path: Path, items: list[tuple[str, str]], tags: dict[str, list[str]] | None = None
             ) -> Path:  # fmt: skip
    with open(path, "w", encoding="utf-8") as f:
        for rid, text in items:
            record = {"_id": rid, "title": rid.title(), "text": text}
            if tags and rid in tags:
                record["tags"] = tags[rid]
            f.write(json.dumps(record) + "\n")
    return path


MANUALS = [
    ("printer", "Clear a paper jam in the office printer: open tray two and pull gently."),
    ("vpn", "Connect to the VPN from home with the company certificate."),
    ("holiday", "Request holiday leave in the HR portal two weeks ahead."),
    ("invoice", "Invoices above 5000 euros need a second signature from finance."),
]


def _server_count(team: Team, sql: str, *params: object) -> int:
    with team.db() as db:
        return int(db.conn.execute(sql, params).fetchone()[0])


def test_create_is_idempotent_and_makes_the_creator_admin(team: Team) -> None:
    again = create_team(team.url())
    assert again.applied == () and again.schema_version == SCHEMA_VERSION
    assert "password" not in create_team(team.url() + " password=secret").server
    code, out = run("team", "create", team.url(), "--json")
    assert code == 0 and json.loads(out) == {
        "server": team.url(), "schema_version": SCHEMA_VERSION, "applied": [],
    }  # fmt: skip


def test_a_document_imported_on_one_desk_is_found_on_another_after_sync(
    team: Team, tmp_path: Path
) -> None:
    admin = team.desk("admin", "ann")
    reader = team.desk("reader", "rex")
    report = admin.import_records(_records(tmp_path / "m.jsonl", MANUALS, {"vpn": ["it"]}))
    assert len(report.imported) == 4
    # The uploading desk reads its own write at once; the other desk after a sync.
    assert admin.search("paper jam", mode="lexical").hits[0].identifier == "DOC-1"
    assert not reader.search("paper jam", mode="lexical").hits
    synced = reader.sync_team()
    with team.db() as db:
        assert synced.pulled > 0 and synced.last_seq == ChangeLog(db).last_seq()
    hit = reader.search("paper jam", mode="lexical").hits[0]
    assert (hit.identifier, hit.title) == ("DOC-1", "Printer")
    # Same ids, same bytes, same tags: the replica is the team vault.
    for kb in (admin, reader):
        assert kb.values.get("vpn").identifier == admin.values.get("vpn").identifier
        assert kb.tags.of(kb.values.get("vpn").id) == ("it",)
        assert kb.check().ok
    original = admin.values.original_bytes(admin.values.get("invoice").id)
    assert reader.values.original_bytes(reader.values.get("invoice").id) == original
    assert reader.sync_team().pulled == 0  # nothing new


def test_sync_and_status_json_keep_the_contract(team: Team, tmp_path: Path) -> None:
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "m.jsonl", MANUALS[:2]))
    desk = tmp_path / "desk.kvdb"
    code, out = run("--vault", str(desk), "team", "join", team.url("cal"), "--json")
    assert code == 0, out
    joined = json.loads(out)
    assert (joined["role"], joined["user"], joined["values"]) == ("curator", "cal", 2)
    code, out = run("--vault", str(desk), "team", "sync", "--json")
    assert code == 0
    synced = json.loads(out)
    assert list(synced) == ["pulled", "pushed", "last_seq", "lag_seconds"]
    assert synced["pulled"] == 0 and synced["last_seq"] == joined["last_seq"]
    code, out = run("--vault", str(desk), "team", "status", "--json")
    status = json.loads(out)
    assert code == 0 and list(status) == ["server", "user", "role", "online", "last_seq",
                                          "pending"]  # fmt: skip
    assert status["online"] is True and status["role"] == "curator" and status["pending"] == 0
    assert "password" not in status["server"]
    code, out = run("--vault", str(desk), "search", "VPN certificate", "--mode", "lexical",
                    "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["hits"][0]["title"] == "Vpn"


def test_the_password_is_never_stored_in_the_desk(team: Team, tmp_path: Path) -> None:
    kb = KnowledgeBase.open(tmp_path / "desk.kvdb")
    team.desks.append(kb)
    kb.join_team(team.url("rex") + " password=hunter2")
    assert "hunter2" not in kb.settings.get("team.server")
    assert b"hunter2" not in (tmp_path / "desk.kvdb").read_bytes()


def test_a_desk_starts_from_a_new_vault_on_an_existing_team(
    team: Team, pg_server: object, tmp_path: Path
) -> None:
    full = KnowledgeBase.open(tmp_path / "full.kvdb")
    team.desks.append(full)
    full.import_records(_records(tmp_path / "m.jsonl", MANUALS[:1]))
    with pytest.raises(TeamError, match="already holds documents"):
        full.join_team(team.url())
    assert full.team is None and full.values.count() == 1
    team.server.admin("CREATE DATABASE not_a_team")
    try:
        empty = KnowledgeBase.open(tmp_path / "empty.kvdb")
        team.desks.append(empty)
        with pytest.raises(TeamError, match="kvdesk team create"):
            empty.join_team(team.server.conninfo("not_a_team"))
    finally:
        team.server.admin("DROP DATABASE not_a_team WITH (FORCE)")


def test_roles_are_enforced_by_the_server_and_said_plainly(team: Team, tmp_path: Path) -> None:
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "m.jsonl", MANUALS))
    reader = team.desk("reader", "rex")
    curator = team.desk("curator", "cal")
    with pytest.raises(TeamRoleError, match=r"^your role \(reader\) cannot change tags$"):
        reader.set_tag("printer", "hardware")
    with pytest.raises(TeamRoleError, match=r"your role \(curator\) cannot import documents"):
        curator.import_records(_records(tmp_path / "n.jsonl", [("new", "new text")]))
    with pytest.raises(TeamRoleError, match=r"your role \(reader\) cannot change golden sets"):
        reader.golden.add_case("smoke", "paper jam", "printer")
    curator.set_tag("printer", "hardware")
    curator.golden.add_case("smoke", "paper jam", "printer")
    assert _server_count(team, "SELECT count(*) FROM value") == 4
    assert _server_count(team, "SELECT count(*) FROM golden_judgement") == 1
    # The server itself refuses: a reader's own SQL cannot curate, only read.
    with team.db("rex") as db:
        assert db.conn.execute("SELECT count(*) FROM value").fetchone()[0] == 4
        for sql in ("INSERT INTO tag(name) VALUES ('x')", "DELETE FROM value",
                    "UPDATE version SET text = 'forged'", "DELETE FROM change_log"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.conn.execute(sql)
    with team.db("nemo") as db, pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.conn.execute("SELECT count(*) FROM value")
    reader.sync_team()
    assert reader.tags.of(reader.values.get("printer").id) == ("hardware",)
    assert [s.name for s in reader.golden.list_sets()] == ["smoke"]


def test_only_an_admin_grants_roles(team: Team) -> None:
    admin = team.desk("admin", "ann")
    curator = team.desk("curator", "cal")
    with pytest.raises(TeamRoleError, match=r"your role \(curator\) cannot grant roles"):
        curator.team.grant("rex", "admin")  # type: ignore[union-attr]
    with pytest.raises(TeamError, match="no user ghost"):
        admin.team.grant("ghost", "reader")  # type: ignore[union-attr]
    code, _ = run("--vault", str(team.root / "admin.kvdb"), "team", "grant", "nemo", "curator")
    assert code == 0
    nemo = team.desk("nemo", "nemo")
    assert nemo.team.role() == "curator"  # type: ignore[union-attr]
    admin.team.grant("nemo", "reader")  # type: ignore[union-attr]
    assert team.open("nemo").team.role() == "reader"  # type: ignore[union-attr]
    with team.db("cal") as db, pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.conn.execute("SELECT kvdesk_grant('cal', 'admin')")


def test_pilot_sessions_reach_the_server_and_a_curator_reports_every_desk(
    team: Team, tmp_path: Path
) -> None:
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "m.jsonl", MANUALS))
    reader = team.desk("reader", "rex")
    curator = team.desk("curator", "cal")
    for kb, team_label in ((reader, "front desk"), (curator, "finance")):
        kb.pilot.configure(enabled=True, user="local-name", team=team_label)
        session = kb.pilot.start_session()
        result = kb.search("paper jam printer", mode="lexical")
        kb.pilot.record_search(session, result.query, result)
        kb.pilot.mark(session, "found", result.hits[0].value_id)
        assert kb.team.pending() == 1  # type: ignore[union-attr]
        assert kb.sync_team().pushed == 1
        assert kb.team.pending() == 0  # type: ignore[union-attr]
    assert reader.sync_team().pushed == 0  # delivered once
    source, note = curator.team_pilot()
    report = pilot_report(source)
    # Users are the server logins, not a label a desk could choose.
    assert set(report.per_user) == {"rex", "cal"} and note == ""
    assert set(report.per_team) == {"front desk", "finance"}
    assert report.overall.sessions == 2 and report.overall.found == 2
    mine, note = reader.team_pilot()
    assert "reader" in note and pilot_report(mine).overall.sessions == 1
    code, out = run("--vault", str(team.root / "curator.kvdb"), "pilot", "report", "--json")
    assert code == 0 and set(json.loads(out)["per_user"]) == {"rex", "cal"}


def test_a_tag_change_is_recorded_with_who_and_when(team: Team, tmp_path: Path) -> None:
    admin = team.desk("admin", "ann")
    admin.import_records(_records(tmp_path / "m.jsonl", MANUALS))
    cal, cora = team.desk("cal", "cal"), team.desk("cora", "cora")
    cal.set_tag("vpn", "it", "accepted")
    cora.set_tag("vpn", "it", "rejected")
    cal.sync_team()
    value_id = cal.values.get("vpn").id
    assert cal.tags.of(value_id) == () and cal.tags.of(value_id, "rejected") == ("it",)
    tag_id = _server_count(team, "SELECT id FROM tag WHERE name = 'it'")
    with team.db() as db:
        history = ChangeLog(db).history("value_tag", {"value_id": value_id, "tag_id": tag_id})
    # Each change is logged once, with who made it, what it set and when (sealing the row
    # with its digest is not a change of its own).
    said = [(c.actor, (c.detail or {}).get("state"), c.at) for c in history]
    assert [(who, state) for who, state, _ in said] == [("cal", "accepted"), ("cora", "rejected")]
    assert said[0][2] < said[1][2]


def test_commands_on_a_vault_that_is_not_a_desk_say_so(tmp_path: Path) -> None:
    vault = tmp_path / "alone.kvdb"
    KnowledgeBase.open(vault).close()
    for action in ("sync", "status"):
        code, _ = run("--vault", str(vault), "team", action)
        assert code == 1
    with KnowledgeBase.open(vault) as kb, pytest.raises(KvdeskError, match="not a desk"):
        kb.sync_team()


def test_a_curator_switches_the_pilot_log_on_for_every_desk(team: Team) -> None:
    reader = team.desk("reader", "rex")
    code, _ = run("--vault", str(team.root / "reader.kvdb"), "pilot", "on")
    assert code == 0 and reader.pilot.enabled  # on this desk only: a reader cannot share it
    team.desk("curator", "cal")
    curator_vault = str(team.root / "curator.kvdb")
    assert run("--vault", curator_vault, "pilot", "off")[0] == 0
    reader.sync_team()
    assert not reader.pilot.enabled  # the team's setting wins at the next sync
    assert run("--vault", curator_vault, "pilot", "on")[0] == 0
    late = team.desk("late", "rex")
    assert late.pilot.enabled  # a desk joining later starts with the team's settings
