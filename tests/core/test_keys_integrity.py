"""Keys are bound to their vault and to what they were built from; damaged keys are rebuilt.

Regression tests for "Values and keys that cannot drift apart": a key folder copied from another
vault is never served, a damaged index is set aside and rebuilt, and a change whose keys were
never written (a crash between the two) is caught up on the next open.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.paths import keys_dir_for


def _vault(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    root = tmp_path / f"{name}-docs"
    root.mkdir()
    for filename, text in files.items():
        (root / filename).write_text(text, encoding="utf-8")
    path = tmp_path / f"{name}.kvdb"
    with KnowledgeBase.open(path) as kb:
        assert len(kb.import_paths([root]).imported) == len(files)
        assert kb.search("anything", mode="lexical") is not None  # keys written and verified
    return path


def _titles(path: Path, query: str) -> list[str]:
    with KnowledgeBase.open(path, create=False) as kb:
        return [hit.title for hit in kb.search(query, mode="lexical").hits]


def _snippets(path: Path, query: str) -> list[str]:
    with KnowledgeBase.open(path, create=False) as kb:
        return [hit.snippet_html for hit in kb.search(query, mode="lexical").hits]


def test_a_key_folder_copied_from_another_vault_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    a = _vault(tmp_path, "a", {"menu.txt": "Canteen menu: apples and pears on Monday."})
    b = _vault(tmp_path, "b", {"pay.txt": "Confidential salary bands for the board."})
    shutil.rmtree(keys_dir_for(a))
    shutil.copytree(keys_dir_for(b), keys_dir_for(a))
    assert _titles(a, "salary") == []
    assert not any("Confidential" in s for s in _snippets(a, "apples"))
    assert len(_titles(a, "apples")) == 1
    set_aside = [p.name for p in tmp_path.iterdir() if ".set-aside-" in p.name]
    assert set_aside and all(name.startswith("a.kvdb.keys") for name in set_aside)


def test_keys_without_an_identity_are_checked_document_by_document(tmp_path: Path) -> None:
    """An older key folder records no vault identity: per-document fingerprints still catch
    another vault's documents under the same value ids."""
    a = _vault(tmp_path, "a", {"menu.txt": "Canteen menu: apples and pears on Monday."})
    b = _vault(tmp_path, "b", {"pay.txt": "Confidential salary bands for the board."})
    shutil.rmtree(keys_dir_for(a))
    shutil.copytree(keys_dir_for(b), keys_dir_for(a))
    (keys_dir_for(a) / "vault-identity.json").unlink()
    assert _titles(a, "salary") == []
    assert len(_titles(a, "apples")) == 1


@pytest.mark.parametrize("damage", ["empty-meta", "missing-segment", "flipped-fast", "file"])
def test_a_damaged_key_index_is_set_aside_and_rebuilt(tmp_path: Path, damage: str) -> None:
    a = _vault(tmp_path, "a", {"menu.txt": "Canteen menu: apples and pears on Monday."})
    keys = keys_dir_for(a)
    index = next(keys.glob("lexical/schema-v*"))
    if damage == "empty-meta":
        (index / "meta.json").write_text("")
    elif damage == "missing-segment":
        for part in index.iterdir():
            if part.suffix in (".idx", ".term"):
                part.unlink()
    elif damage == "flipped-fast":
        for part in index.glob("*.fast"):
            data = bytearray(part.read_bytes())
            for i in range(0, len(data), 7):
                data[i] ^= 0xFF
            part.write_bytes(bytes(data))
    else:
        shutil.rmtree(keys)
        keys.write_text("not a folder")
    with KnowledgeBase.open(a, create=False) as kb:
        hits = kb.search("apples", mode="lexical").hits
        assert [h.title for h in hits] == ["menu"]
        assert kb.key_notices() or damage == "flipped-fast"
    assert keys.is_dir()


def test_a_tag_stored_without_its_keys_is_caught_up_on_the_next_open(tmp_path: Path) -> None:
    """A kill between "store the tag" and "write its keys": the next open repairs the keys."""
    a = _vault(tmp_path, "a", {"menu.txt": "Canteen menu: apples and pears on Monday."})
    conn = sqlite3.connect(a)
    with conn:
        conn.execute("INSERT INTO tag(name) VALUES ('kitchen')")
        conn.execute(
            "INSERT INTO value_tag(value_id, tag_id, state, actor, at)"
            " VALUES (1, 1, 'accepted', 'test', '2026-01-01T00:00:00+00:00')"
        )
    conn.close()
    assert _titles(a, "tag:kitchen") == ["menu"]
