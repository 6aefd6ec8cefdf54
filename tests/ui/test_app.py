"""`kvdesk gui --search Q --screenshot F.png`: the headless documentation/check mode."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QImage

from kvdesk.ui.app import main


def test_screenshot_mode_writes_png(qapp, sample_vault: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "shots" / "compare.png"
    code = main(
        [
            "--vault",
            str(sample_vault),
            "--search",
            "LED supplier delay",
            "--compare",
            "--size",
            "1200x760",
            "--screenshot",
            str(out),
        ]
    )
    assert code == 0
    image = QImage(str(out))
    assert not image.isNull() and image.width() >= 1200 and image.height() >= 760
    assert "hits for 'LED supplier delay'" in capsys.readouterr().out


def test_screenshot_needs_a_search(qapp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert main(["--screenshot", str(tmp_path / "x.png")]) == 2


def test_bundled_japanese_font_is_the_fallback(qapp) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtGui import QFontDatabase, QRawFont, QTextLayout

    from kvdesk.ui.style import apply_font_fallback, load_bundled_fonts

    bundled = load_bundled_fonts()
    assert bundled, "the shipped Japanese subset did not load"
    # (fontconfig's "ja" needs JIS level 2 too, so the subset is found by name, not by
    # writing system: the families list below is what makes Qt fall back to it.)
    families = apply_font_fallback(qapp)
    assert bundled[0] in families
    glyphs = []
    layout = QTextLayout("東京の議事録、カタカナ。", qapp.font())
    layout.beginLayout()
    layout.createLine()
    layout.endLayout()
    for run in layout.glyphRuns():
        glyphs += [(run.rawFont().familyName(), g) for g in run.glyphIndexes()]
    assert glyphs and all(g for _, g in glyphs), glyphs  # glyph 0 is .notdef: a box
    assert bundled[0] in {family for family, _ in glyphs}
    raw = QRawFont.fromFont(QFontDatabase.font(bundled[0], "Regular", 12))
    assert raw.familyName() == bundled[0] and raw.supportsCharacter(ord("東"))
