"""Team vault scale benchmark: one PostgreSQL server, an admin desk importing, desks replicating.

Usage (from the repository root):
    python bench/bench_team.py [--phases A,B,C] [--records 10000] [--desks 10]
        [--join-values 100000] [--dense-sample 500] [--c-docs 0] [--standalone-vault PATH]
        [--sync-interval 3] [--search-interval 1] [--work /tmp/kvdesk-bench-team]
        [--out bench/results/team.json]
    quick run: --records 2000 --desks 4 --join-values 20000 --dense-sample 100 --c-docs 500

One throwaway PostgreSQL server (tests/db/pgserver.py: fsync off, Unix socket), one team
database per phase, desks as real vault files. Records are SciFact abstracts repeated with new
``_id`` s (``<id>-<copy>``); every record carries a unique marker word (``kvm000123x``) and its
copy number, so each is a distinct document that one lexical search finds.

A (load): first, as a baseline in the same run, the admin imports the records into a team no
   desk has joined. Then ``--desks`` reader desks, each its own process, joined before the load.
   Each syncs every ``--sync-interval`` s (as the app does) and, between syncs, runs pilot
   sessions: 1-2 lexical searches of SciFact queries (one every ``--search-interval`` s on
   average), each recorded, the session marked found with the top hit. Meanwhile the admin desk
   (this process) imports ``--records`` records in one ``import_records`` (the importer commits
   256 records per server transaction). The time of each committed batch is taken when the
   importer reports it (after its commit, the admin's own pull and lexical keys: "imported" as
   its user sees it); after each sync a desk finds, by binary search over the markers, how many
   records it can find, and so when each batch became searchable there. Reported: import rate
   (values/s, the admin's wall time), sync lag p50/p95 (imported -> found by search on another
   desk; also measured from the server-side write time in ``change_log``), the desks' search
   latency p50/p95 during the load, server CPU (the postmaster and all its children, ended ones
   included, from /proc), and a check that every pilot session recorded on a desk reached the
   server exactly once. Then "at once after team sync": ``--on-demand`` times the admin imports
   one record and another desk runs ``sync_team()`` and searches it straight away.
B (join): the admin desk imports ``--join-values`` records into a new team (import rate, per
   tenth too, and CPU ms per value of the admin process and of the server),
   then a new desk joins: time until a lexical search finds a known document (join = copy +
   lexical keys), then dense keys: measured on ``--dense-sample`` values (cancelled there) and
   extrapolated to all (labelled as an extrapolation); ``--dense-sample 0`` builds them all.
C (search unchanged): a reader desk of a team holding SciFact (``--c-docs`` first documents,
   0 = all 5,183) with its dense keys built, against a standalone vault with the same records
   imported locally (or a copy of ``--standalone-vault``, e.g. bench_retrieval's
   /tmp/kvdesk-bench/scifact.kvdb, to skip its dense build): hybrid and lexical latency
   p50/p95 over the SciFact test queries, queries alternating between the two, and their
   ratio; plus the top-10 overlap (same documents should rank the same).
P (profile, only when asked): cProfile of an admin import (``--profile-records``) and of a
   desk joining that team; top functions in the JSON, .prof files beside it.

Numbers from one run on a shared, noisy machine: compare ratios within the run.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import multiprocessing as mp
import os
import platform
import pstats
import random
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kvdesk.core.db.postgres import PostgresDatabase  # noqa: E402
from kvdesk.core.errors import Cancelled  # noqa: E402
from kvdesk.core.golden.evaluation import load_collection, percentile  # noqa: E402
from kvdesk.core.knowledge_base import KnowledgeBase  # noqa: E402
from kvdesk.core.progress import CancelToken, Progress  # noqa: E402
from kvdesk.core.team.desk import create_team  # noqa: E402
from kvdesk.core.team.store import grant  # noqa: E402
from tests.db.pgserver import SUPERUSER, PgServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"
CHUNK = 20_000  # records per file for large imports (one import_records call each)
CLK = os.sysconf("SC_CLK_TCK")


# -- measuring ------------------------------------------------------------------------------


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.node()} {model or platform.machine()}, {os.cpu_count()} cores,"
        f" {mem:.0f} GiB, {platform.system()} {platform.release()}"
    )


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()  # fields from 3 (state) on


def server_cpu_seconds(postmaster: int) -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster, its live children, and
    (through the postmaster's cutime/cstime) every child it has reaped: ended backends."""
    fields = _stat_fields(postmaster)
    if fields is None:
        return 0.0
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        child = _stat_fields(int(entry.name))
        if child is not None and int(child[1]) == postmaster:  # ppid
            ticks += sum(int(child[i]) for i in (11, 12, 13, 14))
    return ticks / CLK


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


class CpuWindow:
    """Server CPU and machine busy share over a window (from :meth:`start` to :meth:`stop`)."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster
        self.t0 = time.perf_counter()
        self.pg0 = server_cpu_seconds(postmaster)
        self.sys0 = system_cpu()
        self.self0 = _self_cpu()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        pg = server_cpu_seconds(self.postmaster) - self.pg0
        busy, total = system_cpu()
        mine = _self_cpu() - self.self0
        return {
            "wall_s": round(wall, 2),
            "server_cpu_s": round(pg, 2),
            "server_cpu_pct_of_one_core": round(100 * pg / wall, 1) if wall else 0.0,
            "this_process_cpu_s": round(mine, 2),
            "machine_busy_pct": round(
                100 * (busy - self.sys0[0]) / max(1.0, total - self.sys0[1]), 1
            ),
            "machine_busy_core_s": round((busy - self.sys0[0]) / CLK, 1),
            "load_average_1min_end": round(os.getloadavg()[0], 2),
        }


def per_value_ms(cpu: dict[str, float], values: int) -> dict[str, float]:
    """CPU milliseconds per value imported: the admin desk's process and the server's (less
    sensitive than a wall-clock rate to other work on a shared machine)."""
    n = max(1, values)
    return {
        "admin_process_cpu_ms_per_value": round(1000 * cpu["this_process_cpu_s"] / n, 3),
        "server_cpu_ms_per_value": round(1000 * cpu["server_cpu_s"] / n, 3),
    }


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def stats(values: list[float], digits: int = 1) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), digits),
        "p95": round(percentile(values, 95), digits),
        "max": round(max(values), digits),
        "mean": round(statistics.fmean(values), digits),
    }


# -- records --------------------------------------------------------------------------------


def marker(i: int) -> str:
    """Record i's unique word (digits inside, an x at the end: no stemmer touches it)."""
    return f"kvm{i:06d}x"


def external_id(corpus: list[dict[str, Any]], i: int) -> str:
    return f"{corpus[i % len(corpus)]['_id']}-{i // len(corpus)}"


def record_line(corpus: list[dict[str, Any]], i: int) -> str:
    doc = corpus[i % len(corpus)]
    copy = i // len(corpus)
    text = doc["text"] + (f" Copy {copy}." if copy else "") + f" {marker(i)}"
    return json.dumps({"_id": external_id(corpus, i), "title": doc["title"], "text": text})


def write_records(path: Path, corpus: list[dict[str, Any]], start: int, stop: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for i in range(start, stop):
            out.write(record_line(corpus, i) + "\n")
    return path


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# -- the team -------------------------------------------------------------------------------


class Team:
    """One team database on the server, with reader logins desk1..deskN."""

    def __init__(self, server: PgServer, name: str, readers: int) -> None:
        self.server = server
        self.name = name
        server.admin(f"CREATE DATABASE {name}")
        create_team(self.url())
        users = [f"desk{i}" for i in range(1, readers + 1)]
        import psycopg

        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            for user in users:
                known = "SELECT 1 FROM pg_roles WHERE rolname = %s"
                if not conn.execute(known, (user,)).fetchone():
                    conn.execute(f"CREATE ROLE {user} LOGIN")
        with PostgresDatabase(self.url()) as db:
            for user in users:
                grant(db, user, "reader")

    def url(self, user: str = SUPERUSER) -> str:
        return self.server.conninfo(self.name).replace(f"user={SUPERUSER}", f"user={user}")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())

    def size_mib(self) -> float:
        rows = self.query("SELECT pg_database_size(current_database())")
        return round(int(rows[0][0]) / 2**20, 1)


def vault_mib(path: Path) -> float:
    total = 0
    for p in [path, Path(f"{path}-wal"), Path(f"{path}.keys")]:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return round(total / 2**20, 1)


def timed_import(
    kb: KnowledgeBase, files: list[Path]
) -> tuple[int, float, list[tuple[int, float]]]:
    """Import the files in order; returns (values imported, seconds, [(records committed so far,
    wall time when the importer reported that batch)])."""
    batches: list[tuple[int, float]] = []
    offset = 0

    def progress(p: Progress) -> None:
        if p.stage == "import" and p.done:
            batches.append((offset + p.done, time.time()))

    imported = 0
    t0 = time.perf_counter()
    for f in files:
        report = kb.import_records(f, progress=progress)
        if report.failed:
            raise RuntimeError(f"import of {f} failed: {report.failed[:3]}")
        imported += len(report.imported)
        offset = batches[-1][0] if batches else offset
    return imported, time.perf_counter() - t0, batches


# -- phase A: the desks ---------------------------------------------------------------------


def desk_worker(
    index: int,
    url: str,
    vault: str,
    corpus_ids: int,
    queries: list[str],
    n_records: int,
    sync_interval: float,
    search_interval: float,
    mode: str,
    ready: Any,
    start: Any,
    stop: Any,
    found: Any,
    results: Any,
) -> None:
    """One reader desk: join, then sync every ``sync_interval`` s and search in between."""
    out: dict[str, Any] = {
        "desk": index,
        "search_ms": [],
        "probe_ms": [],
        "syncs": [],
        "checks": [],
        "sessions": 0,
        "queries": 0,
        "errors": [],
    }
    rng = random.Random(index)
    try:
        kb = KnowledgeBase.open(vault)
        kb.join_team(url)
        kb.pilot.configure(enabled=True, user=f"desk{index}", team="bench")
        ready.put(index)
        start.wait()
        prefix = 0

        def visible(k: int) -> bool:  # is record k-1 found by a lexical search?
            t = time.perf_counter()
            hit = kb.search(marker(k - 1), mode="lexical", k=1, details=False).hits
            out["probe_ms"].append((time.perf_counter() - t) * 1000)
            return bool(hit)

        next_sync = time.time() + rng.uniform(0, sync_interval)  # desks not in step
        next_search = time.time() + rng.uniform(0, search_interval)
        while not stop.is_set():
            now = time.time()
            if now >= next_sync:
                started = time.time()
                t = time.perf_counter()
                report = kb.sync_team()
                sync_ms = (time.perf_counter() - t) * 1000
                if prefix < n_records:
                    lo, hi = prefix, n_records + 1
                    if visible(n_records):
                        lo = n_records
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        if visible(mid):
                            lo = mid
                        else:
                            hi = mid
                    if lo > prefix:
                        prefix = lo
                        out["checks"].append((time.time(), prefix))
                        found[index - 1] = prefix
                out["syncs"].append((started, sync_ms, report.pulled, report.lag_seconds))
                next_sync = max(started + sync_interval, time.time())
            elif now >= next_search:
                sid = kb.pilot.start_session()
                out["sessions"] += 1
                result = None
                for _ in range(2 if rng.random() < 0.3 else 1):  # a reformulation, sometimes
                    q = rng.choice(queries)
                    t = time.perf_counter()
                    result = kb.search(q, mode=mode, k=10)
                    out["search_ms"].append((time.perf_counter() - t) * 1000)
                    kb.pilot.record_search(sid, q, result)
                    out["queries"] += 1
                if result is not None and result.hits:
                    kb.pilot.mark(sid, "found", result.hits[0].value_id)
                else:
                    kb.pilot.mark(sid, "notfound")
                next_search = time.time() + rng.uniform(0.5, 1.5) * search_interval
            else:
                stop.wait(max(0.0, min(next_sync, next_search) - time.time()))
        final = kb.sync_team()  # deliver the last sessions
        out["final_pushed"] = final.pushed
        out["undelivered"] = kb.team.pending() if kb.team else -1
        out["prefix"] = prefix
        out["values"] = kb.values.count()
        kb.close()
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        import traceback

        out["errors"].append(traceback.format_exc())
        ready.put(index)
        print(f"desk {index} failed: {exc}", file=sys.stderr)
    r = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = round(r.ru_utime + r.ru_stime, 2)
    out["max_rss_mib"] = round(r.ru_maxrss / 1024, 1)
    results.put(out)


def phase_a(
    args: argparse.Namespace, server: PgServer, corpus: list[dict[str, Any]], queries: list[str]
) -> dict[str, Any]:
    work = args.work / "A"
    work.mkdir(parents=True)
    n = args.records
    records = write_records(work / "records.jsonl", corpus, 0, n)
    # Baseline, same run: the same import into a team no desk has joined.
    base_team = Team(server, "team_a0", 0)
    base = KnowledgeBase.open(work / "baseline.kvdb")
    base.join_team(base_team.url())
    window = CpuWindow(server.process.pid)  # type: ignore[union-attr]
    base_n, base_s, _ = timed_import(base, [records])
    cpu_base = window.stop()
    base.close()
    print(f"A: baseline (no desks) {base_n / base_s:.0f} values/s", file=sys.stderr)

    team = Team(server, "team_a", args.desks + 1)
    admin = KnowledgeBase.open(work / "admin.kvdb")
    admin.join_team(team.url())

    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    start, stop = ctx.Event(), ctx.Event()
    found = ctx.Array("i", args.desks)
    procs = []
    t_spawn = time.perf_counter()
    for i in range(1, args.desks + 1):
        p = ctx.Process(
            target=desk_worker,
            args=(i, team.url(f"desk{i}"), str(work / f"desk{i}.kvdb"), len(corpus), queries,
                  n, args.sync_interval, args.search_interval, args.desk_mode,
                  ready, start, stop, found, results),
            daemon=True,
        )  # fmt: skip
        p.start()
        procs.append(p)
    for _ in procs:
        ready.get(timeout=300)
    print(f"A: {args.desks} desks joined in {time.perf_counter() - t_spawn:.1f} s", file=sys.stderr)

    window = CpuWindow(server.process.pid)  # type: ignore[union-attr]
    start.set()
    time.sleep(args.warmup)  # desks search and sync a little before the load starts
    import_window = CpuWindow(server.process.pid)  # type: ignore[union-attr]
    imported, import_s, batches = timed_import(admin, [records])
    cpu_import = import_window.stop()
    rate = imported / import_s
    print(f"A: imported {imported} in {import_s:.1f} s ({rate:.0f}/s)", file=sys.stderr)
    deadline = time.time() + args.catchup_timeout
    while time.time() < deadline and min(found[:]) < n:
        time.sleep(0.2)
    caught_up = time.perf_counter()
    cpu_whole = window.stop()
    stop.set()
    outs = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    outs.sort(key=lambda o: o["desk"])

    # Lag per (desk, batch): first check on that desk whose prefix covers the batch.
    lags, server_lags = [], []
    ends = [b[0] for b in batches]
    written = _server_write_times(team, [external_id(corpus, e - 1) for e in ends])
    for o in outs:
        for end, committed in batches:
            t_found = next((t for t, prefix in o["checks"] if prefix >= end), None)
            if t_found is None:
                continue
            lags.append(t_found - committed)
            w = written.get(external_id(corpus, end - 1))
            if w is not None:
                server_lags.append(t_found - w)
    missing = sum(1 for o in outs for end, _ in batches
                  if not any(p >= end for _, p in o["checks"]))  # fmt: skip
    search_ms = [x for o in outs for x in o["search_ms"]]
    sync_ms = [s[1] for o in outs for s in o["syncs"]]
    sync_pulling = [s[1] for o in outs for s in o["syncs"] if s[2]]
    kv_lag = [s[3] for o in outs for s in o["syncs"] if s[2]]
    sessions = sum(o["sessions"] for o in outs)
    queries_recorded = sum(o["queries"] for o in outs)
    on_server = team.query(
        "SELECT (SELECT count(*) FROM pilot_session WHERE origin IS NOT NULL),"
        " (SELECT count(*) FROM pilot_query), (SELECT count(DISTINCT origin) FROM pilot_session)"
    )[0]
    on_demand = _on_demand(args, team, admin, corpus, work, n)
    admin.close()
    result = {
        "records": n,
        "desks": args.desks,
        "desk_search_mode": args.desk_mode,
        "sync_interval_s": args.sync_interval,
        "search_interval_s": args.search_interval,
        "import": {
            "values": imported,
            "seconds": round(import_s, 2),
            "values_per_s": round(rate, 1),
            "batches": len(batches),
            "cpu": cpu_import,
            **per_value_ms(cpu_import, imported),
        },
        "import_without_desks": {
            "values": base_n,
            "seconds": round(base_s, 2),
            "values_per_s": round(base_n / base_s, 1),
            "cpu": cpu_base,
            **per_value_ms(cpu_base, base_n),
        },
        "import_rate_ratio_with_desks_over_without": round(rate / (base_n / base_s), 3),
        "sync_lag_s_imported_to_found": stats(lags, 2),
        "sync_lag_s_server_write_to_found": stats(server_lags, 2),
        "sync_lag_s_kvdesk_report": stats(kv_lag, 2),
        "batches_never_found": missing,
        "desks_all_found": all(o.get("prefix") == n for o in outs),
        "last_desk_caught_up_after_import_s": round(caught_up - import_window.t0 - import_s, 2),
        "desk_search_ms": stats(search_ms),
        "desk_marker_probe_ms": stats([x for o in outs for x in o["probe_ms"]]),
        "desk_sync_ms_all": stats(sync_ms),
        "desk_sync_ms_pulling": stats(sync_pulling),
        "syncs": len(sync_ms),
        "pilot": {
            "sessions_recorded_on_desks": sessions,
            "queries_recorded_on_desks": queries_recorded,
            "sessions_on_server": int(on_server[0]),
            "queries_on_server": int(on_server[1]),
            "distinct_origins_on_server": int(on_server[2]),
            "undelivered_left_on_desks": sum(o.get("undelivered", 0) for o in outs),
            "delivered_exactly_once": int(on_server[0]) == sessions == int(on_server[2])
            and int(on_server[1]) == queries_recorded,
        },
        "cpu_whole_phase": cpu_whole,
        "desk_processes_cpu_s": [o.get("cpu_s") for o in outs],
        # Whole-phase core-seconds not spent by the server, this process or the desks
        # (the desks' figure includes their start and join): other work on the machine.
        "other_processes_core_s_estimate": round(
            cpu_whole["machine_busy_core_s"]
            - cpu_whole["server_cpu_s"]
            - cpu_whole["this_process_cpu_s"]
            - sum(o.get("cpu_s", 0) for o in outs),
            1,
        ),
        "desk_max_rss_mib": max(o.get("max_rss_mib", 0) for o in outs),
        "on_demand_after_team_sync": on_demand,
        "server_db_mib": team.size_mib(),
        "errors": [e for o in outs for e in o["errors"]],
    }
    return result


def _server_write_times(team: Team, ext_ids: list[str]) -> dict[str, float]:
    """When the server wrote each value's row (change_log.at: inside its transaction, just
    before the commit), as Unix time (same host clock as the desks)."""
    if not ext_ids:
        return {}
    rows = team.query(
        "SELECT v.external_id, extract(epoch FROM max(c.at)) FROM change_log c"
        " JOIN value v ON c.tbl = 'value' AND (c.pk->>'id')::bigint = v.id"
        " WHERE v.external_id = ANY(%s) GROUP BY v.external_id",
        (ext_ids,),
    )
    return {r[0]: float(r[1]) for r in rows}


def _on_demand(
    args: argparse.Namespace,
    team: Team,
    admin: KnowledgeBase,
    corpus: list[dict[str, Any]],
    work: Path,
    n: int,
) -> dict[str, Any]:
    """Admin imports one record; another desk runs sync_team() at once and searches it."""
    if args.on_demand <= 0:
        return {}
    desk = KnowledgeBase.open(work / "probe.kvdb")
    t = time.perf_counter()
    desk.join_team(team.url(f"desk{args.desks + 1}"))
    join_s = time.perf_counter() - t
    found, sync_ms, total_ms = 0, [], []
    for j in range(args.on_demand):
        i = n + j
        path = write_records(work / f"one{j}.jsonl", corpus, i, i + 1)
        admin.import_records(path)
        t_imported = time.perf_counter()
        desk.sync_team()
        sync_ms.append((time.perf_counter() - t_imported) * 1000)
        hit = desk.search(marker(i), mode="lexical", k=1, details=False).hits
        total_ms.append((time.perf_counter() - t_imported) * 1000)
        found += bool(hit)
    desk.close()
    return {
        "trials": args.on_demand,
        "found_right_after_sync": found,
        "sync_ms": stats(sync_ms),
        "imported_to_found_ms": stats(total_ms),
        "probe_desk_join_s": round(join_s, 2),
    }


# -- phase B: a new desk joins a large team ------------------------------------------------


def phase_b(
    args: argparse.Namespace, server: PgServer, corpus: list[dict[str, Any]]
) -> dict[str, Any]:
    work = args.work / "B"
    work.mkdir(parents=True)
    team = Team(server, "team_b", 1)
    n = args.join_values
    files = [
        write_records(work / f"records{s // CHUNK}.jsonl", corpus, s, min(n, s + CHUNK))
        for s in range(0, n, CHUNK)
    ]
    admin = KnowledgeBase.open(work / "admin.kvdb")
    admin.join_team(team.url())
    window = CpuWindow(server.process.pid)  # type: ignore[union-attr]
    started = time.time()
    imported, import_s, batches = timed_import(admin, files)
    cpu_import = window.stop()
    # The rate over each tenth of the import: does it slow down as the team vault grows?
    tenth = max(1, len(batches) // 10)
    rates, previous = [], (0, started)
    for end, at in batches[tenth - 1 :: tenth]:
        rates.append((end, round((end - previous[0]) / max(1e-6, at - previous[1]), 1)))
        previous = (end, at)
    admin.close()
    print(f"B: imported {imported} in {import_s:.1f} s ({imported / import_s:.0f}/s)",
          file=sys.stderr)  # fmt: skip
    for f in files:
        f.unlink()

    known = marker(n - 1)  # the last value imported
    title_query = corpus[(n - 1) % len(corpus)]["title"]
    window = CpuWindow(server.process.pid)  # type: ignore[union-attr]
    t0 = time.perf_counter()
    desk = KnowledgeBase.open(work / "newdesk.kvdb")
    report = desk.join_team(team.url("desk1"))
    join_s = time.perf_counter() - t0
    hits = desk.search(known, mode="lexical", k=1, details=False).hits
    searchable_s = time.perf_counter() - t0
    cpu_join = window.stop()
    title_hits = desk.search(title_query, mode="lexical", k=10).hits
    print(f"B: new desk lexically searchable after {searchable_s:.1f} s", file=sys.stderr)

    values = desk.values.count()
    dense: dict[str, Any] = {"values": values}
    token = CancelToken()
    done = [0]
    first: list[float] = []  # when the build reported 0 done: the model is loaded by then
    sample = args.dense_sample if 0 < args.dense_sample < values else 0

    def progress(p: Progress) -> None:
        if not first:
            first.append(time.perf_counter())
        done[0] = p.done
        if sample and p.done >= sample:
            token.cancel()

    t = time.perf_counter()
    with contextlib.suppress(Cancelled):
        desk.build_dense_keys(progress=progress, cancel=token)
    dense_s = time.perf_counter() - t
    load_s = (first[0] - t) if first else 0.0
    rate = done[0] / (dense_s - load_s) if dense_s > load_s else 0.0
    estimate = load_s + values / rate if rate else 0.0
    dense.update(
        {
            "built": done[0],
            "seconds": round(dense_s, 1),
            "model_load_s": round(load_s, 1),
            "values_per_s": round(rate, 2),
            "all_built": not sample,
            "all_keys_seconds": round(dense_s, 1) if not sample else None,
            "all_keys_seconds_EXTRAPOLATED": round(estimate) if sample and rate else None,
            "note": (
                f"dense rate measured on {done[0]} values (model load excluded) and"
                f" extrapolated to {values}"
                if sample
                else "all dense keys built"
            ),
        }
    )
    until_all = searchable_s + (dense_s if not sample else estimate)
    desk_size = vault_mib(work / "newdesk.kvdb")
    desk.close()
    return {
        "values": n,
        "import": {
            "values": imported,
            "seconds": round(import_s, 2),
            "values_per_s": round(imported / import_s, 1),
            "values_per_s_by_tenth": rates,  # [values done at the end, rate over that tenth]
            "cpu": cpu_import,
            **per_value_ms(cpu_import, imported),
        },
        "join": {
            "changes_pulled": report.pulled,
            "join_team_s": round(join_s, 2),
            "until_lexically_searchable_s": round(searchable_s, 2),
            "known_marker_found": bool(hits),
            "title_query_hits": len(title_hits),
            "cpu": cpu_join,
        },
        "dense": dense,
        "until_all_keys_built_s": round(until_all, 0),
        "until_all_keys_built_is_extrapolated": bool(sample),
        "server_db_mib": team.size_mib(),
        "desk_vault_mib_after": desk_size,
    }


# -- phase C: search on a desk vs a standalone vault ----------------------------------------


def phase_c(args: argparse.Namespace, server: PgServer) -> dict[str, Any]:
    work = args.work / "C"
    work.mkdir(parents=True)
    collection = load_collection(SCIFACT)
    corpus_lines = collection.corpus_path.read_text(encoding="utf-8").splitlines()
    corpus_lines = [line for line in corpus_lines if line.strip()]
    if args.c_docs:
        corpus_lines = corpus_lines[: args.c_docs]
    records = work / "scifact.jsonl"
    records.write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
    team = Team(server, "team_c", 1)
    admin = KnowledgeBase.open(work / "admin.kvdb")
    admin.join_team(team.url())
    admin.import_records(records)
    admin.close()

    desk = KnowledgeBase.open(work / "desk.kvdb")
    t = time.perf_counter()
    desk.join_team(team.url("desk1"))
    join_s = time.perf_counter() - t
    t = time.perf_counter()
    desk_built = desk.build_dense_keys()
    desk_dense_s = time.perf_counter() - t
    print(f"C: desk dense keys: {desk_built} in {desk_dense_s:.0f} s", file=sys.stderr)

    standalone_path = work / "standalone.kvdb"
    reused = ""
    if args.standalone_vault and not args.c_docs:
        src = Path(args.standalone_vault)
        shutil.copy2(src, standalone_path)
        if Path(f"{src}.keys").is_dir():
            shutil.copytree(f"{src}.keys", f"{standalone_path}.keys")
        reused = str(src)
    solo = KnowledgeBase.open(standalone_path)
    t = time.perf_counter()
    solo.import_records(records)  # a reused vault: unchanged records, nothing to do
    solo_import_s = time.perf_counter() - t
    t = time.perf_counter()
    solo_built = solo.build_dense_keys()
    solo_dense_s = time.perf_counter() - t
    d_status, s_status = desk.dense_status(), solo.dense_status()

    qids = list(collection.queries)
    texts = [collection.queries[q] for q in qids]
    for q in texts[:10]:  # warm both (model, caches)
        desk.search(q, mode="hybrid")
        solo.search(q, mode="hybrid")
    lat: dict[str, dict[str, list[float]]] = {
        m: {"desk": [], "standalone": []} for m in ("hybrid", "lexical")
    }
    overlap: list[float] = []
    desk_ext, solo_ext = desk.values.external_ids(), solo.values.external_ids()
    for i, q in enumerate(texts):
        for mode in ("hybrid", "lexical"):
            order = [("desk", desk), ("standalone", solo)]
            if i % 2:
                order.reverse()
            got = {}
            for name, kb in order:
                t = time.perf_counter()
                res = kb.search(q, mode=mode, k=10)
                lat[mode][name].append((time.perf_counter() - t) * 1000)
                got[name] = res
            if mode == "hybrid":
                a = {desk_ext.get(h.value_id) for h in got["desk"].hits}
                b = {solo_ext.get(h.value_id) for h in got["standalone"].hits}
                overlap.append(len(a & b) / max(1, len(b)))
    desk.close()
    solo.close()
    out: dict[str, Any] = {
        "documents": len(corpus_lines),
        "queries": len(texts),
        "desk_join_s": round(join_s, 2),
        "desk_dense": {
            "built": desk_built,
            "seconds": round(desk_dense_s, 1),
            "values_per_s": round(desk_built / desk_dense_s, 2) if desk_built else None,
            "keyed": d_status.keyed_values,
            "total": d_status.total_values,
            "model_sha256": _model_sha(d_status),
        },
        "standalone": {
            "reused_from": reused or None,
            "import_s": round(solo_import_s, 2),
            "dense_built": solo_built,
            "dense_s": round(solo_dense_s, 1),
            "keyed": s_status.keyed_values,
            "total": s_status.total_values,
            "model_sha256": _model_sha(s_status),
        },
        "hybrid_top10_overlap_mean": round(statistics.fmean(overlap), 3) if overlap else None,
    }
    for mode, by in lat.items():
        d, s = stats(by["desk"], 2), stats(by["standalone"], 2)
        out[f"{mode}_ms"] = {
            "desk": d,
            "standalone": s,
            "ratio_p50_desk_over_standalone": round(d["p50"] / s["p50"], 3) if s["p50"] else None,
            "ratio_p95_desk_over_standalone": round(d["p95"] / s["p95"], 3) if s["p95"] else None,
        }
    return out


def _model_sha(status: Any) -> str | None:
    key_set = getattr(status, "key_set", None)
    return None if key_set is None else str(key_set.params.get("model_sha256", ""))[:16]


# -- phase P: profiles ----------------------------------------------------------------------


def _top(profile: cProfile.Profile, key: str, limit: int = 25) -> list[str]:
    buf = io.StringIO()
    pstats.Stats(profile, stream=buf).sort_stats(key).print_stats(limit)
    lines = [line.rstrip() for line in buf.getvalue().splitlines()]
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return [line for line in lines[start:] if line.strip()]


def phase_p(
    args: argparse.Namespace, server: PgServer, corpus: list[dict[str, Any]]
) -> dict[str, Any]:
    work = args.work / "P"
    work.mkdir(parents=True)
    team = Team(server, "team_p", 1)
    n = args.profile_records
    records = write_records(work / "records.jsonl", corpus, 0, n)
    admin = KnowledgeBase.open(work / "admin.kvdb")
    admin.join_team(team.url())
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    admin.import_records(records)
    prof.disable()
    import_s = time.perf_counter() - t
    admin.close()
    prof.dump_stats(str(args.out.with_name("team_import.prof")))
    desk = KnowledgeBase.open(work / "desk.kvdb")
    jprof = cProfile.Profile()
    t = time.perf_counter()
    jprof.enable()
    desk.join_team(team.url("desk1"))
    jprof.disable()
    join_s = time.perf_counter() - t
    desk.close()
    jprof.dump_stats(str(args.out.with_name("team_join.prof")))
    return {
        "records": n,
        "import_s_profiled": round(import_s, 2),
        "import_values_per_s_profiled": round(n / import_s, 1),
        "import_top_cumulative": _top(prof, "cumulative"),
        "import_top_tottime": _top(prof, "tottime"),
        "join_s_profiled": round(join_s, 2),
        "join_top_cumulative": _top(jprof, "cumulative"),
        "join_top_tottime": _top(jprof, "tottime"),
        "profiles": [str(args.out.with_name(f"team_{w}.prof")) for w in ("import", "join")],
    }


# -- main -----------------------------------------------------------------------------------


def summary(results: dict[str, Any]) -> list[str]:
    lines = []
    a = results.get("A")
    if a:
        lag, kb_lag = a["sync_lag_s_imported_to_found"], a["sync_lag_s_server_write_to_found"]
        od = a["on_demand_after_team_sync"]
        lines += [
            f"A  {a['records']} records, {a['desks']} desks (sync every {a['sync_interval_s']} s)",
            f"   import to the server: {a['import']['values_per_s']} values/s"
            f" ({a['import']['seconds']} s) with the desks running;"
            f" {a['import_without_desks']['values_per_s']} values/s without   target >= 500",
            f"   sync lag imported->found on another desk: p50 {lag.get('p50')} s,"
            f" p95 {lag.get('p95')} s (n={lag['n']})   target p95 <= 10 s"
            f"  [from server write: p95 {kb_lag.get('p95')} s]",
            f"   desk {a['desk_search_mode']} search during load: p50"
            f" {a['desk_search_ms'].get('p50')} ms, p95 {a['desk_search_ms'].get('p95')} ms"
            f" (n={a['desk_search_ms']['n']})",
            f"   server CPU: {a['import']['cpu']['server_cpu_pct_of_one_core']}% of one core"
            f" during import, {a['cpu_whole_phase']['server_cpu_pct_of_one_core']}% over the"
            f" phase; machine busy {a['cpu_whole_phase']['machine_busy_pct']}%",
            f"   pilot sessions: {a['pilot']['sessions_recorded_on_desks']} recorded,"
            f" {a['pilot']['sessions_on_server']} on the server"
            f" (exactly once: {a['pilot']['delivered_exactly_once']})",
        ]
        if od:
            lines.append(
                f"   after 'team sync': found {od['found_right_after_sync']}/{od['trials']},"
                f" import->found p95 {od['imported_to_found_ms'].get('p95')} ms"
            )
    b = results.get("B")
    if b:
        extra = " (EXTRAPOLATED)" if b["until_all_keys_built_is_extrapolated"] else ""
        lines += [
            f"B  {b['values']} values: import {b['import']['values_per_s']} values/s;"
            f" new desk lexically searchable after {b['join']['until_lexically_searchable_s']} s"
            f" (target <= 300 s); all keys after {b['until_all_keys_built_s']} s{extra}"
            f" (dense {b['dense']['values_per_s']} values/s)",
        ]
    c = results.get("C")
    if c:
        h, lx = c["hybrid_ms"], c["lexical_ms"]
        lines += [
            f"C  SciFact {c['documents']} docs, {c['queries']} queries: hybrid p50/p95 desk"
            f" {h['desk'].get('p50')}/{h['desk'].get('p95')} ms vs standalone"
            f" {h['standalone'].get('p50')}/{h['standalone'].get('p95')} ms"
            f" (p95 ratio {h['ratio_p95_desk_over_standalone']}, target <= 60 ms);"
            f" lexical p95 ratio {lx['ratio_p95_desk_over_standalone']};"
            f" top-10 overlap {c['hybrid_top10_overlap_mean']}",
        ]
    p = results.get("P")
    if p:
        lines.append(
            f"P  profiled import {p['import_values_per_s_profiled']} values/s; profiles:"
            f" {p['profiles']}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="A,B,C", help="any of A,B,C,P, comma-separated")
    parser.add_argument("--records", type=int, default=10_000, help="A: records imported")
    parser.add_argument("--desks", type=int, default=10, help="A: desk processes")
    parser.add_argument("--sync-interval", type=float, default=3.0)
    parser.add_argument(
        "--search-interval", type=float, default=1.0, help="A: mean s between a desk's sessions"
    )
    parser.add_argument("--desk-mode", default="lexical", choices=["lexical", "hybrid"])
    parser.add_argument("--warmup", type=float, default=3.0, help="A: seconds before importing")
    parser.add_argument("--catchup-timeout", type=float, default=120.0)
    parser.add_argument("--on-demand", type=int, default=10, help="A: 'team sync' trials")
    parser.add_argument("--join-values", type=int, default=100_000, help="B: team size")
    parser.add_argument(
        "--dense-sample", type=int, default=500, help="B: dense keys measured on N values (0: all)"
    )
    parser.add_argument("--c-docs", type=int, default=0, help="C: first N SciFact docs (0: all)")
    parser.add_argument(
        "--standalone-vault", default="", help="C: copy this SciFact vault (dense keys built)"
    )
    parser.add_argument("--profile-records", type=int, default=5000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kvdesk-bench-team"))
    parser.add_argument("--out", type=Path, default=RESULTS / "team.json")
    args = parser.parse_args()
    phases = [p.strip().upper() for p in args.phases.split(",") if p.strip()]
    if not 1 <= args.desks <= 35:
        parser.error("--desks: 1 to 35 (the test server allows 40 connections)")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    corpus = load_jsonl(SCIFACT / "corpus.jsonl")
    queries = [q["text"] for q in load_jsonl(SCIFACT / "queries.jsonl")]

    results: dict[str, Any] = {
        "machine": machine(),
        "python": sys.version.split()[0],
        "argv": sys.argv[1:],
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    server = PgServer.start()
    try:
        results["postgres"] = server.bindir.parent.name + " " + _pg_version(server)
        walls = {}
        for phase, run in (
            ("A", lambda: phase_a(args, server, corpus, queries)),
            ("B", lambda: phase_b(args, server, corpus)),
            ("C", lambda: phase_c(args, server)),
            ("P", lambda: phase_p(args, server, corpus)),
        ):
            if phase in phases:
                t = time.perf_counter()
                results[phase] = run()
                walls[phase] = round(time.perf_counter() - t, 1)
                results["phase_wall_s"] = walls
                args.out.write_text(json.dumps(results, indent=2))  # kept if a later one fails
    finally:
        server.stop()
    text = json.dumps(results, indent=2)
    args.out.write_text(text)
    print(text)
    print("\n".join(summary(results)), file=sys.stderr)
    return 0


def _pg_version(server: PgServer) -> str:
    import psycopg

    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])


if __name__ == "__main__":
    sys.exit(main())
