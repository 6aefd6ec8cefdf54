"""Pilot and golden-set commands: ``kvdesk pilot ...`` and ``kvdesk golden ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
from typing import Any, TextIO

from kvdesk.cli.common import AddCommand, Command, open_kb
from kvdesk.cli.output import terminal_safe
from kvdesk.core.errors import KvdeskError

TEAM_FAILED = 3  # top failed queries shown under each team in the text report


def _json(data: Any, out: TextIO) -> None:
    from kvdesk.cli.output import print_json

    print_json(data, out)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3f}{unit}".replace(".000", "")


# -- pilot -----------------------------------------------------------------------------------


def cmd_pilot_switch(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        settings = kb.pilot.configure(
            enabled=args.pilot_command == "on" if args.pilot_command != "status" else None,
            user=getattr(args, "user", None),
            team=getattr(args, "team", None),
        )
        if args.pilot_command != "status":
            note = kb.share_pilot_settings()  # on a team desk: for every desk
            if note:
                print(f"kvdesk: {note}", file=sys.stderr)
        sessions = kb.pilot.count()
    if getattr(args, "json", False):
        _json({**settings.to_json(), "sessions": int(sessions)}, out)
        return 0
    state = "on" if settings.enabled else "off"
    out.write(
        f"pilot log {state} (user {settings.user or '-'}, team {settings.team or '-'},"
        f" abandoned after {settings.stale_minutes} min idle); {sessions} sessions recorded\n"
    )
    return 0


def cmd_pilot_mark(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        value_id = kb.values.resolve(args.doc) if args.doc else None
        session = kb.pilot.mark(args.session, args.outcome, value_id)
        doc = kb.values.get(session.found_value_id).identifier if session.found_value_id else None
    if args.json:
        _json({"session": session.id, "outcome": session.outcome, "doc": doc}, out)
    else:
        out.write(f"session {session.id}: {session.outcome}" + (f" ({doc})" if doc else "") + "\n")
    return 0


def cmd_pilot_report(args: argparse.Namespace, out: TextIO) -> int:
    from kvdesk.core.pilot.metrics import parse_since, pilot_report, write_report_csv

    since = parse_since(args.since) if args.since else None
    with open_kb(args) as kb:
        source, note = kb.team_pilot()
        if note:
            print(f"kvdesk: {note}", file=sys.stderr)

        def confusable(shown: Collection[int]) -> list[tuple[int, int]]:
            # Failed sessions that met look-alikes (see kvdesk.core.pilot.metrics).
            return [pair.value_ids for pair in kb.confusable_pairs(among=shown).pairs]

        report = pilot_report(source, since=since, confusable=confusable)
    if args.csv:
        write_report_csv(report, args.csv)
    if args.json:
        _json(report.to_json(), out)
        return 0
    m = report.overall
    out.write(
        f"{m.sessions} sessions ({m.found} found, {m.notfound} not found,"
        f" {m.abandoned} abandoned, {m.open} open), {m.searches} searches\n"
        f"  success rate        {_pct(m.success_rate)}\n"
        f"  abandonment rate    {_pct(m.abandon_rate)}\n"
        f"  zero-result rate    {_pct(m.zero_result_rate)}"
        f"  (no confident match {_pct(m.no_confident_rate)})\n"
        f"  MRR of found doc    {_num(m.mrr)}\n"
        f"  median time to find {_num(m.median_seconds_to_find, ' s')}\n"
        f"  reformulations      {_num(m.reformulations_per_session)} per session\n"
    )
    if m.confusable_failed_sessions is not None:
        out.write(
            f"  failed sessions that met confusable documents: {m.confusable_failed_sessions}"
            " (kvdesk keys confusable)\n"
        )
    if m.top_failed:
        out.write("top failed queries:\n")
        for f in m.top_failed:
            query, sessions = terminal_safe(f.query), ", ".join(map(str, f.sessions))
            out.write(f"  {f.count:>3}x  {query}  (sessions {sessions})\n")
    for title, buckets in (("per week", report.per_week), ("per team", report.per_team)):
        if buckets:
            out.write(f"{title}:\n")
            for name, b in buckets.items():
                out.write(
                    f"  {terminal_safe(name or '(no team)'):<10} {b.sessions:>4} sessions"
                    f"  success {_pct(b.success_rate)}  zero-result {_pct(b.zero_result_rate)}"
                    f"  MRR {_num(b.mrr)}\n"
                )
                if title == "per team":
                    for f in b.top_failed[:TEAM_FAILED]:
                        out.write(f"      failed {f.count:>3}x  {terminal_safe(f.query)}\n")
    return 0


def cmd_pilot_clear(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        removed = kb.pilot.clear()
    out.write(f"removed {removed} pilot sessions\n")
    return 0


def cmd_pilot_export(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        count = kb.pilot.export(args.file)
    out.write(f"wrote {count} sessions to {terminal_safe(args.file)}\n")
    return 0


# -- golden ----------------------------------------------------------------------------------


def cmd_golden_add(args: argparse.Namespace, out: TextIO) -> int:
    if bool(args.beir) == bool(args.query or args.session is not None):
        raise KvdeskError(
            "golden add needs either --beir DIR, --query TEXT --doc ID or --session ID --doc ID"
        )
    with open_kb(args) as kb:
        store = kb.golden
        if args.beir:
            report = store.import_beir(args.name, args.beir, args.split)
            data = report.to_json()
            text = (
                f"golden set {args.name}: {report.queries} queries, {report.judgements}"
                f" judgements; {report.unknown_docs} judgements name documents not in the vault"
                f" (not stored), {report.skipped_queries} queries skipped\n"
            )
        else:
            if not args.doc:
                flag = "--session" if args.session is not None else "--query"
                raise KvdeskError(f"golden add {flag} needs --doc ID")
            if args.session is not None:  # its last query, unless --query says otherwise
                golden = store.add_pilot_case(args.name, args.session, args.doc, args.query)
            else:
                golden = store.add_case(args.name, args.query, args.doc)
            data = {"set": golden.to_json()}
            text = f"golden set {args.name}: {golden.queries} queries\n"
    if args.json:
        _json(data, out)
    else:
        out.write(terminal_safe(text, keep="\n"))
    return 0


def cmd_golden_list(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        sets = kb.golden.list_sets()
    if args.json:
        _json([s.to_json() for s in sets], out)
        return 0
    if not sets:
        out.write("no golden sets\n")
    for s in sets:
        name, source = terminal_safe(s.name), terminal_safe(s.source)
        out.write(f"{name:<20} {s.queries:>5} queries {s.judgements:>6} judgements  {source}\n")
    return 0


def cmd_golden_eval(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        result = kb.evaluate_golden(args.name, args.key_set or None, mode=args.mode)
    if args.json:
        _json(result.to_json(), out)
        return 0
    name = terminal_safe(result.set_name)
    out.write(f"golden set {name} ({len(result.queries)} queries, {result.mode})\n")
    for r in result.results:
        flag = " *active*" if r.active else ""
        out.write(
            f"  key set {r.key_set.id:<3} {terminal_safe(r.key_set.name[:28]):<28}"
            f" nDCG@10 {r.ndcg10:.4f}"
            f"  Recall@100 {r.recall100:.4f}  MRR@10 {r.mrr10:.4f}"
            f"  ({r.keyed_values}/{r.total_values} keyed){flag}\n"
        )
    for c in result.comparisons:
        out.write(
            f"  key set {c.candidate} vs {c.baseline}: {c.wins} wins, {c.losses} losses,"
            f" {c.ties} ties (per-query nDCG@10)\n"
        )
    return 0


# -- parser ----------------------------------------------------------------------------------


def register(add: AddCommand) -> None:
    vault = argparse.ArgumentParser(add_help=False)
    vault.add_argument("--vault", metavar="PATH", default=argparse.SUPPRESS, help="vault file")

    pilot = add("pilot", cmd_pilot_switch, "pilot log: on/off, mark sessions, report, export")
    sub = pilot.add_subparsers(
        dest="pilot_command", metavar="ACTION", required=True, parser_class=type(pilot)
    )

    def action(parent: Any, name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(
            name, help=help_text, description=help_text, parents=[vault]
        )
        p.set_defaults(func=func)
        return p

    for name, help_text in (
        ("on", "start recording search sessions in this vault"),
        ("off", "stop recording (what was recorded stays until `pilot clear`)"),
        ("status", "show the pilot settings"),
    ):
        p = action(sub, name, cmd_pilot_switch, help_text)
        if name != "off":
            p.add_argument("--user", help="user label stored with each new session")
            p.add_argument("--team", help="team label stored with each new session")
        p.add_argument("--json", action="store_true")

    p = action(sub, "mark", cmd_pilot_mark, "mark a session found or notfound")
    p.add_argument("session", type=int, metavar="SESSION")
    p.add_argument("outcome", choices=("found", "notfound"))
    p.add_argument("--doc", metavar="ID", help="the document that answered it")
    p.add_argument("--json", action="store_true")

    p = action(sub, "report", cmd_pilot_report, "success, abandonment, zero-result rates, MRR...")
    p.add_argument("--since", metavar="DATE", help="only sessions started on or after DATE")
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", metavar="FILE", help="also write the metrics table as CSV")

    action(sub, "clear", cmd_pilot_clear, "delete every recorded session (settings stay)")
    p = action(sub, "export", cmd_pilot_export, "write the log as FILE.json or FILE.csv")
    p.add_argument("file", metavar="FILE")

    golden = add("golden", cmd_golden_list, "golden sets: add, list, evaluate key sets on them")
    gsub = golden.add_subparsers(
        dest="golden_command", metavar="ACTION", required=True, parser_class=type(golden)
    )
    p = action(gsub, "add", cmd_golden_add, "import a BEIR folder's judgements, or add one case")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--beir", metavar="DIR", help="BEIR folder whose corpus is in the vault")
    p.add_argument("--split", default="test")
    p.add_argument("--query", metavar="TEXT", help="one case: the query ...")
    p.add_argument(
        "--session",
        type=int,
        metavar="SESSION",
        help="one case from a pilot session: its last query (or --query) ...",
    )
    p.add_argument("--doc", metavar="ID", help="... and the document that answers it")
    p.add_argument("--json", action="store_true")

    p = action(gsub, "list", cmd_golden_list, "list the golden sets")
    p.add_argument("--json", action="store_true")

    p = action(gsub, "eval", cmd_golden_eval, "evaluate key sets side by side on a golden set")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--key-set",
        type=int,
        action="append",
        metavar="ID",
        help="a dense key set to evaluate (repeat; the first is the baseline;"
        " default: the active one and the most recent other)",
    )
    p.add_argument("--mode", choices=("hybrid", "lexical", "dense"), default="hybrid")
    p.add_argument("--json", action="store_true")
