"""Runtime assets shipped inside the package (importlib.resources: works from wheels and builds)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from PySide6.QtGui import QIcon

_ICON_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">
<rect x="4" y="4" width="56" height="56" rx="12" fill="#1e3a8a"/>
<rect x="14" y="16" width="28" height="6" rx="3" fill="#93c5fd"/>
<rect x="14" y="28" width="22" height="6" rx="3" fill="#c4b5fd"/>
<rect x="14" y="40" width="14" height="6" rx="3" fill="#86efac"/>
<circle cx="43" cy="39" r="9" fill="none" stroke="#ffffff" stroke-width="4"/>
<line x1="49.5" y1="45.5" x2="55" y2="51" stroke="#ffffff" stroke-width="5" stroke-linecap="round"/>
</svg>"""


def samples_dir() -> Path:
    return Path(str(resources.files("kvdesk") / "resources" / "samples"))


def sample_paths() -> list[Path]:
    """The sample documents (not their README)."""
    folder = samples_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name != "README.md")


def app_icon() -> QIcon:
    from PySide6.QtGui import QPixmap

    pixmap = QPixmap()
    pixmap.loadFromData(_ICON_SVG.encode(), "SVG")
    return QIcon(pixmap) if not pixmap.isNull() else QIcon()
