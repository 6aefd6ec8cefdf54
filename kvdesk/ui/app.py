"""Entry point of the desktop app.

``kvdesk gui [--vault PATH] [--search Q --screenshot F.png [--compare] [--size WxH]] [FILE...]``

Screenshot mode opens the window, runs the search, selects the first hit (or the first two
with ``--compare``) with the explanation panel visible, saves a PNG of the window and exits 0.
It works headless (``QT_QPA_PLATFORM=offscreen``) and never reads or writes the user's saved
window layout. FILE arguments (the desktop entry's ``%F``) are imported on start.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
from pathlib import Path

from kvdesk.core.errors import KvdeskError
from kvdesk.core.paths import default_vault_path

log = logging.getLogger("kvdesk.ui")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kvdesk gui", description="The kvdesk desktop app.")
    p.add_argument("--vault", metavar="PATH", help="vault file (default: the user's vault)")
    p.add_argument("--search", metavar="QUERY", help="search for QUERY at start")
    p.add_argument(
        "--screenshot", metavar="FILE.png", help="with --search: save a PNG of the window and exit"
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="with --screenshot: select the first two hits (side-by-side explanation)",
    )
    p.add_argument("--size", default="1440x880", help="window size for screenshots (WxH)")
    p.add_argument("files", nargs="*", metavar="FILE", help="files or folders to import on start")
    return p


def start_vault_path(explicit: str | None) -> Path:
    """--vault, else the vault chosen last in Settings (while it exists), else the default."""
    if explicit:
        return Path(explicit)
    from kvdesk.ui.ui_state import last_vault

    return last_vault() or default_vault_path()


def main(argv: list[str] | None = None) -> int:
    """Run the app; returns the process exit code."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.screenshot and not args.search:
        print("kvdesk gui: --screenshot needs --search", file=sys.stderr)
        return 2
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    if args.screenshot and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        # Headless screenshot: without a display Qt would abort looking for xcb.
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtWidgets import QApplication

    from kvdesk.core.knowledge_base import KnowledgeBase
    from kvdesk.ui.resources import app_icon
    from kvdesk.ui.style import apply_font_fallback

    app = QApplication.instance()
    owns_app = app is None
    if not isinstance(app, QApplication):
        app = QApplication(sys.argv[:1])
    app.setApplicationName("kvdesk")
    app.setOrganizationName("kvdesk")
    app.setDesktopFileName("io.kvdesk.Kvdesk")
    app.setWindowIcon(app_icon())
    apply_font_fallback(app)

    vault_path = start_vault_path(args.vault)
    vault_path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)  # private, like the vault
    try:
        kb = KnowledgeBase.open(vault_path)
    except (KvdeskError, OSError) as exc:
        message = f"Could not open the vault {vault_path}: {exc}"
        print(f"kvdesk gui: {message}", file=sys.stderr)
        if not args.screenshot:
            from PySide6.QtWidgets import QMessageBox

            QMessageBox.critical(None, "kvdesk", message)
        return 1

    from kvdesk.ui.main_window import MainWindow

    shot = bool(args.screenshot)
    files = [str(Path(f).expanduser()) for f in args.files]
    window = MainWindow(
        kb,
        offer_samples=not shot and not files,
        auto_dense=not shot,
        remember_layout=not shot,
    )
    if files:
        window.import_paths(files)
    if shot:
        return screenshot(window, args.search, Path(args.screenshot), args.compare, args.size)

    window.show()
    if args.search:
        window.search_edit.setText(args.search)
        window.search_now()
    code = app.exec()
    if owns_app:
        app.setQuitOnLastWindowClosed(True)
    return int(code)


def screenshot(window: object, query: str, out: Path, compare: bool, size: str) -> int:
    """Search, select, grab the window, save the PNG; 0 on success."""
    from PySide6.QtWidgets import QApplication

    from kvdesk.ui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        w, h = 1440, 880
    window.resize(w, h)
    window.show()
    window.wait_idle()  # vault opened, lexical writer ready, model loaded
    window.search_edit.blockSignals(True)
    window.search_edit.setText(query)
    window.search_edit.blockSignals(False)
    window.search_now()
    ok = window.wait_idle()
    hits = window.model.rowCount()
    if not ok:
        print("kvdesk gui: the search did not finish in time", file=sys.stderr)
    if hits:
        window.select_rows([0, 1] if compare and hits > 1 else [0])
    for _ in range(5):
        QApplication.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = window.grab().save(str(out), "PNG")
    window.close()
    if not saved:
        print(f"kvdesk gui: could not write {out}", file=sys.stderr)
        return 1
    print(f"saved {out} ({hits} hits for {query!r})")
    return 0


if __name__ == "__main__":
    multiprocessing.freeze_support()  # the extractor's worker processes in frozen builds
    sys.exit(main())
