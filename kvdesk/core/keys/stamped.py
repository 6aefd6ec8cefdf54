"""What was checked or counted over the whole vault, saved with the stamp of its files.

The stamp (:func:`vault_files_stamp`) changes with every commit and costs microseconds to
read, so a record made on the same stamp spares a later process the work: the lexical index's
"keys in step" (lexical.py) and the counts below.

A search asks how many values have current meaning keys and how many scans wait to be read.
Both read every value: seconds on a million-value vault fresh from disk, before the first
answer. The next process reuses a saved count until any commit changes the vault's files
(``vault_files_stamp``); a count taken while a commit landed is not saved.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def vault_files_stamp(vault_path: Path) -> list[Any] | None:
    """A stamp of a SQLite vault's files that changes with every commit, read in microseconds.

    A commit appends frames to the write-ahead log (it grows) or restarts it (its header's
    salts change); a checkpoint rewrites the database file (its mtime, ctime and maybe size
    change; ctime also catches a copy put back with ``cp -p``); without a log, a commit writes
    the database file (its mtime and ctime). An empty or missing log holds nothing, so
    readers creating and removing one change nothing. None when the files cannot be read (then
    nothing is assumed).
    """
    try:
        # Never open() the database file itself: closing any descriptor of it releases every
        # POSIX lock this process holds on it, SQLite's included (sqlite.org/howtocorrupt.html).
        # The log is safe to read: SQLite locks the -shm file, not the -wal.
        db = os.stat(vault_path)
        stamp: list[Any] = [db.st_dev, db.st_ino, db.st_size, db.st_mtime_ns, db.st_ctime_ns]
        try:
            with open(f"{vault_path}-wal", "rb") as wal:
                size = os.fstat(wal.fileno()).st_size
                stamp += [size, wal.read(32).hex() if size else ""]
        except FileNotFoundError:
            stamp += [0, ""]
    except OSError:
        return None
    return stamp


def save_record(path: Path, record: Any) -> bool:
    """Write ``record`` as JSON to ``path`` atomically, if the folder allows: a record of
    what was checked or counted, so a later process may skip the work (never required)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return False
    return True


def counted(
    folder: Path, name: str, vault_path: Path, key: Any, count: Callable[[], dict[str, int]]
) -> dict[str, int]:
    """``count()``, or what it gave another process on the same vault files and ``key``."""
    files = vault_files_stamp(vault_path)
    path = folder / f"{name}.json"
    if files is not None:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved["vault"] == files and saved["key"] == key:
                return {str(k): int(v) for k, v in saved["counts"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # missing or damaged: count again
    counts = count()
    if files is not None and vault_files_stamp(vault_path) == files:
        # A read-only or missing key folder saves nothing: count again next time.
        save_record(path, {"vault": files, "key": key, "counts": counts})
    return counts
