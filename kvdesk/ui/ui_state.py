"""Widget state only (geometry, splitters, search history) in an INI file under KVDESK_HOME.

An explicit INI path (never the platform's registry/plist) keeps tests and portable installs
from touching a user's real settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from PySide6.QtCore import QSettings

from kvdesk.core.paths import data_home

SETTINGS_FILE = "kvdesk-ui.ini"
HISTORY_MAX = 50


def ui_settings() -> QSettings:
    home = data_home()
    home.mkdir(parents=True, mode=0o700, exist_ok=True)  # private, like the vault
    return QSettings(str(home / SETTINGS_FILE), QSettings.Format.IniFormat)


def save_settings(settings: QSettings) -> None:
    """Write the file and keep it owner-only: the search history is what the user looked for."""
    settings.sync()
    with contextlib.suppress(OSError):
        os.chmod(settings.fileName(), 0o600)


def load_history() -> list[str]:
    value = ui_settings().value("search/history", [])
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value or []]


def save_history(history: list[str]) -> None:
    s = ui_settings()
    s.setValue("search/history", history[:HISTORY_MAX])
    save_settings(s)


def vault_key(path: str | Path) -> str:
    """A settings group for one vault (its resolved path, hashed: no slashes in the key)."""
    resolved = str(Path(path).expanduser().resolve())
    return "vaults/" + hashlib.sha1(resolved.encode("utf-8")).hexdigest()[:16]


def vault_value(path: str | Path, name: str, default: bool = False) -> bool:
    return bool(ui_settings().value(f"{vault_key(path)}/{name}", default, type=bool))


def set_vault_value(path: str | Path, name: str, value: bool) -> None:
    s = ui_settings()
    s.setValue(f"{vault_key(path)}/path", str(Path(path).expanduser().resolve()))
    s.setValue(f"{vault_key(path)}/{name}", value)
    save_settings(s)


def remember_vault(path: str | Path) -> None:
    s = ui_settings()
    s.setValue("vault/last", str(Path(path).expanduser().resolve()))
    save_settings(s)


def last_vault() -> Path | None:
    """The vault chosen last, while its file still exists."""
    value = ui_settings().value("vault/last", "")
    if not value:
        return None
    path = Path(str(value))
    return path if path.is_file() else None
