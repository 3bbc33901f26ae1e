"""One Mamba-1 layer as ONNX nodes, for every family of this toolkit.

The official block (docs/custom_ops.md, "The Mamba-1 layer"), in three parts a family
composes as its architecture needs:

    emit_in_proj        [x ; z] = W_in a (+ b_in)
    emit_mixer_*        u = silu(causal depthwise conv(x) (+ b_conv)); [rho; B; C] = W_x u;
                        delta = W_dt rho; one ai.neurodeploy scan node (steps 4-7: softplus,
                        state update, y = <h, C> + D u, gate) -> y
    emit_out_proj       W_out y (+ b_out)

Variants are parameters, not forks: conv bias and projection biases are optional weights;
`MambaMixerWeights.inner_norm` selects the ungated scan op (`SelectiveScanUngated` /
`SelectiveStateUpdateUngated`) followed by LayerNorm(d_inner) and * silu(z) outside it (the
liquid family); `reverse=True` runs one direction backwards in time (Vision Mamba's bimamba v2:
x and z reversed with a Slice of step -1, scanned, the result reversed back), so a
bidirectional layer is two mixers between one in_proj and one out_proj.

Sequence form (`emit_mixer_sequence`): a whole `(B, L, .)` sequence from zero state, or the
continuation of a previous chunk given its `conv_state` and `h0`. Step form
(`emit_mixer_step`): one `(B, .)` token with `conv_state (B, d_inner, d_conv)` (the last d_conv
raw x, oldest first) and `ssm_state (B, d_inner, d_state)` in and out, as the official `step()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from neurodeploy.exporters.onnx_functions import selective_scan_function, selective_state_update_function
from neurodeploy.exporters.onnx_graph import INT64_MAX, GraphBuilder, layer_norm, linear, reverse_time, silu


def _array(t: torch.Tensor | np.ndarray | None) -> np.ndarray | None:
    if t is None:
        return None
    if isinstance(t, torch.Tensor):
        t = t.detach().to(torch.float32).cpu().numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32))


@dataclass(frozen=True)
class LayerNormWeights:
    scale: np.ndarray
    bias: np.ndarray
    eps: float


@dataclass(frozen=True)
class MambaProjections:
    """in_proj split into its x and z halves and out_proj, transposed for MatMul."""

    in_x_t: np.ndarray  # (d_model, d_inner)
    in_z_t: np.ndarray  # (d_model, d_inner)
    out_t: np.ndarray  # (d_inner, d_model)
    in_x_bias: np.ndarray | None = None
    in_z_bias: np.ndarray | None = None
    out_bias: np.ndarray | None = None

    @classmethod
    def from_tensors(cls, in_proj_weight, out_proj_weight, *, in_proj_bias=None, out_proj_bias=None) -> MambaProjections:
        in_w = _array(in_proj_weight)
        d_inner = in_w.shape[0] // 2
        in_b = _array(in_proj_bias)
        return cls(
            in_x_t=np.ascontiguousarray(in_w[:d_inner].T), in_z_t=np.ascontiguousarray(in_w[d_inner:].T),
            out_t=np.ascontiguousarray(_array(out_proj_weight).T),
            in_x_bias=None if in_b is None else in_b[:d_inner], in_z_bias=None if in_b is None else in_b[d_inner:],
            out_bias=_array(out_proj_bias),
        )


@dataclass(frozen=True)
class MambaMixerWeights:
    """Steps 2-7 of one direction: the conv, x_proj, dt_proj and the scan parameters."""

    conv: np.ndarray  # (d_inner, 1, d_conv) depthwise
    x_dt_t: np.ndarray  # (d_inner, dt_rank)
    x_B_t: np.ndarray  # (d_inner, d_state)
    x_C_t: np.ndarray  # (d_inner, d_state)
    dt_proj_t: np.ndarray  # (dt_rank, d_inner)
    dt_bias: np.ndarray  # (d_inner,)
    A: np.ndarray  # (d_inner, d_state) = -exp(A_log)
    D: np.ndarray  # (d_inner,)
    conv_bias: np.ndarray | None = None
    inner_norm: LayerNormWeights | None = None  # LayerNorm(d_inner) between the ungated scan and the gate

    @property
    def d_inner(self) -> int:
        return self.conv.shape[0]

    @property
    def d_conv(self) -> int:
        return self.conv.shape[2]

    @property
    def d_state(self) -> int:
        return self.A.shape[1]

    @classmethod
    def from_tensors(cls, conv1d_weight, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D, *,
                     conv1d_bias=None, inner_norm: LayerNormWeights | None = None) -> MambaMixerWeights:
        A_log = _array(A_log)
        d_state = A_log.shape[1]
        dt_proj = _array(dt_proj_weight)
        dt_rank = dt_proj.shape[1]
        x_w = _array(x_proj_weight)
        return cls(
            conv=_array(conv1d_weight),
            x_dt_t=np.ascontiguousarray(x_w[:dt_rank].T),
            x_B_t=np.ascontiguousarray(x_w[dt_rank: dt_rank + d_state].T),
            x_C_t=np.ascontiguousarray(x_w[dt_rank + d_state:].T),
            dt_proj_t=np.ascontiguousarray(dt_proj.T), dt_bias=_array(dt_proj_bias),
            A=-np.exp(A_log), D=_array(D), conv_bias=_array(conv1d_bias), inner_norm=inner_norm,
        )


@dataclass(frozen=True)
class MambaLayerWeights:
    projections: MambaProjections
    mixer: MambaMixerWeights

    @classmethod
    def from_module(cls, mamba: torch.nn.Module) -> MambaLayerWeights:
        """From a module with the official parameter names (`neurodeploy.model.mamba.Mamba`)."""
        def bias(linear_or_conv) -> torch.Tensor | None:
            return getattr(linear_or_conv, "bias", None)

        return cls(
            MambaProjections.from_tensors(mamba.in_proj.weight, mamba.out_proj.weight,
                                          in_proj_bias=bias(mamba.in_proj), out_proj_bias=bias(mamba.out_proj)),
            MambaMixerWeights.from_tensors(mamba.conv1d.weight, mamba.x_proj.weight, mamba.dt_proj.weight,
                                           mamba.dt_proj.bias, mamba.A_log.float(), mamba.D, conv1d_bias=bias(mamba.conv1d)),
        )


class MixerOutputs(NamedTuple):
    y: str  # (B, L, d_inner) or (B, d_inner), gated
    conv_state: str | None  # (B, d_inner, d_conv); None for a sequence from zero state
    ssm_state: str  # (B, d_inner, d_state): h after the last step


def emit_in_proj(b: GraphBuilder, p: MambaProjections, a: str, tag: str) -> tuple[str, str]:
    return linear(b, a, p.in_x_t, p.in_x_bias, f"{tag}.in_proj_x"), linear(b, a, p.in_z_t, p.in_z_bias, f"{tag}.in_proj_z")


def emit_out_proj(b: GraphBuilder, p: MambaProjections, y: str, tag: str) -> str:
    return linear(b, y, p.out_t, p.out_bias, f"{tag}.out_proj")


def _projections(b: GraphBuilder, m: MambaMixerWeights, u: str, tag: str) -> tuple[str, str, str]:
    rho = b.op("MatMul", u, b.weight(f"{tag}.x_proj.dt", m.x_dt_t), name=f"{tag}.x_proj_dt")
    B = b.op("MatMul", u, b.weight(f"{tag}.x_proj.B", m.x_B_t), name=f"{tag}.x_proj_B")
    C = b.op("MatMul", u, b.weight(f"{tag}.x_proj.C", m.x_C_t), name=f"{tag}.x_proj_C")
    delta = b.op("MatMul", rho, b.weight(f"{tag}.dt_proj.weight", m.dt_proj_t), name=f"{tag}.dt_proj")
    return delta, B, C


def _gate_outside(b: GraphBuilder, m: MambaMixerWeights, y: str, z: str, tag: str) -> str:
    normed = layer_norm(b, y, m.inner_norm.scale, m.inner_norm.bias, m.inner_norm.eps, f"{tag}.inner_norm")
    return b.op("Mul", normed, silu(b, z))


def _scan(b: GraphBuilder, m: MambaMixerWeights, u: str, z: str, state: str, tag: str, *, step: bool) -> tuple[str, str]:
    """Steps 3-7 from u: projections, then one scan node (gated, or ungated + norm + gate outside).
    `state` is h0 for the sequence op, ssm_state for the step op (whose signature puts it first)."""
    delta, B, C = _projections(b, m, u, tag)
    A, D, dt_bias = b.weight(f"{tag}.A", m.A), b.weight(f"{tag}.D", m.D), b.weight(f"{tag}.dt_proj.bias", m.dt_bias)
    gated = m.inner_norm is None
    scan_inputs = [u, delta, A, B, C, D, *([z] if gated else []), dt_bias]
    if step:
        function = selective_state_update_function(b.opset, gated=gated)
        y, state_out = b.call(function, state, *scan_inputs, outputs=2, name=f"{tag}.selective_state_update")
    else:
        function = selective_scan_function(b.opset, gated=gated)
        y, state_out = b.call(function, *scan_inputs, state, outputs=2, name=f"{tag}.selective_scan")
    return (y if gated else _gate_outside(b, m, y, z, tag)), state_out


def emit_mixer_sequence(b: GraphBuilder, m: MambaMixerWeights, x: str, z: str, tag: str, *, h0: str,
                        conv_state: str | None = None, reverse: bool = False) -> MixerOutputs:
    """x, z `(B, L, d_inner)` -> gated y `(B, L, d_inner)` with one scan node.

    `conv_state` None: the causal conv zero-pads (a sequence from the start); otherwise the
    last d_conv-1 inputs of the previous chunk are prepended, as `Mamba.forward` does.
    """
    if reverse and conv_state is not None:
        raise ValueError("a reversed direction scans a whole sequence; it has no streaming state")
    if reverse:
        x, z = reverse_time(b, x), reverse_time(b, z)
    xc = b.op("Transpose", x, perm=[0, 2, 1])  # (B, d_inner, L)
    conv_inputs = [b.weight(f"{tag}.conv1d.weight", m.conv)]
    if m.conv_bias is not None:
        conv_inputs.append(b.weight(f"{tag}.conv1d.bias", m.conv_bias))
    if conv_state is None:
        conv = b.op("Conv", xc, *conv_inputs, group=m.d_inner, kernel_shape=[m.d_conv], pads=[m.d_conv - 1, 0],
                    name=f"{tag}.conv1d")
        conv_out = None
    else:
        history = b.op("Slice", conv_state, b.ints(1), b.ints(INT64_MAX), b.ints(2))
        padded = b.op("Concat", history, xc, axis=2)
        conv = b.op("Conv", padded, *conv_inputs, group=m.d_inner, kernel_shape=[m.d_conv], name=f"{tag}.conv1d")
        conv_out = b.op("Slice", padded, b.ints(-m.d_conv), b.ints(INT64_MAX), b.ints(2))
    u = silu(b, b.op("Transpose", conv, perm=[0, 2, 1]))
    y, h_last = _scan(b, m, u, z, h0, tag, step=False)
    if reverse:
        y = reverse_time(b, y)
    return MixerOutputs(y, conv_out, h_last)


def emit_mixer_step(b: GraphBuilder, m: MambaMixerWeights, x_t: str, z_t: str, tag: str, *, conv_state: str,
                    ssm_state: str) -> MixerOutputs:
    """One token: x_t, z_t `(B, d_inner)` -> gated y `(B, d_inner)` and both states out."""
    history = b.op("Slice", conv_state, b.ints(1), b.ints(INT64_MAX), b.ints(2))
    conv_state = b.op("Concat", history, b.op("Unsqueeze", x_t, b.ints(2)), axis=2)
    taps = b.weight(f"{tag}.conv1d.taps", np.ascontiguousarray(m.conv[:, 0, :]))
    conv = b.op("ReduceSum", b.op("Mul", conv_state, taps), b.ints(2), keepdims=0, name=f"{tag}.conv1d")
    if m.conv_bias is not None:
        conv = b.op("Add", conv, b.weight(f"{tag}.conv1d.bias", m.conv_bias))
    u = silu(b, conv)
    y, ssm_state = _scan(b, m, u, z_t, ssm_state, tag, step=True)
    return MixerOutputs(y, conv_state, ssm_state)


def emit_layer_sequence(b: GraphBuilder, w: MambaLayerWeights, a: str, tag: str, *, h0: str,
                        conv_state: str | None = None) -> tuple[str, MixerOutputs]:
    """The whole layer over `(B, L, d_model)`: returns (out_proj output, mixer outputs)."""
    x, z = emit_in_proj(b, w.projections, a, tag)
    mixed = emit_mixer_sequence(b, w.mixer, x, z, tag, h0=h0, conv_state=conv_state)
    return emit_out_proj(b, w.projections, mixed.y, tag), mixed


def emit_layer_step(b: GraphBuilder, w: MambaLayerWeights, a_t: str, tag: str, *, conv_state: str,
                    ssm_state: str) -> tuple[str, MixerOutputs]:
    """The whole layer for one token `(B, d_model)`: returns (out_proj output, mixer outputs)."""
    x, z = emit_in_proj(b, w.projections, a_t, tag)
    mixed = emit_mixer_step(b, w.mixer, x, z, tag, conv_state=conv_state, ssm_state=ssm_state)
    return emit_out_proj(b, w.projections, mixed.y, tag), mixed
