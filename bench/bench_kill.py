"""kill -9 campaigns: values lost and keys drifted when a write is killed at a random moment.

Usage:
    python bench/bench_kill.py [--kills 15] [--seed 1] [--files 300] [--records 3000]
        [--accepts 400] [--work /tmp/kvdesk-bench-kill] [--only folder,records,tags]

(a) folder: ``kvdesk import FOLDER --no-dense -v`` of --files text files (txt, md, html, json,
    csv; each with a unique word) killed with SIGKILL at a random moment, then rerun to
    completion. Values lost: files not stored, or stored bytes that differ from the file (read
    with plain sqlite3 through the ``source`` table). Keys drifted: after the rerun a lexical
    search of each file's unique word must find its document, and ``check --json`` must be ok.
(b) records: ``kvdesk import --records FILE.jsonl --no-dense -v`` of --records records killed at
    random, then rerun: records lost after the rerun (target 0), and what the kill cost before
    the rerun: records the importer had already taken in hand (a tracer in the same process
    writes each record's line number as ``_import_record`` starts) that are not in the vault
    after the kill. The README promises at most "the document in hand". Also: records printed
    as stored (``-v``) that the kill lost anyway (must be 0).
(c) tags: one process runs ``main(["tags", "accept", DOC-n, TAG])`` in a loop (a fresh tag name
    each time) and is killed at random; afterwards, in a fresh process, for every tag stored
    as accepted ``search "tag:TAG"`` must find exactly the documents that have it accepted.

Every command runs through kvdesk's own CLI ``main()`` (a small wrapper adds the tracer of (b)
and nothing else). The kill hits the CLI process only (as ``kill -9 PID`` would); a parser
worker left behind is counted as an orphan, then ended. Writes bench/results/kill.json.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable

# The wrapper every campaign runs: kvdesk's CLI main(), plus (for the records campaign) a line
# on fd 2 each time the importer takes a record or a file in hand. Nothing else is changed.
WRAPPER = r"""
import os, sys
sys.path.insert(0, %(root)r)
from kvdesk.core.vault import importer as _imp
_rec = _imp.Importer._import_record
def _traced_record(self, file_path, number, line, first_line):
    os.write(2, b"KVTRACE record %%d\n" %% number)
    return _rec(self, file_path, number, line, first_line)
_imp.Importer._import_record = _traced_record
_file = _imp.Importer._import_file
def _traced_file(self, path, extractor):
    os.write(2, b"KVTRACE file " + os.fsencode(path) + b"\n")
    return _file(self, path, extractor)
_imp.Importer._import_file = _traced_file
from kvdesk.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

TAG_LOOP = r"""
import io, os, sys, contextlib
sys.path.insert(0, %(root)r)
from kvdesk.cli.main import main
vault, prefix, docs, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(count):
    doc = "DOC-%%d" %% (1 + (i * 7919) %% docs)
    tag = "%%s%%04d" %% (prefix, i)
    os.write(2, ("KVTRACE accept %%s %%s\n" %% (doc, tag)).encode())
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["--vault", vault, "tags", "accept", doc, tag], out=io.StringIO())
    os.write(2, ("KVTRACE accepted %%s %%s %%d\n" %% (doc, tag, rc)).encode())
"""


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["ORT_DISABLE_TELEMETRY"] = "1"
    e["PYTHONPATH"] = str(ROOT)
    e.setdefault("KVDESK_HOME", "/tmp/kvdesk-bench-home")
    return e


def cli(vault: Path, *args: str) -> list[str]:
    return [PYTHON, "-c", WRAPPER % {"root": str(ROOT)}, "--vault", str(vault), *args]


def run_cli(vault: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(vault, *args),
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        errors="replace",
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_json(vault: Path) -> dict[str, Any]:
    p = subprocess.run(
        [PYTHON, "-m", "kvdesk.cli", "--vault", str(vault), "check", "--json"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
        errors="replace",
    )
    try:
        data = json.loads(p.stdout)
    except json.JSONDecodeError:
        return {"ok": False, "problems": [f"no JSON (rc {p.returncode}): {p.stderr[-800:]}"]}
    if "Traceback (most recent call last)" in p.stderr:
        data["ok"] = False
        data.setdefault("problems", []).append("traceback: " + p.stderr[-800:])
    return data


def killed_run(
    cmd: list[str], delay: float, stderr_path: Path, marker: bytes | None = b"KVTRACE"
) -> dict[str, Any]:
    """Start ``cmd`` in its own session; SIGKILL its main process ``delay`` s after ``marker``
    first shows on its stderr (after start when ``marker`` is None)."""
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, env=env(), start_new_session=True
        )
        t0 = time.perf_counter()
        if marker is not None:
            while proc.poll() is None and time.perf_counter() - t0 < 120:
                if marker in stderr_path.read_bytes():
                    break
                time.sleep(0.01)
        t1 = time.perf_counter()
        try:
            proc.wait(timeout=delay)
            finished = True
        except subprocess.TimeoutExpired:
            finished = False
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    elapsed = time.perf_counter() - t1
    # Anything left behind in the killed process's group (a parser worker), 2 s later.
    time.sleep(2.0)
    ps = subprocess.run(
        ["ps", "-o", "pid=,stat=,args=", "-g", str(proc.pid)], capture_output=True, text=True
    )
    alive = [ln.strip() for ln in ps.stdout.splitlines() if ln.split()[1:2] != ["Z"]]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return {
        "finished_before_kill": finished,
        "killed_after_s": round(elapsed, 3),
        "orphan_group_alive": bool(alive),
        "orphans": alive[:3],
        "rc": proc.returncode,
    }


def calibrate(cmd: list[str], stderr_path: Path) -> float:
    """Seconds from the first trace line to the end of an unkilled run of ``cmd``."""
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env())
        t0 = time.perf_counter()
        while proc.poll() is None and b"KVTRACE" not in stderr_path.read_bytes():
            time.sleep(0.01)
        t1 = time.perf_counter()
        proc.wait()
    assert proc.returncode == 0, stderr_path.read_text(errors="replace")[-1000:]
    return time.perf_counter() - (t1 if t1 > t0 else t0)


def trace(stderr_path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {
        "record": [],
        "file": [],
        "stored": [],
        "accept": [],
        "accepted": [],
    }
    for raw in stderr_path.read_bytes().splitlines():
        line = raw.decode("utf-8", "surrogateescape")
        if line.startswith("KVTRACE "):
            kind, _, rest = line[8:].partition(" ")
            out[kind].append(rest)
        elif " DOC-" in line and (
            "imported" in line or "updated" in line or "stored" in line or "duplicate" in line
        ):
            out["stored"].append(line)
    return out


def vault_rows(vault: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(vault, timeout=30)
    return conn


def code_fingerprint() -> str:
    """sha256 over kvdesk/**/*.py as they are now (the working tree may change between runs)."""
    h = hashlib.sha256()
    for p in sorted((ROOT / "kvdesk").rglob("*.py")):
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# -- verifier (runs in a fresh process: what a user would get after the kill) -------------------


def verify_words(vault: str, pairs: list[tuple[str, str]], field: str) -> dict[str, Any]:
    """For each (word, expected source path / external id): does a lexical search find it?"""
    sys.path.insert(0, str(ROOT))
    from kvdesk.core.knowledge_base import KnowledgeBase

    missing: list[str] = []
    errors: list[str] = []
    kb = KnowledgeBase.open(vault)
    try:
        for word, expected in pairs:
            try:
                res = kb.search(word, k=5, mode="lexical")
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{word}: {type(exc).__name__}: {exc}")
                continue
            if not any(getattr(h, field) == expected for h in res.hits):
                missing.append(f"{word} -> {expected}")
    finally:
        kb.close()
    return {"missing": missing, "errors": errors}


def verify_tags(vault: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from kvdesk.core.knowledge_base import KnowledgeBase

    conn = sqlite3.connect(f"file:{vault}?mode=ro", uri=True)
    accepted: dict[str, set[str]] = {}
    for name, ident in conn.execute(
        "SELECT t.name, v.identifier FROM value_tag vt JOIN tag t ON t.id = vt.tag_id"
        " JOIN value v ON v.id = vt.value_id WHERE vt.state = 'accepted'"
    ):
        accepted.setdefault(name, set()).add(ident)
    all_tags = [r[0] for r in conn.execute("SELECT name FROM tag")]
    conn.close()
    drift: list[str] = []
    errors: list[str] = []
    kb = KnowledgeBase.open(vault)
    try:
        for name in all_tags:
            want = accepted.get(name, set())
            try:
                res = kb.search(f"tag:{name}", k=50, mode="lexical")
            except Exception as exc:  # noqa: BLE001
                errors.append(f"tag:{name}: {type(exc).__name__}: {exc}")
                continue
            got = {h.identifier for h in res.hits}
            if got != want:
                drift.append(
                    f"tag:{name}: stored accepted on {sorted(want)}, search finds {sorted(got)}"
                )
    finally:
        kb.close()
    return {
        "tags": len(all_tags),
        "accepted_pairs": sum(len(v) for v in accepted.values()),
        "drift": drift,
        "errors": errors,
    }


def run_verifier(*args: str) -> dict[str, Any]:
    p = subprocess.run(
        [PYTHON, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=600,
        errors="replace",
    )
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError:
        return {
            "errors": [f"verifier died rc={p.returncode}: {p.stderr[-1500:]}"],
            "missing": [],
            "drift": [],
        }


# -- (a) folder ---------------------------------------------------------------------------------


def make_folder(root: Path, n: int) -> list[tuple[Path, str]]:
    root.mkdir(parents=True)
    kinds = ["txt", "md", "html", "json", "csv"]
    files = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        word = f"uniq{i:04d}x"
        title = f"File {i} about topic {i % 17}"
        body = f"This is file number {i}. Its unique word is {word}. " * (1 + i % 5)
        path = root / f"d{i % 6}" / f"file-{i:04d}.{kind}"
        path.parent.mkdir(exist_ok=True)
        if kind == "txt":
            data = f"{title}\n\n{body}\n"
        elif kind == "md":
            data = f"# {title}\n\n{body}\n"
        elif kind == "html":
            data = f"<html><head><title>{title}</title></head><body><p>{body}</p></body></html>"
        elif kind == "json":
            data = json.dumps({"title": title, "body": body, "n": i})
        else:
            data = f"id,title,body\n{i},{title},{body}\n"
        path.write_text(data, encoding="utf-8")
        files.append((path, word))
    return files


def values_lost_files(vault: Path, files: list[tuple[Path, str]]) -> dict[str, Any]:
    conn = vault_rows(vault)
    lost, differing = [], []
    for path, _ in files:
        row = conn.execute(
            "SELECT vc.sha256, b.data FROM source s JOIN value_current vc ON vc.id = s.value_id"
            " LEFT JOIN blob b ON b.sha256 = vc.sha256 WHERE s.path = ?",
            (os.fsencode(str(path)),),
        ).fetchone()
        if row is None:
            lost.append(str(path))
            continue
        want = sha(path.read_bytes())
        if row[0] != want or row[1] is None or sha(bytes(row[1])) != want:
            differing.append(str(path))
    values = conn.execute("SELECT count(*) FROM value").fetchone()[0]
    conn.close()
    return {"lost": lost, "differing": differing, "values_in_vault": values}


def campaign_folder(work: Path, rng: random.Random, kills: int, n: int) -> dict[str, Any]:
    src = work / "folder-src"
    files = make_folder(src, n)
    # Calibrate: how long does a full import take?
    cal = work / "folder-cal.kvdb"
    full_s = calibrate(cli(cal, "import", str(src), "--no-dense", "-v"), work / "folder-cal.err")
    assert len(stored_values(cal)) == n
    runs = []
    for k in range(kills):
        vault = work / f"folder-{k:02d}.kvdb"
        delay = rng.uniform(0, full_s)
        errp = work / f"folder-{k:02d}.stderr"
        kr = killed_run(cli(vault, "import", str(src), "--no-dense", "-v"), delay, errp)
        tr = trace(errp)
        after_kill: dict[str, Any] = {}
        if vault.exists():
            v = values_lost_files(vault, files)
            stored = n - len(v["lost"])
            in_hand = len(tr["file"])
            announced = len(tr["stored"])
            stored_paths = {str(p) for p, _ in files} - set(v["lost"])
            announced_lost = [s for s in tr["stored"] if s.rsplit(" ", 1)[-1] not in stored_paths]
            after_kill = {
                "stored": stored,
                "taken_in_hand": in_hand,
                "announced": announced,
                "cost": max(0, in_hand - stored),
                "differing": len(v["differing"]),
                "announced_but_lost": announced_lost[:5],
            }
        rr = run_cli(vault, "import", str(src), "--no-dense", "--json", "-q")
        rerun_ok = rr.returncode == 0 and "Traceback" not in rr.stderr
        v = values_lost_files(vault, files)
        ver = run_verifier(
            "--verify-words",
            str(vault),
            "--field",
            "source_path",
            "--pairs",
            json.dumps([[w, str(p)] for p, w in files]),
        )
        chk = check_json(vault)
        run = {
            "kill": k,
            "delay_s": round(delay, 3),
            **kr,
            "after_kill": after_kill,
            "rerun_rc": rr.returncode,
            "rerun_ok": rerun_ok,
            "rerun_stderr_tail": "" if rerun_ok else rr.stderr[-1500:],
            "values_lost": len(v["lost"]) + len(v["differing"]),
            "lost_examples": (v["lost"] + v["differing"])[:5],
            "duplicates": v["values_in_vault"] - n,
            "keys_drifted": len(ver.get("missing", [])),
            "drift_examples": ver.get("missing", [])[:5],
            "search_errors": ver.get("errors", [])[:5],
            "check_ok": chk.get("ok"),
            "check_problems": chk.get("problems", [])[:5],
        }
        runs.append(run)
        print(
            f"  folder kill {k}: after {kr['killed_after_s']}s"
            f" (finished={kr['finished_before_kill']}), stored {after_kill.get('stored')},"
            f" lost {run['values_lost']}, drift {run['keys_drifted']},"
            f" check {run['check_ok']}",
            file=sys.stderr,
        )
    return {
        "files": n,
        "full_import_s": round(full_s, 2),
        "runs": runs,
        "values_lost": sum(r["values_lost"] for r in runs),
        "keys_drifted": sum(r["keys_drifted"] for r in runs),
        "check_not_ok": sum(not r["check_ok"] for r in runs),
        "rerun_failed": sum(not r["rerun_ok"] for r in runs),
        "duplicates": sum(max(0, r["duplicates"]) for r in runs),
        "search_errors": sum(len(r["search_errors"]) for r in runs),
        "orphans": sum(r["orphan_group_alive"] for r in runs),
        "orphan_examples": [o for r in runs for o in r["orphans"]][:3],
        "kills_mid_import": sum(
            1 for r in runs if r["after_kill"] and 0 < r["after_kill"]["stored"] < n
        ),
        "max_cost_before_rerun": max(
            (r["after_kill"].get("cost", 0) for r in runs if r["after_kill"]), default=0
        ),
        "announced_but_lost": sum(len(r["after_kill"].get("announced_but_lost", [])) for r in runs),
    }


# -- (b) records --------------------------------------------------------------------------------


def make_records(path: Path, n: int) -> list[tuple[str, str]]:
    pairs = []
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            word = f"recw{i:05d}z"
            fh.write(
                json.dumps(
                    {
                        "_id": f"r{i:05d}",
                        "title": f"Record {i}",
                        "text": f"Record {i} has the unique word {word}.",
                        "tags": [f"grp{i % 9}"],
                    }
                )
                + "\n"
            )
            pairs.append((word, f"r{i:05d}"))
    return pairs


def stored_values(vault: Path) -> list[str]:
    conn = vault_rows(vault)
    ids = [r[0] for r in conn.execute("SELECT identifier FROM value")]
    conn.close()
    return ids


def stored_records(vault: Path) -> set[str]:
    conn = vault_rows(vault)
    ids = {
        r[0] for r in conn.execute("SELECT external_id FROM value WHERE external_id IS NOT NULL")
    }
    conn.close()
    return ids


def campaign_records(
    work: Path, rng: random.Random, kills: int, n: int, sample: int
) -> dict[str, Any]:
    recs = work / "records.jsonl"
    pairs = make_records(recs, n)
    ids = [e for _, e in pairs]
    cal = work / "records-cal.kvdb"
    full_s = calibrate(
        cli(cal, "import", "--records", str(recs), "--no-dense", "-v"), work / "records-cal.err"
    )
    assert len(stored_records(cal)) == n
    runs = []
    for k in range(kills):
        vault = work / f"records-{k:02d}.kvdb"
        delay = rng.uniform(0, full_s)
        errp = work / f"records-{k:02d}.stderr"
        kr = killed_run(
            cli(vault, "import", "--records", str(recs), "--no-dense", "-v"), delay, errp
        )
        tr = trace(errp)
        after_kill: dict[str, Any] = {}
        if vault.exists():
            have = stored_records(vault)
            in_hand = max((int(x) for x in tr["record"]), default=0)  # line numbers, 1-based
            taken = set(ids[:in_hand])
            announced = {s.split()[-1] for s in tr["stored"]}
            announced_ids = {a.rsplit(":", 1)[-1] for a in announced}
            after_kill = {
                "stored": len(have),
                "taken_in_hand": in_hand,
                "announced": len(tr["stored"]),
                "cost": len(taken - have),
                "announced_but_lost": len(
                    {ids[int(x) - 1] for x in announced_ids if x.isdigit()} - have
                ),
                "stored_not_prefix": len(have - taken) if in_hand else None,
            }
        rr = run_cli(vault, "import", "--records", str(recs), "--no-dense", "--json", "-q")
        rerun_ok = rr.returncode == 0 and "Traceback" not in rr.stderr
        have = stored_records(vault)
        lost = [i for i in ids if i not in have]
        conn = vault_rows(vault)
        values = conn.execute("SELECT count(*) FROM value").fetchone()[0]
        conn.close()
        chosen = rng.sample(pairs, min(sample, n))
        ver = run_verifier(
            "--verify-words", str(vault), "--field", "external_id", "--pairs", json.dumps(chosen)
        )
        chk = check_json(vault)
        run = {
            "kill": k,
            "delay_s": round(delay, 3),
            **kr,
            "after_kill": after_kill,
            "rerun_rc": rr.returncode,
            "rerun_ok": rerun_ok,
            "rerun_stderr_tail": "" if rerun_ok else rr.stderr[-1500:],
            "records_lost": len(lost),
            "lost_examples": lost[:5],
            "duplicates": values - n,
            "keys_checked": len(chosen),
            "keys_drifted": len(ver.get("missing", [])),
            "drift_examples": ver.get("missing", [])[:5],
            "search_errors": ver.get("errors", [])[:5],
            "check_ok": chk.get("ok"),
            "check_problems": chk.get("problems", [])[:5],
        }
        runs.append(run)
        print(
            f"  records kill {k}: after {kr['killed_after_s']}s, {after_kill}, lost"
            f" {run['records_lost']}, drift {run['keys_drifted']}, check {run['check_ok']}",
            file=sys.stderr,
        )
    costs = [r["after_kill"]["cost"] for r in runs if r["after_kill"]]
    return {
        "records": n,
        "full_import_s": round(full_s, 2),
        "runs": runs,
        "records_lost_after_rerun": sum(r["records_lost"] for r in runs),
        "keys_drifted": sum(r["keys_drifted"] for r in runs),
        "keys_checked": sum(r["keys_checked"] for r in runs),
        "check_not_ok": sum(not r["check_ok"] for r in runs),
        "rerun_failed": sum(not r["rerun_ok"] for r in runs),
        "duplicates": sum(max(0, r["duplicates"]) for r in runs),
        "search_errors": sum(len(r["search_errors"]) for r in runs),
        "max_cost_before_rerun": max(costs, default=0),
        "costs_before_rerun": costs,
        "announced_but_lost": sum(
            r["after_kill"].get("announced_but_lost", 0) for r in runs if r["after_kill"]
        ),
        "kills_mid_import": sum(
            1
            for r in runs
            if r["after_kill"]
            and r["after_kill"]["taken_in_hand"] > 0
            and r["after_kill"]["stored"] < n
        ),
    }


# -- (c) tags accept ----------------------------------------------------------------------------


def campaign_tags(work: Path, rng: random.Random, kills: int, accepts: int) -> dict[str, Any]:
    vault = work / "tags.kvdb"
    recs = work / "tags-records.jsonl"
    docs = 60
    with recs.open("w", encoding="utf-8") as fh:
        for i in range(docs):
            fh.write(
                json.dumps(
                    {
                        "_id": f"t{i:03d}",
                        "title": f"Tag target {i}",
                        "text": f"Body {i} for tag tests.",
                    }
                )
                + "\n"
            )
    p = run_cli(vault, "import", "--records", str(recs), "--no-dense", "-q")
    assert p.returncode == 0, p.stderr
    # Calibrate the loop's speed with a short run that is not killed.
    cal_err = work / "tags-cal.stderr"
    t0 = time.perf_counter()
    with open(cal_err, "wb") as err:
        subprocess.run(
            [PYTHON, "-c", TAG_LOOP % {"root": str(ROOT)}, str(vault), "cal", str(docs), "10"],
            stderr=err,
            env=env(),
            check=True,
            timeout=300,
        )
    per_accept = (time.perf_counter() - t0) / 10
    runs = []
    for k in range(kills):
        delay = rng.uniform(0, min(accepts * per_accept, 6.0))
        errp = work / f"tags-{k:02d}.stderr"
        cmd = [
            PYTHON,
            "-c",
            TAG_LOOP % {"root": str(ROOT)},
            str(vault),
            f"k{k:02d}x",
            str(docs),
            str(accepts),
        ]
        kr = killed_run(cmd, delay, errp)
        tr = trace(errp)
        ver = run_verifier("--verify-tags", str(vault))
        chk = check_json(vault)
        run = {
            "kill": k,
            "delay_s": round(delay, 3),
            **kr,
            "accepts_started": len(tr["accept"]),
            "accepts_returned": len(tr["accepted"]),
            "accept_failures": [a for a in tr["accepted"] if not a.endswith(" 0")][:5],
            "tags": ver.get("tags"),
            "accepted_pairs": ver.get("accepted_pairs"),
            "keys_drifted": len(ver.get("drift", [])),
            "drift_examples": ver.get("drift", [])[:5],
            "search_errors": ver.get("errors", [])[:5],
            "check_ok": chk.get("ok"),
            "check_problems": chk.get("problems", [])[:5],
        }
        # values lost: an accept that returned 0 must be stored as accepted
        conn = vault_rows(vault)
        acc = {
            (a, b)
            for a, b in conn.execute(
                "SELECT v.identifier, t.name FROM value_tag vt JOIN tag t ON t.id = vt.tag_id"
                " JOIN value v ON v.id = vt.value_id WHERE vt.state = 'accepted'"
            )
        }
        conn.close()
        returned = [tuple(a.split()[:2]) for a in tr["accepted"] if a.endswith(" 0")]
        run["values_lost"] = sum(1 for pair in returned if pair not in acc)
        runs.append(run)
        print(
            f"  tags kill {k}: after {kr['killed_after_s']}s, {run['accepts_returned']}"
            f" accepts done, drift {run['keys_drifted']}, lost {run['values_lost']},"
            f" check {run['check_ok']}",
            file=sys.stderr,
        )
    return {
        "per_accept_s": round(per_accept, 3),
        "runs": runs,
        "values_lost": sum(r["values_lost"] for r in runs),
        "keys_drifted": sum(r["keys_drifted"] for r in runs),
        "check_not_ok": sum(not r["check_ok"] for r in runs),
        "search_errors": sum(len(r["search_errors"]) for r in runs),
        "orphans": sum(r["orphan_group_alive"] for r in runs),
        "orphan_examples": [o for r in runs for o in r["orphans"]][:3],
    }


def main_bench(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=15)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--records", type=int, default=3000)
    ap.add_argument(
        "--record-key-sample",
        type=int,
        default=500,
        help="records whose unique word is searched after each rerun",
    )
    ap.add_argument("--accepts", type=int, default=400)
    ap.add_argument("--work", default="/tmp/kvdesk-bench-kill")
    ap.add_argument("--only", default="folder,records,tags")
    ap.add_argument("--verify-words")
    ap.add_argument("--verify-tags")
    ap.add_argument("--field", default="source_path")
    ap.add_argument("--pairs", default="[]")
    args = ap.parse_args(argv)
    if args.verify_words:
        with contextlib.redirect_stderr(io.StringIO()):
            res = verify_words(
                args.verify_words, [tuple(p) for p in json.loads(args.pairs)], args.field
            )
        print(json.dumps(res))
        return 0
    if args.verify_tags:
        with contextlib.redirect_stderr(io.StringIO()):
            res = verify_tags(args.verify_tags)
        print(json.dumps(res))
        return 0

    started = time.perf_counter()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = random.Random(args.seed)
    out: dict[str, Any] = {
        "seed": args.seed,
        "kills": args.kills,
        "command": "python bench/bench_kill.py " + " ".join(sys.argv[1:]),
        "code_fingerprint_start": code_fingerprint(),
    }
    only = args.only.split(",")
    if "folder" in only:
        out["folder"] = campaign_folder(work, rng, args.kills, args.files)
    if "records" in only:
        out["records"] = campaign_records(
            work, rng, args.kills, args.records, args.record_key_sample
        )
    if "tags" in only:
        out["tags"] = campaign_tags(work, rng, args.kills, args.accepts)
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["code_fingerprint_end"] = code_fingerprint()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kill.json").write_text(json.dumps(out, indent=2))
    print(f"\nkill -9 campaigns, seed {args.seed}, {args.kills} kills each, {out['seconds']}s")
    if "folder" in out:
        f = out["folder"]
        print(
            f"(a) folder import, {f['files']} files (full import {f['full_import_s']}s):"
            f" values lost {f['values_lost']}, keys drifted {f['keys_drifted']},"
            f" check not ok {f['check_not_ok']}, reruns failed {f['rerun_failed']},"
            f" duplicates {f['duplicates']}, kills mid-import {f['kills_mid_import']},"
            f" max cost before rerun {f['max_cost_before_rerun']} file(s),"
            f" announced-but-lost {f['announced_but_lost']}, orphaned workers {f['orphans']}"
        )
    if "records" in out:
        r = out["records"]
        print(
            f"(b) records import, {r['records']} records (full import {r['full_import_s']}s):"
            f" records lost after rerun {r['records_lost_after_rerun']},"
            f" keys drifted {r['keys_drifted']}/{r['keys_checked']} checked,"
            f" check not ok {r['check_not_ok']}, reruns failed {r['rerun_failed']},"
            f" duplicates {r['duplicates']}, kills mid-import {r['kills_mid_import']},"
            f" max records a kill cost before the rerun {r['max_cost_before_rerun']}"
            f" (all: {r['costs_before_rerun']}), announced-but-lost {r['announced_but_lost']}"
        )
    if "tags" in out:
        t = out["tags"]
        print(
            f"(c) tags accept loop ({t['per_accept_s']}s per accept): values lost"
            f" {t['values_lost']}, keys drifted {t['keys_drifted']},"
            f" check not ok {t['check_not_ok']}, search errors {t['search_errors']}"
        )
    print(f"written: {RESULTS / 'kill.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
