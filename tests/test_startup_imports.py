"""Start-up stays light: the command line and a lexical search import no heavy module.

Not a timing test (bench/bench_startup.py measures): it guards what a fresh process loads,
since one stray top-level import of onnxruntime, PostgreSQL's driver or Qt costs a user
0.1–0.5 s on every ``kvdesk search``. Also: the start-up shortcut past the full keys check
(``in-step.json``) never hides a change made to the vault behind the keys' back.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.paths import keys_dir_for

HEAVY = ("onnxruntime", "torch", "cv2", "rapidocr", "psycopg", "PySide6", "tokenizers", "PIL")
#: kvdesk's own: every document extractor and the OCR front end (~20 ms; only imports read them).
HEAVY += ("kvdesk.core.extract",)

_REPORT = """
import json, sys
heavy = set(json.loads(sys.argv[1]))
print(json.dumps(sorted(({m.split(".")[0] for m in sys.modules} | set(sys.modules)) & heavy)))
"""

_LEXICAL_SEARCH = """
import io, json, sys
from kvdesk.cli.main import main
out = io.StringIO()
code = main(["--vault", sys.argv[2], "search", "--mode", "lexical", "--json", "pears"], out)
assert code == 0, code
print(json.dumps([h["title"] for h in json.loads(out.getvalue())["hits"]]))
"""


def _run(code: str, *args: str) -> list[str]:
    """Run ``code`` then the report in a fresh interpreter; its output lines."""
    env = dict(os.environ, ORT_DISABLE_TELEMETRY="1")
    done = subprocess.run(
        [sys.executable, "-c", code + _REPORT, json.dumps(HEAVY), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def _vault(tmp_path: Path) -> Path:
    """A vault with lexical keys only (as ``import --no-dense`` leaves it)."""
    records = tmp_path / "records.jsonl"
    rows = [
        {"_id": "menu", "title": "Canteen menu", "text": "Apples and pears on Monday."},
        {"_id": "memo", "title": "Budget memo", "text": "The travel budget for March."},
    ]
    records.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = tmp_path / "vault.kvdb"
    with KnowledgeBase.open(path) as kb:
        assert len(kb.import_records(records).imported) == 2
    return path


def test_the_command_line_entry_imports_nothing_heavy() -> None:
    assert _run("import kvdesk.cli.main\n") == ["[]"]


def test_a_lexical_search_from_the_command_line_imports_nothing_heavy(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    titles, heavy = _run(_LEXICAL_SEARCH, str(vault))
    assert json.loads(titles) == ["Canteen menu"]  # it really searched
    assert heavy == "[]"


def test_a_lexical_search_through_the_api_imports_nothing_heavy(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    code = (
        "import sys\n"
        "from kvdesk.core.knowledge_base import KnowledgeBase\n"
        "with KnowledgeBase.open(sys.argv[2], create=False) as kb:\n"
        "    hits = kb.search('budget', mode='lexical').hits\n"
        "assert [h.title for h in hits] == ['Budget memo']\n"
    )
    assert _run(code, str(vault)) == ["[]"]


def _titles(path: Path, query: str) -> list[str]:
    with KnowledgeBase.open(path, create=False) as kb:
        return [hit.title for hit in kb.search(query, mode="lexical").hits]


def _tag_behind_the_keys_back(path: Path) -> None:
    """What a kill between "store the tag" and "write its keys" leaves behind."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO tag(name) VALUES ('kitchen')")
        conn.execute(
            "INSERT INTO value_tag(value_id, tag_id, state, actor, at)"
            " VALUES (1, 1, 'accepted', 'test', '2026-01-01T00:00:00+00:00')"
        )
    conn.close()  # the last connection: checkpointed into the database file, log removed


def test_keys_known_in_step_skip_the_full_check_until_the_vault_changes(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    in_step = keys_dir_for(vault) / "lexical" / "in-step.json"
    assert _titles(vault, "pears") == ["Canteen menu"]  # a full check: the keys are in step
    assert in_step.is_file()
    recorded = in_step.read_text(encoding="utf-8")
    assert _titles(vault, "pears") == ["Canteen menu"]
    assert in_step.read_text(encoding="utf-8") == recorded  # nothing changed: no new check
    _tag_behind_the_keys_back(vault)
    assert _titles(vault, "tag:kitchen") == ["Canteen menu"]  # the change was caught up
    assert _titles(vault, "tag:kitchen") == ["Canteen menu"]


def test_a_change_still_in_the_write_ahead_log_is_caught_up(tmp_path: Path) -> None:
    vault = _vault(tmp_path)
    assert _titles(vault, "pears") == ["Canteen menu"]
    holder = sqlite3.connect(vault)  # keeps the log from being checkpointed away
    holder.execute("SELECT count(*) FROM value").fetchone()
    try:
        _tag_behind_the_keys_back(vault)
        assert Path(f"{vault}-wal").stat().st_size > 0
        assert _titles(vault, "tag:kitchen") == ["Canteen menu"]
    finally:
        holder.close()
