"""Tag commands of the command line: suggest, accept, reject, list, rule, eval."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from kvdesk.cli.args import positive_int
from kvdesk.cli.common import (
    AddCommand,
    Command,
    VaultUse,
    open_kb,
    scratch_vault,
    set_vault_use,
)
from kvdesk.cli.output import TerminalProgress, terminal_safe
from kvdesk.core.errors import KvdeskError


def cmd_tags(args: argparse.Namespace, out: TextIO) -> int:
    handler: Command | None = getattr(args, "tags_func", None)
    if handler is None:
        raise KvdeskError("say what to do: kvdesk tags suggest|accept|reject|list|set|rule|eval")
    return handler(args, out)


def cmd_suggest(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        suggester = kb.tags.suggester(use_dense=not args.no_dense)
        if args.untagged:
            ids = suggester.untagged()
        elif args.ids:
            ids = [kb.values.resolve(ref) for ref in args.ids]
        else:
            raise KvdeskError("name documents (ID ...) or pass --untagged")
        for vid in ids:
            suggestions = suggester.suggest(vid, k=args.k)
            if args.save:
                suggester.record_suggestions(vid, suggestions)
            record = kb.values.get(vid)
            if args.json:
                out.write(
                    json.dumps(
                        {
                            "id": record.identifier,
                            "external_id": record.external_id,
                            "suggestions": [s.to_json() for s in suggestions],
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                continue
            ext = f" [{record.external_id}]" if record.external_id else ""
            out.write(terminal_safe(f"{record.identifier}{ext}  {record.title}") + "\n")
            if not suggestions:
                out.write("    no suggestions\n")
            for s in suggestions:
                mark = "*" if s.confidence >= suggester.threshold else " "
                out.write(f"  {mark} {terminal_safe(s.tag):<32} {s.confidence:.2f}\n")
                if s.reason:
                    out.write(f"      why: {terminal_safe(s.reason)}\n")
                for line in s.evidence:
                    out.write(f"      {terminal_safe(line)}\n")
    return 0


def _set_state(args: argparse.Namespace, out: TextIO, state: str) -> int:
    with open_kb(args) as kb:
        vid = kb.values.resolve(args.id)
        kb.tags.set_state(vid, args.tag, state, actor=args.actor)
        ident = kb.values.get(vid).identifier
    verb = "accepted" if state == "accepted" else "rejected"
    out.write(f"{ident}: {verb} {terminal_safe(args.tag)}\n")
    return 0


def cmd_accept(args: argparse.Namespace, out: TextIO) -> int:
    return _set_state(args, out, "accepted")


def cmd_reject(args: argparse.Namespace, out: TextIO) -> int:
    return _set_state(args, out, "rejected")


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        tags = kb.tags.infos()
    if args.json:
        out.write(json.dumps([t.to_json() for t in tags], ensure_ascii=False, indent=2) + "\n")
        return 0
    if not tags:
        out.write("no tags\n")
    for t in tags:
        extra = f"  {t.description}" if t.description else ""
        color = f" {t.color}" if t.color else ""
        out.write(
            f"{terminal_safe(t.name):<36}{color} accepted {t.accepted}, suggested {t.suggested},"
            f" rejected {t.rejected}{terminal_safe(extra)}\n"
        )
        for rule in t.rules:
            out.write(f"    {terminal_safe(str(rule))}\n")
        for problem in t.problems:
            out.write(f"    ! {terminal_safe(problem.describe())}\n")
    return 0


def cmd_set(args: argparse.Namespace, out: TextIO) -> int:
    if args.description is None and args.color is None:
        raise KvdeskError("say what to set: --description TEXT and/or --color #RRGGBB")
    with open_kb(args) as kb:
        info = kb.tags.set_info(args.tag, description=args.description, color=args.color)
    if args.json:
        out.write(json.dumps(info.to_json(), ensure_ascii=False) + "\n")
        return 0
    color = f" {info.color}" if info.color else ""
    desc = f"  {info.description}" if info.description else ""
    out.write(terminal_safe(f"{info.name}{color}{desc}") + "\n")
    return 0


def cmd_rule(args: argparse.Namespace, out: TextIO) -> int:
    with open_kb(args) as kb:
        rule = kb.tags.add_rule(args.tag, args.kind, args.pattern)
    out.write(terminal_safe(f"{rule.tag}: {rule.describe()}") + "\n")
    return 0


def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    from kvdesk.core.tags.evaluate import evaluate

    sink = TerminalProgress(quiet=args.quiet)
    try:
        with (
            scratch_vault(args.vault, "kvdesk-tags-eval-") as vault,
            open_kb(args, path=vault) as kb,
        ):
            report = evaluate(
                kb, args.corpus, seed=args.seed, dense=not args.no_dense, progress=sink
            )
    finally:
        sink.close()
    data = report.to_json()
    if args.json:
        out.write(json.dumps(data) + "\n")
        return 0
    out.write(
        f"held out {data['held_out']} (curated {data['curated']}, seed {data['seed']}):"
        f" p@3 {data['p@3']:.4f}  r@5 {data['r@5']:.4f}  F1 {data['f1']:.4f}"
        f"  (threshold {data['threshold']:.2f}); suggest p50 {data['suggest_ms_p50']:.1f} ms\n"
    )
    return 0


def register(add: AddCommand) -> None:
    p = add("tags", cmd_tags, "suggest, review and evaluate tags")
    sub = p.add_subparsers(dest="tags_command", metavar="SUBCOMMAND")

    def add_sub(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.set_defaults(tags_func=func)
        q.add_argument("--vault", metavar="PATH", default=argparse.SUPPRESS, help="vault file")
        return q

    q = add_sub("suggest", cmd_suggest, "suggest tags with confidence and evidence")
    q.add_argument("ids", nargs="*", metavar="ID")
    q.add_argument("--untagged", action="store_true", help="every document without a tag")
    q.add_argument(
        "-k", type=positive_int, default=5, help="suggestions per document (default 5, >= 1)"
    )
    q.add_argument("--json", action="store_true", help="one JSON object per document per line")
    q.add_argument("--save", action="store_true", help="store them as 'suggested' for review")
    q.add_argument("--no-dense", action="store_true", help="skip dense keys (faster, weaker)")
    q.add_argument("-q", "--quiet", action="store_true")

    for name, func, verb in (("accept", cmd_accept, "accept"), ("reject", cmd_reject, "reject")):
        q = add_sub(name, func, f"{verb} a tag on a document (takes effect at once)")
        q.add_argument("id", metavar="ID")
        q.add_argument("tag", metavar="TAG")
        q.add_argument("--actor", default="cli", help="who decided (default: cli)")

    q = add_sub("list", cmd_list, "list tags with their accepted/suggested/rejected counts")
    q.add_argument("--json", action="store_true")

    q = add_sub("set", cmd_set, "set a tag's description and/or colour")
    q.add_argument("tag", metavar="TAG")
    q.add_argument("--description", metavar="TEXT", help='what the tag means ("" clears it)')
    q.add_argument("--color", metavar="#RRGGBB", help='colour shown with the tag ("" clears it)')
    q.add_argument("--json", action="store_true")

    q = add_sub("rule", cmd_rule, "add a rule to a tag (any, all, phrase, regex, fuzzy)")
    q.add_argument("tag", metavar="TAG")
    q.add_argument("--kind", choices=("any", "all", "phrase", "regex", "fuzzy"), required=True)
    q.add_argument("pattern", metavar="PATTERN")

    q = add_sub("eval", cmd_eval, "measure suggestions on a tagged JSONL corpus (80/20 split)")
    set_vault_use(q, VaultUse.CREATES)  # imports the corpus (into a scratch vault unless --vault)
    q.add_argument("corpus", metavar="CORPUS.jsonl")
    q.add_argument("--seed", type=int, default=7)
    q.add_argument("--json", action="store_true")
    q.add_argument("--no-dense", action="store_true")
    q.add_argument("-q", "--quiet", action="store_true")
