"""``kvdesk golden add NAME --session SESSION --doc ID``: a pilot session's last query."""

from __future__ import annotations

import json

from tests.cli.runner import run
from tests.cli.test_cli_pilot import cli_search, vault  # noqa: F401 (fixture)


def test_golden_add_from_a_session(vault: str) -> None:  # noqa: F811
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
