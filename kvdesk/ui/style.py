"""Colours, type badges and fonts shared by the widgets (one place, so the look stays coherent)."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QFontDatabase
from PySide6.QtWidgets import QApplication

# Key space colours: the same in the results list, the stacked bar and the legend.
SPACE_COLORS = {
    "lexical": QColor("#3b82f6"),
    "dense": QColor("#a855f7"),
    "tags": QColor("#22a06b"),
    "identifiers": QColor("#d97706"),
}
SPACE_LABELS = {
    "lexical": "Words (BM25)",
    "dense": "Meaning (passage)",
    "tags": "Tags",
    "identifiers": "Identifiers (verified)",
}
HIGHLIGHT = QColor("#fde68a")
PASSAGE_HIGHLIGHT = QColor("#f1e8ff")
MUTED = QColor("#6b7280")
CHIP_BG = QColor("#e0ecff")
CHIP_FG = QColor("#1e3a8a")

_BADGES: list[tuple[str, str, str]] = [
    # (media type prefix, label, colour)
    ("application/pdf", "PDF", "#dc2626"),
    ("text/markdown", "MD", "#0f766e"),
    ("text/html", "HTML", "#ea580c"),
    ("text/csv", "CSV", "#16a34a"),
    ("application/json", "JSON", "#7c3aed"),
    ("application/x-kvdesk-record", "REC", "#475569"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml", "DOCX", "#2563eb"),
    ("image/", "IMG", "#db2777"),
    ("text/", "TXT", "#64748b"),
]


def type_badge(media_type: str) -> tuple[str, QColor]:
    """A short label and colour for a media type (the list's type icon)."""
    for prefix, label, colour in _BADGES:
        if media_type.startswith(prefix):
            return label, QColor(colour)
    return "DOC", QColor("#64748b")


CJK_FAMILIES = (
    "Noto Sans CJK JP",
    "Noto Sans JP",
    "Source Han Sans JP",
    "IPAexGothic",
    "IPAGothic",
    "Hiragino Sans",
    "Yu Gothic UI",
    "Meiryo UI",
    "Meiryo",
    "MS Gothic",
    "Droid Sans Fallback",
    "WenQuanYi Micro Hei",
)


BUNDLED_FONT = "KvdeskNotoSansJP-Subset.otf"  # kvdesk/resources/fonts (OFL, see its README)
_bundled_families: list[str] | None = None


def load_bundled_fonts() -> list[str]:
    """Register the shipped Japanese subset with Qt (once); returns its family names."""
    global _bundled_families
    if _bundled_families is not None:
        return _bundled_families
    from importlib import resources

    from PySide6.QtCore import QByteArray

    families: list[str] = []
    try:
        data = (resources.files("kvdesk") / "resources" / "fonts" / BUNDLED_FONT).read_bytes()
    except OSError:
        data = b""
    if data:
        font_id = QFontDatabase.addApplicationFontFromData(QByteArray(data))
        if font_id >= 0:
            families = list(QFontDatabase.applicationFontFamilies(font_id))
    _bundled_families = families
    return families


def apply_font_fallback(app: QApplication) -> list[str]:
    """Put a Japanese font behind the UI font, so kana and kanji never show as boxes.

    An installed CJK font comes first; the bundled subset (JIS level-1 kanji, kana,
    punctuation) is always last, so a machine without any CJK font still renders Japanese.
    Returns the family list set.
    """
    bundled = load_bundled_fonts()
    installed = set(QFontDatabase.families())
    cjk = [f for f in CJK_FAMILIES if f in installed][:2]
    fallbacks = [*cjk, *(f for f in bundled if f not in cjk)]
    if not fallbacks:
        return []
    font: QFont = app.font()
    families = [font.family(), *(f for f in fallbacks if f != font.family())]
    font.setFamilies(families)
    app.setFont(font)
    return families
