"""Learned keys on the command line: ``kvdesk learn`` and ``kvdesk keys audit``.

``learn`` turns successful searches (golden cases, pilot sessions marked found) into a learned
key set, checked on held-out queries before it is activated. ``keys audit`` lists learned keys
that may leak someone's words (identifiers, numbers, e-mail addresses, names, one user only)
and sets whether other users' searches are shown in explanations.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, TextIO

from kvdesk.cli.common import AddCommand, UsageError, open_kb
from kvdesk.cli.output import TerminalProgress, print_json, terminal_safe
from kvdesk.core.errors import KvdeskError

if TYPE_CHECKING:
    from kvdesk.core.knowledge_base import KeySet, KnowledgeBase


def cmd_learn(args: argparse.Namespace, out: TextIO) -> int:
    if not args.golden and not args.from_pilot:
        raise UsageError("kvdesk learn: say what to learn from: --golden NAME and/or --from-pilot")
    sink = TerminalProgress(quiet=args.quiet)
    with open_kb(args) as kb:
        pairs = kb.learning_pairs(golden=args.golden, pilot=args.from_pilot)
        if not pairs:
            where = " and ".join(
                w
                for w, on in (
                    (f"golden set {args.golden!r}", bool(args.golden)),
                    ("the pilot log (no session marked found with a document)", args.from_pilot),
                )
                if on
            )
            raise KvdeskError(f"nothing to learn from in {where}")
        try:
            report = kb.learn(pairs, activate=not args.no_activate, progress=sink)
        finally:
            sink.close()
    if args.json:
        print_json(report.to_json(), out)
        return 0
    out.write(
        f"learned key set {report.key_set.id} from {report.pairs} pairs"
        f" ({report.learn.queries} queries learned, {report.held_out.queries} held out)\n"
        f"  nDCG@10 on the learning queries {report.learn.ndcg10:.4f}"
        f" (without learned keys {report.learn.baseline:.4f})\n"
        f"  nDCG@10 on held-out queries     {report.held_out.ndcg10:.4f}"
        f" (without {report.held_out.baseline:.4f})\n"
        f"  ... whose answers were not learned ({report.held_out_novel.queries} queries)"
        f" {report.held_out_novel.ndcg10:.4f} (without {report.held_out_novel.baseline:.4f})\n"
        f"  gap (memorisation) {report.gap:+.4f}\n"
        f"  {report.reason}\n"
    )
    if not report.activated:
        out.write(
            f"  compare it: kvdesk golden eval NAME --key-set {report.key_set.id};"
            f" switch: kvdesk keys activate {report.key_set.id}\n"
        )
    return 0


def learned_key_set_json(key_set: KeySet) -> dict[str, Any]:
    """A learned key set as ``keys list`` shows it: its pairs, quality and gap."""
    quality = key_set.params.get("quality", {})
    return {
        "id": key_set.id,
        "space": key_set.space,
        "state": key_set.state,
        "pairs": key_set.params.get("pairs"),
        "sources": key_set.params.get("sources", []),
        "weights": key_set.params.get("weights", {}),
        "learn": quality.get("learn"),
        "held_out": quality.get("held_out"),
        "held_out_novel": quality.get("held_out_novel"),
        "gap": quality.get("gap"),
        "created_at": key_set.created_at,
        "activated_at": key_set.activated_at,
    }


def learned_lines(kb: KnowledgeBase) -> list[str]:
    """``keys list`` text lines for learned key sets (empty when there are none)."""
    lines = []
    for key_set in kb.learned_key_sets():
        data = learned_key_set_json(key_set)
        learn, held = data["learn"] or {}, data["held_out"] or {}
        gap = data["gap"]
        lines.append(
            f"{data['id']:>3}  {data['state']:<8}  learned from {data['pairs']} pairs;"
            f" nDCG@10 learning {learn.get('ndcg@10', 0):.4f}, held-out"
            f" {held.get('ndcg@10', 0):.4f} (without {held.get('baseline_ndcg@10', 0):.4f}),"
            f" gap {gap if gap is not None else 0:+.4f}\n"
        )
    return lines


def keys_audit(kb: KnowledgeBase, args: argparse.Namespace, out: TextIO) -> int:
    """``keys audit``: learned keys that may leak, and whether others' searches are shown."""
    if args.show_others is not None:
        kb.show_learned_words(args.show_others == "yes")
    findings = kb.learned_audit()
    shown = kb.learned_words_shown()
    active = next((k for k in kb.learned_key_sets() if k.state == "active"), None)
    if args.json:
        print_json(
            {
                "key_set": active.id if active else None,
                "show_others": shown,
                "flagged": [f.to_json() for f in findings],
            },
            out,
        )
        return 0
    if not kb.learned_key_sets():
        out.write("no learned keys yet (kvdesk learn --from-pilot)\n")
        return 0
    out.write(
        f"{len(findings)} learned keys may leak; other users' searches are"
        f" {'shown' if shown else 'hidden'} in explanations"
        f" (change: kvdesk keys audit --show-others {'no' if shown else 'yes'})\n"
    )
    for f in findings:
        user = f" by {terminal_safe(f.key.user)}" if f.key.user else ""
        out.write(
            f"  {terminal_safe(f.key.query)!r}{user} ({terminal_safe(f.key.source)}):"
            f" {', '.join(f.reasons)}\n"
        )
    return 0


def register(add: AddCommand) -> None:
    p = add(
        "learn",
        cmd_learn,
        "learn keys from searches that found their document (golden cases, pilot sessions);"
        " checked on held-out queries before it is switched on",
    )
    p.add_argument("--golden", metavar="NAME", default=None, help="learn from this golden set")
    p.add_argument(
        "--from-pilot",
        action="store_true",
        help="learn from pilot sessions marked found with a document",
    )
    p.add_argument(
        "--no-activate",
        action="store_true",
        help="keep the learned key set as a candidate (compare it with kvdesk golden eval)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
