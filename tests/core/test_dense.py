"""Dense keys: model specs, the Embedder's I/O contract, providers and passage windows.

Most tests use the tiny in-process BERT from tests/tiny_model.py; one test (marked ``model``) runs
the real default model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from kvdesk.core.errors import KvdeskError
from kvdesk.core.keys.dense import (
    CPU,
    PROBE_MODEL,
    Embedder,
    ModelSpec,
    Passage,
    default_model_spec,
    file_sha256,
    load_model_spec,
    make_passages,
    probe_providers,
)
from tests.tiny_model import tiny_tokenizer, write_model_folder

MINILM_TOKENIZER = (
    Path(__file__).resolve().parents[2] / "kvdesk/resources/models/all-MiniLM-L6-v2/tokenizer.json"
)
SENTENCES = [
    "a man is eating food.",
    "the girl is carrying a baby.",
    "kvdesk",
    "",
    "日本語の東京です",
    "a man is eating bread, the girl is carrying a baby, and kvdesk is eating the food. " * 6,
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_folder(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> Embedder:
    return Embedder(load_model_spec(tiny_dir), threads=1)


@pytest.fixture(scope="module")
def minilm_tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(MINILM_TOKENIZER))


def plain(tok: Tokenizer) -> Tokenizer:
    """A copy that counts tokens without the file's baked-in padding/truncation at 128."""
    tok = Tokenizer.from_str(tok.to_str())
    tok.no_padding()
    tok.no_truncation()
    return tok


def long_text(tokens: int) -> str:
    words = ["a", "man", "is", "eating", "food", "the", "girl", "baby", "bread", "kvdesk"]
    return " ".join(words[(i * 7) % len(words)] for i in range(tokens))


# ---------------------------------------------------------------------------------- specs


def test_spec_from_folder(tiny_dir: Path) -> None:
    spec = load_model_spec(tiny_dir)
    assert spec == load_model_spec(str(tiny_dir))
    assert (spec.name, spec.pooling, spec.max_tokens, spec.dim) == ("tiny-bert", "mean", 256, 32)
    assert spec.model_sha256 == file_sha256(tiny_dir / "model.onnx")
    assert len(spec.tokenizer_sha256) == 64


def test_default_spec_points_at_installed_model() -> None:
    spec = default_model_spec()
    assert spec == load_model_spec("default") == load_model_spec("all-MiniLM-L6-v2")
    assert spec.model_path.name == "model.onnx" and spec.model_path.is_file()
    assert spec.model_sha256 == "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    assert spec.tokenizer_sha256 == (
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    )
    assert (spec.pooling, spec.max_tokens, spec.dim) == ("mean", 256, 384)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no-manifest", "kvdesk-model.json"),
        ("no-model", "model file"),
        ("no-tokenizer", "tokenizer file"),
        ("bad-json", "Cannot read"),
        ("bad-pooling", "pooling"),
        ("bad-max-tokens", "max_tokens"),
        ("bad-dim", "dim"),
        ("pinned-sha", "does not match its pinned sha256"),
    ],
)
def test_broken_model_folders_are_refused(tmp_path: Path, breakage: str, message: str) -> None:
    folder = write_model_folder(tmp_path / "m")
    manifest = folder / "kvdesk-model.json"
    data = json.loads(manifest.read_text())
    if breakage == "no-manifest":
        manifest.unlink()
    elif breakage == "no-model":
        (folder / "model.onnx").unlink()
    elif breakage == "no-tokenizer":
        (folder / "tokenizer.json").unlink()
    elif breakage == "bad-json":
        manifest.write_text("{pooling: mean")
    else:
        key, value = {
            "bad-pooling": ("pooling", "max"),
            "bad-max-tokens": ("max_tokens", "256"),
            "bad-dim": ("dim", -3),
            "pinned-sha": ("model_sha256", "0" * 64),
        }[breakage]
        data[key] = value
        manifest.write_text(json.dumps(data))
    with pytest.raises(KvdeskError, match=message):
        load_model_spec(folder)


def test_unknown_model_name_and_correct_pins(tmp_path: Path) -> None:
    with pytest.raises(KvdeskError, match="Unknown model"):
        load_model_spec("no-such-model")
    folder = write_model_folder(tmp_path / "pinned")
    pins = {
        "model_sha256": file_sha256(folder / "model.onnx").upper(),
        "tokenizer_sha256": file_sha256(folder / "tokenizer.json"),
    }
    folder = write_model_folder(tmp_path / "pinned", extra=pins)
    assert load_model_spec(folder).model_sha256 == pins["model_sha256"].lower()


def test_unloadable_model_and_wrong_dim_raise_kvdesk_error(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "garbage")
    (folder / "model.onnx").write_bytes(b"this is not an onnx model")
    with pytest.raises(KvdeskError, match="Cannot load the embedding model"):
        Embedder(load_model_spec(folder))
    folder = write_model_folder(tmp_path / "wrongdim", dim=384)
    with pytest.raises(KvdeskError, match="32-d vectors"):
        Embedder(load_model_spec(folder))
    folder = write_model_folder(tmp_path / "badtok")
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(KvdeskError, match="tokenizer"):
        Embedder(load_model_spec(folder))


# ------------------------------------------------------------------------------ providers


def test_provider_is_what_the_session_really_uses(tiny: Embedder) -> None:
    info = tiny.provider_info
    assert info.provider == tiny._session.get_providers()[0]
    assert info.provider in info.available
    assert info.device_name == ("GPU (CUDA)" if info.provider != CPU else "CPU")
    assert info.onnxruntime_version
    probe = probe_providers()
    assert probe.provider == info.provider
    if "CUDAExecutionProvider" not in info.available or not Path("/dev/nvidia0").exists():
        assert info.provider == CPU  # this machine: no GPU, so CUDA must have fallen back


def test_cpu_can_be_forced(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Embedder(load_model_spec(tiny_dir), prefer_gpu=False).provider_info.provider == CPU
    monkeypatch.setenv("KVDESK_DEVICE", "cpu")
    assert probe_providers().provider == CPU
    assert os.environ.get("ORT_DISABLE_TELEMETRY") == "1"


def test_failed_cuda_load_is_silent() -> None:
    """The GPU wheel logs an error and a warning when CUDA cannot load; users must not see them."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "KVDESK_DEVICE"}
    env["PYTHONPATH"] = str(root)
    code = "from kvdesk.core.keys.dense import probe_providers as p; print(p().provider)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True
    )
    assert done.stdout.strip() in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert done.stderr == ""


def test_probe_model_constant_is_the_documented_graph() -> None:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "kvdesk_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [w],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="kvdesk"
    )
    model.ir_version = 8
    assert model.SerializeToString() == PROBE_MODEL


# ------------------------------------------------------------------------------ embedding


def test_io_contract_matches_manual_mean_pooling(tiny: Embedder, tiny_dir: Path) -> None:
    import onnxruntime

    vecs = tiny.embed_passages(SENTENCES)
    assert vecs.dtype == np.float32 and vecs.shape == (len(SENTENCES), 32) and tiny.dim == 32
    session = onnxruntime.InferenceSession(
        str(tiny_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    tok = tiny_tokenizer()
    tok.no_padding()
    tok.enable_truncation(256)
    for text, vec in zip(SENTENCES, vecs, strict=True):
        enc = tok.encode(text)
        ids = np.array([enc.ids], np.int64)
        hidden = session.run(
            None,
            {
                "input_ids": ids,
                "attention_mask": np.ones_like(ids),
                "token_type_ids": np.zeros_like(ids),
            },
        )[0][0]
        want = hidden.mean(axis=0)
        np.testing.assert_allclose(vec, want / np.linalg.norm(want), atol=1e-5)


def test_vectors_are_normalised(tiny: Embedder) -> None:
    vecs = tiny.embed_passages(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.linalg.norm(tiny.embed_query("food")) == pytest.approx(1.0, abs=1e-5)
    assert tiny.embed_passages([]).shape == (0, 32)


def test_padding_and_batching_do_not_change_vectors(tiny: Embedder) -> None:
    alone = np.stack([tiny.embed_passages([t])[0] for t in SENTENCES])
    for batch_size in (1, 2, 4, 32):
        np.testing.assert_allclose(
            tiny.embed_passages(SENTENCES, batch_size=batch_size), alone, atol=1e-5
        )
    order = [5, 0, 3, 1, 4, 2]  # order restored after the length sort
    np.testing.assert_allclose(
        tiny.embed_passages([SENTENCES[i] for i in order]), alone[order], atol=1e-5
    )


def test_tokenizer_128_truncation_is_overridden(tiny: Embedder) -> None:
    text = long_text(400)
    assert tiny.count_tokens(text) == 400  # the tiny tokenizer.json says: truncate at 128
    enc = tiny.passage_tokenizer.encode(text, add_special_tokens=False)

    def first(n: int) -> str:
        return text[: enc.offsets[n - 1][1]]

    full, cut126, cut254 = tiny.embed_passages([text, first(126), first(254)])
    assert float(full @ cut126) < 0.99999  # not truncated at 128 ...
    np.testing.assert_allclose(full, cut254, atol=1e-5)  # ... but at max_tokens (256)


def test_cls_pooling_prefixes_and_missing_token_type_ids(tmp_path: Path) -> None:
    folder = write_model_folder(
        tmp_path / "cls",
        pooling="cls",
        query_prefix="kvdesk ",
        passage_prefix="bread ",
        with_token_type_ids=False,
    )
    emb = Embedder(load_model_spec(folder))
    mean = Embedder(load_model_spec(write_model_folder(tmp_path / "mean")))
    np.testing.assert_allclose(
        emb.embed_query("food"), emb._embed(["kvdesk food"], 1)[0], atol=1e-6
    )
    np.testing.assert_allclose(
        emb.embed_passages(["food"])[0], emb._embed(["bread food"], 1)[0], atol=1e-6
    )
    assert float(emb.embed_query("food") @ emb.embed_passages(["food"])[0]) < 0.9999
    assert not np.allclose(emb.embed_passages(["a man"]), mean.embed_passages(["a man"]))


# ------------------------------------------------------------------------------- passages


def check_windows(
    passages: list[Passage], title: str, text: str, tok: Tokenizer, max_tokens: int
) -> None:
    head = title + "\n" if title else ""
    tok = plain(tok)
    assert [p.index for p in passages] == list(range(len(passages)))
    for p in passages:
        assert p.text == head + text[p.start : p.end]
        assert len(tok.encode(p.text).ids) <= max_tokens  # with [CLS]/[SEP]
        assert not text[p.start].isspace() and not text[p.end - 1].isspace()
    for a, b in zip(passages, passages[1:], strict=False):
        assert a.start < b.start < a.end <= b.end  # overlapping, moving forward
    covered = np.zeros(len(text), bool)
    for p in passages:
        covered[p.start : p.end] = True
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


def test_passages_cover_english_text_with_overlap(minilm_tokenizer: Tokenizer) -> None:
    text = ("Kvdesk keeps documents verbatim; keys are derived. " * 120).strip()
    passages = make_passages("A title", text, minilm_tokenizer, max_tokens=64, overlap_tokens=8)
    assert len(passages) > 10
    check_windows(passages, "A title", text, minilm_tokenizer, 64)
    counter = plain(minilm_tokenizer)
    for a, b in zip(passages, passages[1:], strict=False):  # overlap ~8 tokens
        shared = counter.encode(text[b.start : a.end], add_special_tokens=False)
        assert 6 <= len(shared.ids) <= 16
    for p in passages[:-1]:  # windows end on word boundaries
        assert not (text[p.end - 1].isalnum() and text[p.end].isalnum())


def test_passages_japanese_and_emoji_offsets(minilm_tokenizer: Tokenizer) -> None:
    text = ("東京は日本の首都です。🙂 Emoji 👍🏽 and café — naïve ½ 🇯🇵 テスト！\n" * 60).strip()
    passages = make_passages("日本語 🙂", text, minilm_tokenizer, max_tokens=48, overlap_tokens=6)
    assert len(passages) > 5
    check_windows(passages, "日本語 🙂", text, minilm_tokenizer, 48)
    # Offsets are code-point offsets into the Python string: each window starts on a token.
    starts = {s for s, _ in plain(minilm_tokenizer).encode(text, add_special_tokens=False).offsets}
    assert all(p.start in starts for p in passages)


def test_passages_with_tiny_tokenizer_and_embedder(tiny: Embedder) -> None:
    text = long_text(1000)
    passages = make_passages("kvdesk", text, tiny, max_tokens=10_000)  # clamped to 256
    check_windows(passages, "kvdesk", text, tiny._tokenizer, 256)
    assert len(passages) == 5
    vecs = tiny.embed_passages([p.text for p in passages])
    assert vecs.shape == (5, 32)
    same = make_passages("kvdesk", text, tiny_tokenizer(), max_tokens=256)
    assert same == passages  # a raw Tokenizer (even one set to truncate at 128) works too


def test_empty_text_gives_one_title_passage(minilm_tokenizer: Tokenizer) -> None:
    assert make_passages("Only a title", "", minilm_tokenizer) == [Passage(0, 0, 0, "Only a title")]
    assert make_passages("  T  ", " \n\t ", minilm_tokenizer) == [Passage(0, 0, 0, "T")]
    short = make_passages("", "Hello world", minilm_tokenizer)
    assert short == [Passage(0, 0, 11, "Hello world")]


def test_long_title_is_shortened(minilm_tokenizer: Tokenizer) -> None:
    title = "title words " * 300
    passages = make_passages(title, long_text(500), minilm_tokenizer, max_tokens=128)
    for p in passages:
        assert len(minilm_tokenizer.encode(p.text).ids) == 128  # (the file pads to 128)
        assert minilm_tokenizer.encode(p.text).overflowing == []
        assert p.text.startswith("title words title")
        assert len(p.text.split("\n")[0]) < 200


def test_huge_text_is_capped(minilm_tokenizer: Tokenizer) -> None:
    text = long_text(600_000)  # ~3 MB
    t0 = time.perf_counter()
    passages = make_passages("Huge", text, minilm_tokenizer)
    elapsed = time.perf_counter() - t0
    assert len(passages) == 2000
    assert passages[-1].end < len(text)
    assert elapsed < 10
    few = make_passages("Huge", text, minilm_tokenizer, max_passages=3)
    assert few == passages[:3]


# ----------------------------------------------------------------------------- real model


@pytest.mark.model
def test_real_default_model() -> None:
    spec = default_model_spec()
    assert isinstance(spec, ModelSpec)
    assert file_sha256(spec.model_path) == spec.model_sha256
    emb = Embedder(spec)
    assert emb.dim == 384
    eating, bread, girl = emb.embed_passages(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The girl is carrying a baby.",
        ]
    )
    assert float(eating @ bread) > 0.6
    assert float(eating @ girl) < float(eating @ bread) - 0.3
    np.testing.assert_allclose(emb.embed_query("A man is eating food."), eating, atol=1e-5)
    text = "Values are kept verbatim while keys are derived, rebuilt and compared. " * 20
    assert emb.count_tokens(text) > 200
    enc = emb.passage_tokenizer.encode(text, add_special_tokens=False)
    full, cut = emb.embed_passages([text, text[: enc.offsets[125][1]]])
    assert float(full @ cut) < 0.99999  # the tokenizer.json's 128-token truncation is off
    batched = emb.embed_passages(["A man is eating food.", text])[0]  # padded next to `text`
    np.testing.assert_allclose(batched, eating, atol=1e-5)


def test_model_input_is_cut_as_the_tokenizer_itself_would(tmp_path: Path) -> None:
    """One untruncated tokenizer serves passage windows and the model; the model's input is
    cut to max_tokens exactly as the tokenizer's own truncation cuts it (specials kept)."""
    spec = default_model_spec()
    embedder = Embedder(spec, threads=1)
    assert embedder.passage_tokenizer is embedder._tokenizer  # held once
    reference = Tokenizer.from_file(str(spec.tokenizer_path))
    reference.no_padding()
    reference.enable_truncation(spec.max_tokens)
    texts = [*SENTENCES, "word " * 2000, "日本" * 900, "x"]
    cut = 0
    for text, (ids, types) in zip(texts, embedder._encode(texts), strict=True):
        expected = reference.encode(text)
        assert (ids, types) == (expected.ids, expected.type_ids)
        cut += len(ids) == spec.max_tokens
    assert cut == 2
    long_text = "word " * 2000
    assert embedder.count_tokens(long_text) == 2000  # windows still see every token
