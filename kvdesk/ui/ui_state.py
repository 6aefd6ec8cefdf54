"""Widget state only (geometry, splitters, search history) in an INI file under KVDESK_HOME.

An explicit INI path (never the platform's registry/plist) keeps tests and portable installs
from touching a user's real settings.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings

from kvdesk.core.paths import data_home

SETTINGS_FILE = "kvdesk-ui.ini"
HISTORY_MAX = 50


def ui_settings() -> QSettings:
    home = data_home()
    home.mkdir(parents=True, exist_ok=True)
    return QSettings(str(home / SETTINGS_FILE), QSettings.Format.IniFormat)


def load_history() -> list[str]:
    value = ui_settings().value("search/history", [])
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value or []]


def save_history(history: list[str]) -> None:
    s = ui_settings()
    s.setValue("search/history", history[:HISTORY_MAX])
    s.sync()
