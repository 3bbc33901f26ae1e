"""The front-end NIR graph as the layers Lava runs (`LavaLayer`): used by the floating-point Lava
runtime directly and by the netx exporter (`neurodeploy.exporters.netx`), which quantises them.

`lava_layers(graph)` reads a front-end NIR graph (neurodeploy.formats.nir_frontend) into Lava-shaped
float layers: netx and Lava have no pooling layer, so every conv -> sum/avg pool pair is folded
into ONE strided convolution (3x3 pad 1 conv then 2x2 pool stride 2 == 4x4 conv, stride 2, pad
1, kernel = 3x3 kernel (full-)convolved with a 2x2 ones kernel; bias x4 for sum pooling, kernel
/ 4 for avg pooling; floor edges equal, checked). What Lava cannot run is refused here, once,
with the way out: subtractive or delayed reset, a non-uniform threshold, NIR nodes other than
the front-end's.

The chain itself (which node follows which) is walked by `neurodeploy.formats.nir_frontend.frontend_chain`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from neurodeploy.errors import NeurodeployError
from neurodeploy.formats.nir_frontend import UnsupportedGraphError, frontend_chain


class LavaMappingError(NeurodeployError, ValueError):
    """A front-end that Lava / netx cannot run as it is, with the way out in the message."""


@dataclass(frozen=True)
class LavaLayer:
    """One conv(+folded pool) -> LIF layer in torch layout, float (what Lava floating_pt runs).

    `weight` (Cout, Cin, kh, kw), `bias` (Cout,) are the folded synapse; `stride`, `padding`
    are (h, w); shapes are (C, H, W). `recurrent_weight` (C, C, 1, 1) / `recurrent_bias`:
    the 1x1 conv of the layer's own previous spikes (active from the second step), or None.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    beta: float
    threshold: float
    folded_pool: str | None  # "sum" / "avg" when a pooling was folded into the conv
    recurrent_weight: np.ndarray | None = None
    recurrent_bias: np.ndarray | None = None


# -- NIR -> Lava layers --------------------------------------------------------------------
def fold_pool_into_conv(weight: np.ndarray, bias: np.ndarray, pool: str, kernel: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The conv kernel that equals `pool(conv(x))` for a stride-1 conv and a kernel x kernel pool.

    Pooled output i sums conv outputs kernel*i .. kernel*i+kernel-1, so the folded tap m
    collects every original tap a with a + p = m (p the pool offset): a full convolution of
    the kernel with a ones kernel. Sum pooling adds `kernel**2` biases; avg divides by it.
    """
    cout, cin, kh, kw = weight.shape
    folded = np.zeros((cout, cin, kh + kernel - 1, kw + kernel - 1), dtype=np.float64)
    for p in range(kernel):
        for q in range(kernel):
            folded[:, :, p:p + kh, q:q + kw] += weight
    area = kernel * kernel
    if pool == "sum":
        return folded, bias.astype(np.float64) * area
    if pool == "avg":
        return folded / area, bias.astype(np.float64)
    raise LavaMappingError(f"pooling {pool!r} cannot be folded into a synapse; only 'sum' and 'avg' can")


def _conv_output(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pair(value: Any) -> tuple[int, int]:
    array = np.atleast_1d(np.asarray(value)).astype(int)
    return (int(array[0]), int(array[-1]))


def _uniform(name: str, what: str, value: Any) -> float:
    array = np.asarray(value, dtype=np.float64)
    if array.size == 0 or not np.all(array == array.flat[0]):
        raise LavaMappingError(f"{name}: {what} differs between neurons; Lava's LIF takes one {what} per layer. "
                               "Ways out: export a model with one value per layer (neurodeploy models always are).")
    return float(array.flat[0])


def _lif_parameters(name: str, node: nir.NIRNode, dt: float | None) -> tuple[float, float]:
    """(beta, threshold) of a NIR LIF/IF node, refusing what Lava's LIF cannot do."""
    meta = node.metadata or {}
    reset = meta.get("reset", "zero")  # NIR's own LIF resets to v_reset immediately
    timing = meta.get("reset_timing", "immediate")
    if reset != "zero" or timing != "immediate":
        raise LavaMappingError(
            f"{name}: reset={reset!r}, reset_timing={timing!r}; Lava's LIF resets the membrane to zero in the "
            "same step it spikes (reset='zero', reset_timing='immediate') and nothing else. Ways out: fine-tune "
            "with MambaSpikeConfig.deployable() (reset='zero', reset_timing='immediate') and export that, or run "
            "this front-end with neurodeploy.runtimes.torch / neurodeploy.runtimes.nir."
        )
    if meta.get("compare", "greater") != "greater":
        raise LavaMappingError(f"{name}: compare={meta['compare']!r}; Lava spikes on v > threshold only")
    threshold = _uniform(name, "threshold", node.v_threshold)
    if np.any(np.asarray(node.v_reset) != 0):
        raise LavaMappingError(f"{name}: v_reset != 0; Lava's LIF resets to zero")
    if isinstance(node, nir.IF):
        beta = 1.0
        gain = _uniform(name, "r", node.r) * (dt or 0.0)
    elif isinstance(node, nir.LIF):
        if np.any(np.asarray(node.v_leak) != 0):
            raise LavaMappingError(f"{name}: v_leak != 0; Lava's LIF leaks towards zero")
        tau = _uniform(name, "tau", node.tau)
        if "beta" in meta:
            beta = float(meta["beta"])
        elif dt is not None:
            beta = 1.0 - dt / tau
        else:
            raise LavaMappingError(f"{name}: the graph records no dt and the node no beta; re-export it with "
                                   "neurodeploy.exporters.nir.export_frontend(model, dt_s)")
        gain = _uniform(name, "r", node.r) * (1.0 - beta) if beta != 1.0 else 1.0
    else:
        raise LavaMappingError(f"{name}: NIR node {type(node).__name__} has no Lava equivalent here; "
                               "the front-end's neurons must be nir.LIF (or nir.IF)")
    if dt is not None and abs(gain - 1.0) > 1e-4:
        raise LavaMappingError(f"{name}: input gain r*dt/tau = {gain:.6g}, not 1; Lava's LIF adds its input "
                               "unscaled. Re-export with neurodeploy's NIR exporter (r = tau/dt)")
    return beta, threshold


def lava_layers(graph: nir.NIRGraph) -> tuple[LavaLayer, ...]:
    """The front-end NIR graph as a chain of `LavaLayer`s (pooling folded, semantics checked)."""
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"lava_layers takes a nir.NIRGraph, not {type(graph).__name__}")
    nodes = graph.nodes
    metadata = graph.metadata or {}
    dt = float(metadata["dt"]) if "dt" in metadata else None
    try:
        input_name, chain = frontend_chain(graph)
    except UnsupportedGraphError as err:
        raise LavaMappingError(f"{err}; the Lava mapping takes such a chain") from None
    shape = tuple(int(v) for v in np.asarray(next(iter(nodes[input_name].input_type.values()))).ravel())
    if len(shape) != 3:
        raise LavaMappingError(f"input shape {shape}; expected (C, H, W) event-count frames")
    layers: list[LavaLayer] = []
    for link in chain:
        conv_name, conv = link.conv, nodes[link.conv]
        weight = np.asarray(conv.weight, dtype=np.float64)
        bias = np.broadcast_to(np.asarray(conv.bias, dtype=np.float64), (weight.shape[0],)).copy()
        stride, padding, dilation = _pair(conv.stride), _pair(conv.padding), _pair(conv.dilation)
        if int(np.asarray(conv.groups)) != 1 or dilation != (1, 1):
            raise LavaMappingError(f"{conv_name}: groups/dilation other than 1 are not mapped to Lava")
        if isinstance(conv.padding, str):
            raise LavaMappingError(f"{conv_name}: string padding {conv.padding!r}; export explicit padding")
        conv_hw = tuple(_conv_output(shape[1 + i], weight.shape[2 + i], stride[i], padding[i]) for i in range(2))
        folded_pool = None
        out_hw = conv_hw
        if link.pool is not None:
            pool_name, pool = link.pool, nodes[link.pool]
            kind = "sum" if isinstance(pool, nir.SumPool2d) else "avg"
            kernel, pool_stride, pool_pad = _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding)
            if kernel[0] != kernel[1] or pool_stride != kernel or pool_pad != (0, 0) or stride != (1, 1):
                raise LavaMappingError(f"{pool_name}: only a square non-overlapping pool (stride = kernel, no padding) "
                                       "after a stride-1 conv folds into one synapse")
            weight, bias = fold_pool_into_conv(weight, bias, kind, kernel[0])
            stride = kernel
            out_hw = tuple(size // kernel[0] for size in conv_hw)
            folded_hw = tuple(_conv_output(shape[1 + i], weight.shape[2 + i], stride[i], padding[i]) for i in range(2))
            if folded_hw != out_hw:
                raise LavaMappingError(f"{conv_name}+{pool_name}: the folded conv gives {folded_hw}, pooling gives "
                                       f"{out_hw}; this padding does not fold exactly")
            folded_pool = kind
        lif_name = link.neuron
        beta, threshold = _lif_parameters(lif_name, nodes[lif_name], dt)
        output_shape = (weight.shape[0], *out_hw)
        rec_weight = rec_bias = None
        if link.recurrent is not None:
            node = nodes[link.recurrent]
            meta = node.metadata or {}
            if int(meta.get("delay_steps", 1)) != 1 or int(meta.get("active_from_step", 1)) != 1:
                raise LavaMappingError(f"{link.recurrent}: recurrence with delay_steps/active_from_step other than 1")
            rec_weight = np.asarray(node.weight, dtype=np.float64)
            if rec_weight.shape[2:] != (1, 1):
                raise LavaMappingError(f"{link.recurrent}: only 1x1 recurrent convolutions are mapped")
            rec_bias = np.broadcast_to(np.asarray(node.bias, dtype=np.float64), (rec_weight.shape[0],)).copy()
        layers.append(LavaLayer(name=lif_name, weight=weight, bias=bias, stride=stride, padding=padding,
                                input_shape=shape, output_shape=output_shape, beta=beta, threshold=threshold,
                                folded_pool=folded_pool, recurrent_weight=rec_weight, recurrent_bias=rec_bias))
        shape = output_shape
    return tuple(layers)
