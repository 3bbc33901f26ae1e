"""The native runtimes: an event-driven front-end and a fused backbone step, compiled with numba.

`NativeFrontendRuntime` executes a bundle's NIR front-end graph (the layout and metadata of
`neurodeploy.exporters.nir`, with the semantics `neurodeploy.runtimes.nir` honours: conv with
bias, sum / avg pooling of currents, LIF / IF / CubaLIF (tau_syn = dt) with subtract, zero or
no reset, delayed or immediate, strict compare, per-neuron parameters, recurrent convs one
step late and active from step 1, graded input counts). Per step only the input pixels that
received events and the neurons that spiked do work: each scatters its kernel into the next
layer's currents; biases and the leak are applied to every neuron, as the dense maths does.
Why numba, and how the arithmetic is kept identical to the reference: `native_kernels`.

`NativeBackboneRuntime` runs the Mamba-Spike backbone of a `MambaSpike` one fused kernel
call per step: the interface ring buffer, the input projection as sums of the weight columns
of the features that spiked (the new frame's columns added to a sliding float64 sum over the
window, the oldest frame's taken away; no dense matrix product), every layer's LayerNorm,
conv state, selective state update and gate, the running mean and the head.

`mamba_layer_step(weights, conv_state, ssm_state, x) -> y` is the public one-token Mamba
layer for every model family (SpikeMamba LM, Liquid, ...): build `MambaLayerWeights` with
`from_module(mamba)` or by hand (biases optional; `gate` "silu" | "none" | "norm_silu"),
keep `conv_state (Di, K)` / `ssm_state (Di, N)` float32 numpy arrays (or batched
`(B, Di, K)` / `(B, Di, N)` with `x (B, d)`), which it updates in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import torch

from neurodeploy.formats.nir_frontend import (UnsupportedGraphError, frontend_chain, graph_dt, load_graph,
                                              neuron_names, neuron_parameters)
from neurodeploy.model.mamba import Mamba, MambaState
from neurodeploy.model.mamba_spike.interface import InterfaceState
from neurodeploy.model.mamba_spike.model import BackboneState, MambaSpike
from neurodeploy.runtimes import native_kernels as kernels
from neurodeploy.runtimes.contract import BackboneRuntime, FrontendRuntime

GATES = {"silu": kernels.GATE_SILU, "none": kernels.GATE_NONE, "norm_silu": kernels.GATE_NORM_SILU}
_NO_BIAS = np.zeros(0, np.float32)


# -- front-end: the NIR graph as a layer table ----------------------------------------------
def _pair(value) -> tuple[int, int]:
    values = np.broadcast_to(np.asarray(value).astype(np.int64), (2,))
    return int(values[0]), int(values[1])


def _per_neuron(value, shape: tuple[int, int, int]) -> np.ndarray:
    """A scalar or (C, H, W) array as float32 in the kernels' channels-last (H, W, C) order."""
    array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value, np.float32)
    array = np.broadcast_to(array.astype(np.float32), shape)
    return np.ascontiguousarray(array.transpose(1, 2, 0)).ravel()


def _conv_geometry(name: str, node: nir.Conv2d) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    if isinstance(node.padding, str):
        raise UnsupportedGraphError(f"node {name!r}: string padding {node.padding!r}; write integer padding")
    if int(node.groups) != 1 or _pair(node.dilation) != (1, 1):
        raise UnsupportedGraphError(f"node {name!r}: groups {node.groups}, dilation {node.dilation}; the native "
                                    "runtime scatters dense convs only (groups 1, dilation 1); use --frontend nir")
    return tuple(np.asarray(node.weight).shape[2:]), _pair(node.stride), _pair(node.padding)


def _fold_conv_pool(weight: np.ndarray, pool: str, pad: tuple[int, int], stride: tuple[int, int]):
    """Conv (stride 1) + non-overlapping pooling as one scatter per input phase.

    An input at y = stride*q + r reaches pooled row q + (r + pad - ky) // stride through
    kernel row ky: the offset depends on the phase r only, so the kernel taps that land in
    one pooled output can be summed once, in float64 (exact: at most kh*kw float32 terms
    times 1 or a power-of-two 1/window). Returns (folded (C_in, sy, sx, ny, nx, C_out),
    reach mask, dy0, dx0).
    """
    c_out, c_in, kh, kw = weight.shape
    (ph, pw), (sy, sx) = pad, stride
    dys = {(ry, ky): (ry + ph - ky) // sy for ry in range(sy) for ky in range(kh)}
    dxs = {(rx, kx): (rx + pw - kx) // sx for rx in range(sx) for kx in range(kw)}
    dy0, dx0 = min(dys.values()), min(dxs.values())
    ny, nx = max(dys.values()) - dy0 + 1, max(dxs.values()) - dx0 + 1
    scale = 1.0 / (sy * sx) if pool == "avg" else 1.0
    folded = np.zeros((c_in, sy, sx, ny, nx, c_out), np.float64)
    reach = np.zeros((c_in, sy, sx, ny, nx), np.bool_)
    w = weight.astype(np.float64).transpose(1, 2, 3, 0)  # (c_in, kh, kw, c_out)
    for ry in range(sy):
        for rx in range(sx):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = dys[ry, ky] - dy0, dxs[rx, kx] - dx0
                    folded[:, ry, rx, iy, ix] += w[:, ky, kx] * scale
                    reach[:, ry, rx, iy, ix] = True
    return folded.ravel(), reach.ravel(), dy0, dx0, ny, nx


@dataclass
class _Program:
    table: np.ndarray
    weights: np.ndarray
    folded: np.ndarray
    reach: np.ndarray
    biases: np.ndarray
    beta: np.ndarray
    threshold: np.ndarray
    input_scale: np.ndarray
    shapes: list[tuple[int, int, int]] = field(default_factory=list)  # (C, H, W) per LIF layer
    input_shape: tuple[int, int, int] = (0, 0, 0)


def compile_frontend(graph: nir.NIRGraph, dt_s: float | None) -> tuple[_Program, tuple[str, ...]]:
    """The layer table of the chain input -> (conv -> [pool] -> neuron [<-> rec]) x n (`frontend_chain`)."""
    input_name, chain = frontend_chain(graph)
    in_shape = tuple(int(d) for d in graph.nodes[input_name].input_type["input"])
    if len(in_shape) != 3:
        raise UnsupportedGraphError(f"input {input_name!r} of shape {in_shape}; expected (C, H, W) event counts")
    rows, weights, folds, reaches, biases, betas, thresholds, scales, shapes, names = ([] for _ in range(10))
    w_off = b_off = n_off = f_off = 0
    shape = in_shape
    for layer in chain:
        name, node = layer.conv, graph.nodes[layer.conv]
        (kh, kw), (sh, sw), (ph, pw) = _conv_geometry(name, node)
        weight = np.asarray(node.weight, np.float32)
        out_c = weight.shape[0]
        if weight.shape[1] != shape[0]:
            raise UnsupportedGraphError(f"node {name!r}: weight for {weight.shape[1]} input channels, fed {shape[0]}")
        conv_h, conv_w = (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1
        pool, (pkh, pkw), (psh, psw) = None, (1, 1), (1, 1)
        if layer.pool is not None:
            pool_node = graph.nodes[layer.pool]
            if np.any(np.asarray(pool_node.padding) != 0):
                raise UnsupportedGraphError(f"node {layer.pool!r}: pooling with padding is not implemented")
            pool = "sum" if isinstance(pool_node, nir.SumPool2d) else "avg"
            (pkh, pkw), (psh, psw) = _pair(pool_node.kernel_size), _pair(pool_node.stride)
        out_h, out_w = (conv_h - pkh) // psh + 1, (conv_w - pkw) // psw + 1
        neuron_name = layer.neuron
        parameters, input_scale = neuron_parameters(neuron_name, graph.nodes[neuron_name], dt_s)
        layer_shape = (out_c, out_h, out_w)
        n_neurons = out_c * out_h * out_w
        # biases: a pooling window of pkh*pkw conv outputs, each with the bias (avg: divided again)
        window = pkh * pkw
        ff_bias = np.asarray(node.bias, np.float64) * (window if pool == "sum" else 1.0)
        row = dict(in_c=shape[0], in_h=shape[1], in_w=shape[2], conv_h=conv_h, conv_w=conv_w, kh=kh, kw=kw, sh=sh,
                   sw=sw, ph=ph, pw=pw, w_off=w_off, pool=kernels.POOL_CODES[pool], pkh=pkh, pkw=pkw, psh=psh,
                   psw=psw, out_c=out_c, out_h=out_h, out_w=out_w, n_off=n_off, ff_bias_off=b_off,
                   rec=0, rkh=1, rkw=1, rph=0, rpw=0, rw_off=0, rec_bias_off=0,
                   reset=kernels.RESET_CODES[parameters.reset], timing=kernels.TIMING_CODES[parameters.reset_timing],
                   fold=0, fold_off=0, fdy0=0, fdx0=0, fny=1, fnx=1)
        # floor pooling with kernel == stride after a stride-1 conv: a conv output that does not
        # exist (beyond the padding) falls outside the pooled map too, so the folded scatter is exact
        if pool is not None and (pkh, pkw) == (psh, psw) and (sh, sw) == (1, 1) and conv_h // psh == out_h \
                and conv_w // psw == out_w:
            folded, reach, dy0, dx0, fny, fnx = _fold_conv_pool(weight, pool, (ph, pw), (psh, psw))
            row.update(fold=1, fold_off=f_off, fdy0=dy0, fdx0=dx0, fny=fny, fnx=fnx)
            folds.append(folded)
            reaches.append(reach)
            f_off += folded.size
        weights.append(np.ascontiguousarray(weight.transpose(1, 2, 3, 0)).ravel())
        w_off += weight.size
        biases.append(ff_bias)
        b_off += out_c
        if layer.recurrent is not None:
            rec_name, rec = layer.recurrent, graph.nodes[layer.recurrent]
            meta = rec.metadata
            if int(meta.get("delay_steps", 1)) != 1 or int(meta.get("active_from_step", 1)) != 1:
                raise UnsupportedGraphError(f"node {rec_name!r}: a recurrent conv must read and feed {neuron_name!r} "
                                            "with delay_steps 1, active_from_step 1")
            (rkh, rkw), (rsh, rsw), (rph, rpw) = _conv_geometry(rec_name, rec)
            rec_weight = np.asarray(rec.weight, np.float32)
            same_shape = (rkh - 1, rkw - 1) == (2 * rph, 2 * rpw)
            if (rsh, rsw) != (1, 1) or rec_weight.shape[:2] != (out_c, out_c) or not same_shape:
                raise UnsupportedGraphError(f"node {rec_name!r}: a recurrent conv must keep the shape {layer_shape} "
                                            "(stride 1, 'same' padding)")
            row.update(rec=1, rkh=rkh, rkw=rkw, rph=rph, rpw=rpw, rw_off=w_off, rec_bias_off=b_off)
            weights.append(np.ascontiguousarray(rec_weight.transpose(1, 2, 3, 0)).ravel())
            w_off += rec_weight.size
            biases.append(np.asarray(rec.bias, np.float64))
            b_off += out_c
        rows.append([row[f] for f in kernels.FIELDS])
        betas.append(_per_neuron(parameters.beta, layer_shape))
        thresholds.append(_per_neuron(parameters.threshold, layer_shape))
        scales.append(_per_neuron(input_scale, layer_shape))
        shapes.append(layer_shape)
        names.append(neuron_name)
        n_off += n_neurons
        shape = layer_shape
    declared = neuron_names(graph)
    if tuple(names) != tuple(declared):
        raise UnsupportedGraphError(f"the chain reaches neurons {names}, the graph declares {list(declared)}")
    folded = np.concatenate(folds) if folds else np.zeros(1, np.float64)
    reach = np.concatenate(reaches) if reaches else np.zeros(1, np.bool_)
    program = _Program(np.asarray(rows, np.int64), np.concatenate(weights), folded, reach, np.concatenate(biases),
                       np.concatenate(betas), np.concatenate(thresholds), np.concatenate(scales), shapes, in_shape)
    return program, tuple(names)


class NativeFrontendRuntime(FrontendRuntime):
    """FrontendRuntime over `native_kernels.frontend_step` (see the module docstring).

    `layer_spikes` is built on request from the spike arrays and `spike_counts` is counted by
    the kernel, so a step does no per-layer bookkeeping in Python. `get_state()` returns a
    dict of copies of the membranes, spikes and counters; `set_state` continues from one.
    """

    def __init__(self, graph: nir.NIRGraph | str | Path, *, dt_s: float | None = None):
        self.graph = load_graph(graph)
        self.dt_s = graph_dt(self.graph, dt_s)
        self.program, self.layer_names = compile_frontend(self.graph, self.dt_s)
        self.output_shape = self.program.shapes[-1]
        self._n_neurons = int(self.program.beta.size)
        in_c, in_h, in_w = self.program.input_shape
        self._in_list = np.zeros((in_c * in_h * in_w, 4), np.float64)
        self._acc = np.zeros(self._n_neurons, np.float64)
        self.reset(1)

    def reset(self, batch: int) -> None:
        n, layers = self._n_neurons, len(self.layer_names)
        self._start_sample(batch)
        self._v = np.zeros((batch, n), np.float32)
        self._s = np.zeros((batch, n), np.float32)
        self._spike_list = np.zeros((batch, n), np.int32)
        self._n_spikes = np.zeros((batch, layers), np.int64)
        self._steps = np.zeros(batch, np.int64)
        self._spike_totals = np.zeros((batch, layers), np.int64)
        self._out = np.zeros((batch, *self.program.shapes[-1]), np.float32)
        self._out_tensor = torch.from_numpy(self._out)

    def step(self, frame) -> torch.Tensor:
        """frame (B, C, H, W) event counts -> the last layer's spikes (B, C', H', W').

        The returned tensor is the runtime's output buffer, overwritten by the next step
        (clone it to keep it)."""
        array = frame.numpy() if isinstance(frame, torch.Tensor) else frame
        if array.dtype != np.float32 or not array.flags.c_contiguous:
            array = np.ascontiguousarray(array, dtype=np.float32)
        if array.shape != (self._batch, *self.program.input_shape):
            raise ValueError(f"frame of shape {tuple(array.shape)}; this front-end expects "
                             f"({self._batch}, {', '.join(map(str, self.program.input_shape))}) (call reset(batch) "
                             "for another batch)")
        p = self.program
        kernels.frontend_step(array, p.table, p.weights, p.folded, p.reach, p.biases, p.beta, p.threshold,
                              p.input_scale, self._v, self._s, self._spike_list, self._n_spikes, self._acc,
                              self._in_list, self._steps, self._spike_totals, self._out)
        return self._out_tensor

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        self.reset(frames.shape[0])
        return torch.stack([self.step(frames[:, t]).clone() for t in range(frames.shape[1])], dim=1)

    @property
    def layer_spikes(self) -> dict[str, torch.Tensor]:
        """This step's spikes of every layer, (B, C, H, W) (built on request, not per step)."""
        spikes = {}
        for row, name, (c, h, w) in zip(self.program.table, self.layer_names, self.program.shapes):
            offset = int(row[kernels.F["n_off"]])
            layer = self._s[:, offset:offset + c * h * w].reshape(self._batch, h, w, c).transpose(0, 3, 1, 2)
            spikes[name] = torch.from_numpy(np.ascontiguousarray(layer))
        return spikes

    @property
    def spike_counts(self) -> dict[str, int]:
        return {name: int(n) for name, n in zip(self.layer_names, self._spike_totals.sum(axis=0))}

    _STATE = ("_v", "_s", "_spike_list", "_n_spikes", "_steps", "_spike_totals")

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).copy() for name in self._STATE}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.reset(state["_v"].shape[0])
        for name in self._STATE:
            getattr(self, name)[...] = state[name]


# -- the generic Mamba layer step ------------------------------------------------------------
def _f32(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass(frozen=True)
class MambaLayerWeights:
    """One Mamba-1 layer (FAMILIES.md §0), in the shapes of the torch module's parameters.

    `in_proj_weight` (2Di, d) — or (Di, d) with `gate="none"`; `conv_weight` (Di, K) (or the
    Conv1d's (Di, 1, K)); `x_proj_weight` (R + 2N, Di); `dt_proj_weight` (Di, R); `A` (Di, N)
    = -exp(A_log); `D` (Di,); `out_proj_weight` (d, Di). Biases are optional. `gate`: "silu"
    (y * silu(z)), "none" (y = C.h + D.u) or "norm_silu" (LayerNorm(Di)(y) * silu(z) with
    `gate_norm_weight`, `gate_norm_bias`, `gate_norm_eps`).
    """

    in_proj_weight: np.ndarray
    conv_weight: np.ndarray
    x_proj_weight: np.ndarray
    dt_proj_weight: np.ndarray
    dt_proj_bias: np.ndarray
    A: np.ndarray
    D: np.ndarray
    out_proj_weight: np.ndarray
    in_proj_bias: np.ndarray | None = None
    conv_bias: np.ndarray | None = None
    out_proj_bias: np.ndarray | None = None
    gate: str = "silu"
    gate_norm_weight: np.ndarray | None = None
    gate_norm_bias: np.ndarray | None = None
    gate_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise ValueError(f"gate={self.gate!r}; expected one of {tuple(GATES)}")
        if self.gate == "norm_silu" and (self.gate_norm_weight is None or self.gate_norm_bias is None):
            raise ValueError("gate='norm_silu' needs gate_norm_weight and gate_norm_bias (the LayerNorm(d_inner))")

    @classmethod
    def from_module(cls, mamba: Mamba) -> MambaLayerWeights:
        """The weights of a `neurodeploy.model.mamba.Mamba` (official parameter names)."""
        bias = lambda linear: None if linear.bias is None else _f32(linear.bias)  # noqa: E731
        return cls(in_proj_weight=_f32(mamba.in_proj.weight), conv_weight=_f32(mamba.conv1d.weight[:, 0, :]),
                   x_proj_weight=_f32(mamba.x_proj.weight), dt_proj_weight=_f32(mamba.dt_proj.weight),
                   dt_proj_bias=_f32(mamba.dt_proj.bias), A=_f32(-torch.exp(mamba.A_log.float())), D=_f32(mamba.D),
                   out_proj_weight=_f32(mamba.out_proj.weight), in_proj_bias=bias(mamba.in_proj),
                   conv_bias=bias(mamba.conv1d), out_proj_bias=bias(mamba.out_proj))

    def kernel_arguments(self) -> tuple:
        """The kernel's weight arguments: transposed, contiguous float32 (cached per instance)."""
        cached = self.__dict__.get("_arguments")
        if cached is None:
            optional = lambda a: _NO_BIAS if a is None else _f32(a).ravel()  # noqa: E731
            conv = _f32(self.conv_weight)
            cached = (_f32(self.in_proj_weight).T.copy(), optional(self.in_proj_bias), conv.reshape(conv.shape[0], -1),
                      optional(self.conv_bias), _f32(self.x_proj_weight).T.copy(), _f32(self.dt_proj_weight).T.copy(),
                      _f32(self.dt_proj_bias), _f32(self.A), _f32(self.D), _f32(self.out_proj_weight).T.copy(),
                      optional(self.out_proj_bias), GATES[self.gate], optional(self.gate_norm_weight),
                      optional(self.gate_norm_bias), float(self.gate_norm_eps))
            object.__setattr__(self, "_arguments", cached)
        return cached

    @property
    def scratch_size(self) -> int:
        d_inner, d_state = self.A.shape
        return 6 * d_inner + self.dt_proj_weight.shape[1] + 2 * d_state


def mamba_layer_step(weights: MambaLayerWeights, conv_state: np.ndarray, ssm_state: np.ndarray,
                     x: np.ndarray) -> np.ndarray:
    """One token `x (d,)` (or `(B, d)` with states `(B, Di, K)`, `(B, Di, N)`) -> `y` of the same shape.

    `conv_state` (Di, K, the last K in-projected x, oldest first) and `ssm_state` (Di, N) are
    float32 C-contiguous numpy arrays updated in place; start them at zero.
    """
    args = weights.kernel_arguments()
    x = _f32(x)
    d_inner, d_conv = args[2].shape
    for name, state, width in (("conv_state", conv_state, d_conv), ("ssm_state", ssm_state, weights.A.shape[1])):
        if state.dtype != np.float32 or not state.flags.c_contiguous or state.shape[-2:] != (d_inner, width):
            raise ValueError(f"{name} of shape {state.shape} ({state.dtype}); expected C-contiguous float32 "
                             f"(..., {d_inner}, {width}) updated in place")
    scratch = np.empty(weights.scratch_size, np.float32)
    exp_scratch = np.empty(2 * weights.A.size, np.float32)
    out_dim = args[9].shape[1]
    if x.ndim == 1:
        y = np.empty(out_dim, np.float32)
        kernels.mamba_layer_kernel(x, *args, conv_state, ssm_state, scratch, exp_scratch, y)
        return y
    y = np.empty((x.shape[0], out_dim), np.float32)
    for b in range(x.shape[0]):
        kernels.mamba_layer_kernel(x[b], *args, conv_state[b], ssm_state[b], scratch, exp_scratch, y[b])
    return y


# -- the fused Mamba-Spike backbone ----------------------------------------------------------
class NativeBackboneRuntime(BackboneRuntime):
    """BackboneRuntime of a `MambaSpike`, one `native_kernels.backbone_step` call per step."""

    def __init__(self, model: MambaSpike):
        if not isinstance(model, MambaSpike):
            raise TypeError(f"expected a MambaSpike, not {type(model).__name__}")
        c = self.config = model.config
        blocks = list(model.mamba_blocks)
        layers = [MambaLayerWeights.from_module(block.mamba).kernel_arguments() for block in blocks]
        stack = lambda k: np.ascontiguousarray(np.stack([layer[k] for layer in layers]))  # noqa: E731
        self._weights = dict(
            proj_w_t=_f32(model.input_proj.weight).T.copy(), proj_b=_f32(model.input_proj.bias),
            norm_w=np.stack([_f32(b.norm.weight) for b in blocks]),
            norm_b=np.stack([_f32(b.norm.bias) for b in blocks]),
            in_w_t=stack(0), conv_w=stack(2), x_proj_w_t=stack(4), dt_w_t=stack(5), dt_b=stack(6), A=stack(7),
            D=stack(8), out_w_t=stack(9), final_norm_w=_f32(model.norm.weight), final_norm_b=_f32(model.norm.bias),
            cls_w_t=_f32(model.classifier.weight).T.copy(), cls_b=_f32(model.classifier.bias), no_bias=_NO_BIAS)
        if any(b.norm.eps != 1e-5 for b in blocks) or model.norm.eps != 1e-5:
            raise ValueError("the native backbone assumes LayerNorm eps 1e-5, as MambaSpike builds it")
        scratch = MambaLayerWeights.from_module(blocks[0].mamba).scratch_size
        self._scratch = np.zeros(scratch, np.float32)
        self._exp_scratch = np.zeros(2 * c.d_inner * c.d_state, np.float32)
        self._acc = np.zeros(c.d_model, np.float64)
        self._hidden = np.zeros(c.d_model, np.float32)
        self._normed = np.zeros(c.d_model, np.float32)
        self._layer_out = np.zeros(c.d_model, np.float32)
        self._new_list = np.zeros(c.spike_features, np.int32)
        self.reset(1)

    @property
    def _frame_shape(self) -> tuple[int, int, int]:
        c = self.config
        return (c.spiking_channels, c.feature_height, c.feature_width)

    def reset(self, batch: int) -> None:
        c = self.config
        slots = c.interface_window - 1
        self._batch = batch
        self._ring = np.zeros((batch, slots, c.spike_features), np.float32)
        self._ring_list = np.zeros((batch, slots, c.spike_features), np.int32)
        self._ring_n = np.zeros((batch, slots), np.int64)
        self._head = np.zeros(1, np.int64)
        self._ring_sum = np.zeros((batch, c.d_model), np.float64)
        self._counters = np.zeros(3, np.int64)  # count, received, pushed
        self._conv_state = np.zeros((c.n_layers, batch, c.d_inner, c.d_conv), np.float32)
        self._ssm_state = np.zeros((c.n_layers, batch, c.d_inner, c.d_state), np.float32)
        self._feature_sum = np.zeros((batch, c.d_model), np.float32)
        self._logits = np.zeros((batch, c.num_classes), np.float32)
        self._zeros = np.zeros((batch, c.spike_features), np.float32)

    def _push(self, flat: np.ndarray, real: bool) -> torch.Tensor:
        w, c = self._weights, self.config
        kernels.backbone_step(flat, real, c.interface_window, c.lookahead, self._ring, self._ring_list, self._ring_n,
                              self._head, self._ring_sum, self._counters, w["proj_w_t"], w["proj_b"],
                              w["norm_w"], w["norm_b"], w["in_w_t"], w["conv_w"], w["x_proj_w_t"], w["dt_w_t"],
                              w["dt_b"], w["A"], w["D"], w["out_w_t"], w["final_norm_w"], w["final_norm_b"],
                              w["cls_w_t"], w["cls_b"], w["no_bias"], self._conv_state, self._ssm_state,
                              self._feature_sum, self._scratch, self._exp_scratch, self._new_list, self._acc,
                              self._hidden, self._normed, self._layer_out, self._logits)
        return torch.from_numpy(self._logits.copy())

    def step(self, spikes_t) -> torch.Tensor:
        """Front-end spikes of one step (B, C, H, W) -> anytime logits (B, classes)."""
        array = spikes_t.numpy() if isinstance(spikes_t, torch.Tensor) else spikes_t
        if array.shape != (self._batch, *self._frame_shape):
            raise ValueError(f"front-end spikes of shape {tuple(array.shape)}; this backbone expects "
                             f"({self._batch}, {', '.join(map(str, self._frame_shape))}): call reset(batch) first")
        flat = array.reshape(self._batch, -1)
        if flat.dtype != np.float32 or not flat.flags.c_contiguous:
            flat = np.ascontiguousarray(flat, dtype=np.float32)
        return self._push(flat, True)

    def flush(self) -> torch.Tensor:
        """Finish the sample (the centred interface's look-ahead zero frames); final logits."""
        received, pushed = int(self._counters[1]), int(self._counters[2])
        pending = received + self.config.lookahead - pushed if received else 0
        for _ in range(pending):
            self._push(self._zeros, False)
        return torch.from_numpy(self._logits.copy())

    def run(self, spikes) -> torch.Tensor:
        """A whole sequence (B, T, C, H, W) -> logits, from a fresh state; the streaming state is kept."""
        saved = self.get_state()
        self.reset(spikes.shape[0])
        try:
            for t in range(spikes.shape[1]):
                self.step(spikes[:, t])
            return self.flush()
        finally:
            self.set_state(saved)

    def get_state(self) -> BackboneState:
        """The streaming state as the model's `BackboneState` (copies; the ring oldest first)."""
        head = int(self._head[0])
        ring = np.roll(self._ring, -head, axis=1) if self._ring.shape[1] else self._ring.copy()
        layers = tuple(MambaState(torch.from_numpy(self._conv_state[i].copy()),
                                  torch.from_numpy(self._ssm_state[i].copy())) for i in range(self.config.n_layers))
        count, received, pushed = (int(v) for v in self._counters)
        return BackboneState(InterfaceState(torch.from_numpy(np.ascontiguousarray(ring))), layers,
                             torch.from_numpy(self._feature_sum.copy()), count, received, pushed)

    def set_state(self, state: BackboneState) -> None:
        """Continue from a state of this or another backbone runtime."""
        c = self.config
        ring = _f32(state.interface.ring)
        batch = ring.shape[0]
        if ring.shape != (batch, c.interface_window - 1, c.spike_features) or len(state.layers) != c.n_layers:
            raise ValueError(f"a state with ring {ring.shape} and {len(state.layers)} layers; this backbone expects "
                             f"({batch}, {c.interface_window - 1}, {c.spike_features}) and {c.n_layers} layers")
        self.reset(batch)
        self._ring[...] = ring
        for b in range(batch):
            for slot in range(ring.shape[1]):
                active = np.flatnonzero(ring[b, slot]).astype(np.int32)
                self._ring_list[b, slot, :active.size] = active
                self._ring_n[b, slot] = active.size
        # the input projection's columns summed over the ring (float64: exact products)
        self._ring_sum[...] = ring.astype(np.float64).sum(axis=1) @ self._weights["proj_w_t"].astype(np.float64)
        for i, layer in enumerate(state.layers):
            self._conv_state[i] = _f32(layer.conv_state)
            self._ssm_state[i] = _f32(layer.ssm_state)
        self._feature_sum[...] = _f32(state.feature_sum)
        self._counters[:] = (int(state.count), int(state.received), int(state.pushed))
