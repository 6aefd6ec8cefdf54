"""Errors the core raises; the CLI and GUI turn them into messages, never tracebacks."""

from __future__ import annotations

import errno


class KvdeskError(Exception):
    """Base class for every error a user may see."""


class VaultBusyError(KvdeskError):
    """Another process holds the vault's writer lock."""


class DiskFullError(KvdeskError):
    """The disk (or quota) is full: what was committed before is kept."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the disk is full, in any layer's words."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(current).lower()
        if "disk is full" in text or "no space left" in text or "disk quota" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


class VaultFormatError(KvdeskError):
    """The file is not a kvdesk vault, or was written by a newer kvdesk."""


class NotFoundError(KvdeskError):
    """No value matches the given identifier."""


class Cancelled(KvdeskError):
    """A long operation was cancelled by the user."""


class ExtractionError(KvdeskError):
    """A document could not be read; the message says why in plain words."""


class VaultDamagedError(KvdeskError):
    """The vault file itself is damaged (a page SQLite cannot read)."""


def as_vault_damage(exc: BaseException) -> VaultDamagedError | None:
    """A clear error for a low-level read failure of a damaged vault, else None."""
    import sqlite3

    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return VaultDamagedError(
            f"the vault is damaged ({exc}); `kvdesk check` lists what is affected. Restore it"
            " from a backup, or export what can still be read."
        )
    return None
