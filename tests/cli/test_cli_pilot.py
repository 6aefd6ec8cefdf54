"""``kvdesk pilot`` and ``kvdesk golden`` through the real command line and a real vault: the
text report's per-team failed queries, ``golden add --session`` from a pilot session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.pilot.log import record_cli_search
from tests.cli.runner import run
from tests.core.test_golden_store import write_beir


@pytest.fixture
def vault(tmp_path: Path) -> str:
    path = str(tmp_path / "v.kvdb")
    beir = write_beir(tmp_path / "tinybeir")
    code, _ = run("--vault", path, "import", "--records", str(beir / "corpus.jsonl"),
                  "--no-dense", "-q")  # fmt: skip
    assert code == 0
    return path


def cli_search(vault: str, query: str) -> int | None:
    """What ``kvdesk search --pilot`` does after its search."""
    with KnowledgeBase.open(vault) as kb:
        return record_cli_search(kb, kb.search(query, mode="lexical"))


def test_pilot_on_search_mark_report(vault: str, tmp_path: Path) -> None:
    assert cli_search(vault, "printer") is None  # off by default: nothing recorded
    code, out = run("--vault", vault, "pilot", "on", "--user", "ann", "--team", "ops", "--json")
    assert code == 0
    assert json.loads(out) == {
        "enabled": True, "user": "ann", "team": "ops", "stale_minutes": 30, "sessions": 0,
    }  # fmt: skip
    found = cli_search(vault, "printer jams")
    failed = cli_search(vault, "quantum entanglement")
    assert (found, failed) == (1, 2)
    code, out = run("--vault", vault, "pilot", "mark", "1", "found", "--doc", "d1", "--json")
    assert code == 0 and json.loads(out)["outcome"] == "found"
    assert run("--vault", vault, "pilot", "mark", "2", "notfound")[0] == 0

    csv_file = tmp_path / "report.csv"
    code, out = run("--vault", vault, "pilot", "report", "--json", "--csv", str(csv_file))
    assert code == 0
    report = json.loads(out)
    assert list(report)[:7] == [
        "sessions", "success_rate", "abandon_rate", "zero_result_rate", "mrr",
        "median_seconds_to_find", "top_failed",
    ]  # fmt: skip
    assert report["sessions"] == 2 and report["success_rate"] == 0.5
    assert report["abandon_rate"] == 0.0
    assert report["zero_result_rate"] == 0.5  # "quantum entanglement" matches nothing
    assert report["mrr"] == 1.0  # d1 was the top hit of "printer jams"
    assert report["median_seconds_to_find"] >= 0
    assert [f["query"] for f in report["top_failed"]] == ["quantum entanglement"]
    assert list(report["per_team"]) == ["ops"]
    assert csv_file.read_text(encoding="utf-8").startswith("scope,bucket,sessions")

    code, out = run("--vault", vault, "pilot", "report", "--since", "2999-01-01", "--json")
    assert json.loads(out)["sessions"] == 0 and json.loads(out)["success_rate"] is None
    code, out = run("--vault", vault, "pilot", "report")
    assert code == 0 and "success rate        50.0%" in out and "quantum entanglement" in out

    export = tmp_path / "log.json"
    assert run("--vault", vault, "pilot", "export", str(export))[0] == 0
    assert len(json.loads(export.read_text(encoding="utf-8"))["sessions"]) == 2
    code, out = run("--vault", vault, "pilot", "clear")
    assert code == 0 and "removed 2" in out
    assert run("--vault", vault, "pilot", "off")[0] == 0
    assert cli_search(vault, "printer") is None


def test_pilot_errors_exit_nonzero(vault: str) -> None:
    assert run("--vault", vault, "pilot", "mark", "42", "found")[0] == 1  # no such session
    assert run("--vault", vault, "pilot", "mark", "1", "maybe")[0] == 2  # usage
    assert run("--vault", vault, "pilot")[0] == 2
    assert run("--vault", vault, "pilot", "report", "--since", "someday")[0] == 1


def test_golden_add_list_eval(vault: str, tmp_path: Path) -> None:
    beir = tmp_path / "tinybeir"
    code, out = run("--vault", vault, "golden", "add", "tiny", "--beir", str(beir), "--json")
    assert code == 0
    added = json.loads(out)
    assert (added["queries"], added["unknown_docs"], added["skipped_queries"]) == (5, 2, 1)
    code, out = run("--vault", vault, "golden", "add", "mine", "--query", "coffee", "--doc", "d4")
    assert code == 0 and "1 queries" in out
    assert run("--vault", vault, "golden", "add", "x", "--query", "coffee")[0] == 1
    assert run("--vault", vault, "golden", "add", "x", "--query", "a", "--doc", "zz")[0] == 1
    code, out = run("--vault", vault, "golden", "list", "--json")
    assert [(s["name"], s["queries"]) for s in json.loads(out)] == [("mine", 1), ("tiny", 5)]

    # No dense keys built yet: evaluation needs a key set and says so.
    code, _ = run("--vault", vault, "golden", "eval", "mine", "--mode", "lexical")
    assert code == 1
    with KnowledgeBase.open(vault) as kb:
        kb._keys.ensure_dense_key_set()  # registered, not built: evaluation reports 0 keyed
    code, out = run("--vault", vault, "golden", "eval", "mine", "--mode", "lexical", "--json")
    assert code == 0
    data = json.loads(out)
    (only,) = data["key_sets"]
    assert only["active"] and only["keyed_values"] == 0 and only["total_values"] == 5
    assert only["mrr@10"] == 1.0 and data["comparisons"] == []
    code, out = run("--vault", vault, "golden", "eval", "mine", "--mode", "lexical")
    assert code == 0 and "MRR@10 1.0000" in out and "*active*" in out


def test_search_pilot_flag_records_a_session(vault: str) -> None:
    code, out = run("--vault", vault, "search", "printer", "--mode", "lexical", "--pilot", "--json")
    assert code == 0 and json.loads(out)["pilot_session"] is None  # the log is off
    assert run("--vault", vault, "pilot", "on", "--user", "ana", "--team", "ops")[0] == 0
    code, out = run("--vault", vault, "search", "printer", "--mode", "lexical", "--pilot", "--json")
    session = json.loads(out)["pilot_session"]
    assert code == 0 and isinstance(session, int)
    first = json.loads(out)["hits"][0]["id"]
    assert run("--vault", vault, "pilot", "mark", str(session), "found", "--doc", first)[0] == 0
    code, out = run("--vault", vault, "pilot", "report", "--json")
    report = json.loads(out)
    assert report["sessions"] == 1 and report["success_rate"] == 1.0 and report["mrr"] == 1.0


def test_golden_add_from_a_session(vault: str) -> None:
    assert run("--vault", vault, "pilot", "on")[0] == 0
    sid = cli_search(vault, "printer")
    assert sid is not None
    assert run("--vault", vault, "pilot", "mark", str(sid), "notfound")[0] == 0
    code, out = run(
        "--vault", vault, "golden", "add", "fails", "--session", str(sid), "--doc", "d1", "--json"
    )
    assert code == 0
    data = json.loads(out)["set"]
    assert (data["name"], data["source"], data["queries"], data["judgements"]) == (
        "fails", "pilot", 1, 1,
    )  # fmt: skip
    # usage errors: no document, unknown session, mixed with --beir
    assert run("--vault", vault, "golden", "add", "fails", "--session", str(sid))[0] == 1
    assert run("--vault", vault, "golden", "add", "fails", "--session", "99", "--doc", "d1")[0] == 1
    assert run("--vault", vault, "golden", "add", "f", "--session", "1", "--beir", "x")[0] == 1


def test_text_report_lists_failed_queries_per_team(vault: str) -> None:
    with KnowledgeBase.open(vault) as kb:
        log = kb.pilot
        log.configure(enabled=True)
        for team, query, outcome in (
            ("ops", "printer jams", "found"),
            ("ops", "toner order", "notfound"),
            ("hr", "holiday closure", "notfound"),
        ):
            sid = log.start_session(team=team)
            log.record_search(sid, query, kb.search(query, mode="lexical"))
            log.mark(sid, outcome, kb.values.resolve("d1") if outcome == "found" else None)
    code, out = run("--vault", vault, "pilot", "report")
    assert code == 0
    team_part = out.split("per team:\n", 1)[1].splitlines()
    hr = team_part.index(next(x for x in team_part if x.strip().startswith("hr ")))
    ops = team_part.index(next(x for x in team_part if x.strip().startswith("ops ")))
    assert team_part[hr + 1].split() == ["failed", "1x", "holiday", "closure"]
    assert team_part[ops + 1].split() == ["failed", "1x", "toner", "order"]
    assert "printer jams" not in "\n".join(team_part)
