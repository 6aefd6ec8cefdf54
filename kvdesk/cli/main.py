"""kvdesk's command line: parses, calls the core, prints text or ``--json``.

JSON goes to stdout; progress and logs go to stderr. Exit codes: 0 success, 1 failure of the
command, 2 usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO

from kvdesk import __version__
from kvdesk.cli import learn, models, pilot, search, tags, team
from kvdesk.cli.args import parse_size
from kvdesk.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    AddCommand,
    Command,
    UsageError,
    VaultUse,
    open_kb,
    set_vault_use,
)
from kvdesk.cli.output import TerminalProgress, TerminalSafeFormatter, print_json, terminal_safe
from kvdesk.cli.search import protect_exclusions
from kvdesk.core.errors import Cancelled, KvdeskError, as_vault_damage
from kvdesk.core.files import write_file_safely
from kvdesk.core.progress import CancelToken

if TYPE_CHECKING:
    from kvdesk.core.vault.importer import ImportReport

# -- commands ----------------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace, out: TextIO) -> int:
    if not args.paths and not args.records:
        raise UsageError("import needs PATH... or --records FILE.jsonl")
    from kvdesk.core.extract import Limits

    limits = Limits() if args.max_file_size is None else Limits(max_file_bytes=args.max_file_size)
    # Nothing given exists (a typo): fail, and create no vault for it. An existing vault is
    # still told, so that documents imported from a folder now gone are marked source missing.
    nothing_there = not args.records and not any(os.path.exists(p) for p in args.paths)
    if nothing_there and not _existing_vault_imports(args, out):
        return EXIT_FAILURE
    sink = TerminalProgress(quiet=args.quiet or args.verbose)
    cancel = CancelToken()
    with _import_log(args.verbose), open_kb(args) as kb:
        try:
            if args.records:
                report = kb.import_records(
                    args.records, limits=limits, progress=sink, cancel=cancel
                )
            else:
                report = kb.import_paths(args.paths, limits=limits, progress=sink, cancel=cancel)
            if not args.no_ocr and not report.cancelled:
                kb.read_scans(progress=sink, cancel=cancel)  # their text feeds every key
            if not args.no_dense and not report.cancelled:
                kb.build_dense_keys(progress=sink, cancel=cancel, scans=False)
        except KeyboardInterrupt:
            raise Cancelled(
                "import interrupted; what was stored is safe,"
                " and the same command finishes the rest"
            ) from None
        finally:
            sink.close()
    _print_import_report(report, args, out)
    if nothing_there:
        _say_nothing_there(args.paths)
        return EXIT_FAILURE
    return EXIT_OK


def _print_import_report(report: ImportReport, args: argparse.Namespace, out: TextIO) -> None:
    """JSON lists every file; text lists failures and new skips (all skips with ``-v``)."""
    if args.json:
        print_json(report.to_json(), out)
        return
    for item in report.failed:
        out.write(f"failed   {terminal_safe(item['path'])}: {terminal_safe(item['error'])}\n")
    for item in report.near_duplicates:
        out.write(
            f"similar  {terminal_safe(item['path'])}: imported as {item['id']}, looks like"
            f" {item['looks_like']['id']} (a rescan? perceptual hashes"
            f" {item['looks_like']['distance']} bits apart)\n"
        )
    for item in report.skipped if args.verbose else report.skipped_new():
        out.write(f"skipped  {terminal_safe(item['path'])}: {terminal_safe(item['reason'])}\n")
    out.write(report.summary() + "\n")


def _existing_vault_imports(args: argparse.Namespace, out: TextIO) -> bool:
    """When no given path exists and there is no vault either: say so and create nothing.

    True when a vault exists (the import goes on, to mark what is gone, and then fails).
    """
    from kvdesk.core.errors import NotFoundError
    from kvdesk.core.vault.importer import ImportReport

    opens_only = argparse.Namespace(
        **{k: v for k, v in vars(args).items() if not isinstance(v, VaultUse)}
    )
    try:
        open_kb(opens_only).close()
        return True
    except NotFoundError:
        pass
    report = ImportReport()
    report.skipped = [
        {"path": os.path.normpath(os.path.abspath(p)), "reason": "no such file or folder"}
        for p in args.paths
    ]
    _print_import_report(report, args, out)
    _say_nothing_there(args.paths)
    return False


def _say_nothing_there(paths: Sequence[str]) -> None:
    names = ", ".join(terminal_safe(p) for p in paths)
    noun = "file or folder" if len(paths) == 1 else "files or folders"
    print(f"kvdesk: error: nothing to import: no such {noun}: {names}", file=sys.stderr)


@contextlib.contextmanager
def _import_log(verbose: bool) -> Iterator[None]:
    """With ``import -v``: each stored document's line on stderr, escaped, while it runs."""
    if not verbose:
        yield
        return
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TerminalSafeFormatter("%(message)s"))
    logger = logging.getLogger("kvdesk.import")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        record = kb.values.get(args.id)
        versions = kb.values.versions(record.id)
        text = kb.values.text(record.id)
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
    if record.damaged:
        data["damaged"] = record.damaged
    if args.json:
        print_json(data, out)
        return EXIT_OK
    out.write(f"{record.identifier}  {terminal_safe(record.title)}\n")
    if record.damaged:
        out.write(f"  DAMAGED       {terminal_safe(record.damaged)}\n")
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
    with open_kb(args) as kb:
        value_id = kb.values.resolve(args.id)
        data = kb.values.original_bytes(value_id, args.version)
    target = args.outfile
    if target == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return EXIT_OK
    write_file_safely(target, data)
    print(f"wrote {len(data)} bytes to {terminal_safe(target)}", file=sys.stderr)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        records = kb.values.list_values(limit=args.limit)
    if args.json:
        print_json(
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
        media_type = terminal_safe(r.media_type[:28])
        out.write(f"{r.identifier:<10} {media_type:<28} {terminal_safe(r.title)}{flag}\n")
    return EXIT_OK


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    try:
        with open_kb(args) as kb:
            report = kb.check()
    except KvdeskError as exc:
        if not args.json:
            raise
        # --json is for scripts: a vault that cannot even be opened is still an answer.
        print_json({"ok": False, "values": 0, "values_digest": "", "problems": [str(exc)]}, out)
        return EXIT_FAILURE
    if args.json:
        print_json(
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
            out.write(f"  {terminal_safe(problem)}\n")
    return EXIT_OK if report.ok else EXIT_FAILURE


def cmd_doctor(args: argparse.Namespace, out: TextIO) -> int:
    from kvdesk.core.doctor import diagnose

    data = diagnose(args.vault)
    if args.json:
        print_json(data, out)
    else:
        for key, value in data.items():
            out.write(f"{key:<22} {terminal_safe(str(value))}\n")
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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print and exit itself
        raise UsageError(f"{self.prog}: {message}")


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

    def add(
        name: str, func: Command, help_text: str, *, vault: VaultUse = VaultUse.OPENS
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(func=func)
        set_vault_use(p, vault)
        return p

    p = add(
        "import",
        cmd_import,
        "import files and folders (recursive, incremental) or records",
        vault=VaultUse.CREATES,
    )
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument(
        "--records", metavar="FILE.jsonl", help="one document per line: _id, title, text, tags"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log each document on stderr as it is stored, and list every skipped file"
        " (also those skipped, unchanged, by the last import)",
    )
    p.add_argument(
        "--no-ocr",
        action="store_true",
        help="do not read scans and photos now (they are found by name until `kvdesk keys build`"
        " or the app reads them)",
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

    p = add(
        "doctor",
        cmd_doctor,
        "show versions, folders and the execution provider in use",
        vault=VaultUse.OWN,  # reports whether the vault exists; never opens it
    )
    p.add_argument("--json", action="store_true")

    _add_later_commands(add)

    p = add("gui", cmd_gui, "open the desktop app", vault=VaultUse.OWN)  # the app creates it
    p.add_argument("--search", metavar="QUERY", help="run this search at start")
    p.add_argument("--screenshot", metavar="FILE.png", help="save a PNG of the window and exit")
    p.add_argument(
        "--compare", action="store_true", help="with --screenshot: compare the first two hits"
    )
    p.add_argument("--size", metavar="WxH", help="window size for --screenshot (1440x880)")
    p.add_argument("files", nargs="*", metavar="FILE", help="files or folders to import on start")
    return parser


def _add_later_commands(add: AddCommand) -> None:
    """Commands that live in their own modules (search, eval, rekey, keys, tags, pilot, golden)."""
    for module in (search, tags, pilot, team, learn, models):
        module.register(add)


def _message(exc: BaseException) -> str:
    return terminal_safe(str(exc), keep="\n")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    stream = out or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(protect_exclusions(sys.argv[1:] if argv is None else argv))
        if not hasattr(args, "vault"):
            args.vault = None
        if getattr(args, "func", None) is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(args.func(args, stream))
    # Messages may quote a file name, an identifier or an argument: escaped like any other text.
    except UsageError as exc:
        print(_message(exc), file=sys.stderr)
        return EXIT_USAGE
    except Cancelled as exc:
        print(f"kvdesk: {_message(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KvdeskError as exc:
        print(f"kvdesk: error: {_message(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("kvdesk: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        damage = as_vault_damage(exc)
        if damage is None:
            raise
        print(f"kvdesk: error: {terminal_safe(str(damage))}", file=sys.stderr)
        return EXIT_FAILURE
