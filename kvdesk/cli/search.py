"""Search, evaluation and key-set commands of the command line."""

from __future__ import annotations

import argparse
import html
import re
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from kvdesk.cli.args import positive_int
from kvdesk.cli.common import (
    AddCommand,
    VaultUse,
    complete_dense,
    open_kb,
    scratch_vault,
)
from kvdesk.cli.output import TerminalProgress, print_json, terminal_safe
from kvdesk.core.errors import Cancelled
from kvdesk.core.search.terms import group_terms

if TYPE_CHECKING:
    from kvdesk.core.knowledge_base import KeySet, KnowledgeBase

_TAGS = re.compile(r"</?b>")
PILOT_OFF = "nothing recorded: the pilot log is off for this vault (turn it on: kvdesk pilot on)"


_EXCLUSION = "\ue000"  # stands for a leading "-" while argparse reads the command line
_VALUE_OPTIONS = frozenset({"-k", "--mode", "--session", "--threads", "--vault"})
_LONG_OPTIONS = _VALUE_OPTIONS | {"--explain", "--pilot", "--json", "--quiet", "--help"}


def protect_exclusions(argv: Sequence[str]) -> list[str]:
    """``kvdesk search budget -draft``: ``-draft`` is query syntax (an exclusion), not an option.

    After ``search``, options (and their values) go first, then ``--`` and the query words, a
    leading ``-`` disguised so that argparse never reads an exclusion as an option; it is
    turned back in :func:`cmd_search`. Words that are search's own options stay options.
    """
    out = list(argv)
    start = next(
        (i for i, tok in enumerate(out) if tok == "search" and out[i - 1 : i] != ["--vault"]),
        None,
    )
    if start is None:
        return out
    options: list[str] = []
    words: list[str] = []
    rest = iter(out[start + 1 :])
    for tok in rest:
        if tok == "--":
            words.extend(rest)
            break
        name = tok.split("=", 1)[0]
        if tok in _VALUE_OPTIONS:
            options += [tok, next(rest, "")]
        elif name in _LONG_OPTIONS or tok in ("-k", "-q", "-h") or tok.startswith("-k"):
            options.append(tok)
        elif len(tok) > 1 and tok[0] == "-":
            words.append(_EXCLUSION + tok[1:])
        else:
            words.append(tok)
    return [*out[: start + 1], *options, "--", *words] if words else out


def cmd_search(args: argparse.Namespace, out: TextIO) -> int:
    args.query = " ".join(args.query).replace(_EXCLUSION, "-")
    with open_kb(args) as kb:
        # On a team desk: the team's latest changes first, for at most two seconds.
        notice = kb.catch_up_team(seconds=2.0)
        if notice:
            print(f"kvdesk: {notice}", file=sys.stderr)
        # Answer at once with the keys that are ready (the output says which are not); building
        # keys is the job of import, the app's background builder and `kvdesk keys build`.
        result = kb.search(args.query, k=args.k, mode=args.mode, details=True)
        session_id = None
        if args.session is not None:
            args.pilot = True
            if kb.pilot.enabled:  # a reformulation: the query joins the session it belongs to
                kb.pilot.record_search(args.session, result.query, result)
                session_id = args.session
        elif args.pilot:
            from kvdesk.core.pilot.log import record_cli_search

            session_id = record_cli_search(kb, result)  # None while the pilot log is off
        if session_id is not None:
            kb.deliver_pilot()
    if args.json:
        data = result.to_json(explain=args.explain)
        if args.pilot:
            data["pilot_session"] = session_id
            if session_id is None:
                data["pilot_note"] = PILOT_OFF
        print_json(data, out)
        if args.pilot and session_id is None:
            print(f"kvdesk: {PILOT_OFF}", file=sys.stderr)
        return 0
    if args.pilot:
        out.write(
            f"pilot session {session_id}\n"
            if session_id is not None
            else "the pilot log is off for this vault (kvdesk pilot on)\n"
        )
    not_ready = [space for space, ready in result.ready.items() if not ready]
    if not_ready:
        ready = [space for space, ok in result.ready.items() if ok]
        out.write(f"keys ready: {', '.join(ready) or 'none'} (not yet: {', '.join(not_ready)})\n")
    for ident in result.absent_identifiers:
        out.write(f"no document holds {terminal_safe(ident)}\n")
    if not result.hits:
        out.write("no results\n")
    elif not result.confident:
        out.write("no confident match: these are the closest documents\n")
    for rank, hit in enumerate(result.hits, start=1):
        ext = f" [{terminal_safe(hit.external_id)}]" if hit.external_id else ""
        out.write(
            f"{rank:>2}. {hit.identifier}{ext}  {terminal_safe(hit.title)}"
            f"  ({hit.score:.3f}, w={hit.weight:.2f})\n"
        )
        snippet = html.unescape(_TAGS.sub("**", hit.snippet_html)).replace("\n", " ")
        if snippet:
            out.write(f"    {terminal_safe(snippet[:200])}\n")
        if args.explain:
            for space, part in hit.explanation.to_json(details=True).items():
                out.write(f"    {space:<8} {part['score']:.4f}")
                if space == "lexical":
                    out.write(
                        "  "
                        + ", ".join(
                            f"{terminal_safe(g.word)}({', '.join(g.where)}) {g.score:.4f}"
                            for g in group_terms(
                                hit.explanation.lexical.terms if hit.explanation.lexical else ()
                            )
                        )
                    )
                    if part.get("quoted_in"):
                        out.write(terminal_safe("; quoted in " + _quoted(part["quoted_in"])))
                elif space == "dense":
                    out.write(
                        f"  cosine {part['cosine']:.3f}, passage {part['passage']}"
                        f" (rank {part['passage_rank']})"
                    )
                elif space == "tags":
                    out.write("  " + terminal_safe(", ".join(part.get("tags", []))))
                elif space == "identifiers":
                    said = "; ".join(m["said"] for m in part.get("matches", []))
                    out.write("  " + terminal_safe(said))
                elif space == "learned":
                    out.write("  " + terminal_safe(part.get("said", "")))
                out.write("\n")
    out.write(f"[{result.mode}, provider {result.provider}, {result.elapsed_ms:.0f} ms]\n")
    return 0


def _quoted(places: list[dict[str, str]]) -> str:
    """``DOC-1 «Fujiyama», DOC-7 «…»``: where a short hit is quoted."""
    return ", ".join(
        f"{q['identifier']} «{q['title']}»" if q["title"] else q["identifier"] for q in places
    )


def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    from kvdesk.core.golden.evaluation import (
        load_collection,
        percentile,
        score_run,
        write_trec_run,
    )

    collection = load_collection(args.beir_dir, args.split)
    modes = ["lexical", "dense", "hybrid"] if args.mode == "all" else [args.mode]
    sink = TerminalProgress(quiet=args.quiet)
    with scratch_vault(args.vault, "kvdesk-eval-") as vault:
        with open_kb(args, path=vault) as kb:
            started = time.perf_counter()
            kb.import_records(collection.corpus_path, progress=sink)
            if any(m in ("dense", "hybrid") for m in modes):
                kb.build_dense_keys(progress=sink)
            index_seconds = time.perf_counter() - started
            sink.close()
            ext = kb.values.external_ids()  # str(None) for a value without one, as before
            results: dict[str, Any] = {}
            latencies: list[float] = []
            run_mode = "hybrid" if args.mode == "all" else args.mode
            trec: dict[str, list[tuple[str, float]]] = {}
            for mode in modes:
                runs: dict[str, list[str]] = {}
                for qid, text in collection.queries.items():
                    t0 = time.perf_counter()
                    ranked = kb.rank_ids(text, mode=mode, k=100)
                    if mode == run_mode:
                        latencies.append((time.perf_counter() - t0) * 1000)
                        trec[qid] = [(str(ext.get(v)), s) for v, s in ranked]
                    runs[qid] = [str(ext.get(v)) for v, _s in ranked]
                results[mode] = score_run(runs, collection.qrels).to_json()
    if args.run:
        write_trec_run(args.run, trec, run_mode)
    report = {
        "collection": collection.name,
        "split": args.split,
        "queries": len(collection.queries),
        "modes": results,
        "index_seconds": round(index_seconds, 2),
        "query_ms_p50": round(percentile(latencies, 50), 2),
        "query_ms_p95": round(percentile(latencies, 95), 2),
    }
    if args.json:
        print_json(report, out)
    else:
        name = terminal_safe(collection.name)
        out.write(f"{name} ({args.split}, {len(collection.queries)} queries)\n")
        for mode, scores in results.items():
            out.write(f"  {mode:<8} " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()) + "\n")
        out.write(
            f"  indexing {report['index_seconds']} s; query p50 {report['query_ms_p50']} ms,"
            f" p95 {report['query_ms_p95']} ms\n"
        )
    return 0


def cmd_rekey(args: argparse.Namespace, out: TextIO) -> int:
    sink = TerminalProgress(quiet=args.quiet)
    with open_kb(args) as kb:
        before = kb.dense_status().key_set
        try:
            key_set = kb.rekey(args.model, activate=not args.no_activate, progress=sink)
        except KeyboardInterrupt:
            raise Cancelled(
                "rekey interrupted; search keeps the old keys, rerun to resume"
            ) from None
        finally:
            sink.close()
        status = kb.dense_status()
        keyed = kb.key_sets.status(key_set).keyed_values
    data = {
        "previous_key_set": before.id if before else None,
        "key_set": key_set.id,
        "model": key_set.name,
        "model_sha256": key_set.params["model_sha256"],
        "keyed_values": keyed,
        "active": key_set.state == "active",
        "active_key_set": status.key_set.id if status.key_set else None,
    }
    name = terminal_safe(key_set.name)
    if args.json:
        print_json(data, out)
    elif key_set.state == "active":
        out.write(f"key set {key_set.id} ({name}) is now active; {keyed} values keyed\n")
    else:
        out.write(
            f"key set {key_set.id} ({name}) is built ({keyed} values keyed) and not"
            f" active; compare it (kvdesk golden eval), then `kvdesk keys activate"
            f" {key_set.id}`\n"
        )
    return 0


def _key_set_json(kb: KnowledgeBase, key_set: KeySet) -> dict[str, Any]:
    status = kb.key_sets.status(key_set)
    return {
        "id": key_set.id,
        "space": key_set.space,
        "model": key_set.name,
        "state": key_set.state,
        "source": key_set.params.get("source"),
        "model_sha256": key_set.params.get("model_sha256"),
        "tokenizer_sha256": key_set.params.get("tokenizer_sha256"),
        "dim": key_set.params.get("dim"),
        "max_tokens": key_set.params.get("max_tokens"),
        "overlap_tokens": key_set.params.get("overlap_tokens"),
        "keyed_values": status.keyed_values,
        "total_values": status.total_values,
        "complete": status.ready,
        "passages": kb.key_sets.passage_count(key_set),
        "created_at": key_set.created_at,
        "activated_at": key_set.activated_at,
    }


def _similarity(text: str) -> float:
    """A cosine threshold in (0, 1] (``--min-dense 1.5`` is a usage error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], not {value}")
    return value


def _keys_confusable(kb: KnowledgeBase, args: argparse.Namespace, out: TextIO) -> int:
    """``keys confusable``: pairs of different values whose keys collide, and what tells them
    apart (kvdesk.core.keys.confusable)."""
    thresholds = {"min_dense": args.min_dense, "min_lexical": args.min_lexical}
    report = kb.confusable_pairs(**{k: v for k, v in thresholds.items() if v is not None})
    if args.json:
        print_json(report.to_json(), out)
        return 0
    out.write(
        f"{len(report.pairs)} confusable pairs among {report.checked} values (meaning keys"
        f" >= {report.min_dense:.2f}, words >= {report.min_lexical:.2f}),"
        f" {report.seconds:.1f} s\n"
    )
    for note in report.notes:
        out.write(f"  note: {terminal_safe(note)}\n")
    for pair in report.pairs:
        dense = "-" if pair.dense_similarity is None else f"{pair.dense_similarity:.3f}"
        out.write(
            f"\n{pair.a.identifier}  {terminal_safe(pair.a.title)}\n"
            f"{pair.b.identifier}  {terminal_safe(pair.b.title)}\n"
            f"  meaning keys {dense}, words {pair.lexical_similarity:.3f}\n"
        )
        for member, tells in ((pair.a, pair.tells_a), (pair.b, pair.tells_b)):
            shown = ", ".join(terminal_safe(t.text) for t in tells) or "(nothing of its own)"
            out.write(f"  only in {member.identifier}: {shown}\n")
        if pair.tagged_apart:
            apart = ", ".join(terminal_safe(t) for t in pair.tagged_apart)
            out.write(f"  told apart by tag: {apart}\n")
        tag = pair.suggested_tag
        if tag is not None:
            out.write(
                f"  suggested tag for {tag.identifier}: {terminal_safe(tag.tag)}"
                f"  (kvdesk tags accept {tag.identifier} {terminal_safe(tag.tag)!r})\n"
            )
    return 0


def cmd_keys(args: argparse.Namespace, out: TextIO) -> int:
    action = getattr(args, "keys_action", None) or "list"
    with open_kb(args) as kb:
        if action == "confusable":
            return _keys_confusable(kb, args, out)
        if action == "audit":
            from kvdesk.cli.learn import keys_audit

            return keys_audit(kb, args, out)
        if action == "build":
            complete_dense(kb, args.quiet)
            status = kb.dense_status()
            if args.json:
                print_json(_key_set_json(kb, status.key_set) if status.key_set else {}, out)
            else:
                out.write(f"dense keys: {status.keyed_values}/{status.total_values} values keyed\n")
            return 0
        if action == "rescan":
            ids = [kb.values.resolve(ref) for ref in args.ids] or None
            forgotten = kb.rescan(ids)
            complete_dense(kb, args.quiet)  # reads them again, then their keys follow
            if args.json:
                print_json({"rescanned": forgotten, "failed": kb.scan_failures()}, out)
            else:
                out.write(f"{forgotten} scans and photos read again\n")
            return 0
        if action == "activate" and args.key_set_id in {k.id for k in kb.learned_key_sets()}:
            learned = kb.activate_learned(args.key_set_id)
            if args.json:
                print_json({"id": learned.id, "space": learned.space, "state": learned.state}, out)
            else:
                out.write(f"learned key set {learned.id} is now active\n")
            return 0
        if action == "activate":
            key_set = kb.key_sets.activate(args.key_set_id)
            data = _key_set_json(kb, key_set)
            if args.json:
                print_json(data, out)
            else:
                out.write(f"key set {key_set.id} ({terminal_safe(key_set.name)}) is now active\n")
            return 0
        if action == "drop" and args.key_set_id in {k.id for k in kb.learned_key_sets()}:
            gone = kb.drop_learned(args.key_set_id)  # the active one too: learning turned off
            if args.json:
                print_json({"dropped": args.key_set_id, "learned_keys": gone}, out)
            else:
                out.write(f"learned key set {args.key_set_id} dropped ({gone} learned keys)\n")
            return 0
        if action == "drop":
            passages = kb.key_sets.drop(args.key_set_id)
            if args.json:
                print_json({"dropped": args.key_set_id, "passages": passages}, out)
            else:
                out.write(f"key set {args.key_set_id} dropped ({passages} passages deleted)\n")
            return 0
        rows = [_key_set_json(kb, k) for k in kb.key_sets.list()]
        from kvdesk.cli.learn import learned_key_set_json, learned_lines

        learned_rows = [learned_key_set_json(k) for k in kb.learned_key_sets()]
        learned_text = learned_lines(kb)
    if args.json:
        listing: dict[str, Any] = {"key_sets": rows}
        if learned_rows:
            listing["learned_key_sets"] = learned_rows
        print_json(listing, out)
        return 0
    if not rows:
        out.write("no dense key sets yet (the first search or import builds one)\n")
    for r in rows:
        done = "complete" if r["complete"] else f"{r['keyed_values']}/{r['total_values']} keyed"
        out.write(
            f"{r['id']:>3}  {r['state']:<8}  {terminal_safe(str(r['model']))}  dim {r['dim']},"
            f" {r['passages']} passages, {done}  {terminal_safe(str(r['source']))}\n"
        )
    for line in learned_text:  # learned key sets, with the gap (memorisation)
        out.write(line)
    return 0


def register(add: AddCommand) -> None:
    p = add("search", cmd_search, "search the vault; every hit explains which keys drove it")
    p.add_argument("query", metavar="QUERY", nargs="+", help="words (several are joined)")
    p.add_argument("-k", type=positive_int, default=10, help="number of hits (default 10, >= 1)")
    p.add_argument("--mode", choices=("hybrid", "lexical", "dense"), default="hybrid")
    p.add_argument("--explain", action="store_true", help="show each key's contribution")
    p.add_argument("--pilot", action="store_true", help="record this search as a pilot session")
    p.add_argument(
        "--session",
        type=positive_int,
        metavar="ID",
        default=None,
        help="with --pilot: add this query to pilot session ID (a reformulation)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    p = add(
        "eval",
        cmd_eval,
        "measure retrieval on a BEIR folder (nDCG@10, Recall@100, MRR@10)",
        vault=VaultUse.CREATES,  # imports the collection (into a scratch vault unless --vault)
    )
    p.add_argument("beir_dir", metavar="BEIR_DIR")
    p.add_argument("--split", default="test")
    p.add_argument("--mode", choices=("lexical", "dense", "hybrid", "all"), default="all")
    p.add_argument("--run", metavar="FILE", help="write a TREC run of the mode asked")
    p.add_argument("--json", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true")

    p = add("rekey", cmd_rekey, "build a new dense key set, then switch to it atomically")
    p.add_argument(
        "--model",
        default="default",
        help="model name or folder (model.onnx, tokenizer.json, kvdesk-model.json)",
    )
    p.add_argument(
        "--no-activate",
        action="store_true",
        help="build the key set as a candidate and keep searching with the active one",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true")

    p = add("keys", cmd_keys, "list, build, activate or drop dense key sets")
    p.set_defaults(keys_action="list", json=False, threads=None, quiet=False)
    sub = p.add_subparsers(dest="keys_action", metavar="SUBCOMMAND")

    def add_sub(name: str, help_text: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--vault", metavar="PATH", default=argparse.SUPPRESS, help="vault file")
        q.add_argument("--json", action="store_true")
        return q

    add_sub("list", "the dense key sets: model, state, passages, completeness")
    q = add_sub("build", "compute the dense keys still missing (with progress; resumable)")
    q.add_argument("--threads", type=int, default=None)
    q.add_argument("-q", "--quiet", action="store_true")
    q = add_sub(
        "rescan",
        "read scans and photos again (OCR; all, or the IDs given): their original bytes are"
        " never touched",
    )
    q.add_argument("ids", nargs="*", metavar="ID")
    q.add_argument("-q", "--quiet", action="store_true")
    q = add_sub("activate", "switch search to a complete key set (no rebuild), atomically")
    q.add_argument("key_set_id", metavar="KEYSET_ID", type=int)
    q = add_sub("drop", "delete a non-active key set and its vectors")
    q.add_argument("key_set_id", metavar="KEYSET_ID", type=int)
    q = add_sub(
        "audit",
        "learned keys that may leak: identifiers, numbers, e-mail addresses, names, one user's"
        " words; and whether other users' searches are shown in explanations",
    )
    q.add_argument(
        "--show-others",
        choices=("yes", "no"),
        default=None,
        help="show other users' learned searches in explanations (a curator's call on a team)",
    )
    q = add_sub(
        "confusable",
        "pairs of different values whose keys collide, what tells them apart and a tag that"
        " would (reads only)",
    )
    q.add_argument(
        "--min-dense",
        type=_similarity,
        default=None,
        metavar="COS",
        help="meaning keys at least this close (cosine, default 0.80)",
    )
    q.add_argument(
        "--min-lexical",
        type=_similarity,
        default=None,
        metavar="COS",
        help="word profiles at least this close (cosine, default 0.80)",
    )
