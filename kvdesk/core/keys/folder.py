"""The key folder beside a vault: bound to that vault, set aside when damaged or foreign.

Keys are derived, so a key folder is never trusted on its own: it records the identity of the
vault it was built for, and each document's keys record a fingerprint of what they were built
from (checked by the key manager). A folder of another vault, or a file in its place, is moved
aside and the keys are rebuilt from the vault.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("kvdesk.keys")

IDENTITY_FILE = "vault-identity.json"


def key_fingerprint(
    digest: str | None, identifier: str, updated_at: str, tags: tuple[str, ...]
) -> int:
    """A 56-bit fingerprint of what a value's lexical keys are built from.

    The version digest covers the bytes' sha256, text, title, type, path and metadata; the
    identifier, date and accepted tags complete it. Keys whose fingerprint differs are rebuilt.
    """
    payload = json.dumps([digest, identifier, updated_at, list(tags)], ensure_ascii=False)
    raw = hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=7).digest()
    return int.from_bytes(raw, "big")


def _read_identity(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("vault_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it owner-only (0700), whatever the umask.

    The key folder holds document text (tantivy stores titles and bodies for snippets), so it
    must be no more readable than the vault itself.
    """
    path.mkdir(parents=True, exist_ok=True)
    try:
        if (path.stat().st_mode & 0o777) != 0o700:
            os.chmod(path, 0o700)
    except OSError:  # not ours (a shared mount): leave it; tantivy still works
        log.debug("cannot restrict %s to its owner", path, exc_info=True)


class KeyFolder:
    """One vault's key folder: claim it, record the vault's identity, set parts aside."""

    def __init__(self, directory: Path, vault_name: str, vault_id: Callable[[], str]) -> None:
        self.directory = directory
        self._vault_name = vault_name
        self._vault_id = vault_id
        self._claimed = False
        self.notices: list[str] = []

    def claim(self, *, before_move: Callable[[], None]) -> None:
        """Make sure the folder is this vault's (else set it aside; the caller rebuilds).

        ``before_move`` closes whatever holds files in the folder open.
        """
        if self._claimed:
            return
        if self.directory.exists() and not self.directory.is_dir():
            before_move()
            self.set_aside(None, "a file was in its place")
        make_private_dir(self.directory)
        recorded = _read_identity(self.directory / IDENTITY_FILE)
        mine = self._vault_id()
        if recorded is not None and mine and recorded != mine:
            before_move()
            self.set_aside(None, "it belongs to another vault")
            make_private_dir(self.directory)
        self._claimed = True

    def record_identity(self) -> None:
        """Write the vault's identity once its keys were verified against the vault."""
        mine = self._vault_id()
        target = self.directory / IDENTITY_FILE
        if not mine or _read_identity(target) == mine:
            return
        try:
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps({"vault_id": mine}), encoding="utf-8")
            os.replace(tmp, target)
        except OSError:
            log.warning("cannot record the vault identity in %s", target, exc_info=True)

    def set_aside(self, part: str | None, why: str) -> None:
        """Move the folder (or its ``part``) aside, with a notice to say once."""
        source = self.directory if part is None else self.directory / part
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        target = source.with_name(f"{source.name}.set-aside-{stamp}")
        try:
            os.replace(source, target)
        except FileNotFoundError:
            return
        what = "the key folder" if part is None else f"the {part} keys"
        message = f"{what} of {self._vault_name} were set aside ({why}); rebuilt from the vault"
        log.warning("%s: %s", message, target)
        self.notices.append(message)
