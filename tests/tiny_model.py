"""A tiny BERT-like ONNX model and a matching WordPiece tokenizer, built in-process for fast tests.

Same I/O contract as the real all-MiniLM-L6-v2 export: int64 ``input_ids``, ``attention_mask``,
``token_type_ids`` [batch, seq] in, float ``last_hidden_state`` [batch, seq, hidden] out. The
attention is masked like BERT's, so padding does not change the real tokens' states. The
tokenizer bakes in truncation and fixed padding at 128, like the shipped MiniLM tokenizer.json,
so tests prove the Embedder overrides them.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def tiny_vocab() -> dict[str, int]:
    """Specials, single characters (plus their ## forms) and a few whole words."""
    chars = list(string.ascii_lowercase + string.digits + ".,!?'-") + list("日本語の東京です")
    words = ["the", "a", "man", "is", "eating", "food", "bread", "girl", "baby", "kvdesk"]
    tokens = SPECIALS + chars + ["##" + c for c in chars] + words + ["##" + w for w in words]
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def tiny_tokenizer() -> Tokenizer:
    vocab = tiny_vocab()
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece()
    tok.enable_truncation(128)
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=128)
    return tok


def tiny_bert_model(
    vocab_size: int | None = None,
    *,
    hidden: int = 32,
    heads: int = 2,
    layers: int = 2,
    max_positions: int = 512,
    with_token_type_ids: bool = True,
    seed: int = 0,
) -> onnx.ModelProto:
    """A random-weight BERT encoder; 2 layers of 32 wide build and load in well under a second."""
    vocab_size = vocab_size or len(tiny_vocab())
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def weight(name: str, shape: tuple[int, ...], scale: float = 0.2) -> str:
        inits.append(
            numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
        )
        return name

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def layer_norm(x: str, name: str) -> str:
        gamma = const(name + ".g", np.ones(hidden, np.float32))
        beta = const(name + ".b", np.zeros(hidden, np.float32))
        return node("LayerNormalization", [x, gamma, beta], name, axis=-1, epsilon=1e-12)

    def linear(x: str, name: str, d_in: int, d_out: int) -> str:
        mm = node("MatMul", [x, weight(name + ".w", (d_in, d_out))], name + ".mm")
        return node("Add", [mm, weight(name + ".bias", (d_out,), 0.02)], name)

    # Embeddings: word + position + token type.
    word = node("Gather", [weight("emb.word", (vocab_size, hidden), 1.0), "input_ids"], "e.word")
    shape = node("Shape", ["input_ids"], "e.shape")
    seq = node("Gather", [shape, const("c.one_idx", np.array(1, np.int64))], "e.seq")
    positions = node(
        "Range",
        [const("c.zero", np.array(0, np.int64)), seq, const("c.one", np.array(1, np.int64))],
        "e.positions",
    )
    pos = node("Gather", [weight("emb.pos", (max_positions, hidden), 1.0), positions], "e.pos")
    x = node("Add", [word, pos], "e.sum")
    if with_token_type_ids:
        types = node("Gather", [weight("emb.type", (2, hidden), 1.0), "token_type_ids"], "e.type")
        x = node("Add", [x, types], "e.sum2")
    x = layer_norm(x, "e.ln")

    # Additive mask [batch, 1, 1, seq]: 0 for real tokens, -10000 for padding.
    mask_f = node("Cast", ["attention_mask"], "m.f", to=TensorProto.FLOAT)
    inv = node("Sub", [const("c.onef", np.array(1.0, np.float32)), mask_f], "m.inv")
    add_mask = node("Mul", [inv, const("c.neg", np.array(-10000.0, np.float32))], "m.add")
    add_mask = node("Unsqueeze", [add_mask, const("c.axes", np.array([1, 2], np.int64))], "m.4d")

    split_shape = const("c.split", np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = const("c.merge", np.array([0, 0, hidden], np.int64))
    scale = const("c.scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    for i in range(layers):
        p = f"l{i}"
        q = node("Reshape", [linear(x, p + ".q", hidden, hidden), split_shape], p + ".q4")
        k = node("Reshape", [linear(x, p + ".k", hidden, hidden), split_shape], p + ".k4")
        v = node("Reshape", [linear(x, p + ".v", hidden, hidden), split_shape], p + ".v4")
        q = node("Transpose", [q], p + ".qt", perm=[0, 2, 1, 3])
        k = node("Transpose", [k], p + ".kt", perm=[0, 2, 3, 1])
        v = node("Transpose", [v], p + ".vt", perm=[0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], p + ".qk"), scale], p + ".scaled")
        probs = node(
            "Softmax", [node("Add", [scores, add_mask], p + ".masked")], p + ".probs", axis=-1
        )
        ctx = node(
            "Transpose", [node("MatMul", [probs, v], p + ".ctx")], p + ".ctxt", perm=[0, 2, 1, 3]
        )
        ctx = node("Reshape", [ctx, merge_shape], p + ".ctx3")
        attn = linear(ctx, p + ".o", hidden, hidden)
        x = layer_norm(node("Add", [x, attn], p + ".res1"), p + ".ln1")
        ff = node("Relu", [linear(x, p + ".ff1", hidden, hidden * 2)], p + ".relu")
        ff = linear(ff, p + ".ff2", hidden * 2, hidden)
        x = layer_norm(node("Add", [x, ff], p + ".res2"), p + ".ln2")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))

    ints = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_token_type_ids else [])
    graph = helper.make_graph(
        nodes,
        "tiny_bert",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in ints],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]
            )
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kvdesk-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_model_folder(
    folder: Path,
    *,
    pooling: str = "mean",
    max_tokens: int = 256,
    dim: int | None = 32,
    query_prefix: str = "",
    passage_prefix: str = "",
    extra: Mapping[str, object] | None = None,
    **model_kwargs: object,
) -> Path:
    """A model folder (model.onnx + tokenizer.json + kvdesk-model.json) holding the tiny model."""
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_bert_model(**model_kwargs)  # type: ignore[arg-type]
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    tiny_tokenizer().save(str(folder / "tokenizer.json"))
    manifest: dict[str, object] = {
        "pooling": pooling,
        "query_prefix": query_prefix,
        "passage_prefix": passage_prefix,
        "max_tokens": max_tokens,
    }
    if dim is not None:
        manifest["dim"] = dim
    manifest.update(extra or {})
    (folder / "kvdesk-model.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder
