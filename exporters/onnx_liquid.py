"""Mamba-Liquid-Spiking -> ONNX: everything but the spike encoders, one graph per block.

The encoders go to NIR (`neurodeploy.exporters.nir_liquid`); a runtime alternates them with
these graphs block by block (`neurodeploy.runtimes.liquid`):

    stem.onnx        ids (B, T) int64 -> x_p (B, T, F0)                       the embedding
    block_{i}.onnx   x_p (B, T, F0), spikes (B, T', S) -> next (B, T', F0 | out), liquid, mamba
                     next is the input of encoder i+1 (input_proj of block i+1 applied, when it
                     has one) or, for the last block, the logits; T' = T except for a length-1
                     input, which the runtime repeats num_spike_steps times before the encoder
                     (x_p then broadcasts in the residual, as upstream).
    block_{i}_step.onnx  (sequential mode) one token: x_p_t (B, F0), spikes_t (B, S),
                     liquid_h, conv_state, ssm_state -> next_t, liquid_h_out, conv_state_out,
                     ssm_state_out

Inside a block graph: residual_proj, the CfC as a Scan over time whose body is the ncps cell
(W1 ⊙ M and W2 ⊙ M baked) or the fallback MatMul, liquid_to_hidden, the temporal adapter as a
Pad + 50-tap depthwise Conv whose taps >= min(50, T) are zeroed and whose padding is set at run
time (so one graph serves every length), the liquid Mamba from the shared emitter `neurodeploy.exporters.onnx_mamba` with
`inner_norm` set (the ungated scan op, then LayerNormalization(Di) and * silu(z) outside), the
gate, the cross-attention across heads, the norms and the head. Parity with the PyTorch model is
measured at export and returned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from neurodeploy.exporters.onnx_graph import GraphBuilder, layer_norm, linear
from neurodeploy.exporters.onnx_mamba import (
    LayerNormWeights,
    MambaLayerWeights,
    MambaMixerWeights,
    MambaProjections,
    emit_layer_sequence,
    emit_layer_step,
)
from neurodeploy.formats.liquid import STATE_NAMES, STATE_OUTPUT_NAMES, STEM_FILE, block_file
from neurodeploy.model.liquid.config import GATE_HEADS, XATTN_HEADS
from neurodeploy.model.liquid.model import LiquidBlock, MambaLiquidSpiking

DEFAULT_OPSET = 20

def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy())


def _t(linear_module: torch.nn.Linear) -> tuple[np.ndarray, np.ndarray | None]:
    bias = linear_module.bias
    return _np(linear_module.weight.T), None if bias is None else _np(bias)


def _linear(b: GraphBuilder, x: str, module: torch.nn.Linear, tag: str) -> str:
    weight_t, bias = _t(module)
    return linear(b, x, weight_t, bias, tag)


def _norm(b: GraphBuilder, x: str, module: torch.nn.LayerNorm, tag: str) -> str:
    return layer_norm(b, x, _np(module.weight), _np(module.bias), module.eps, tag)


def mamba_weights(block: LiquidBlock) -> MambaLayerWeights:
    mamba = block.mamba
    return MambaLayerWeights(
        MambaProjections.from_tensors(mamba.in_proj.weight, mamba.out_proj.weight),
        MambaMixerWeights.from_tensors(
            mamba.conv1d.weight, mamba.ssm.x_proj.weight, mamba.ssm.dt_proj.weight, mamba.ssm.dt_proj.bias,
            mamba.ssm.A_log, mamba.ssm.D, conv1d_bias=mamba.conv1d.bias,
            inner_norm=LayerNormWeights(_np(mamba.norm.weight), _np(mamba.norm.bias), mamba.norm.eps)),
    )


# -- pieces shared by the full and the step graphs --------------------------------------------
def _cfc_step(b: GraphBuilder, block: LiquidBlock, o_t: str, h: str, tag: str) -> str:
    """ncps CfCCell, ts = 1: h' = tanh(x W1m + b1)(1 - tau) + tau tanh(x W2m + b2), x = [o_t ; h]."""
    cell = block.liquid_cell.cell.rnn_cell.layer_0
    mask = cell.sparsity_mask
    x = b.op("Concat", o_t, h, axis=-1)
    f1 = b.op("Tanh", linear(b, x, _np((cell.ff1.weight * mask).T), _np(cell.ff1.bias), f"{tag}.ff1"))
    f2 = b.op("Tanh", linear(b, x, _np((cell.ff2.weight * mask).T), _np(cell.ff2.bias), f"{tag}.ff2"))
    tau = b.op("Sigmoid", b.op("Add", _linear(b, x, cell.time_a, f"{tag}.time_a"), _linear(b, x, cell.time_b, f"{tag}.time_b")))
    keep = b.op("Sub", b.scalar(1.0, np.float32), tau)
    return b.op("Add", b.op("Mul", f1, keep), b.op("Mul", tau, f2))


def _cfc_sequence(b: GraphBuilder, block: LiquidBlock, spikes: str, h0: str, tag: str) -> tuple[str, str]:
    """A Scan over time whose body is `_cfc_step`; returns (q (B, T, U), h_last (B, U))."""
    body = GraphBuilder(f"{tag}.body", opset=b.opset)
    h_prev = body.input("h_prev", TensorProto.FLOAT, None)
    o_t = body.input("o_t", TensorProto.FLOAT, None)
    h_next = _cfc_step(body, block, o_t, h_prev, tag)
    q_t = body.op("Identity", h_next)
    body.output(h_next, "h_next", TensorProto.FLOAT, None)
    body.output(q_t, "q_t", TensorProto.FLOAT, None)
    graph = helper.make_graph(body.nodes, f"{tag}_cfc_step", body.inputs, body.outputs, body.initializers)
    time_major = b.op("Transpose", spikes, perm=[1, 0, 2])
    h_last, q_tm = b.op("Scan", h0, time_major, outputs=2, body=graph, num_scan_inputs=1, name=f"{tag}.cfc")
    return b.op("Transpose", q_tm, perm=[1, 0, 2]), h_last


def _temporal_adapter(b: GraphBuilder, block: LiquidBlock, spikes: str, channels: int, tag: str) -> str:
    """rho_t = sum_{j<k} kappa_j o_{t+j-p}, k = min(50, T), p = k // 2, for any T in one graph.

    A depthwise Conv with the whole 50-tap kernel, taps j >= k zeroed at run time, over the
    input padded with p zeros before and 49 - p after: exactly T outputs, and every shape but
    T static (onnxruntime's Scan needs the shapes downstream inferred).
    """
    adapter = block.spike_to_mamba
    length = adapter.temporal_kernel.numel()
    steps = b.op("Shape", spikes, start=1, end=2)  # (1,) int64
    k = b.op("Min", steps, b.ints(length))
    p = b.op("Div", k, b.ints(2))
    live = b.op("Cast", b.op("Less", b.weight(f"{tag}.tap_index", np.arange(length, dtype=np.int64)), k),
                to=TensorProto.FLOAT)
    taps = b.op("Mul", b.weight(f"{tag}.temporal_kernel", _np(adapter.temporal_kernel)), live)
    kernel = b.op("Expand", b.op("Reshape", taps, b.ints(1, 1, length)), b.ints(channels, 1, length))
    zero = b.ints(0, 0)
    after = b.op("Sub", b.ints(length - 1), p)
    padded = b.op("Pad", b.op("Transpose", spikes, perm=[0, 2, 1]), b.op("Concat", zero, p, zero, after, axis=0))
    rho = b.op("Conv", padded, kernel, group=channels, kernel_shape=[length], name=f"{tag}.temporal_conv")
    return _linear(b, b.op("Transpose", rho, perm=[0, 2, 1]), adapter.spike_projection, f"{tag}.spike_projection")


def _gate(b: GraphBuilder, block: LiquidBlock, liquid: str, mamba: str, hidden: int, tag: str) -> str:
    gate = block.gate
    mixed = b.op("Mul", _linear(b, liquid, gate.liquid_query, f"{tag}.liquid_query"),
                 _linear(b, mamba, gate.mamba_key, f"{tag}.mamba_key"))
    logits = _linear(b, mixed, gate.gate_projection, f"{tag}.gate_projection")
    g = b.op("Unsqueeze", b.op("Sigmoid", b.op("Div", logits, b.weight(f"{tag}.temperature", _np(gate.temperature)))),
             b.ints(-1))
    heads = b.ints(0, 0, GATE_HEADS, hidden // GATE_HEADS)
    fused = b.op("Add", b.op("Mul", g, b.op("Reshape", liquid, heads)),
                 b.op("Mul", b.op("Sub", b.scalar(1.0, np.float32), g), b.op("Reshape", mamba, heads)))
    return b.op("Reshape", fused, b.ints(0, 0, hidden))


def _attend(b: GraphBuilder, query: str, key_value: str, e: int) -> str:
    q = b.op("Reshape", query, b.ints(0, 0, XATTN_HEADS, e))
    k, v = b.op("Split", b.op("Reshape", key_value, b.ints(0, 0, XATTN_HEADS, 2 * e)), b.ints(e, e), axis=-1, outputs=2)
    scores = b.op("Div", b.op("MatMul", q, b.op("Transpose", k, perm=[0, 1, 3, 2])), b.scalar(math.sqrt(e), np.float32))
    return b.op("Reshape", b.op("MatMul", b.op("Softmax", scores, axis=-1), v), b.ints(0, 0, XATTN_HEADS * e))


def _cross_attention(b: GraphBuilder, block: LiquidBlock, q: str, m: str, tag: str) -> tuple[str, str]:
    xa = block.cross_attention
    e = xa.head_dim
    liquid = b.op("Add", q, _linear(b, _attend(b, _linear(b, q, xa.liquid_q, f"{tag}.liquid_q"),
                                               _linear(b, m, xa.mamba_kv, f"{tag}.mamba_kv"), e), xa.liquid_out, f"{tag}.liquid_out"))
    mamba = b.op("Add", m, _linear(b, _attend(b, _linear(b, m, xa.mamba_q, f"{tag}.mamba_q"),
                                              _linear(b, q, xa.liquid_kv, f"{tag}.liquid_kv"), e), xa.mamba_out, f"{tag}.mamba_out"))
    return liquid, mamba


def _next_input(b: GraphBuilder, model: MambaLiquidSpiking, index: int, out: str) -> str:
    """What encoder i+1 reads (input_proj of block i+1 when it has one), or the logits."""
    if index == len(model.blocks) - 1:
        return _linear(b, out, model.output_head, "output_head")
    following = model.blocks[index + 1]
    return out if following.input_proj is None else _linear(b, out, following.input_proj, f"blocks.{index + 1}.input_proj")


def _zeros(b: GraphBuilder, like: str, *trailing: int) -> str:
    shape = b.op("Concat", b.op("Shape", like, start=0, end=1), b.ints(*trailing), axis=0)
    return b.op("ConstantOfShape", shape, value=numpy_helper.from_array(np.zeros(1, np.float32)))


# -- graphs -------------------------------------------------------------------------------------
def build_stem(model: MambaLiquidSpiking, *, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    b = GraphBuilder("stem", opset=opset)
    ids = b.input("ids", TensorProto.INT64, ["batch", "time"])
    x = b.op("Gather", b.weight("embedding.weight", _np(model.embedding.weight)), ids, axis=0)
    b.output(x, "x_p", TensorProto.FLOAT, ["batch", "time", model.config.input_dim])
    return b.model("liquid_stem", producer_version=_version(), doc="Mamba-Liquid-Spiking embedding",
                   metadata={"family": "liquid", "graph": "stem"})


def build_block(model: MambaLiquidSpiking, index: int, *, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The full-sequence graph of block `index` (everything but its spike encoder)."""
    c, block, tag = model.config, model.blocks[index], f"blocks.{index}"
    b = GraphBuilder(tag, opset=opset)
    x_p = b.input("x_p", TensorProto.FLOAT, ["batch", "time_in", c.input_dim])
    spikes = b.input("spikes", TensorProto.FLOAT, ["batch", "time", c.spiking_units])
    residual = x_p if block.residual_proj is None else _linear(b, x_p, block.residual_proj, f"{tag}.residual_proj")
    if block.liquid_cell.stateful:
        q, h_last = _cfc_sequence(b, block, spikes, _zeros(b, spikes, c.liquid_units), f"{tag}.liquid_cell")
    else:
        q = _linear(b, spikes, block.liquid_cell.fallback, f"{tag}.liquid_cell.fallback")
        h_last = _zeros(b, spikes, c.liquid_units)

    lh = block.liquid_to_hidden
    lh_weights = (b.weight(f"{tag}.liquid_to_hidden.weight_t", _np(lh.projection.weight.T)),
                  b.weight(f"{tag}.liquid_to_hidden.norm.weight", _np(lh.norm.weight)),
                  b.weight(f"{tag}.liquid_to_hidden.norm.bias", _np(lh.norm.bias)))

    def to_hidden(v: str) -> str:  # applied to q, and in bidirectional mode again to q~: one set of weights
        return b.op("LayerNormalization", b.op("MatMul", v, lh_weights[0]), lh_weights[1], lh_weights[2],
                    axis=-1, epsilon=lh.norm.eps)

    liquid = to_hidden(q)
    h0 = _zeros(b, spikes, c.d_inner, c.mamba_d_state)
    source = liquid if c.integration_mode == "sequential" else _temporal_adapter(b, block, spikes, c.spiking_units, tag)
    m, _ = emit_layer_sequence(b, mamba_weights(block), _norm(b, source, block.norm1, f"{tag}.norm1"), f"{tag}.mamba", h0=h0)
    if c.integration_mode == "sequential":
        fused = m
    elif c.integration_mode == "parallel":
        fused = _gate(b, block, liquid, m, c.hidden_dim, f"{tag}.gate")
    else:
        q_new, m_new = _cross_attention(b, block, q, m, f"{tag}.cross_attention")
        half = b.scalar(0.5, np.float32)
        fused = b.op("Add", b.op("Mul", half, to_hidden(q_new)), b.op("Mul", half, m_new))
    out = _norm(b, b.op("Add", fused, residual), block.norm2, f"{tag}.norm2")
    last = index == len(model.blocks) - 1
    b.output(_next_input(b, model, index, out), "next", TensorProto.FLOAT,
             ["batch", "time", c.output_dim if last else c.input_dim])
    b.output(q, "liquid", TensorProto.FLOAT, ["batch", "time", c.liquid_units])
    b.output(m, "mamba", TensorProto.FLOAT, ["batch", "time", c.hidden_dim])
    b.output(h_last, "liquid_h", TensorProto.FLOAT, ["batch", c.liquid_units])
    return b.model(f"liquid_block_{index}", producer_version=_version(),
                   doc=f"Mamba-Liquid-Spiking block {index} without its spike encoder (full sequence)",
                   metadata={"family": "liquid", "graph": "block", "block": str(index), "config": c.to_json()})


def build_block_step(model: MambaLiquidSpiking, index: int, *, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """One token of a sequential-mode block, every state in and out."""
    c, block, tag = model.config, model.blocks[index], f"blocks.{index}"
    if c.integration_mode != "sequential":
        raise ValueError(f"block step graphs exist for sequential mode only, not {c.integration_mode!r}")
    b = GraphBuilder(tag, opset=opset)
    x_p = b.input("x_p_t", TensorProto.FLOAT, ["batch", c.input_dim])
    spikes = b.input("spikes_t", TensorProto.FLOAT, ["batch", c.spiking_units])
    state_shapes = (["batch", c.liquid_units], ["batch", c.d_inner, c.mamba_d_conv], ["batch", c.d_inner, c.mamba_d_state])
    h, conv_state, ssm_state = (b.input(name, TensorProto.FLOAT, shape) for name, shape in zip(STATE_NAMES, state_shapes))
    residual = x_p if block.residual_proj is None else _linear(b, x_p, block.residual_proj, f"{tag}.residual_proj")
    if block.liquid_cell.stateful:
        q = _cfc_step(b, block, spikes, h, f"{tag}.liquid_cell")
        h_out = q
    else:
        q = _linear(b, spikes, block.liquid_cell.fallback, f"{tag}.liquid_cell.fallback")
        h_out = b.op("Identity", h)
    liquid = _norm(b, b.op("MatMul", q, b.weight(f"{tag}.liquid_to_hidden.weight_t",
                                                 _np(block.liquid_to_hidden.projection.weight.T))),
                   block.liquid_to_hidden.norm, f"{tag}.liquid_to_hidden.norm")
    m, mixed = emit_layer_step(b, mamba_weights(block), _norm(b, liquid, block.norm1, f"{tag}.norm1"), f"{tag}.mamba",
                               conv_state=conv_state, ssm_state=ssm_state)
    out = _norm(b, b.op("Add", m, residual), block.norm2, f"{tag}.norm2")
    last = index == len(model.blocks) - 1
    b.output(_next_input(b, model, index, out), "next_t", TensorProto.FLOAT,
             ["batch", c.output_dim if last else c.input_dim])
    for value, name, shape in zip((h_out, mixed.conv_state, mixed.ssm_state), STATE_OUTPUT_NAMES, state_shapes):
        b.output(value, name, TensorProto.FLOAT, shape)
    return b.model(f"liquid_block_{index}_step", producer_version=_version(),
                   doc=f"Mamba-Liquid-Spiking block {index} without its spike encoder (one token)",
                   metadata={"family": "liquid", "graph": "block_step", "block": str(index), "config": c.to_json()})


@dataclass(frozen=True)
class LiquidOnnxFiles:
    stem: Path
    blocks: tuple[Path, ...]
    steps: tuple[Path, ...]  # empty unless sequential mode


def export_onnx(model: MambaLiquidSpiking, out_dir: str | Path, *, opset: int = DEFAULT_OPSET) -> LiquidOnnxFiles:
    """Write stem.onnx, block_{i}.onnx and, for sequential mode, block_{i}_step.onnx (checked by onnx)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def save(proto: onnx.ModelProto, name: str) -> Path:
        onnx.checker.check_model(proto)
        onnx.save(proto, out_dir / name)
        return out_dir / name

    stem = save(build_stem(model, opset=opset), STEM_FILE)
    blocks = tuple(save(build_block(model, i, opset=opset), block_file(i)) for i in range(len(model.blocks)))
    steps: tuple[Path, ...] = ()
    if model.streamable:
        steps = tuple(save(build_block_step(model, i, opset=opset), block_file(i, step=True))
                      for i in range(len(model.blocks)))
    return LiquidOnnxFiles(stem, blocks, steps)


def _version() -> str:
    from neurodeploy import __version__

    return __version__
