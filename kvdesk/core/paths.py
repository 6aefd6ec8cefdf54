"""Where kvdesk keeps its data: platformdirs' user data folder, or ``KVDESK_HOME``."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "kvdesk"
VAULT_FILENAME = "vault.kvdb"


def data_home() -> Path:
    """The base folder for vaults and settings; ``KVDESK_HOME`` wins (tests use it)."""
    override = os.environ.get("KVDESK_HOME")
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_vault_path() -> Path:
    return data_home() / VAULT_FILENAME


def keys_dir_for(vault_path: Path) -> Path:
    """Derived keys (tantivy index, vector caches) live beside the vault, bound to it by name."""
    return vault_path.with_name(vault_path.name + ".keys")
