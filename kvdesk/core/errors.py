"""Errors the core raises; the CLI and GUI turn them into messages, never tracebacks."""

from __future__ import annotations


class KvdeskError(Exception):
    """Base class for every error a user may see."""


class VaultBusyError(KvdeskError):
    """Another process holds the vault's writer lock."""


class VaultFormatError(KvdeskError):
    """The file is not a kvdesk vault, or was written by a newer kvdesk."""


class NotFoundError(KvdeskError):
    """No value matches the given identifier."""


class Cancelled(KvdeskError):
    """A long operation was cancelled by the user."""


class ExtractionError(KvdeskError):
    """A document could not be read; the message says why in plain words."""
