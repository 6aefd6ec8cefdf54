"""Fuzz the command line's text output with hostile queries on a vault of hostile documents.

Usage:
    python bench/bench_fuzz_cli.py [--queries 2000] [--seed 1] [--workers 2]
        [--work /tmp/kvdesk-bench-fuzz] [--subprocess-sample 40]

Builds a vault (``--no-dense``) whose file names, titles, bodies, record ids and tags hold ESC,
BEL, CR, DEL, C1 controls, OSC-8 links, CSI colours, bidi controls, CJK, quotes, minus signs
and bytes that are not UTF-8. Then runs --queries seeded random queries (ASCII, control
characters, OSC-8 ``\\x1b]8;;http://x\\x07``, CSI ``\\x1b[31m``, U+202E / U+2066, CJK, quotes,
minus signs, ``tag:`` / ``type:`` / ``before:`` / ``after:`` filters, strings up to 3,000
characters, lone surrogates from surrogateescape; never NUL, which argv cannot carry) through
``search QUERY`` and ``search --explain QUERY`` (text output), in-process
(``kvdesk.cli.main.main(argv, out=io.StringIO())`` with stderr captured), split over
--workers processes.

Counts: exceptions (tracebacks), nonzero exits, raw control characters printed (C0 except
\\n and \\t, DEL, C1 U+0080-U+009F, bidi controls U+202A-U+202E, U+2066-U+2069, U+200E,
U+200F, U+061C) on stdout or stderr; also lone surrogates printed (they would fail to encode
on a strict UTF-8 terminal). A sample of the queries is also run as real subprocesses
(argv as bytes) to see what a terminal would get. Writes bench/results/fuzz_cli.json.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable

BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def bad_chars(text: str) -> list[str]:
    found = []
    for ch in text:
        c = ord(ch)
        if (c < 0x20 and ch not in "\n\t") or c == 0x7F or 0x80 <= c <= 0x9F or ch in BIDI:
            found.append(f"U+{c:04X}")
    return found


def surrogates(text: str) -> list[str]:
    return [f"U+{ord(ch):04X}" for ch in text if 0xD800 <= ord(ch) <= 0xDFFF]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["ORT_DISABLE_TELEMETRY"] = "1"
    e["PYTHONPATH"] = str(ROOT)
    e.setdefault("KVDESK_HOME", "/tmp/kvdesk-bench-home")
    return e


def code_fingerprint() -> str:
    h = hashlib.sha256()
    for p in sorted((ROOT / "kvdesk").rglob("*.py")):
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


HOSTILE = [
    "\x1b]8;;http://x\x07click\x1b]8;;\x07",
    "\x1b[31m",
    "\x1b[0m",
    "\x1b[2J",
    "\x07",
    "\r",
    "\x1b",
    "\x7f",
    "\x85",
    "\x9b31m",
    "\u202e",
    "\u2066",
    "\u2069",
    "\u200f",
    "\u061c",
    "\u2028",
    "\u2029",
    "\x08",
    "\x0b",
    "\x0c",
]
WORDS = [
    "budget",
    "report",
    "travel",
    "policy",
    "invoice",
    "alpha",
    "hotel",
    "printer",
    "東京",
    "会議",
    "報告書",
    "데이터",
    "café",
    "naïve",
    "résumé",
    "zebra",
    "x",
    "DOC-1",
    "DOC-7",
    "rec-3",
    "\u202etxt.exe",
    "evil\x1b[31mred",
    "bell\x07ring",
]
FILTERS = [
    "tag:",
    "tag:finance",
    "tag:hr::leave",
    "tag:\x1b[31m",
    "type:",
    "type:pdf",
    "type:markdown",
    "type:image",
    "type:\u202e",
    "before:",
    "before:2026-06",
    "before:2026-13-45",
    "after:2026-01-01",
    "after:x",
    "before:\x07",
    ":",
    "::",
    "tag:東京",
    "-",
    "--",
    "-draft",
    "-\u202e",
]


def random_query(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.05:
        # very long, up to 3,000 characters
        unit = rng.choice(WORDS + HOSTILE + ["a", "\u202e", "東"])
        return (unit + rng.choice([" ", "", "\x1b"])) * (
            rng.randint(200, 3000) // max(1, len(unit))
        )
    if kind < 0.10:
        # lone surrogates, as argv bytes that are not UTF-8 decode (surrogateescape)
        raw = bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randint(1, 8)))
        return rng.choice(WORDS) + " " + os.fsdecode(raw) + rng.choice(["", " report"])
    if kind < 0.15:
        # random code points from the whole BMP (no NUL, no surrogates) and a few astral ones
        chars = []
        for _ in range(rng.randint(1, 40)):
            c = rng.choice(
                [
                    rng.randrange(1, 0x80),
                    rng.randrange(0x80, 0x800),
                    rng.randrange(0x800, 0xD800),
                    rng.randrange(0xE000, 0x10000),
                    rng.randrange(0x10000, 0x110000),
                ]
            )
            chars.append(chr(c))
        return "".join(chars)
    parts = []
    for _ in range(rng.randint(1, 8)):
        r = rng.random()
        if r < 0.35:
            parts.append(rng.choice(WORDS))
        elif r < 0.55:
            parts.append(rng.choice(HOSTILE) + rng.choice(["", rng.choice(WORDS)]))
        elif r < 0.70:
            parts.append(rng.choice(FILTERS) + rng.choice(["", rng.choice(WORDS)]))
        elif r < 0.80:
            q = rng.choice(['"', "'", "\u201c", "\u201d", "«", "„"])
            parts.append(q + rng.choice(WORDS) + rng.choice([q, "", " " + rng.choice(WORDS)]))
        elif r < 0.88:
            parts.append(
                rng.choice(
                    [
                        "-",
                        "\u2212",
                        "\u2013",
                        "--",
                        "+",
                        "*",
                        "?",
                        "\\",
                        "(",
                        ")",
                        "[",
                        "]",
                        "{",
                        "}",
                        "^",
                        "~",
                        "!",
                        "AND",
                        "OR",
                        "NOT",
                        "title:",
                        "body:x",
                    ]
                )
                + rng.choice(["", "budget"])
            )
        else:
            parts.append("".join(chr(rng.randrange(0x21, 0x7F)) for _ in range(rng.randint(1, 12))))
    sep = rng.choice([" ", "  ", "\t", " \r ", "\x1b ", "\u3000"])
    return sep.join(parts)


# -- the vault ----------------------------------------------------------------------------------


def build_vault(work: Path) -> Path:
    src = work / "src"
    src.mkdir(parents=True)
    names = [
        "plain budget report.txt",
        "evil\x1b[31mred.txt",
        "bell\x07ring.md",
        "cr\rfake line.txt",
        "\u202etxt.exe.md",
        "iso\u2066late\u2069.txt",
        "東京の会議.md",
        "報告書 2026.txt",
        "osc\x1b]8;;http:x\x07link\x1b]8;;\x07.md",
        "del\x7fchar.txt",
        "c1\u0085next.md",
        "quote\"d 'name'.txt",
        "minus -draft.md",
        "tab\tname.txt",
        "nl\nname.md",
        "résumé café.txt",
        "zero\u200fwidth.md",
        "arabic\u061cmark.txt",
    ]
    bodies = [
        "Quarterly budget report with \x1b[31mred\x1b[0m text and a bell \x07 here.",
        "Travel policy: hotel limit abroad. \u202eevil reversed\u202c and \u2066isolate\u2069.",
        "Invoice from printer vendor \x1b]8;;http://x\x07click me\x1b]8;;\x07 now.",
        "東京で会議の報告書を書きました。データ 데이터 처리 보고서.",
        "Carriage\rreturn and form\x0cfeed and vertical\x0btab and backspace\x08 alpha.",
        "C1 controls \x85 \x9b31m \x90 \x9c and DEL \x7f in a zebra note.",
        "Quotes \"quarterly budget\" and 'single' and \u201csmart\u201d \u2212minus \u2013dash.",
    ]
    for i, name in enumerate(names):
        body = bodies[i % len(bodies)] + f" Document {i} about budget report travel."
        title = f"Title {i} \x1b[1mbold\x1b[0m \u202eRTL\u202c 東京" if i % 3 == 0 else None
        path = src / name
        if name.endswith(".md"):
            path.write_text((f"# {title}\n\n" if title else "") + body, encoding="utf-8")
        else:
            path.write_text((f"{title}\n\n" if title else "") + body, encoding="utf-8")
    # File names that are not UTF-8 (surrogateescape on the way in).
    for raw in (b"latin1-caf\xe9.txt", b"bad\xff\xfeutf8 report.txt", b"c1-\xc2\x9b31m.txt"):
        with open(os.path.join(os.fsencode(src), raw), "wb") as fh:
            fh.write(b"Not UTF-8 name, caf\xe9 na\xefve in a Latin-1 body: budget report alpha.")
    records = work / "records.jsonl"
    with records.open("w", encoding="utf-8") as fh:
        for i in range(30):
            fh.write(
                json.dumps(
                    {
                        "_id": f"rec-{i}"
                        + ("\x1b[31m" if i % 5 == 0 else "")
                        + ("\u202e" if i % 7 == 0 else ""),
                        "title": f"Record {i} "
                        + HOSTILE[i % len(HOSTILE)]
                        + " budget "
                        + WORDS[i % len(WORDS)],
                        "text": f"Body {i}: "
                        + bodies[i % len(bodies)]
                        + " "
                        + HOSTILE[(i * 3) % len(HOSTILE)],
                        "tags": [
                            "finance",
                            "hr::leave",
                            f"t\x1b[3{i % 8}m{i}",
                            "東京",
                            "rtl\u202etag",
                        ][: 1 + i % 5],
                    }
                )
                + "\n"
            )
    vault = work / "fuzz.kvdb"
    for args in (
        ["import", str(src), "--no-dense", "-q"],
        ["import", "--records", str(records), "--no-dense", "-q"],
    ):
        p = subprocess.run(
            [PYTHON, "-m", "kvdesk.cli", "--vault", str(vault), *args],
            env=env(),
            capture_output=True,
            text=True,
            errors="replace",
        )
        assert p.returncode == 0, p.stderr
    # accepted tags with hostile names
    for doc, tag in (
        ("DOC-1", "finance"),
        ("DOC-2", "evil\x1b[31mtag"),
        ("DOC-3", "\u202ertl"),
        ("DOC-4", "東京::会議"),
        ("DOC-5", "bell\x07tag"),
    ):
        subprocess.run(
            [PYTHON, "-m", "kvdesk.cli", "--vault", str(vault), "tags", "accept", doc, tag],
            env=env(),
            capture_output=True,
        )
    return vault


# -- the worker ---------------------------------------------------------------------------------


def run_queries(vault: str, queries: list[str]) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from kvdesk.cli.main import main

    results = []
    for n, q in enumerate(queries):
        for variant in (["search", q], ["search", "--explain", q]):
            out, err = io.StringIO(), io.StringIO()
            tb = None
            rc: Any = None
            t0 = time.perf_counter()
            stray = io.StringIO()  # anything printed to sys.stdout past ``out``
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stray):
                try:
                    rc = main(["--vault", vault, *variant], out=out)
                except SystemExit as exc:
                    rc = f"SystemExit({exc.code})"
                except BaseException:  # noqa: BLE001
                    tb = traceback.format_exc()
            stdout, stderr = out.getvalue() + stray.getvalue(), err.getvalue()
            if tb is None and "Traceback (most recent call last)" in stderr:
                tb = stderr[-3000:]
            rec: dict[str, Any] = {
                "n": n,
                "explain": "--explain" in variant,
                "rc": rc,
                "ms": round((time.perf_counter() - t0) * 1000, 1),
            }
            bad_out, bad_err = bad_chars(stdout), bad_chars(stderr)
            sur = surrogates(stdout) + surrogates(stderr)
            if tb:
                rec["traceback"] = tb[-3000:]
            if rc != 0:
                rec["stderr"] = stderr[-1000:]
                rec["no_results"] = "no results" in stdout
            if bad_out or bad_err:
                rec["control_chars"] = sorted(set(bad_out + bad_err))
                lines = [ln for ln in (stdout + stderr).splitlines() if bad_chars(ln)]
                rec["control_lines"] = [ascii(ln)[:400] for ln in lines[:3]]
            if sur:
                rec["surrogates"] = sorted(set(sur))
                lines = [ln for ln in (stdout + stderr).splitlines() if surrogates(ln)]
                rec["surrogate_lines"] = [ascii(ln)[:400] for ln in lines[:3]]
            results.append(rec)
    return results


def subprocess_sample(vault: Path, queries: list[str]) -> list[dict[str, Any]]:
    """A few queries as real processes, argv as bytes: what a terminal would really receive."""
    out = []
    for q in queries:
        for extra in ([], ["--explain"]):
            argv = [
                os.fsencode(a)
                for a in [PYTHON, "-m", "kvdesk.cli", "--vault", str(vault), "search", *extra, q]
            ]
            p = subprocess.run(argv, capture_output=True, env=env(), timeout=120)
            so = p.stdout.decode("utf-8", "surrogateescape")
            se = p.stderr.decode("utf-8", "surrogateescape")
            rec: dict[str, Any] = {
                "query": ascii(q)[:200],
                "explain": bool(extra),
                "rc": p.returncode,
            }
            if "Traceback (most recent call last)" in se:
                rec["traceback"] = se[-2000:]
            bad = bad_chars(so) + bad_chars(se)
            if bad:
                rec["control_chars"] = sorted(set(bad))
            sur = surrogates(so) + surrogates(se)  # undecodable bytes on the wire
            if sur:
                rec["invalid_utf8_bytes"] = sorted(set(sur))
            out.append(rec)
    return out


def main_bench(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--subprocess-sample", type=int, default=40)
    ap.add_argument("--work", default="/tmp/kvdesk-bench-fuzz")
    ap.add_argument("--worker-vault")
    ap.add_argument("--worker-queries")
    ap.add_argument("--worker-out")
    args = ap.parse_args(argv)
    if args.worker_vault:
        queries = json.loads(
            Path(args.worker_queries).read_text(encoding="utf-8", errors="surrogatepass")
        )
        res = run_queries(args.worker_vault, queries)
        Path(args.worker_out).write_text(json.dumps(res), encoding="utf-8")
        return 0

    started = time.perf_counter()
    fp0 = code_fingerprint()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    vault = build_vault(work)
    rng = random.Random(args.seed)
    queries = [random_query(rng) for _ in range(args.queries)]
    assert all("\x00" not in q for q in queries)
    # Workers: each gets a slice (JSON keeps lone surrogates as \udcXX escapes).
    procs = []
    for w in range(args.workers):
        part = queries[w :: args.workers]
        qfile = work / f"queries-{w}.json"
        qfile.write_text(json.dumps(part), encoding="utf-8")
        procs.append(
            subprocess.Popen(
                [
                    PYTHON,
                    str(Path(__file__).resolve()),
                    "--worker-vault",
                    str(vault),
                    "--worker-queries",
                    str(qfile),
                    "--worker-out",
                    str(qfile) + ".out",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env(),
            )
        )
    results: list[dict[str, Any]] = []
    worker_errors = []
    for w, p in enumerate(procs):
        so, se = p.communicate()
        try:
            part = json.loads(Path(str(work / f"queries-{w}.json") + ".out").read_text())
        except (OSError, json.JSONDecodeError):
            worker_errors.append(f"worker {w} rc={p.returncode}: {se[-2000:]!r}")
            continue
        for r in part:
            r["n"] = r["n"] * args.workers + w
        results.extend(part)
    results.sort(key=lambda r: (r["n"], r["explain"]))
    # A sample as real processes: the hostile kinds first.
    sample_idx = [i for i, q in enumerate(queries) if surrogates(q) or bad_chars(q)][
        : args.subprocess_sample
    ]
    sample = subprocess_sample(vault, [queries[i] for i in sample_idx])

    def count(key: str) -> int:
        return sum(1 for r in results if key in r)

    nonzero = [r for r in results if r["rc"] != 0]
    failures = [
        r
        for r in results
        if "traceback" in r or r["rc"] != 0 or "control_chars" in r or "surrogates" in r
    ]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in failures:
        for kind in ("traceback", "control_chars", "surrogates"):
            if kind in r:
                by_kind.setdefault(kind, []).append(r)
        if r["rc"] != 0 and "traceback" not in r:
            by_kind.setdefault("nonzero_exit", []).append(r)
    examples = {
        kind: [{**r, "query": ascii(queries[r["n"]])[:600]} for r in rs[:4]]
        for kind, rs in by_kind.items()
    }
    ms = sorted(r["ms"] for r in results)
    summary = {
        "queries": args.queries,
        "seed": args.seed,
        "runs": len(results),
        "command": "python bench/bench_fuzz_cli.py " + " ".join(sys.argv[1:]),
        "code_fingerprint_start": fp0,
        "code_fingerprint_end": code_fingerprint(),
        "exceptions": count("traceback"),
        "nonzero_exits": len(nonzero),
        "nonzero_exits_no_results": sum(1 for r in nonzero if r.get("no_results")),
        "nonzero_exits_by_reason": dict(
            collections.Counter(
                f"rc {r['rc']}: {(r.get('stderr') or '').strip().splitlines()[-1:] or ''}"
                for r in nonzero
                if "traceback" not in r
            )
        ),
        "nonzero_exits_query_starts_with_dash": sum(
            1 for r in nonzero if queries[r["n"]].startswith("-")
        ),
        "control_chars_printed": count("control_chars"),
        "surrogates_printed": count("surrogates"),
        "queries_failing": len({r["n"] for r in failures}),
        "worker_errors": worker_errors,
        "ms_median": ms[len(ms) // 2] if ms else None,
        "subprocess_sample": {
            "runs": len(sample),
            "tracebacks": sum("traceback" in s for s in sample),
            "nonzero_exits": sum(s["rc"] != 0 for s in sample),
            "control_chars": sum("control_chars" in s for s in sample),
            "invalid_utf8_output": sum("invalid_utf8_bytes" in s for s in sample),
            "failures": [s for s in sample if s["rc"] != 0 or len(s) > 3][:5],
        },
        "examples": examples,
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz_cli.json").write_text(json.dumps(summary, indent=2))
    print(
        f"CLI fuzz: {args.queries} queries x (search, search --explain) = {len(results)} runs,"
        f" seed {args.seed}, {summary['seconds']}s (median {summary['ms_median']} ms/run)"
    )
    for key in (
        "exceptions",
        "nonzero_exits",
        "control_chars_printed",
        "surrogates_printed",
        "queries_failing",
    ):
        print(f"  {key:<24}{summary[key]:>6}")
    print(f"  subprocess sample: {summary['subprocess_sample']}")
    if worker_errors:
        print("  WORKER ERRORS:", worker_errors)
    for kind, rs in examples.items():
        print(f"\n{kind}: e.g.")
        for r in rs[:2]:
            print("  query", r["query"][:300], "explain" if r["explain"] else "")
            for k in ("traceback", "stderr", "control_lines", "surrogate_lines"):
                if k in r:
                    print(f"   {k}:", str(r[k])[-1200:])
    print(f"written: {RESULTS / 'fuzz_cli.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
