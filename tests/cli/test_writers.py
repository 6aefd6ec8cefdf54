"""The app and the command line share a vault: one writer at a time, the next one waits its turn.

Regression tests for "One writer, readers never blocked": an open (idle) app never keeps the
command line from writing, and a second writer waits with a visible message instead of failing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from tests.cli.runner import run


def _vault(tmp_path: Path) -> str:
    vault = str(tmp_path / "v.kvdb")
    (tmp_path / "memo.txt").write_text("quarterly budget memo")
    assert run("--vault", vault, "import", str(tmp_path / "memo.txt"), "--no-dense")[0] == 0
    return vault


def test_an_idle_app_does_not_hold_the_key_index_writer(tmp_path: Path) -> None:
    """What the app does on open (catch up the keys) and on a tag edit hands the writer back."""
    vault = _vault(tmp_path)
    with KnowledgeBase.open(vault, create=False) as app:
        app.catch_up_keys()
        app.set_tag("DOC-1", "finance")
        (tmp_path / "new.txt").write_text("a second memo")
        code, _ = run("--vault", vault, "import", str(tmp_path / "new.txt"), "--no-dense")
        assert code == 0
        code, _ = run("--vault", vault, "tags", "accept", "DOC-2", "budget")
        assert code == 0
        assert [h.identifier for h in app.search("tag:budget", mode="lexical").hits] == ["DOC-2"]


def test_a_second_writer_waits_its_turn_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = _vault(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from kvdesk.core.vault.vault import Vault
                v = Vault.open({vault!r})
                with v.writing():
                    print("holding", flush=True)
                    time.sleep(4.5)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        code, _ = run("--vault", vault, "tags", "accept", "DOC-1", "finance")
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
        assert holder.stdout is not None
        holder.stdout.close()
    assert code == 0 and waited > 3.0
    assert "waiting for another kvdesk process" in capsys.readouterr().err
    with KnowledgeBase.open(vault, create=False) as kb:
        assert kb.tags.of(1) == ("finance",)
