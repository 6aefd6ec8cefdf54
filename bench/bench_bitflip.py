"""Bit-flip campaign: does ``kvdesk check`` see every change to what the vault stores?

Usage:
    python bench/bench_bitflip.py [--trials 140] [--seed 1] [--workers 2]
        [--work /tmp/kvdesk-bench-bitflip] [--timeout 120]

Builds a vault (40 .txt/.md files and 40 records with tags, ``--no-dense``), closes it (kvdesk
closes with a WAL checkpoint; the script verifies that no -wal is left), then for each seeded
trial copies the vault file alone, flips one random bit at a random byte offset and:

(a) reads an *observable dump* with plain sqlite3: every row of ``value`` and ``version``
    (identifier, external_id, title, media_type, text, metadata, sha256, ids, current version),
    every ``blob`` (sha256 column, size, sha256 of the data) and every ``value_tag`` row; text
    decoded with errors='replace'. A dump that cannot be read at all counts as "changed";
(b) runs ``kvdesk --vault COPY check --json`` in a subprocess (must print JSON; rc 0 / 1);
(c) runs ``show ID`` for every document and one ``search`` (text output) through the CLI's
    ``main()`` in a probe subprocess: any Python traceback counts as a crash.

Each flip is classified: detected (check ok=false), harmless (dump identical, check ok=true),
missed (dump differs, check ok=true) or crash (a traceback, a timeout, or check output that is
not JSON). A flip that check reports while the dump is identical is "detected (no visible
change)". Beyond the brief's dump, the script also notes (without changing the class) flips
that change tag names or the text printed by ``show`` while check says ok.

Writes bench/results/bitflip.json and prints a summary table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable

WORDS = (
    "amber basalt cobalt dahlia ember fennel garnet hazel indigo juniper kestrel lilac marble "
    "nectar obsidian pepper quartz russet saffron tundra umber velvet willow xenon yarrow zephyr"
).split()


def kvdesk_cmd(vault: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "kvdesk.cli", "--vault", str(vault), *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["ORT_DISABLE_TELEMETRY"] = "1"
    e["PYTHONPATH"] = str(ROOT)
    e.setdefault("KVDESK_HOME", "/tmp/kvdesk-bench-home")
    return e


def code_fingerprint() -> str:
    """sha256 over kvdesk/**/*.py as they are now (the working tree may change between runs)."""
    h = hashlib.sha256()
    for p in sorted((ROOT / "kvdesk").rglob("*.py")):
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# -- building the vault -------------------------------------------------------------------------


def build_vault(work: Path) -> tuple[Path, list[str], bool]:
    src = work / "src"
    src.mkdir(parents=True)
    for i in range(40):
        w1, w2 = WORDS[i % len(WORDS)], WORDS[(i * 7 + 3) % len(WORDS)]
        title = f"Note {i:02d} on {w1} and {w2}"
        body = (
            f"Document number {i} talks about {w1} {w2} and the unique word uniqfile{i:03d}. "
            f"It has a second sentence mentioning {WORDS[(i * 3) % len(WORDS)]}.\n"
        ) * (1 + i % 4)
        if i % 2:
            (src / f"note-{i:02d}.md").write_text(f"# {title}\n\n{body}", encoding="utf-8")
        else:
            (src / f"note-{i:02d}.txt").write_text(f"{title}\n\n{body}", encoding="utf-8")
    records = work / "records.jsonl"
    with records.open("w", encoding="utf-8") as fh:
        for i in range(40):
            rec = {
                "_id": f"rec-{i:03d}",
                "title": f"Record {i:02d}: {WORDS[(i * 5) % len(WORDS)]} report",
                "text": f"Record body {i} with uniqrec{i:03d} and {WORDS[(i * 11) % len(WORDS)]}.",
                "tags": [f"topic{i % 5}", f"team::{WORDS[i % 4]}"],
            }
            fh.write(json.dumps(rec) + "\n")
    vault = work / "vault.kvdb"
    for args in (
        ["import", str(src), "--no-dense", "-q"],
        ["import", "--records", str(records), "--no-dense", "-q"],
    ):
        subprocess.run(kvdesk_cmd(vault, *args), check=True, env=env(), stdout=subprocess.DEVNULL)
    wal = Path(str(vault) + "-wal")
    checkpointed = not wal.exists() or wal.stat().st_size == 0
    if not checkpointed:  # never expected: kvdesk closes with a WAL checkpoint
        conn = sqlite3.connect(vault)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    conn = sqlite3.connect(f"file:{vault}?mode=ro", uri=True)
    idents = [r[0] for r in conn.execute("SELECT identifier FROM value ORDER BY id")]
    conn.close()
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(vault) + suffix)
    return vault, idents, checkpointed


def page_owners(vault: Path) -> tuple[int, dict[int, str]]:
    conn = sqlite3.connect(f"file:{vault}?mode=ro", uri=True)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    owners = {}
    with contextlib.suppress(sqlite3.DatabaseError):
        for name, pageno in conn.execute("SELECT name, pageno FROM dbstat"):
            owners[pageno] = name
    conn.close()
    return page_size, owners


# -- (a) the observable dump --------------------------------------------------------------------


def _txt(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return v


def observable_dump(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """What is stored, read with plain sqlite3 (table scans); (None, error) if unreadable."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.text_factory = bytes
        dump: dict[str, Any] = {}
        dump["value"] = sorted(
            tuple(_txt(x) for x in row)
            for row in conn.execute(
                "SELECT id, identifier, external_id, title, media_type, current_version"
                " FROM value NOT INDEXED"
            )
        )
        dump["version"] = sorted(
            tuple(_txt(x) for x in row)
            for row in conn.execute(
                "SELECT value_id, version, title, media_type, text, metadata, sha256"
                " FROM version NOT INDEXED"
            )
        )
        dump["blob"] = sorted(
            (_txt(sha), size, hashlib.sha256(bytes(data) if data is not None else b"").hexdigest())
            for sha, size, data in conn.execute("SELECT sha256, size, data FROM blob NOT INDEXED")
        )
        dump["value_tag"] = sorted(
            tuple(_txt(x) for x in row)
            for row in conn.execute(
                "SELECT value_id, tag_id, state, actor, at FROM value_tag NOT INDEXED"
            )
        )
        # Beyond the brief's dump (reported apart, does not change the class): tag names.
        extra = sorted(
            tuple(_txt(x) for x in row)
            for row in conn.execute("SELECT id, name FROM tag NOT INDEXED")
        )
        conn.close()
        return {"core": dump, "tag_names": extra}, None
    except Exception as exc:  # noqa: BLE001 - unreadable at all is an answer
        return None, f"{type(exc).__name__}: {exc}"


def diff_sections(base: dict[str, Any], dump: dict[str, Any] | None) -> list[str]:
    if dump is None:
        return ["<unreadable>"]
    return [k for k in base["core"] if base["core"][k] != dump["core"].get(k)]


# -- (c) the probe: show every document and one search, in one process --------------------------


def probe(vault: str, idents: list[str], query: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from kvdesk.cli.main import main

    results: list[dict[str, Any]] = []
    for argv in [["--vault", vault, "show", i] for i in idents] + [
        ["--vault", vault, "search", query]
    ]:
        out, err = io.StringIO(), io.StringIO()
        tb = None
        rc: Any = None
        with contextlib.redirect_stderr(err):
            try:
                rc = main(argv, out=out)
            except SystemExit as exc:
                rc = f"SystemExit({exc.code})"
            except BaseException:  # noqa: BLE001
                tb = traceback.format_exc()
        stderr = err.getvalue()
        if tb is None and "Traceback (most recent call last)" in stderr:
            tb = stderr
        results.append(
            {
                "argv": argv[2:],
                "rc": rc,
                "stdout": out.getvalue(),
                "stderr": stderr[-2000:],
                "traceback": tb,
            }
        )
    return {"results": results}


def run_probe(vault: Path, idents: list[str], query: str, timeout: float) -> dict[str, Any]:
    cmd = [
        PYTHON,
        str(Path(__file__).resolve()),
        "--probe",
        str(vault),
        "--query",
        query,
        "--idents",
        ",".join(idents),
    ]
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env(), errors="replace"
        )
    except subprocess.TimeoutExpired:
        return {"error": f"probe timed out after {timeout}s"}
    try:
        data = json.loads(p.stdout)
    except json.JSONDecodeError:
        return {"error": f"probe died rc={p.returncode}", "stderr": p.stderr[-3000:]}
    if "Traceback (most recent call last)" in p.stderr:
        data["process_traceback"] = p.stderr[-3000:]
    return data


# -- one trial ----------------------------------------------------------------------------------


def run_check(vault: Path, timeout: float) -> dict[str, Any]:
    try:
        p = subprocess.run(
            kvdesk_cmd(vault, "check", "--json"),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env(),
            errors="replace",
        )
    except subprocess.TimeoutExpired:
        return {"crash": f"check timed out after {timeout}s"}
    res: dict[str, Any] = {"rc": p.returncode, "stderr": p.stderr[-3000:]}
    try:
        data = json.loads(p.stdout)
        res["json"] = data
    except json.JSONDecodeError:
        res["crash"] = f"check printed no JSON (rc {p.returncode}): {p.stdout[-500:]!r}"
        return res
    if "Traceback (most recent call last)" in p.stderr:
        res["crash"] = "traceback on check's stderr"
    elif p.returncode not in (0, 1):
        res["crash"] = f"check exited {p.returncode}"
    elif not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        res["crash"] = "check JSON has no boolean ok"
    elif (p.returncode == 0) != data["ok"]:
        res["crash"] = f"check rc {p.returncode} disagrees with ok={data['ok']}"
    return res


def trial(spec: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    tdir = Path(ctx["work"]) / f"t{spec['n']:04d}"
    tdir.mkdir()
    copy = tdir / "copy.kvdb"
    shutil.copyfile(ctx["vault"], copy)
    with open(copy, "r+b") as fh:
        fh.seek(spec["offset"])
        byte = fh.read(1)[0]
        fh.seek(spec["offset"])
        fh.write(bytes([byte ^ (1 << spec["bit"])]))
    # (a) the dump, on its own copy of the flipped file
    dcopy = tdir / "dump.kvdb"
    shutil.copyfile(copy, dcopy)
    dump, dump_error = observable_dump(dcopy)
    changed = diff_sections(ctx["base_dump"], dump)
    tag_names_changed = dump is not None and dump["tag_names"] != ctx["base_dump"]["tag_names"]
    # (b) check
    t0 = time.perf_counter()
    check = run_check(copy, ctx["timeout"])
    check_s = time.perf_counter() - t0
    # (c) show every document, one search
    pr = run_probe(copy, ctx["idents"], ctx["query"], ctx["timeout"])
    crashes: list[str] = []
    if "crash" in check:
        crashes.append(check["crash"])
    if "error" in pr:
        crashes.append(pr["error"] + " " + pr.get("stderr", "")[-800:])
    if "process_traceback" in pr:
        crashes.append("probe process traceback: " + pr["process_traceback"][-800:])
    show_diff: list[str] = []
    for r in pr.get("results", []):
        if r["traceback"]:
            crashes.append(f"{' '.join(r['argv'])}: {r['traceback'][-1200:]}")
        if isinstance(r["rc"], str):
            crashes.append(f"{' '.join(r['argv'])}: {r['rc']}")
        key = " ".join(r["argv"])
        if r["argv"][0] == "show" and ctx["base_show"].get(key) != (r["rc"], r["stdout"]):
            show_diff.append(key)
    ok = check.get("json", {}).get("ok") if isinstance(check.get("json"), dict) else None
    if crashes:
        cls = "crash"
    elif ok is False:
        cls = "detected" if changed else "detected (no visible change)"
    elif changed:
        cls = "missed"
    else:
        cls = "harmless"
    page = spec["offset"] // ctx["page_size"] + 1
    result = {
        "n": spec["n"],
        "offset": spec["offset"],
        "bit": spec["bit"],
        "page": page,
        "page_owner": ctx["owners"].get(page, "header" if page == 1 else "free/unknown"),
        "class": cls,
        "dump_changed": changed,
        "dump_error": dump_error,
        "check_ok": ok,
        "check_rc": check.get("rc"),
        "check_seconds": round(check_s, 2),
        "check_problems": (check.get("json") or {}).get("problems", [])[:5]
        if isinstance(check.get("json"), dict)
        else None,
        "crashes": crashes,
        "beyond_brief": {
            "tag_names_changed": tag_names_changed,
            "show_output_changed": show_diff[:10],
            "show_output_changed_count": len(show_diff),
        },
    }
    if cls in ("harmless", "detected", "detected (no visible change)") and not ctx["keep"]:
        shutil.rmtree(tdir, ignore_errors=True)
    return result


def main_bench(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=140)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--work", default="/tmp/kvdesk-bench-bitflip")
    ap.add_argument("--keep", action="store_true", help="keep every trial's copy")
    ap.add_argument("--probe")
    ap.add_argument("--query", default="marble report")
    ap.add_argument("--idents", default="")
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args.idents.split(","), args.query)))
        return 0

    started = time.perf_counter()
    code_fp0 = code_fingerprint()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    vault, idents, checkpointed = build_vault(work)
    size = vault.stat().st_size
    page_size, owners = page_owners(vault)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(vault) + suffix)
    base_dump, err = observable_dump(vault)
    assert base_dump is not None, err
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(vault) + suffix)
    # Baseline on an unflipped copy: check must be ok; show outputs to compare against.
    bdir = work / "baseline"
    bdir.mkdir()
    shutil.copyfile(vault, bdir / "copy.kvdb")
    bcheck = run_check(bdir / "copy.kvdb", args.timeout)
    assert bcheck.get("json", {}).get("ok") is True, bcheck
    bprobe = run_probe(bdir / "copy.kvdb", idents, args.query, args.timeout)
    assert "error" not in bprobe, bprobe
    base_show = {
        " ".join(r["argv"]): (r["rc"], r["stdout"])
        for r in bprobe["results"]
        if r["argv"][0] == "show"
    }
    rng = random.Random(args.seed)
    specs = [
        {"n": n, "offset": rng.randrange(size), "bit": rng.randrange(8)} for n in range(args.trials)
    ]
    ctx = {
        "work": str(work),
        "vault": str(vault),
        "base_dump": base_dump,
        "idents": idents,
        "query": args.query,
        "timeout": args.timeout,
        "page_size": page_size,
        "owners": owners,
        "base_show": base_show,
        "keep": args.keep,
    }
    results: list[dict[str, Any]] = []
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        futs = [pool.submit(trial, s, ctx) for s in specs]
        for i, fut in enumerate(concurrent.futures.as_completed(futs), 1):
            r = fut.result()
            results.append(r)
            if r["class"] in ("missed", "crash"):
                print(
                    f"  trial {r['n']}: {r['class'].upper()} offset={r['offset']} bit={r['bit']}"
                    f" page={r['page']} ({r['page_owner']}) changed={r['dump_changed']}"
                    f" crashes={[c[:300] for c in r['crashes']]}",
                    file=sys.stderr,
                )
            if i % 20 == 0:
                print(
                    f"  {i}/{args.trials} trials, {time.perf_counter() - started:.0f}s",
                    file=sys.stderr,
                )
    results.sort(key=lambda r: r["n"])
    classes = ["detected", "detected (no visible change)", "harmless", "missed", "crash"]
    counts = {c: sum(r["class"] == c for r in results) for c in classes}
    by_owner: dict[str, dict[str, int]] = {}
    for r in results:
        by_owner.setdefault(r["page_owner"], {}).setdefault(r["class"], 0)
        by_owner[r["page_owner"]][r["class"]] += 1
    beyond = [
        {"n": r["n"], "offset": r["offset"], "bit": r["bit"], **r["beyond_brief"]}
        for r in results
        if r["check_ok"]
        and (
            r["beyond_brief"]["tag_names_changed"] or r["beyond_brief"]["show_output_changed_count"]
        )
    ]
    summary = {
        "trials": args.trials,
        "seed": args.seed,
        "vault_bytes": size,
        "page_size": page_size,
        "documents": len(idents),
        "checkpointed_on_close": checkpointed,
        "counts": counts,
        "by_page_owner": by_owner,
        "check_seconds_median": sorted(r["check_seconds"] for r in results)[len(results) // 2]
        if results
        else None,
        "check_ok_but_visible_change_beyond_brief": beyond,
        "seconds": round(time.perf_counter() - started, 1),
        "command": "python bench/bench_bitflip.py " + " ".join(sys.argv[1:]),
        "code_fingerprint_start": code_fp0,
        "code_fingerprint_end": code_fingerprint(),
        "trials_detail": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bitflip.json").write_text(json.dumps(summary, indent=2, default=str))
    print(
        f"\nbit flips: {args.trials} trials (seed {args.seed}) on a {size}-byte vault"
        f" of {len(idents)} documents, {summary['seconds']}s"
    )
    print(f"{'class':<32}{'count':>6}")
    for c in classes:
        print(f"{c:<32}{counts[c]:>6}")
    print("\nby page owner:")
    for owner, cs in sorted(by_owner.items()):
        print(f"  {owner:<36} " + ", ".join(f"{k}={v}" for k, v in sorted(cs.items())))
    if beyond:
        print(
            f"\nbeyond the brief: {len(beyond)} flips with check ok but tag names or show"
            " output changed (see JSON)"
        )
    for r in results:
        if r["class"] in ("missed", "crash"):
            print(
                f"\n{r['class'].upper()} trial {r['n']}: offset {r['offset']} bit {r['bit']}"
                f" page {r['page']} ({r['page_owner']}); dump changed: {r['dump_changed']}"
            )
            for c in r["crashes"]:
                print("   ", c[-1500:])
    print(f"\nwritten: {RESULTS / 'bitflip.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
