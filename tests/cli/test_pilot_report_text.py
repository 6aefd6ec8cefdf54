"""``kvdesk pilot report`` text: per-team figures with each team's top failed queries."""

from __future__ import annotations

from kvdesk.core.knowledge_base import KnowledgeBase
from tests.cli.runner import run
from tests.cli.test_cli_pilot import vault  # noqa: F401 (fixture)


def test_text_report_lists_failed_queries_per_team(vault: str) -> None:  # noqa: F811
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
