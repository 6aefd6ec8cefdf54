"""Dense key sets: recorded dims and absolute model paths, sha checks, private key folder, A/B."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from kvdesk.core.errors import KvdeskError
from kvdesk.core.knowledge_base import KnowledgeBase
from kvdesk.core.paths import keys_dir_for
from tests.tiny_model import write_model_folder

TEXTS = {
    "a.txt": "the man is eating bread in the kitchen",
    "b.txt": "the girl is carrying a baby to the park",
    "c.txt": "kvdesk keeps the food notes",
}


def _vault(tmp_path: Path, model: Path | str = "default") -> KnowledgeBase:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    for name, text in TEXTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    kb = KnowledgeBase.open(tmp_path / "v.kvdb", model=model)
    kb.import_paths([docs])
    return kb


def test_model_folder_without_dim_records_the_real_dim(tmp_path: Path) -> None:
    first = write_model_folder(tmp_path / "first")
    second = write_model_folder(tmp_path / "nodim", dim=None, seed=3)
    assert "dim" not in json.loads((second / "kvdesk-model.json").read_text())
    with _vault(tmp_path, first) as kb:
        kb.build_dense_keys()
        key_set = kb.rekey(second)
        assert key_set.params["dim"] == 32
        assert kb._keys.active_key_set() == key_set
        result = kb.search("man eating bread", mode="dense", k=3)
        assert result.hits and result.hits[0].explanation.dense is not None
    with KnowledgeBase.open(tmp_path / "v.kvdb") as again:  # a fresh process loads it too
        assert again.search("girl baby", mode="hybrid", k=2).hits


def test_relative_model_folder_is_stored_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_model_folder(tmp_path / "models" / "tiny")
    with _vault(tmp_path) as kb:
        kb._vault.conn.execute("SELECT 1")
    monkeypatch.chdir(tmp_path / "models")
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        key_set = kb.rekey("./tiny")
        assert key_set.params["source"] == str((tmp_path / "models" / "tiny").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        assert kb.search("baby", mode="dense", k=2).hits


def test_changed_tokenizer_is_refused(tmp_path: Path) -> None:
    model = write_model_folder(tmp_path / "tiny")
    with _vault(tmp_path, model) as kb:
        kb.build_dense_keys()
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    tok.add_tokens(["brandnewtoken"])
    tok.save(str(model / "tokenizer.json"))
    with KnowledgeBase.open(tmp_path / "v.kvdb", model=model) as kb:
        key_set = kb._keys.active_key_set()
        assert key_set is not None
        with pytest.raises(KvdeskError, match="tokenizer"):
            kb._keys.embedder_for(key_set)


def test_key_folder_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with _vault(tmp_path) as kb:
            assert kb.search("bread", mode="lexical").hits
    finally:
        os.umask(old)
    folder = keys_dir_for(tmp_path / "v.kvdb")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # An existing, too-open folder is tightened on the next open.
    os.chmod(folder, 0o755)
    with KnowledgeBase.open(tmp_path / "v.kvdb") as kb:
        kb.search("bread", mode="lexical")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_candidate_key_set_activate_switch_back_and_drop(tmp_path: Path) -> None:
    a = write_model_folder(tmp_path / "a")
    b = write_model_folder(tmp_path / "b", seed=5)
    with _vault(tmp_path, a) as kb:
        kb.build_dense_keys()
        old = kb._keys.active_key_set()
        assert old is not None
        digest = kb.check().values_digest
        candidate = kb.rekey(b, activate=False)
        assert candidate.state == "building" and candidate.id != old.id
        assert kb._keys.active_key_set() == old  # search keeps the old keys
        assert kb._keys.dense_status(candidate).ready
        passages = kb._keys.passage_count(candidate)
        assert passages >= len(TEXTS)

        switched = kb.key_sets.activate(candidate.id)
        assert switched.state == "active"
        assert kb.search("girl", mode="dense").hits
        states = {k.id: k.state for k in kb.key_sets.list()}
        assert states[old.id] == "retired"

        # Switching back needs no rebuild: the retired set kept its passages.
        kb._keys.embedder_for = None  # type: ignore[assignment,method-assign]
        back = kb.key_sets.activate(old.id)
        assert back.state == "active" and kb._keys.active_key_set() == back
        del kb._keys.embedder_for
        assert kb.check().values_digest == digest

        with pytest.raises(KvdeskError, match="active"):
            kb.key_sets.drop(old.id)
        assert kb.key_sets.drop(candidate.id) == passages
        assert [k.id for k in kb.key_sets.list()] == [old.id]
        with pytest.raises(KvdeskError):
            kb.key_sets.activate(candidate.id)


def test_incomplete_key_set_is_not_activated(tmp_path: Path) -> None:
    a = write_model_folder(tmp_path / "a")
    b = write_model_folder(tmp_path / "b", seed=5)
    with _vault(tmp_path, a) as kb:
        kb.build_dense_keys()
        old = kb._keys.active_key_set()
        candidate = kb.rekey(b, activate=False)
        kb._vault.conn.execute("DELETE FROM keyed WHERE key_set_id = ?", (candidate.id,))
        with pytest.raises(KvdeskError, match="complete it first"):
            kb.key_sets.activate(candidate.id)
        assert kb._keys.active_key_set() == old


def test_a_search_that_rebuilds_stale_keys_hands_the_index_writer_back(tmp_path: Path) -> None:
    """After catching up (here: the lexical index was deleted), search keeps no writer, so
    another kvdesk process can still import."""
    import shutil

    from kvdesk.core.keys.lexical import LexicalIndex

    doc = tmp_path / "a.txt"
    doc.write_text("printer jam on floor three")
    vault = tmp_path / "v.kvdb"
    with KnowledgeBase.open(vault) as kb:
        kb.import_paths([doc])
    shutil.rmtree(keys_dir_for(vault) / "lexical")
    with KnowledgeBase.open(vault) as kb:
        assert [h.identifier for h in kb.search("printer", mode="lexical").hits] == ["DOC-1"]
        other_writer = LexicalIndex.open(keys_dir_for(vault) / "lexical", writable=True)
        other_writer.close()


def test_dense_status_is_counted_once_per_vault_state(tmp_path: Path) -> None:
    """A fresh process reuses the count another made on the same files; any commit recounts."""
    model = write_model_folder(tmp_path / "tiny")
    with _vault(tmp_path, model) as kb:
        kb.build_dense_keys()
        assert kb.dense_status().ready
    saved = keys_dir_for(tmp_path / "v.kvdb") / "dense-status.json"
    with KnowledgeBase.open(tmp_path / "v.kvdb", model=model) as kb:
        status = kb.dense_status()
        assert (status.keyed_values, status.total_values, status.ready) == (3, 3, True)
    assert json.loads(saved.read_text())["counts"] == {"keyed": 3, "total": 3}
    # A value added by another process: the saved count no longer matches the files.
    (tmp_path / "docs" / "d.txt").write_text("a fourth note about bread", encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "v.kvdb", model=model) as writer:
        writer.import_paths([tmp_path / "docs" / "d.txt"])
    with KnowledgeBase.open(tmp_path / "v.kvdb", model=model) as kb:
        status = kb.dense_status()
        assert (status.keyed_values, status.total_values, status.ready) == (3, 4, False)
    # A damaged record is recounted, never trusted.
    saved.write_text('{"vault": [1], "counts": "x"', encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "v.kvdb", model=model) as kb:
        assert kb.dense_status().total_values == 4


def test_a_saved_count_is_used_only_for_the_same_files_and_key(tmp_path: Path) -> None:
    from kvdesk.core.keys.stamped import counted

    vault = tmp_path / "v.db"
    vault.write_bytes(b"x" * 10)
    calls: list[int] = []

    def count() -> dict[str, int]:
        calls.append(1)
        return {"n": len(calls)}

    assert counted(tmp_path, "c", vault, 1, count) == {"n": 1}
    assert counted(tmp_path, "c", vault, 1, count) == {"n": 1}  # saved, not counted again
    assert counted(tmp_path, "c", vault, 2, count) == {"n": 2}  # another key
    with vault.open("ab") as f:  # a commit changes the files
        f.write(b"y")
    assert counted(tmp_path, "c", vault, 2, count) == {"n": 3}
    assert len(calls) == 3
    assert counted(tmp_path / "missing", "c", vault, 2, count) == {"n": 4}  # cannot save: fine
