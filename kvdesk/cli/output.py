"""What the command line prints: JSON on stdout, safe text for a terminal, progress on stderr.

Every human-readable line that carries text from a document (a title, a file name, a body
excerpt, a tag, a query) goes through :func:`terminal_safe`. JSON output does not: ``json``
escapes control characters itself.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import unicodedata
from typing import Any, TextIO

from kvdesk.core.progress import Progress

# Bidirectional overrides, embeddings, isolates and marks: printed raw they could make a file
# name read as a different name (U+202E turns "txt.exe" around).
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def terminal_safe(text: str, keep: str = "") -> str:
    """Text for a terminal: control characters (newlines, ESC ...) become visible escapes.

    A file name may hold anything but ``/`` and NUL, and a title or body anything at all;
    printed raw, ESC and BEL could move the cursor, recolour the screen, open an OSC-8 link or
    fake extra report lines, and a bidi override could reverse what follows. C0 and C1 controls
    (ESC, BEL, CR, DEL ...), line and paragraph separators and the bidi controls print as
    ``\\xNN`` / ``\\uNNNN`` (``\\n``, ``\\r``, ``\\t`` by name); bytes that are not valid UTF-8
    (carried as surrogate escapes) print as ``\\xNN``. Characters in ``keep`` (a newline in a
    text excerpt whose layout prints it) are left alone.
    """
    if text.isprintable() and not BIDI_CONTROLS.intersection(text):
        return text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch in keep or ch == " ":
            out.append(ch)
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in BIDI_CONTROLS:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


class TerminalSafeFormatter(logging.Formatter):
    """Log lines for a terminal (``import -v`` names each file): escaped like any other text."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return terminal_safe(super().formatException(ei), keep="\n")  # a traceback's lines


def print_json(data: Any, out: TextIO) -> None:
    """``data`` as indented JSON and a newline (the ``--json`` output of every command)."""
    # ensure_ascii keeps surrogate-escaped (non-UTF-8) paths representable as \udcXX escapes.
    json.dump(data, out, indent=2, ensure_ascii=True)
    out.write("\n")


class TerminalProgress:
    """A progress sink for stderr: a live bar in a terminal, a line every few seconds otherwise."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bars: dict[str, Any] = {}
        self._last_line = 0.0
        self._started: dict[str, float] = {}

    def __call__(self, progress: Progress, /) -> None:
        if self.quiet:
            return
        if self.is_tty:
            self._tty(progress)
            return
        now = time.monotonic()
        start = self._started.setdefault(progress.stage, now)
        finished = progress.total is not None and progress.done >= progress.total
        if now - self._last_line < 5.0 and not finished:
            return
        self._last_line = now
        rate = progress.done / max(now - start, 1e-9)
        total = f"/{progress.total}" if progress.total is not None else ""
        current = terminal_safe(progress.current or "")
        self.stream.write(f"{progress.stage}: {progress.done}{total} ({rate:.0f}/s) {current}\n")
        self.stream.flush()

    def _tty(self, progress: Progress) -> None:
        from tqdm import tqdm

        bar = self._bars.get(progress.stage)
        if bar is None:
            bar = tqdm(
                total=progress.total,
                desc=progress.stage,
                file=self.stream,
                unit="doc",
                dynamic_ncols=True,
                leave=True,
            )
            self._bars[progress.stage] = bar
        if progress.total is not None and bar.total != progress.total:
            bar.total = progress.total
        bar.n = progress.done
        current = terminal_safe(progress.current or "")
        bar.set_postfix_str(current[-40:], refresh=False)
        bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
