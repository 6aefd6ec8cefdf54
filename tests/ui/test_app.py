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
