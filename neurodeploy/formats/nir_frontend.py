"""The NIR front-end format of this toolkit: layout, metadata keys, the LIF/dt mapping, reading
and writing, and the conv -> pool -> LIF chain walk.

The exporter (`neurodeploy.exporters.nir`), the importer (`neurodeploy.exporters.nir_import`),
the Lava layer mapping (`neurodeploy.exporters.netx`) and the runtimes (`neurodeploy.runtimes.nir`,
`neurodeploy.runtimes.lava`) all read these conventions from here and nowhere else; the prose
version is docs/time_and_lif.md and docs/bundle_format.md.

Graph layout (flat; one NIRGraph, no nested subgraphs). Shapes never include the batch::

    input (nir.Input, (2, H, W))                       event counts, channel 0 OFF, 1 ON
      -> conv1 (nir.Conv2d 3x3 pad 1, bias)          (2, H, W)   -> (C1, H, W)
      -> pool1 (nir.SumPool2d | nir.AvgPool2d 2x2 s2) (C1, H, W)  -> (C1, H//2, W//2)
      -> lif1  (nir.LIF, per-neuron arrays (C1, H1, W1))
      [lif1 -> rec1 (nir.Conv2d 1x1, bias) -> lif1]   only when the model is recurrent
      -> conv2 -> pool2 -> lif2 [-> rec2 -> lif2]     (C1, H1, W1) -> (C1, H2, W2)
      -> conv3 -> lif3 [-> rec3 -> lif3]              no pooling after conv3; (C3, H2, W2)
      -> flatten (nir.Flatten, input_type (C3, H2, W2), start_dim 0, end_dim -1)
      -> output (nir.Output, (C3*H2*W2,))            flattened in (C, H, W) order

Edges carry no delay: one time step goes input -> output in a single pass. Two edges into
one node add (`pool_k` and `rec_k` into `lif_k`). The only delay is the cycle: `rec_k`
reads the spikes `lif_k` emitted at the *previous* step (zeros before the first step).

Time: `dt` (seconds) is in the graph metadata and in every LIF node's metadata. The discrete
LIF `v[t] = beta * v[t-1] + I[t]` is written as `nir.LIF(tau = dt/(1-beta), r = tau/dt,
v_leak = 0, v_threshold = thr, v_reset = 0)`; beta = 1 (no leak) is written as
`nir.IF(r = 1/dt, v_threshold = thr)` with the same metadata. Arrays are float32, per neuron.
`read_frontend` returns nodes in alphabetical order (HDF5 groups); follow the edges.

Metadata keys (what NIR's node types cannot say; values are str, float, int or bool):

graph (`NIRGraph.metadata`)
    "dt"                float  seconds per time step the graph was discretised with
    "producer"          str    "neurodeploy <version>"
    "format"            str    "neurodeploy.frontend/1" (this layout)
    "model_config"      str    the MambaSpikeConfig as JSON (for re-import of the whole model)
    "lif_layers"        str    "lif1,lif2,lif3" (the layers whose spikes are reported)
    "pool_rewrite_report" str  only after a requested max-pooling rewrite: PoolRewriteReport
                               as JSON (spikes per layer before/after, changed predictions)

input
    "graded_input"      bool   True: the input holds non-negative event *counts* per bin (can
                               exceed 1), not binary spikes; a reader that assumes 0/1
                               spikes must refuse or scale.
    "channel_order"     str    "OFF,ON"

pool1, pool2
    "pool_input"        str    "current": pooling acts on the conv output (a synaptic
                               current) before the neuron, not on spikes. For a target that
                               pools spikes, fold the pool into the synapse instead.
    "rewritten_from"    str    present only when max pooling was replaced on request
                               (`pool_rewrite`): "max"; the graph is then an approximation
                               of the trained model, with its measured effect in the export
                               report.

lif1, lif2, lif3
    "dt"                float  seconds, same as the graph's
    "beta"              float  the exact discrete decay (tau is derived from it; use this to
                               avoid round-off in 1 - dt/tau)
    "reset"             str    "subtract" (v -= v_threshold; v_reset is then unused),
                               "zero" (v = v_reset = 0) or "none"
    "reset_timing"      str    "immediate": integrate, compare, reset in the same step (Lava);
                               "delayed": the reset decided at t-1 is applied at t before the
                               compare (snnTorch Leaky: v[t] = beta*v[t-1] + I[t] - s[t-1]*thr
                               for subtract, v[t] = beta*(1-s[t-1])*v[t-1] + I[t] for zero)
    "compare"           str    "greater": spike iff v > v_threshold (strict)

rec1, rec2, rec3 (only for recurrent models)
    "recurrent_of"      str    the LIF node whose previous spikes it reads ("lif1", ...)
    "delay_steps"       int    1: reads s[t-1] of that layer
    "active_from_step"  int    1: contributes (its bias included) only for t >= 1; at t = 0
                               its output is zero, not its bias

flatten
    "order"             str    "CHW"
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import torch

from neurodeploy.errors import MissingFileError, NeurodeployError
from neurodeploy.model.lif import LIFParameters

FORMAT = "neurodeploy.frontend/1"
NEURON_TYPES = (nir.LIF, nir.IF, nir.CubaLIF)
POOL_TYPES = (nir.SumPool2d, nir.AvgPool2d)
# r*dt/tau of a graph written as tau = dt/(1-beta), r = tau/dt is 1 up to the float32
# rounding of r and tau; closer than this is taken as exactly 1 (no extra multiply).
UNIT_SCALE_TOLERANCE = 1e-6
# one recurrent 1x1 conv per LIF layer: reads the layer's spikes of the previous step, from step 1 on
RECURRENT_METADATA = {"delay_steps": 1, "active_from_step": 1}


class UnsupportedGraphError(NeurodeployError, ValueError):
    """A NIR graph (or one of its nodes) that cannot be read or executed faithfully; names the node."""


# -- writing neurons -----------------------------------------------------------------------
def lif_node(shape: tuple[int, ...], dt_s: float, *, beta: float, threshold: float, reset: str,
             reset_timing: str) -> nir.NIRNode:
    """The discrete LIF `v[t] = beta * v[t-1] + I[t]` as a NIR node with this toolkit's metadata."""
    metadata = {"dt": dt_s, "beta": float(beta), "reset": reset, "reset_timing": reset_timing, "compare": "greater"}
    thresholds = np.full(shape, threshold, dtype=np.float32)
    if beta == 1.0:
        # no leak: NIR's IF (dv/dt = R I) with R = 1/dt integrates I once per step
        return nir.IF(r=np.full(shape, 1.0 / dt_s, dtype=np.float32), v_threshold=thresholds,
                      v_reset=np.zeros(shape, np.float32), metadata=metadata)
    tau = dt_s / (1.0 - beta)
    return nir.LIF(tau=np.full(shape, tau, dtype=np.float32), r=np.full(shape, tau / dt_s, dtype=np.float32),
                   v_leak=np.zeros(shape, np.float32), v_threshold=thresholds,
                   v_reset=np.zeros(shape, np.float32), metadata=metadata)


# -- the graph's time step and neuron parameters -------------------------------------
def graph_dt(graph: nir.NIRGraph, dt_s: float | None = None) -> float | None:
    """dt from the caller, else the graph metadata, else the first neuron's metadata."""
    if dt_s is not None:
        return float(dt_s)
    if "dt" in graph.metadata:
        return float(graph.metadata["dt"])
    for node in graph.nodes.values():
        if isinstance(node, NEURON_TYPES) and "dt" in node.metadata:
            return float(node.metadata["dt"])
    return None


def _uniform(values: np.ndarray) -> float | torch.Tensor:
    """A Python float when every neuron shares the value (exactly the model's arithmetic)."""
    values = np.asarray(values, dtype=np.float64)
    first = values.flat[0] if values.size else 0.0
    if values.size == 0 or np.all(values == first):
        return float(first)
    return torch.from_numpy(values.astype(np.float32))


def neuron_parameters(name: str, node: nir.NIRNode, dt_s: float | None) -> tuple[LIFParameters, float | torch.Tensor]:
    """The discrete LIF of a NIR neuron node: `(LIFParameters, input_scale)`.

    `input_scale` multiplies the summed input before integration (NIR's `r * dt/tau`, and
    `w_in * dt/tau_syn` for a CubaLIF whose synapse passes input straight through).
    """
    meta = node.metadata
    if dt_s is None and "beta" not in meta:
        raise UnsupportedGraphError(
            f"node {name!r} ({type(node).__name__}) has time constants but the graph records no dt; pass dt_s= "
            "(norse's exporter uses 1e-3 s, snnTorch's 1e-4 s)")
    if isinstance(node, nir.IF):
        beta, scale, threshold, v_reset = 1.0, node.r * dt_s if dt_s else None, node.v_threshold, node.v_reset
        if "beta" in meta:
            scale = np.ones_like(node.r)
    else:
        tau = node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau
        if np.any(np.asarray(node.v_leak) != 0):
            raise UnsupportedGraphError(f"node {name!r} has v_leak != 0; the Mamba-Spike family has no leak potential")
        if "beta" in meta:
            beta = float(meta["beta"])
            if dt_s is not None and not np.allclose(1.0 - dt_s / np.asarray(tau, np.float64), beta, rtol=0, atol=1e-5):
                raise UnsupportedGraphError(
                    f"node {name!r}: metadata beta={beta} contradicts tau (1 - dt/tau = "
                    f"{float(np.mean(1.0 - dt_s / np.asarray(tau, np.float64)))} at dt={dt_s}); the graph was edited "
                    "inconsistently, re-export it")
        else:
            decay = 1.0 - dt_s / np.asarray(tau, np.float64)
            if np.any(decay < 0) or np.any(decay > 1):
                raise UnsupportedGraphError(
                    f"node {name!r}: beta = 1 - dt/tau = {float(np.min(decay)):.6g} at dt = {dt_s} s is outside [0, 1]: "
                    "dt is longer than tau, most likely not the dt the graph was written with; pass the writer's dt_s")
            beta = _uniform(decay)
        scale = np.asarray(node.r, np.float64) * dt_s / np.asarray(tau, np.float64) if dt_s else np.ones_like(node.r)
        if isinstance(node, nir.CubaLIF):
            ratio = np.asarray(node.tau_syn, np.float64) / dt_s
            if not np.allclose(ratio, 1.0, rtol=UNIT_SCALE_TOLERANCE):
                raise UnsupportedGraphError(
                    f"node {name!r} is a CubaLIF with tau_syn/dt = {float(ratio.mean()):.4g}; the model family has no "
                    "synaptic current decay, so only tau_syn = dt (current passed straight through) is accepted")
            scale = scale * np.asarray(node.w_in, np.float64) / ratio
        threshold, v_reset = node.v_threshold, node.v_reset
    reset = meta.get("reset", "zero")
    timing = meta.get("reset_timing", "immediate")
    compare = meta.get("compare", "greater")
    if reset not in ("subtract", "zero", "none") or timing not in ("delayed", "immediate"):
        raise UnsupportedGraphError(f"node {name!r}: metadata reset={reset!r}, reset_timing={timing!r} is not one of "
                                    "reset subtract|zero|none, reset_timing delayed|immediate")
    if compare != "greater":
        raise UnsupportedGraphError(f"node {name!r}: metadata compare={compare!r}; only the strict 'greater' is implemented")
    if reset == "zero" and np.any(np.asarray(v_reset) != 0):
        raise UnsupportedGraphError(f"node {name!r} resets to v_reset != 0; the model family resets to 0")
    scale = np.asarray(scale, np.float64)
    input_scale = 1.0 if np.allclose(scale, 1.0, rtol=UNIT_SCALE_TOLERANCE, atol=0) else _uniform(scale)
    return LIFParameters(beta=beta, threshold=_uniform(threshold), reset=reset, reset_timing=timing), input_scale


def neuron_names(graph: nir.NIRGraph) -> tuple[str, ...]:
    """Neuron nodes in the order a step reaches them (breadth-first from the input)."""
    if "lif_layers" in graph.metadata:
        return tuple(str(graph.metadata["lif_layers"]).split(","))
    order, seen = [], set()
    frontier = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    while frontier:
        name = frontier.pop(0)
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        frontier += [dst for src, dst in graph.edges if src == name]
    return tuple(name for name in order if isinstance(graph.nodes[name], NEURON_TYPES))


# -- the conv -> pool -> LIF chain ----------------------------------------------------------
@dataclass(frozen=True)
class ChainLayer:
    """One layer of a front-end chain, by node name: conv -> [pool] -> neuron [<-> recurrent conv]."""

    conv: str
    pool: str | None
    neuron: str
    recurrent: str | None


def frontend_chain(graph: nir.NIRGraph) -> tuple[str, tuple[ChainLayer, ...]]:
    """(input node name, the layers in order) of a flat front-end graph; refuses anything else by name.

    A 1x1 Conv2d both fed by and feeding a neuron is that neuron's recurrence; Flatten and
    Output after the last neuron end the chain.
    """
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise UnsupportedGraphError(f"node {name!r} is a nested NIRGraph (as snnTorch writes RLeaky/RSynaptic); "
                                        "write the graph flat, with a recurrence as a Conv2d cycle on the neuron")
    inputs = [name for name, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise UnsupportedGraphError(f"the graph has {len(inputs)} Input nodes {inputs}; a front-end has exactly one")
    successors: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        successors.setdefault(src, []).append(dst)

    def is_loop(source: str, node: str) -> bool:
        return isinstance(graph.nodes[node], nir.Conv2d) and source in successors.get(node, [])

    def only_next(name: str, expected: str) -> str:
        forward = [n for n in successors.get(name, []) if not is_loop(name, n)]
        if len(forward) != 1:
            raise UnsupportedGraphError(f"node {name!r} feeds {forward}; expected exactly one {expected} (the "
                                        "front-end is a single chain)")
        return forward[0]

    def refuse(name: str) -> None:
        raise UnsupportedGraphError(
            f"node {name!r} is a {type(graph.nodes[name]).__name__}; a front-end is a chain of Conv2d -> "
            "[SumPool2d | AvgPool2d] -> LIF / IF / CubaLIF layers, then Flatten / Output")

    layers: list[ChainLayer] = []
    current = inputs[0]
    while True:
        forward = [n for n in successors.get(current, []) if not is_loop(current, n)]
        if not forward or all(isinstance(graph.nodes[n], (nir.Flatten, nir.Output)) for n in forward):
            break
        conv = only_next(current, "Conv2d")
        if not isinstance(graph.nodes[conv], nir.Conv2d):
            refuse(conv)
        pool, neuron = None, only_next(conv, "pooling or neuron node")
        if isinstance(graph.nodes[neuron], POOL_TYPES):
            pool, neuron = neuron, only_next(neuron, "neuron node")
        if not isinstance(graph.nodes[neuron], NEURON_TYPES):
            refuse(neuron)
        loops = [n for n in successors.get(neuron, []) if is_loop(neuron, n)]
        if len(loops) > 1:
            raise UnsupportedGraphError(f"node {neuron!r} has recurrent convs {loops}; a layer has at most one")
        layers.append(ChainLayer(conv, pool, neuron, loops[0] if loops else None))
        current = neuron
    if not layers:
        raise UnsupportedGraphError("the graph has no Conv2d -> neuron layer after its input")
    return inputs[0], tuple(layers)


# -- reading and writing ----------------------------------------------------------------------
def write_frontend(graph: nir.NIRGraph, path: str | Path) -> Path:
    """Write `graph` to `path` (conventionally `frontend.nir`, NIR's HDF5 format)."""
    path = Path(path)
    nir.write(path, graph)
    return path


def _plain(value):
    """h5py hands metadata back as numpy scalars; make them the Python values written."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf8")
    return value


def read_frontend(path: str | Path) -> nir.NIRGraph:
    """Read a NIR file; metadata values come back as plain Python str/float/int/bool.

    nir.read decodes metadata leaves as numpy scalars and orders nodes alphabetically (HDF5
    groups); the values are made plain again, everything else is nir's own reader.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"NIR file {path} does not exist; write one with `neurodeploy export` or write_frontend()")
    try:
        try:
            graph = nir.read(path)
        except ValueError:
            # graphs from other writers often leave shapes undefined or scalar (snnTorch's LIF
            # parameters are 0-d); read them untyped and let the importer check the shapes
            graph = nir.read(path, type_check=False)
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise UnsupportedGraphError(f"{path} is not a readable NIR graph ({error}); re-export it with "
                                    "write_frontend()") from None
    graph.metadata = {k: _plain(v) for k, v in graph.metadata.items()}
    for node in graph.nodes.values():
        node.metadata = {k: _plain(v) for k, v in node.metadata.items()}
    return graph


def load_graph(graph_or_path: nir.NIRGraph | str | Path) -> nir.NIRGraph:
    """A graph given in memory, or read from a NIR file with `read_frontend`."""
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path
    return read_frontend(graph_or_path)
