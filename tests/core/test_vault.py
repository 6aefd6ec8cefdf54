"""The vault: creation, schema, permissions, the writer lock, integrity checks."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kvdesk.core.errors import NotFoundError, VaultBusyError, VaultFormatError
from kvdesk.core.vault.records import ValueContent
from kvdesk.core.vault.vault import SCHEMA_VERSION, Vault


def _add(vault: Vault, data: bytes, title: str = "t", text: str = "hello") -> tuple[int, str]:
    with vault.transaction() as tx:
        content = ValueContent(data, "text/plain", title, text, metadata={"k": 1})
        return vault.values.create_value(tx, content)


def test_new_vault_is_private_wal_and_versioned(vault_path: Path) -> None:
    with Vault.open(vault_path) as vault:
        _add(vault, b"x")
        conn = vault.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert stat.S_IMODE(os.stat(vault_path).st_mode) == 0o600
        wal = Path(str(vault_path) + "-wal")
        assert wal.exists() and stat.S_IMODE(os.stat(wal).st_mode) == 0o600


def test_identifiers_are_short_stable_and_resolvable(vault_path: Path) -> None:
    with Vault.open(vault_path) as vault:
        first = _add(vault, b"one")
        second = _add(vault, b"two")
        assert first[1] == "DOC-1" and second[1] == "DOC-2"
        assert vault.values.resolve("doc-2") == second[0]
        with pytest.raises(NotFoundError):
            vault.values.resolve("DOC-99")
    with Vault.open(vault_path) as again:
        assert again.values.get("DOC-1").identifier == "DOC-1"


def test_versions_keep_earlier_bytes(vault_path: Path) -> None:
    with Vault.open(vault_path) as vault:
        value_id, _ = _add(vault, b"version one")
        with vault.transaction() as tx:
            vault.values.add_version(
                tx, value_id, ValueContent(b"version two", "text/plain", "t2", "v2")
            )
        assert vault.values.original_bytes(value_id) == b"version two"
        assert vault.values.original_bytes(value_id, 1) == b"version one"
        assert [v.version for v in vault.values.versions(value_id)] == [1, 2]
        assert vault.values.get(value_id).title == "t2"


def test_failed_transaction_leaves_nothing(vault_path: Path) -> None:
    with Vault.open(vault_path) as vault:
        with pytest.raises(RuntimeError):
            with vault.transaction() as tx:
                vault.values.create_value(tx, ValueContent(b"a", "text/plain", "a", "a"))
                raise RuntimeError("boom")
        assert vault.values.count() == 0
        assert vault.check().ok


def test_check_detects_corrupted_bytes(vault_path: Path) -> None:
    with Vault.open(vault_path) as vault:
        _add(vault, b"precious")
        before = vault.check()
        assert before.ok and before.values == 1
        vault.conn.execute("UPDATE blob SET data = ?", (b"tampered",))
        after = vault.check()
        assert not after.ok
        assert any("do not match" in p for p in after.problems)


def test_values_digest_is_order_and_content_sensitive(tmp_path: Path) -> None:
    with Vault.open(tmp_path / "a.kvdb") as a, Vault.open(tmp_path / "b.kvdb") as b:
        _add(a, b"1")
        _add(a, b"2")
        _add(b, b"2")
        _add(b, b"1")
        assert a.check().values_digest != b.check().values_digest


def test_not_a_vault_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.kvdb"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(VaultFormatError):
        Vault.open(junk)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE x(a)")
    conn.commit()
    conn.close()
    with pytest.raises(VaultFormatError, match="not a kvdesk vault"):
        Vault.open(other)
    assert junk.read_bytes().startswith(b"this is not sqlite")


def test_newer_schema_is_refused(vault_path: Path) -> None:
    Vault.open(vault_path).close()
    conn = sqlite3.connect(vault_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(VaultFormatError, match="newer kvdesk"):
        Vault.open(vault_path)


def test_older_vault_is_migrated_keeping_its_pilot_log(vault_path: Path) -> None:
    """A schema-3 vault (pilot queries without match columns) opens, gains them, keeps its rows."""
    with Vault.open(vault_path) as vault:
        with vault.transaction() as tx:
            tx.execute(
                "INSERT INTO pilot_session(started_at, user, team)"
                " VALUES ('2026-01-05T09:00:00+00:00', 'u', 't')"
            )
            tx.execute(
                "INSERT INTO pilot_query(session_id, seq, query, mode, at, hit_count, confident)"
                " VALUES (1, 1, 'old query', 'hybrid', '2026-01-05T09:00:00+00:00', 3, 1)"
            )
    conn = sqlite3.connect(vault_path)
    conn.execute("ALTER TABLE pilot_query DROP COLUMN lexical_match")
    conn.execute("ALTER TABLE pilot_query DROP COLUMN tag_match")
    conn.execute("DROP VIEW value_current")  # schema 5
    conn.execute("ALTER TABLE version DROP COLUMN digest")  # schema 6
    conn.execute("DELETE FROM setting WHERE key = 'vault.id'")  # schema 6
    conn.execute("ALTER TABLE value DROP COLUMN digest")  # schema 7
    conn.execute("ALTER TABLE tag DROP COLUMN digest")  # schema 7
    conn.execute("ALTER TABLE value_tag DROP COLUMN digest")  # schema 7
    conn.execute("DROP TABLE IF EXISTS skipped_source")  # schema 7
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    with Vault.open(vault_path) as vault:
        assert vault.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        row = vault.conn.execute(
            "SELECT query, confident, lexical_match, tag_match FROM pilot_query"
        ).fetchone()
        assert tuple(row) == ("old query", 1, None, None)


def test_second_writer_process_gets_busy_and_readers_do_not_block(vault_path: Path) -> None:
    with Vault.open(vault_path) as vault:
        _add(vault, b"existing")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from kvdesk.core.vault.vault import Vault
                v = Vault.open({str(vault_path)!r})
                with v.writing():
                    with v.transaction() as tx:
                        tx.execute("UPDATE value SET title = 'changing'")
                        print("holding", flush=True)
                        sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with Vault.open(vault_path) as second:
            # readers see the last committed state, without waiting
            assert second.values.get("DOC-1").title == "t"
            with pytest.raises(VaultBusyError, match="vault is busy"):
                with second.transaction():
                    pass
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=20)
        assert holder.stdout is not None
        holder.stdout.close()
    with Vault.open(vault_path) as vault:
        assert vault.values.get("DOC-1").title == "changing"


def test_schema_version_is_the_last_step_of_the_stores() -> None:
    from kvdesk.core.schema import all_steps

    assert SCHEMA_VERSION == max(step.version for step in all_steps())
    assert {step.version for step in all_steps()} == set(range(1, SCHEMA_VERSION + 1))


def test_upgrade_digests_what_is_stored_and_check_then_sees_changed_text(
    vault_path: Path,
) -> None:
    """A schema-5 vault gains version digests on open; a later change to text is reported."""
    with Vault.open(vault_path) as vault:
        value_id, ident = _add(vault, b"bytes", title="Salary bands", text="the real text")
    conn = sqlite3.connect(vault_path)
    conn.execute("DROP VIEW value_current")
    conn.execute("ALTER TABLE version DROP COLUMN digest")
    conn.execute("ALTER TABLE value DROP COLUMN digest")  # schema 7
    conn.execute("ALTER TABLE tag DROP COLUMN digest")  # schema 7
    conn.execute("ALTER TABLE value_tag DROP COLUMN digest")  # schema 7
    conn.execute("DROP TABLE IF EXISTS skipped_source")  # schema 7
    conn.execute(
        "CREATE VIEW value_current AS SELECT v.*, ver.sha256 FROM value v JOIN version ver"
        " ON ver.value_id = v.id AND ver.version = v.current_version"
    )
    conn.execute("PRAGMA user_version = 5")
    conn.commit()
    conn.close()
    with Vault.open(vault_path) as vault:
        assert vault.check().ok
        assert vault.values.verify(value_id) is None
    conn = sqlite3.connect(vault_path)
    conn.execute("UPDATE version SET text = 'forged text' WHERE value_id = ?", (value_id,))
    conn.commit()
    conn.close()
    with Vault.open(vault_path) as vault:
        report = vault.check()
        assert not report.ok
        assert any(p.startswith(f"{ident}: the stored text") for p in report.problems)
        assert vault.values.verify(value_id) is not None


def test_invalid_utf8_in_stored_text_reads_as_replacement_and_is_reported(
    vault_path: Path,
) -> None:
    with Vault.open(vault_path) as vault:
        value_id, ident = _add(vault, b"bytes", title="Title", text="caf\u00e9 menu")
    conn = sqlite3.connect(vault_path)
    conn.execute(
        "UPDATE version SET text = CAST(? AS TEXT) WHERE value_id = ?",
        (b"caf\xc3 menu", value_id),
    )
    conn.commit()
    conn.close()
    with Vault.open(vault_path) as vault:
        assert vault.values.text(value_id) == "caf\ufffd menu"
        assert vault.values.get(ident).identifier == ident
        assert any(p.startswith(ident) for p in vault.check().problems)


def test_check_sees_a_changed_date_or_place_of_a_value(vault_path: Path) -> None:
    """The value row itself (identifier, path, state, dates) is covered by a digest too."""
    with Vault.open(vault_path) as vault:
        _add(vault, b"one")
        _add(vault, b"two")
    conn = sqlite3.connect(vault_path)
    conn.execute("UPDATE value SET updated_at = '2026%12-03' WHERE id = 1")
    conn.execute("UPDATE value SET source_path = CAST('/tmp/Kvdesk' AS BLOB) WHERE id = 2")
    conn.commit()
    conn.close()
    with Vault.open(vault_path) as vault:
        problems = vault.check().problems
    assert any(p.startswith("DOC-1: its identity") for p in problems)
    assert any(p.startswith("DOC-2: its identity") for p in problems)


def test_check_sees_a_changed_tag_row(vault_path: Path) -> None:
    """A flipped byte in a tag row (its date, state or which tag) is reported, by document."""
    from kvdesk.core.tags.store import TagState, TagStore

    with Vault.open(vault_path) as vault:
        value_id, ident = _add(vault, b"one")
        with vault.transaction() as tx:
            TagStore(vault).set_state(tx, value_id, "finance", TagState.ACCEPTED, "me")
        assert vault.check().ok
    conn = sqlite3.connect(vault_path)
    conn.execute("UPDATE value_tag SET at = '2026%12-03T00:00:00'")
    conn.commit()
    conn.close()
    with Vault.open(vault_path) as vault:
        assert any(p.startswith(f"{ident}: a tag on it changed") for p in vault.check().problems)
