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
from kvdesk.core.vault.vault import SCHEMA_VERSION, ValueContent, Vault


def _add(vault: Vault, data: bytes, title: str = "t", text: str = "hello") -> tuple[int, str]:
    with vault.transaction() as tx:
        content = ValueContent(data, "text/plain", title, text, metadata={"k": 1})
        return vault.create_value(tx, content)


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
        assert vault.resolve("doc-2") == second[0]
        with pytest.raises(NotFoundError):
            vault.resolve("DOC-99")
    with Vault.open(vault_path) as again:
        assert again.get("DOC-1").identifier == "DOC-1"


def test_versions_keep_earlier_bytes(vault_path: Path) -> None:
    with Vault.open(vault_path) as vault:
        value_id, _ = _add(vault, b"version one")
        with vault.transaction() as tx:
            vault.add_version(tx, value_id, ValueContent(b"version two", "text/plain", "t2", "v2"))
        assert vault.original_bytes(value_id) == b"version two"
        assert vault.original_bytes(value_id, 1) == b"version one"
        assert [v.version for v in vault.versions(value_id)] == [1, 2]
        assert vault.get(value_id).title == "t2"


def test_failed_transaction_leaves_nothing(vault_path: Path) -> None:
    with Vault.open(vault_path) as vault:
        with pytest.raises(RuntimeError):
            with vault.transaction() as tx:
                vault.create_value(tx, ValueContent(b"a", "text/plain", "a", "a"))
                raise RuntimeError("boom")
        assert vault.count() == 0
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
            assert second.get("DOC-1").title == "t"
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
        assert vault.get("DOC-1").title == "changing"
