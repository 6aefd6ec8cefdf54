"""kvdesk's command line: parses, calls the core, prints text or ``--json``.

JSON goes to stdout; progress and logs go to stderr. Exit codes: 0 success, 1 failure of the
command, 2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from kvdesk import __version__
from kvdesk.core.errors import Cancelled, KvdeskError
from kvdesk.core.progress import CancelToken, Progress

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


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


# -- helpers -----------------------------------------------------------------------------------


# Bidirectional overrides and isolates could make a file name print as a different name.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def terminal_safe(text: str, keep: str = "") -> str:
    """Text for a terminal: control characters (newlines, ESC ...) become visible escapes.

    A file name may hold anything but ``/`` and NUL; printed raw it could move the cursor,
    recolour the screen or fake extra report lines. Bytes that are not valid UTF-8 (carried as
    surrogate escapes) print as ``\\xNN``. Characters in ``keep`` (e.g. a newline in a text
    excerpt) are left alone. JSON output does not use this: it has its own escaping.
    """
    if text.isprintable() and not _BIDI_CONTROLS.intersection(text):
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
        elif unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.I)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``200M``, ``1G``, ``1.5GiB``, ``4096`` (bytes): binary units, as the import report shows."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r} (use a number with an optional K, M, G or T, e.g. 200M)"
        )
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (must be more than 0 bytes)")
    return size


def _print_json(data: Any, out: TextIO) -> None:
    # ensure_ascii keeps surrogate-escaped (non-UTF-8) paths representable as \udcXX escapes.
    json.dump(data, out, indent=2, ensure_ascii=True)
    out.write("\n")


@contextlib.contextmanager
def scratch_vault(path: str | None, prefix: str) -> Iterator[str]:
    """The vault an evaluation runs in: the one given, else a temporary one removed afterwards."""
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield os.path.join(tmp, "eval.kvdb")


def _open_kb(args: argparse.Namespace, *, create: bool = True) -> Any:
    """The vault of ``--vault``; read-only commands pass ``create=False`` so that a mistyped
    path is an error ("no vault at PATH") instead of a new empty vault."""
    from kvdesk.core.knowledge_base import KnowledgeBase

    return KnowledgeBase.open(args.vault, create=create)


# -- commands ----------------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace, out: TextIO) -> int:
    if not args.paths and not args.records:
        raise UsageError("import needs PATH... or --records FILE.jsonl")
    if args.verbose:
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger("kvdesk.import")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    from kvdesk.core.extract import Limits

    limits = Limits() if args.max_file_size is None else Limits(max_file_bytes=args.max_file_size)
    sink = TerminalProgress(quiet=args.quiet or args.verbose)
    cancel = CancelToken()
    with _open_kb(args) as kb:
        try:
            if args.records:
                report = kb.import_records(
                    args.records, limits=limits, progress=sink, cancel=cancel
                )
            else:
                report = kb.import_paths(args.paths, limits=limits, progress=sink, cancel=cancel)
            if not args.no_dense and not report.cancelled:
                kb.build_dense_keys(progress=sink, cancel=cancel)
        except KeyboardInterrupt:
            raise Cancelled(
                "import interrupted; what was stored is safe,"
                " and the same command finishes the rest"
            ) from None
        finally:
            sink.close()
    if args.json:
        _print_json(report.to_json(), out)
    else:
        for item in report.failed:
            out.write(f"failed   {terminal_safe(item['path'])}: {terminal_safe(item['error'])}\n")
        for item in report.skipped:
            out.write(f"skipped  {terminal_safe(item['path'])}: {terminal_safe(item['reason'])}\n")
        out.write(report.summary() + "\n")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    with _open_kb(args, create=False) as kb:
        record = kb.vault.get(args.id)
        versions = kb.vault.versions(record.id)
        text = kb.vault.text(record.id)
    excerpt = text[: args.chars]
    data = {
        "id": record.identifier,
        "external_id": record.external_id,
        "title": record.title,
        "media_type": record.media_type,
        "sha256": record.sha256,
        "size": record.size,
        "source_path": record.source_path,
        "source_missing": record.source_missing,
        "source_mtime": record.source_mtime,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "version": record.version,
        "versions": [
            {"version": v.version, "sha256": v.sha256, "size": v.size, "created_at": v.created_at}
            for v in versions
        ],
        "tags": list(record.tags),
        "metadata": record.metadata,
        "text_chars": len(text),
        "text_excerpt": excerpt,
    }
    if args.json:
        _print_json(data, out)
        return EXIT_OK
    out.write(f"{record.identifier}  {terminal_safe(record.title)}\n")
    for key in ("external_id", "media_type", "sha256", "size", "source_path", "updated_at"):
        if data[key] is not None:
            out.write(f"  {key:<13} {terminal_safe(str(data[key]))}\n")
    if record.source_missing:
        out.write("  source        missing (the file has gone; the vault keeps its copy)\n")
    out.write(f"  versions      {', '.join(str(v.version) for v in versions)}\n")
    if record.tags:
        out.write(f"  tags          {terminal_safe(', '.join(record.tags))}\n")
    more = "…" if len(text) > len(excerpt) else ""
    out.write("\n" + terminal_safe(excerpt, keep="\n\t") + more + "\n")
    return EXIT_OK


def cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    with _open_kb(args, create=False) as kb:
        value_id = kb.vault.resolve(args.id)
        data = kb.vault.original_bytes(value_id, args.version)
    target = args.outfile
    if target == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return EXIT_OK
    tmp = f"{target}.kvdesk-partial"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        reason = exc.strerror or str(exc)
        raise KvdeskError(f"cannot write {terminal_safe(target)}: {reason}") from None
    print(f"wrote {len(data)} bytes to {terminal_safe(target)}", file=sys.stderr)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    with _open_kb(args, create=False) as kb:
        records = kb.vault.list_values(limit=args.limit)
    if args.json:
        _print_json(
            [
                {
                    "id": r.identifier,
                    "external_id": r.external_id,
                    "title": r.title,
                    "media_type": r.media_type,
                    "size": r.size,
                    "version": r.version,
                    "source_path": r.source_path,
                    "source_missing": r.source_missing,
                    "updated_at": r.updated_at,
                }
                for r in records
            ],
            out,
        )
        return EXIT_OK
    for r in records:
        flag = " (source missing)" if r.source_missing else ""
        out.write(f"{r.identifier:<10} {r.media_type[:28]:<28} {terminal_safe(r.title)}{flag}\n")
    return EXIT_OK


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    with _open_kb(args, create=False) as kb:
        report = kb.vault.check()
    if args.json:
        _print_json(
            {
                "ok": report.ok,
                "values": report.values,
                "values_digest": report.values_digest,
                "problems": list(report.problems),
            },
            out,
        )
    else:
        state = "ok" if report.ok else "PROBLEMS FOUND"
        out.write(f"{state}: {report.values} values, digest {report.values_digest}\n")
        for problem in report.problems:
            out.write(f"  {problem}\n")
    return EXIT_OK if report.ok else EXIT_FAILURE


def cmd_doctor(args: argparse.Namespace, out: TextIO) -> int:
    from kvdesk.core.doctor import diagnose

    data = diagnose(args.vault)
    if args.json:
        _print_json(data, out)
    else:
        for key, value in data.items():
            out.write(f"{key:<22} {value}\n")
    return EXIT_OK


def cmd_gui(args: argparse.Namespace, out: TextIO) -> int:
    # The only way from the CLI into Qt: imported here so every other command stays Qt-free.
    from kvdesk.ui.app import main as gui_main

    argv: list[str] = []
    if args.vault is not None:
        argv += ["--vault", str(args.vault)]
    if args.search:
        argv += ["--search", args.search]
    if args.screenshot:
        argv += ["--screenshot", args.screenshot]
    if args.compare:
        argv.append("--compare")
    if args.size:
        argv += ["--size", args.size]
    files = [str(f) for f in args.files]
    return int(gui_main(argv + (["--", *files] if files else [])))


# -- parser ------------------------------------------------------------------------------------


class UsageError(Exception):
    """Bad command-line use: exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and exit itself
        raise UsageError(f"{self.prog}: {message}")


Command = Callable[[argparse.Namespace, TextIO], int]


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--vault",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="vault file (default: vault.kvdb under the user data folder, or $KVDESK_HOME)",
    )
    parser = _Parser(prog="kvdesk", description=__doc__.splitlines()[0], parents=[common])
    parser.add_argument("--version", action="version", version=f"kvdesk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(func=func)
        return p

    p = add("import", cmd_import, "import files and folders (recursive, incremental) or records")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument(
        "--records", metavar="FILE.jsonl", help="one document per line: _id, title, text, tags"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log each document on stderr as it is stored"
    )
    p.add_argument(
        "--no-dense",
        action="store_true",
        help="store values and lexical keys only; dense keys follow on the next search or rekey",
    )
    p.add_argument(
        "--max-file-size",
        metavar="SIZE",
        type=parse_size,
        default=None,
        help="skip files larger than SIZE, e.g. 200M or 1G (default: 256M); also bounds one"
        " line of --records",
    )

    p = add("show", cmd_show, "show a document's metadata, versions and text")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.add_argument("--chars", type=int, default=600, help="length of the text excerpt")

    p = add("export", cmd_export, "write a document's original bytes, byte-exact")
    p.add_argument("id", metavar="ID")
    p.add_argument("outfile", metavar="OUTFILE", help="file to write, or - for stdout")
    p.add_argument("--version", type=int, default=None, help="an earlier version")

    p = add("list", cmd_list, "list the documents in the vault")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=None)

    p = add("check", cmd_check, "verify the vault: SQLite integrity and every value's sha256")
    p.add_argument("--json", action="store_true")

    p = add("doctor", cmd_doctor, "show versions, folders and the execution provider in use")
    p.add_argument("--json", action="store_true")

    _add_later_commands(add)

    p = add("gui", cmd_gui, "open the desktop app")
    p.add_argument("--search", metavar="QUERY", help="run this search at start")
    p.add_argument("--screenshot", metavar="FILE.png", help="save a PNG of the window and exit")
    p.add_argument(
        "--compare", action="store_true", help="with --screenshot: compare the first two hits"
    )
    p.add_argument("--size", metavar="WxH", help="window size for --screenshot (1440x880)")
    p.add_argument("files", nargs="*", metavar="FILE", help="files or folders to import on start")
    return parser


def _add_later_commands(add: Callable[[str, Command, str], argparse.ArgumentParser]) -> None:
    """Commands that live in their own modules (search, eval, rekey, tags, pilot, golden)."""
    from kvdesk.cli import pilot, search, tags

    for module in (search, tags, pilot):
        module.register(add)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    stream = out or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not hasattr(args, "vault"):
            args.vault = None
        if getattr(args, "func", None) is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(args.func(args, stream))
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except Cancelled as exc:
        print(f"kvdesk: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KvdeskError as exc:
        print(f"kvdesk: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("kvdesk: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
