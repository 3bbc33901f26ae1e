"""Run a NIR front-end graph in torch, step by step: our own node map on nirtorch, and norse.

`NIRFrontendRuntime` maps every node to a torch module (this module's `node_map`) and lets
`nirtorch.nir_to_torch` wire them into a stateful torch.fx graph. It honours the metadata
documented in `neurodeploy.formats.nir_frontend` (exact beta, subtract/zero/none reset, delayed or
immediate reset, strict compare, recurrent convs active from step 1) and refuses what it
cannot honour, naming the node. Graphs without that metadata (written by other tools) are
run with NIR's own semantics: Euler-discretised `tau dv/dt = v_leak - v + r I`, reset to
`v_reset` in the step that spikes, strict compare; `dt` then comes from the graph's metadata
or the caller.

Time in the executed graph: every edge passes its value within the same step; a cycle
(`lif_k -> rec_k -> lif_k`) delivers the previous step's output, zero before the first step
(nirtorch's `<node>_prev_output` cache), which is exactly "active_from_step = 1".

`NorseFrontendRuntime` loads the same graph through `norse.torch.from_nir` (norse 1.1.0), an
independent reader. Where norse's semantics differ from the graph's (read from norse's
`import_nir.py`, `lif_box.py` and nirtorch's deprecated `load` that it calls):

- r: norse ignores `r` (it only warns), integrating `v += dt/tau * (v_leak - v + I)`; an
  input is thus scaled by dt/tau = 1 - beta. We hand norse a copy of the graph with `r`
  folded into the weights and biases that feed each neuron (exact in real arithmetic,
  rounded in float32) and r = 1.
- dt: norse takes dt as an argument (default 1e-3) and never reads it from the graph; we
  pass the graph's.
- reset: a `nir.LIF` always resets to v_reset in the step that spikes (`reset_value`;
  from_nir's `reset_method` only reaches CubaLIF). Subtractive and delayed resets are not
  expressible, so graphs using them are refused unless `allow_mismatch=True`.
- pooling: SumPool2d becomes `LPPool2d(norm_type=1)` = avg_pool * 4 (equal to a sum only
  up to rounding); AvgPool2d has no mapping and would be dropped without a word, so it is
  refused.
- Flatten: norse applies NIR's batch-free start_dim to batched tensors, flattening the batch
  in too; we reshape the output back to (B, C, H, W).
- recurrence / delay: nirtorch's GraphExecutor feeds a cycle the previous step's cached
  output (nothing at the first step), the same one-step delay as ours; feed-forward edges
  add no delay in either.
So norse agrees with us exactly only for reset "zero", timing "immediate", sum pooling, and
arithmetic that is exact in float32 (the norse parity test uses power-of-two dt, beta 0.5
and dyadic weights); in general it agrees to float rounding.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.formats.nir_frontend import (
    NEURON_TYPES,
    UnsupportedGraphError,
    graph_dt,
    load_graph,
    neuron_names,
    neuron_parameters,
)
from neurodeploy.model.lif import LIFParameters, LIFState, lif_initial_state, lif_step
from neurodeploy.runtimes.contract import FrontendRuntime

# -- the node map on nirtorch --------------------------------------------------------
class LIFNode(nn.Module):
    """A NIR neuron as the model's discrete LIF (`neurodeploy.model.lif.lif_step`)."""

    def __init__(self, parameters: LIFParameters, input_scale: float | torch.Tensor):
        super().__init__()
        self.lif = parameters
        self.input_scale = input_scale

    def forward(self, current: torch.Tensor, state: LIFState | None = None) -> tuple[torch.Tensor, LIFState]:
        if state is None:
            state = lif_initial_state(tuple(current.shape), dtype=current.dtype, device=current.device)
        if not (isinstance(self.input_scale, float) and self.input_scale == 1.0):
            current = current * self.input_scale
        return lif_step(current, state, self.lif)


class SumPool(nn.Module):
    """Exact sum (avg_pool with divisor 1, as the model pools), not LPPool's avg*k."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel, self.stride, divisor_override=1)


class AvgPool(SumPool):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel, self.stride)


class BatchFlatten(nn.Module):
    """NIR's Flatten counts dims without the batch; torch's tensors carry it first."""

    def __init__(self, start_dim: int, end_dim: int):
        super().__init__()
        self.start_dim = start_dim + 1 if start_dim >= 0 else start_dim
        self.end_dim = end_dim + 1 if end_dim >= 0 else end_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(self.start_dim, self.end_dim)


def _pair(value) -> tuple[int, int]:
    values = np.broadcast_to(np.asarray(value).astype(np.int64), (2,))
    return int(values[0]), int(values[1])


def _map_conv(name: str, node: nir.Conv2d) -> nn.Conv2d:
    if isinstance(node.padding, str):
        raise UnsupportedGraphError(f"node {name!r}: string padding {node.padding!r}; write integer padding")
    weight = torch.from_numpy(np.asarray(node.weight, np.float32))
    conv = nn.Conv2d(weight.shape[1] * int(node.groups), weight.shape[0], tuple(weight.shape[2:]),
                     stride=_pair(node.stride), padding=_pair(node.padding),
                     dilation=_pair(node.dilation), groups=int(node.groups))
    conv.weight.data = weight.clone()
    conv.bias.data = torch.from_numpy(np.asarray(node.bias, np.float32)).clone()
    meta = node.metadata
    if "recurrent_of" in meta and (int(meta.get("delay_steps", 1)) != 1 or int(meta.get("active_from_step", 1)) != 1):
        raise UnsupportedGraphError(
            f"node {name!r}: recurrent conv with delay_steps={meta.get('delay_steps')}, active_from_step="
            f"{meta.get('active_from_step')}; a NIR cycle runs with one step of delay, active from step 1 only")
    return conv


def _map_affine(node: nir.Affine) -> nn.Linear:
    """Dense layers (the Mamba-Liquid-Spiking encoders): nn.Linear, the model's own op."""
    weight = torch.from_numpy(np.asarray(node.weight, np.float32))
    affine = nn.Linear(weight.shape[1], weight.shape[0])
    affine.weight.data = weight.clone()
    affine.bias.data = torch.from_numpy(np.asarray(node.bias, np.float32)).clone()
    return affine


class Scale(nn.Module):
    """nir.Scale: element-wise gain (snnTorch's graded spike factor after a neuron)."""

    def __init__(self, scale: np.ndarray):
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(np.asarray(scale, np.float32)).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _map_pool(name: str, node: nir.NIRNode) -> nn.Module:
    if np.any(np.asarray(node.padding) != 0):
        raise UnsupportedGraphError(f"node {name!r}: pooling with padding {node.padding} is not implemented (the "
                                    "model family pools without padding)")
    kernel, stride = _pair(node.kernel_size), _pair(node.stride)
    return (SumPool if isinstance(node, nir.SumPool2d) else AvgPool)(kernel, stride)


def node_map(graph: nir.NIRGraph, dt_s: float | None) -> dict[nir.NIRNode, nn.Module]:
    """Our torch module for every node of `graph` (nirtorch asks by node; we map by identity)."""
    modules: dict[int, nn.Module] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise UnsupportedGraphError(f"node {name!r} is a nested NIRGraph; flatten it into the parent graph first "
                                        "(neurodeploy.runtimes.nir does not inline subgraphs)")
        if isinstance(node, NEURON_TYPES):
            modules[id(node)] = LIFNode(*neuron_parameters(name, node, dt_s))
        elif isinstance(node, nir.Conv2d):
            modules[id(node)] = _map_conv(name, node)
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            modules[id(node)] = _map_pool(name, node)
        elif isinstance(node, nir.Flatten):
            modules[id(node)] = BatchFlatten(int(node.start_dim), int(node.end_dim))
        elif isinstance(node, nir.Affine):
            modules[id(node)] = _map_affine(node)
        elif isinstance(node, nir.Scale):
            modules[id(node)] = Scale(node.scale)
        elif isinstance(node, (nir.Input, nir.Output)):
            modules[id(node)] = nn.Identity()
        else:
            raise UnsupportedGraphError(
                f"node {name!r} is a {type(node).__name__}, which a Mamba-Spike front-end does not contain; this runtime "
                "executes Input, Conv2d, Affine, Scale, SumPool2d, AvgPool2d, LIF, IF, CubaLIF (tau_syn = dt), Flatten, Output")
    return {kind: (lambda node: modules[id(node)]) for kind in {type(n) for n in graph.nodes.values()}}


def _last_spike_shape(graph: nir.NIRGraph, layer_names: tuple[str, ...]) -> tuple[int, int, int]:
    last = graph.nodes[layer_names[-1]]
    return tuple(int(d) for d in last.output_type["output"])


class NIRFrontendRuntime(FrontendRuntime):
    """FrontendRuntime executing a NIR graph with nirtorch and this module's node map."""

    def __init__(self, graph: nir.NIRGraph | str | Path, *, dt_s: float | None = None):
        import nirtorch

        self.graph = load_graph(graph)
        self.dt_s = graph_dt(self.graph, dt_s)
        self.layer_names = neuron_names(self.graph)
        self.module = nirtorch.nir_to_torch(self.graph, node_map(self.graph, self.dt_s), default_map={})
        self.output_shape = _last_spike_shape(self.graph, self.layer_names)
        self.reset(1)

    def reset(self, batch: int) -> None:
        # a fresh dict every time: nirtorch's own default state is one dict shared by all
        # calls made without a state, so recurrent caches would leak between samples
        self._state = {name: None for name in self.module._modules}
        self._start_sample(batch)

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        out, self._state = self.module(frame, self._state)
        self._record_spikes({name: self._state[name].spikes for name in self.layer_names})
        return out.reshape(frame.shape[0], *self.output_shape)

    def get_state(self) -> dict:
        """Every node's state (nirtorch's state dict), copied: resuming from it continues the stream."""
        return copy.deepcopy(self._state)

    def set_state(self, state: dict) -> None:
        self._state = copy.deepcopy(state)


# -- norse ---------------------------------------------------------------------------
def norse_differences(graph: nir.NIRGraph) -> list[str]:
    """Where norse.torch.from_nir would run `graph` differently from its metadata."""
    differences = []
    for name, node in graph.nodes.items():
        meta = node.metadata
        if isinstance(node, NEURON_TYPES):
            if meta.get("reset", "zero") != "zero":
                differences.append(f"{name}: reset {meta['reset']!r} (norse resets a nir.LIF to v_reset)")
            if meta.get("reset_timing", "immediate") != "immediate":
                differences.append(f"{name}: reset_timing {meta['reset_timing']!r} (norse resets in the spiking step)")
            if not isinstance(node, nir.LIF):
                differences.append(f"{name}: {type(node).__name__} (only nir.LIF is compared; norse maps IF/CubaLIF "
                                   "to other cells)")
        if isinstance(node, nir.AvgPool2d):
            differences.append(f"{name}: AvgPool2d (norse 1.1.0 has no mapping and drops the node)")
    return differences


def fold_r_for_norse(graph: nir.NIRGraph, dt_s: float) -> nir.NIRGraph:
    """A copy of `graph` whose neurons have r = 1, `r*dt/tau` moved into the weights feeding them.

    norse integrates `v += dt/tau * (I - v)` and ignores r; a NIR neuron with r integrates
    `dt/tau * r * I`. Multiplying every conv (weight and bias) upstream of a neuron, through
    linear pooling, by that neuron's `r` leaves the NIR semantics unchanged and lets norse
    compute them.
    """
    graph = copy.deepcopy(graph)
    sources = {dst: [src for src, d in graph.edges if d == dst] for dst in graph.nodes}
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.LIF):
            continue
        r = np.asarray(node.r, np.float64)
        if not np.all(r == r.flat[0]):
            raise UnsupportedGraphError(f"node {name!r}: per-neuron r cannot be folded into a shared conv weight")
        factor = float(r.flat[0])
        stack = list(sources[name])
        while stack:
            source = stack.pop()
            upstream = graph.nodes[source]
            if isinstance(upstream, (nir.SumPool2d, nir.AvgPool2d)):
                stack += sources[source]
            elif isinstance(upstream, nir.Conv2d):
                upstream.weight = (upstream.weight * factor).astype(np.float32)
                upstream.bias = (upstream.bias * factor).astype(np.float32)
            else:
                raise UnsupportedGraphError(f"node {name!r} is fed by {source!r} ({type(upstream).__name__}); r can only "
                                            "be folded into a Conv2d (through pooling)")
        node.r = np.ones_like(node.r)
    return graph


class NorseFrontendRuntime(FrontendRuntime):
    """FrontendRuntime running a NIR graph through `norse.torch.from_nir` (see module docstring).

    Refuses graphs whose semantics norse does not share (`norse_differences`) unless
    `allow_mismatch=True`, which runs them anyway to show the difference.
    """

    def __init__(self, graph: nir.NIRGraph | str | Path, *, dt_s: float | None = None, allow_mismatch: bool = False):
        import norse.torch

        self.graph = load_graph(graph)
        self.dt_s = graph_dt(self.graph, dt_s)
        if self.dt_s is None:
            raise UnsupportedGraphError("the graph records no dt; pass dt_s= (norse would silently assume 1e-3 s)")
        differences = norse_differences(self.graph)
        hard = [d for d in differences if "AvgPool2d" in d]
        if hard or (differences and not allow_mismatch):
            raise UnsupportedGraphError("norse would run this graph differently: " + "; ".join(differences)
                                        + ("" if hard else ". Pass allow_mismatch=True to run it anyway"))
        self.layer_names = neuron_names(self.graph)
        prepared = fold_r_for_norse(self.graph, self.dt_s)
        # norse logs a warning per node about r != 1 / padding; the folded graph has none to report
        logging.getLogger().disabled, previous = True, logging.getLogger().disabled
        try:
            self.module = norse.torch.from_nir(prepared, dt=self.dt_s)
        finally:
            logging.getLogger().disabled = previous
        self.output_shape = _last_spike_shape(self.graph, self.layer_names)
        self.reset(1)

    def reset(self, batch: int) -> None:
        self._state = None
        self._start_sample(batch)

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        out, self._state = self.module(frame, self._state)
        self._record_spikes({name: self._state.cache[name] for name in self.layer_names})
        # norse flattens with NIR's batch-free dims, i.e. the batch too: undo that
        return out.reshape(frame.shape[0], *self.output_shape)
