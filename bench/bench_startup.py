"""Start-up: a lexical search in a fresh process, ``kvdesk --help``, and the app's first window.

Usage:
    python bench/bench_startup.py [--runs 7] [--work /tmp/kvdesk-bench-startup] [--no-gui]
        [--against TREE]

Each figure is the median wall time of ``--runs`` fresh processes (after one warm-up run, so
the page cache and compiled bytecode are what a user's second start finds), with the median
CPU time (user + system) of the same processes beside it as ``*_cpu_s``: on a busy shared
machine the wall counts waiting for a core too, and the CPU time is what it would be alone:

- ``search_lexical_s``: ``kvdesk --vault V search --mode lexical "cancer cells"`` on a vault of
  SciFact's 5,183 abstracts (lexical keys only), built once in ``--work``;
- ``help_s``: ``kvdesk --help``;
- ``gui_first_window_s``: ``kvdesk --vault V gui`` (Qt offscreen) from process start until the
  main window has been shown and the event loop has run once, on a vault of 200 SciFact
  abstracts with all keys (so the app starts no key build); the process then exits.

Bytecode: runs use ``PYTHONPYCACHEPREFIX`` in ``--work`` and drop ``PYTHONDONTWRITEBYTECODE``,
so modules load from cached bytecode as in an installed kvdesk, whatever the shell says.

``--against TREE`` runs the lexical search with the kvdesk under TREE (the code before a change)
and this one in turn, for a ratio from one run on a noisy machine.

``measure()`` returns the figures as a dict (bench/bench_scale.py calls it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCIFACT = ROOT.parent / "shared" / "eval" / "scifact" / "corpus.jsonl"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "kvdesk-bench-startup"
QUERY = "cancer cells"
GUI_DOCS = 200

# Runs `kvdesk gui` as the CLI does, and exits once the main window is shown and the event
# loop has turned once (the window is on screen), printing "shown". The hook patches the main
# window's module when the app imports it, so nothing is imported earlier than it would be.
_GUI_DRIVER = """
import importlib.abc, importlib.util, os, sys

def on_shown():
    sys.stdout.write("shown\\n")
    sys.stdout.flush()
    os._exit(0)

def patch(module):
    from PySide6.QtCore import QTimer
    show = module.MainWindow.show
    def shown(self):
        show(self)
        QTimer.singleShot(0, on_shown)
    module.MainWindow.show = shown

class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "kvdesk.ui.main_window":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            patch(module)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Hook())
from kvdesk.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["ORT_DISABLE_TELEMETRY"] = "1"
    env["QT_QPA_PLATFORM"] = "offscreen"
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        env[name] = str(work / name.lower())  # the app's remembered layout stays in here
    return env


def build_vaults(work: Path) -> tuple[Path, Path]:
    """The search vault (all of SciFact, lexical keys) and the app's (200 docs, all keys)."""
    from kvdesk.core.knowledge_base import KnowledgeBase

    work.mkdir(parents=True, exist_ok=True)
    search_vault = work / "scifact.kvdesk"
    if not search_vault.exists():
        with KnowledgeBase.open(search_vault) as kb:
            kb.import_records(SCIFACT)
    gui_vault = work / "gui.kvdesk"
    if not gui_vault.exists():
        records = work / f"scifact-{GUI_DOCS}.jsonl"
        with SCIFACT.open(encoding="utf-8") as src:
            records.write_text("".join(islice(src, GUI_DOCS)), encoding="utf-8")
        with KnowledgeBase.open(gui_vault) as kb:
            kb.import_records(records)
            kb.build_dense_keys()
    return search_vault, gui_vault


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wall(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``runs`` fresh processes running ``cmd`` (after one
    warm-up). CPU time (user + system) is what the wall would be on an idle machine, near
    enough for a start-up that is one thread: on a shared one the wall also counts waiting."""
    walls, cpus = [], []
    for i in range(runs + 1):
        started, cpu = time.perf_counter(), _children_cpu()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
        if i:
            walls.append(time.perf_counter() - started)
            cpus.append(_children_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _first_window(vault: Path, env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds from process start to the main window shown."""
    cmd = [sys.executable, "-c", _GUI_DRIVER, "--vault", str(vault), "gui"]
    walls, cpus = [], []
    for i in range(runs + 1):
        started, cpu = time.perf_counter(), _children_cpu()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - started
        proc.wait(timeout=60)  # it exits at once: its CPU time is the start-up's
        if line.strip() != "shown":
            raise RuntimeError(f"the app did not show its window (exit code {proc.returncode})")
        if i:
            walls.append(elapsed)
            cpus.append(_children_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def measure(runs: int = 7, work: Path = DEFAULT_WORK, gui: bool = True) -> dict[str, Any]:
    """Median start-up walls in seconds (see the module docstring)."""
    search_vault, gui_vault = build_vaults(work)
    env = _env(work)
    kvdesk = [sys.executable, "-m", "kvdesk"]
    runs_of = {
        "search_lexical": [*kvdesk, "--vault", str(search_vault), "search", "--mode", "lexical",
                           QUERY],
        "help": [*kvdesk, "--help"],
        "python_bare": [sys.executable, "-c", "pass"],
    }  # fmt: skip
    out: dict[str, Any] = {}
    for name, cmd in runs_of.items():
        wall, cpu = _wall(cmd, env, runs)
        out[f"{name}_s"], out[f"{name}_cpu_s"] = round(wall, 3), round(cpu, 3)
    if gui:
        wall, cpu = _first_window(gui_vault, env, runs)
        out["gui_first_window_s"], out["gui_first_window_cpu_s"] = round(wall, 3), round(cpu, 3)
    out["runs"] = runs
    out["machine"] = f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}"
    return out


def compare(against: Path, runs: int = 7, work: Path = DEFAULT_WORK) -> dict[str, Any]:
    """The lexical search's start-up with this tree and with the kvdesk under ``against``
    (the code before a change), alternating run by run: medians and ratios from one run."""
    search_vault, _ = build_vaults(work)
    cmd = [sys.executable, "-m", "kvdesk", "--vault", str(search_vault), "search", "--mode",
           "lexical", QUERY]  # fmt: skip
    trees = {"this": ROOT, "against": against.resolve()}
    walls: dict[str, list[float]] = {name: [] for name in trees}
    cpus: dict[str, list[float]] = {name: [] for name in trees}
    for i in range(runs + 1):
        for name in ("this", "against") if i % 2 else ("against", "this"):
            env = dict(_env(work), PYTHONPATH=str(trees[name]))
            started, cpu = time.perf_counter(), _children_cpu()
            subprocess.run(
                cmd, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, check=True
            )
            if i:  # the first round warms the page cache and compiles bytecode
                walls[name].append(time.perf_counter() - started)
                cpus[name].append(_children_cpu() - cpu)
    out: dict[str, Any] = {
        name: {
            "search_lexical_s": round(statistics.median(walls[name]), 3),
            "search_lexical_cpu_s": round(statistics.median(cpus[name]), 3),
        }
        for name in trees
    }
    for key in ("search_lexical_s", "search_lexical_cpu_s"):
        out[f"speedup_{key[:-2]}"] = round(out["against"][key] / out["this"][key], 2)
    out["runs"] = runs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--no-gui", action="store_true", help="skip the app's first window")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="TREE",
        help="compare the lexical search's start-up with the kvdesk package under TREE",
    )
    args = parser.parse_args()
    if args.against is not None:
        print(json.dumps(compare(args.against, args.runs, args.work), indent=2))
        return
    print(json.dumps(measure(args.runs, args.work, gui=not args.no_gui), indent=2))


if __name__ == "__main__":
    main()
