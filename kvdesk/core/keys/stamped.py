"""Counts over the whole vault, saved with the stamp of the vault's files they were taken on.

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

from kvdesk.core.keys.lexical import vault_files_stamp


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
        record = {"vault": files, "key": key, "counts": counts}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:  # a read-only or missing key folder: count again next time
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return counts
