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
    from PySide6.QtGui import QFont, QFontDatabase, QRawFont, QTextLayout

    from kvdesk.ui.style import apply_font_fallback, load_bundled_fonts

    def glyph_runs(font: QFont) -> list[tuple[str, int]]:
        layout = QTextLayout("東京の議事録、カタカナ。", font)
        layout.beginLayout()
        layout.createLine()
        layout.endLayout()
        runs = layout.glyphRuns()
        return [(run.rawFont().familyName(), g) for run in runs for g in run.glyphIndexes()]

    bundled = load_bundled_fonts()
    assert bundled, "the shipped Japanese subset did not load"
    # (fontconfig's "ja" needs JIS level 2 too, so the subset is found by name, not by
    # writing system: the families list below is what makes Qt fall back to it.)
    families = apply_font_fallback(qapp)
    assert families[-1] == bundled[0]  # an installed CJK font, if any, comes before it
    glyphs = glyph_runs(qapp.font())
    assert glyphs and all(g for _, g in glyphs), glyphs  # glyph 0 is .notdef: a box
    assert {family for family, _ in glyphs} <= set(families) | set(QFontDatabase.families())
    # A machine with no CJK font at all: the UI font, then the bundled subset only.
    alone = QFont(qapp.font())
    alone.setFamilies([families[0], bundled[0]])
    glyphs = glyph_runs(alone)
    assert glyphs and all(g for _, g in glyphs), glyphs
    assert {family for family, _ in glyphs} == {bundled[0]}
    raw = QRawFont.fromFont(QFontDatabase.font(bundled[0], "Regular", 12))
    assert raw.familyName() == bundled[0] and raw.supportsCharacter(ord("東"))


def test_cli_gui_passes_everything_through(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import kvdesk.ui.app as app_module
    from kvdesk import cli

    seen: list[list[str]] = []
    monkeypatch.setattr(app_module, "main", lambda argv: seen.append(argv) or 0)
    note = tmp_path / "a note.md"
    code = cli.main(
        [
            "gui",
            "--vault",
            str(tmp_path / "v.kvdb"),
            "--search",
            "q",
            "--compare",
            "--size",
            "1000x700",
            "--screenshot",
            str(tmp_path / "x.png"),
            str(note),
        ]
    )
    assert code == 0
    args = app_module.build_parser().parse_args(seen[0])
    assert args.compare and args.size == "1000x700" and args.search == "q"
    assert args.vault == str(tmp_path / "v.kvdb")
    assert args.files == [str(note)]


def test_files_on_the_command_line_are_imported(qapp, sample_vault: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from kvdesk.core.knowledge_base import KnowledgeBase

    note = tmp_path / "parking.md"
    note.write_text("# Parking\nVisitors park in bay 12 behind the showroom.", encoding="utf-8")
    kb = KnowledgeBase.open(sample_vault)
    before = kb.values.count()
    kb.close()
    out = tmp_path / "shot.png"
    argv = ["--vault", str(sample_vault), "--search", "parking bay", "--screenshot", str(out)]
    assert main([*argv, str(note)]) == 0
    kb = KnowledgeBase.open(sample_vault)
    try:
        assert kb.values.count() == before + 1
    finally:
        kb.close()


def test_screenshot_mode_leaves_the_saved_layout_alone(
    qapp, sample_vault: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QByteArray

    from kvdesk.ui.ui_state import ui_settings

    s = ui_settings()
    s.setValue("window/geometry", QByteArray(b"not a geometry"))
    s.setValue("window/splitter", QByteArray(b"junk"))
    s.sync()
    out = tmp_path / "shot.png"
    argv = ["--vault", str(sample_vault), "--search", "forklift", "--size", "1000x640"]
    assert main([*argv, "--screenshot", str(out)]) == 0
    assert QImage(str(out)).width() == 1000
    s = ui_settings()
    assert s.value("window/geometry") == QByteArray(b"not a geometry")
    assert s.value("window/splitter") == QByteArray(b"junk")
    assert not s.value("search/history")


def test_the_last_chosen_vault_is_opened_on_start(qapp, sample_vault: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from kvdesk.core.paths import default_vault_path
    from kvdesk.ui.app import start_vault_path
    from kvdesk.ui.ui_state import remember_vault

    assert start_vault_path(None) == default_vault_path()
    remember_vault(sample_vault)
    assert start_vault_path(None) == sample_vault.resolve()
    assert start_vault_path(str(tmp_path / "x.kvdb")) == tmp_path / "x.kvdb"
    sample_vault.unlink()  # a vault that is gone: back to the default
    assert start_vault_path(None) == default_vault_path()


def test_ui_settings_and_search_history_are_private(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The search history says what the user looked for: owner-only file in an owner-only
    folder, also under a KVDESK_HOME the app creates."""
    import os
    import stat

    from kvdesk.ui.ui_state import save_history, ui_settings

    home = tmp_path / "fresh-home"
    monkeypatch.setenv("KVDESK_HOME", str(home))
    save_history(["salary of my manager"])
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(ui_settings().fileName()).st_mode) == 0o600
