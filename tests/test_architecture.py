"""The folder layout is the architecture: kvdesk.core (and the CLI) never import Qt."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "lint-imports"),
            "--config",
            str(ROOT / "pyproject.toml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout and "BROKEN" not in result.stdout


def test_core_modules_never_mention_qt() -> None:
    """A belt to import-linter's braces: also catches imports hidden in functions."""
    offenders = []
    for path in sorted((ROOT / "kvdesk" / "core").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(
                n.split(".")[0] in ("PySide6", "shiboken6") or n.startswith("kvdesk.ui")
                for n in names
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_core_imports_without_qt_installed() -> None:
    """The core and the CLI load in a process where PySide6 cannot be imported at all."""
    code = (
        "import sys; sys.modules['PySide6'] = None; sys.modules['shiboken6'] = None\n"
        "import kvdesk.cli.main, kvdesk.core.knowledge_base, kvdesk.core.search.retrieval\n"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.stdout.strip() == "ok", result.stderr


# Each table belongs to one store module: every SQL statement that names it lives there.
TABLE_OWNERS = {
    "kvdesk/core/vault/values.py": (
        "blob",
        "value",
        "version",
        "source",
        "value_current",
        "skipped_source",
    ),
    "kvdesk/core/tags/store.py": ("tag", "value_tag", "tag_rule"),
    "kvdesk/core/keys/store.py": ("key_set", "passage", "keyed"),
    "kvdesk/core/keys/learned.py": ("learned_key",),
    "kvdesk/core/settings.py": ("setting",),
    "kvdesk/core/golden/store.py": ("golden_set", "golden_query", "golden_judgement"),
    "kvdesk/core/scans/store.py": ("ocr_page", "ocr_state"),
    "kvdesk/core/team/store.py": ("change_log",),
    "kvdesk/core/pilot/store.py": (
        "pilot_session", "pilot_query", "pilot_hit", "pilot_open", "pilot_outbox",
    ),
}
_SQL_VERB = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP)\b")
_TABLE_REF = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE(?: IF NOT EXISTS)?|VIEW|INDEX \w+ ON)\s+(\w+)"
)


def _sql_strings(path: Path) -> list[tuple[int, str]]:
    """String literals (adjacent parts and f-string parts joined) that look like SQL."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = " ".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
        if text and _SQL_VERB.search(text):
            out.append((node.lineno, text))
    return out


def test_each_table_is_named_in_sql_only_by_its_owner() -> None:
    owner_of = {table: owner for owner, tables in TABLE_OWNERS.items() for table in tables}
    offenders = []
    for path in sorted((ROOT / "kvdesk").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line, sql in _sql_strings(path):
            for table in _TABLE_REF.findall(sql):
                owner = owner_of.get(table.lower())
                if owner is not None and owner != rel:
                    offenders.append(f"{rel}:{line} names {table} (owner: {owner})")
    assert offenders == []


def test_the_ownership_test_sees_sql() -> None:
    """The scanner finds table names in the owners' own SQL (so an empty offender list means
    something)."""
    seen = {
        table.lower()
        for owner in TABLE_OWNERS
        for _, sql in _sql_strings(ROOT / owner)
        for table in _TABLE_REF.findall(sql)
    }
    assert {t for tables in TABLE_OWNERS.values() for t in tables} <= seen


def test_ui_never_imports_tantivy_or_the_core_internals() -> None:
    """The GUI asks the core (highlight spans, analyzers) instead of rebuilding its pieces."""
    offenders = []
    for path in sorted((ROOT / "kvdesk" / "ui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in ("tantivy", "onnxruntime", "sqlite3") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
