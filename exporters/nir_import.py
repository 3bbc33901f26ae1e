"""NIR graphs written by other tools (or by us) -> a Mamba-Spike front-end and its config.

Accepted: one flat NIRGraph whose path from the input is, three times,
`Conv2d 3x3 pad 1 -> [SumPool2d | AvgPool2d 2x2, after the first two convs only] -> neuron`,
optionally with a 1x1 Conv2d cycle on each neuron (all three or none), then an optional
Flatten and the Output. Neurons are `nir.LIF`, `nir.IF` or `nir.CubaLIF` with tau_syn = dt
(a synapse that passes its input straight through, as snnTorch writes `Synaptic` with
alpha = 0), all with the same beta, threshold and reset (the config holds one of each).

Time: a NIR graph holds continuous time constants; turning them back into beta = 1 - dt/tau
needs the dt they were written with. It is taken from, in order: the `dt_s` argument, the
graph's "dt" metadata, a neuron's "dt" metadata, the writer's known convention
(`writer="snntorch"`: dt = 1e-4 hard-coded by `snntorch.export_to_nir`; `writer="norse"`:
dt = 1e-3, norse's default). With none of these the import is refused: guessing dt would
silently change every decay.

Reset: a neuron's "reset"/"reset_timing" metadata decides; without metadata, the writer's
convention (snnTorch `Leaky`: subtract, delayed, which its exporter does not record);
otherwise NIR's own semantics (reset to v_reset = 0 in the spiking step).

Input scale: the model integrates `v = beta*v + I`; a NIR neuron integrates
`(dt/tau) * r * I` (times `w_in*dt/tau_syn` for CubaLIF). Our and snnTorch's graphs write
r = tau/dt, so the scale is 1; norse writes r = 1, so the scale is 1 - beta and is folded
into the weights and biases of the convs feeding that neuron (with a warning: exact in real
arithmetic, rounded in float32).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import torch

from neurodeploy.formats.nir_frontend import (
    UnsupportedGraphError,
    frontend_chain,
    graph_dt,
    load_graph,
    neuron_parameters,
)
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.frontend import SpikingFrontend


@dataclass(frozen=True)
class WriterConvention:
    dt_s: float
    reset: str
    reset_timing: str


WRITERS = {
    # snntorch/export_nir.py: `dt = 1e-4`, LIF(tau = dt/(1-beta), r = tau/dt); Leaky defaults
    "snntorch": WriterConvention(dt_s=1e-4, reset="subtract", reset_timing="delayed"),
    # norse/torch/utils/export_nir.py: dt = 0.001 default, r = 1; LIFBox resets to v_reset
    "norse": WriterConvention(dt_s=1e-3, reset="zero", reset_timing="immediate"),
}


def _check_conv(name: str, node: nir.Conv2d, kernel: int, padding: int) -> None:
    stride = np.broadcast_to(np.asarray(node.stride), (2,))
    pad = np.broadcast_to(np.asarray(node.padding), (2,)) if not isinstance(node.padding, str) else None
    dilation = np.broadcast_to(np.asarray(node.dilation), (2,))
    if (tuple(node.weight.shape[2:]) != (kernel, kernel) or pad is None or np.any(pad != padding)
            or np.any(stride != 1) or np.any(dilation != 1) or int(node.groups) != 1):
        raise UnsupportedGraphError(
            f"node {name!r}: Conv2d kernel {tuple(node.weight.shape[2:])}, stride {tuple(stride)}, padding "
            f"{node.padding}, dilation {tuple(dilation)}, groups {node.groups}; the Mamba-Spike front-end uses "
            f"{kernel}x{kernel} convs with padding {padding}, stride 1, dilation 1, groups 1")


def _check_pool(name: str, node: nir.NIRNode) -> str:
    kernel = np.broadcast_to(np.asarray(node.kernel_size), (2,))
    stride = np.broadcast_to(np.asarray(node.stride), (2,))
    if np.any(kernel != 2) or np.any(stride != 2) or np.any(np.asarray(node.padding) != 0):
        raise UnsupportedGraphError(f"node {name!r}: pooling kernel {tuple(kernel)} stride {tuple(stride)} padding "
                                    f"{node.padding}; the family pools 2x2, stride 2, no padding")
    return "sum" if isinstance(node, nir.SumPool2d) else "avg"


def import_frontend(graph_or_path: nir.NIRGraph | str | Path, *, dt_s: float | None = None,
                    writer: str | None = None) -> tuple[SpikingFrontend, MambaSpikeConfig]:
    """A SpikingFrontend with the graph's weights, and the config that describes it.

    Backbone fields of the config come from the graph's "model_config" metadata when it has
    one (graphs written by neurodeploy), else they are the defaults.
    """
    graph = load_graph(graph_or_path)
    if writer is not None and writer not in WRITERS:
        raise UnsupportedGraphError(f"writer={writer!r}; known writers: {sorted(WRITERS)} (or pass dt_s= and leave writer=None)")
    convention = WRITERS.get(writer)
    dt = graph_dt(graph, dt_s) if graph_dt(graph, dt_s) is not None else (convention.dt_s if convention else None)

    input_name, chain = frontend_chain(graph)
    in_shape = [int(d) for d in np.asarray(graph.nodes[input_name].input_type["input"]).ravel()]
    if len(in_shape) == 4 and in_shape[0] == 1:
        in_shape = in_shape[1:]  # nirtorch's tracer records the sample's batch of 1
    if len(in_shape) != 3:
        raise UnsupportedGraphError(f"Input node {input_name!r} has shape {in_shape}; expected (channels, H, W)")
    convs = [layer.conv for layer in chain]
    neurons = [layer.neuron for layer in chain]
    recurrent = [layer.recurrent for layer in chain]
    if len(chain) != 3:
        raise UnsupportedGraphError(f"the graph's path holds convs {convs} and neurons {neurons}; the front-end has "
                                    "three conv -> neuron layers")
    pools = [layer.pool for layer in chain]
    if pools[0] is None or pools[1] is None or pools[2] is not None:
        raise UnsupportedGraphError(f"pooling nodes {pools} (per layer); the family pools after conv1 and conv2 only")
    poolings = {_check_pool(name, graph.nodes[name]) for name in pools[:2]}
    if len(poolings) != 1:
        raise UnsupportedGraphError(f"pool nodes mix {sorted(poolings)} pooling; the family uses one kind")
    for name in convs:
        _check_conv(name, graph.nodes[name], 3, 1)
    if any(r is not None for r in recurrent) and None in recurrent:
        raise UnsupportedGraphError(f"recurrent convs {recurrent} on some neurons only; the family has all three or none")
    is_recurrent = recurrent[0] is not None
    for name in recurrent if is_recurrent else ():
        _check_conv(name, graph.nodes[name], 1, 0)
        if "active_from_step" not in graph.nodes[name].metadata and np.any(graph.nodes[name].bias != 0):
            raise UnsupportedGraphError(
                f"recurrent node {name!r} has a bias but no 'active_from_step' metadata: whether the bias acts at the "
                "first step is unknown (the family adds it from step 1 on); write the metadata or a zero bias")

    # neurons: one set of parameters for the whole front-end
    chosen = []
    for name in neurons:
        node = graph.nodes[name]
        if convention is not None:
            node = _with_default_metadata(node, convention)
        parameters, scale = neuron_parameters(name, node, dt)
        if not all(isinstance(v, float) for v in (parameters.beta, parameters.threshold)):
            raise UnsupportedGraphError(f"node {name!r} has per-neuron beta or threshold; the family shares one value")
        chosen.append((name, parameters, scale))
    first = chosen[0][1]
    for name, parameters, _ in chosen[1:]:
        if parameters != first:
            raise UnsupportedGraphError(f"node {name!r} has {parameters}, unlike {chosen[0][0]!r} {first}; the family "
                                        "shares beta, threshold and reset across layers")

    conv_nodes = [graph.nodes[name] for name in convs]
    conv_channels, spiking_channels = conv_nodes[0].weight.shape[0], conv_nodes[2].weight.shape[0]
    backbone = {}
    if "model_config" in graph.metadata:
        saved = json.loads(graph.metadata["model_config"])
        backbone = {f: saved[f] for f in ("interface", "interface_window", "d_model", "n_layers", "d_state",
                                          "d_conv", "expand", "num_classes") if f in saved}
    config = MambaSpikeConfig(
        input_channels=in_shape[0], input_height=in_shape[1], input_width=in_shape[2],
        conv_channels=int(conv_channels), spiking_channels=int(spiking_channels), pooling=poolings.pop(),
        recurrent=is_recurrent, beta=float(first.beta), threshold=float(first.threshold), reset=first.reset,
        reset_timing=first.reset_timing, **backbone)

    frontend = SpikingFrontend(config)
    modules = [frontend.conv1, frontend.conv2, frontend.conv3]
    sources = list(zip(convs, modules))
    if is_recurrent:
        sources += list(zip(recurrent, [frontend.recurrent1, frontend.recurrent2, frontend.recurrent3]))
    scales = {name: scale for name, _, scale in chosen}
    for index, (name, module) in enumerate(sources):
        node = graph.nodes[name]
        weight, bias = torch.from_numpy(np.asarray(node.weight, np.float32)), torch.from_numpy(np.asarray(node.bias, np.float32))
        if tuple(weight.shape) != tuple(module.weight.shape):
            raise UnsupportedGraphError(f"node {name!r} has weight {tuple(weight.shape)}; the front-end built from the "
                                        f"graph's sizes expects {tuple(module.weight.shape)}")
        scale = scales[neurons[index % 3]]
        if not (isinstance(scale, float) and scale == 1.0):
            if not isinstance(scale, float):
                raise UnsupportedGraphError(f"node {neurons[index % 3]!r} has a per-neuron input scale r*dt/tau; it "
                                            "cannot be folded into a shared conv weight")
            warnings.warn(f"node {neurons[index % 3]!r} integrates its input scaled by r*dt/tau = {scale:.6g}; folded "
                          f"into the weights and bias of {name!r} (exact in real arithmetic, rounded in float32)",
                          stacklevel=2)
            weight, bias = weight * scale, bias * scale
        with torch.no_grad():
            module.weight.copy_(weight)
            module.bias.copy_(bias)
    return frontend.eval(), config


def _with_default_metadata(node: nir.NIRNode, convention: WriterConvention) -> nir.NIRNode:
    """The node with the writer's reset convention where its metadata says nothing."""
    metadata = {"reset": convention.reset, "reset_timing": convention.reset_timing, **node.metadata}
    clone = type(node).__new__(type(node))
    clone.__dict__.update(node.__dict__)
    clone.metadata = metadata
    return clone
