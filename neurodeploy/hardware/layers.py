"""A front-end NIR graph as a chip-neutral list of spiking layers.

Each layer is what a chip core implements: one convolution (or dense projection) feeding one
population of neurons, with the pooling that sits between them and an optional recurrent
connection. The walk follows the graph's edges from its single `nir.Input` (the layout and
metadata keys are this toolkit's NIR conventions, `neurodeploy.formats.nir_frontend`, whose
`frontend_chain` is the one walk): conv -> [pool] -> LIF|IF [<- rec] -> ... -> flatten -> output.
Anything else is refused by name, not guessed.
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from neurodeploy.errors import NeurodeployError
from neurodeploy.formats.nir_frontend import frontend_chain, graph_dt


class GraphShapeError(NeurodeployError, ValueError):
    """A NIR graph whose layout is not a chain of conv -> [pool] -> neuron layers."""


@dataclass(frozen=True)
class SpikingLayer:
    name: str  # the neuron node's name, e.g. "lif1"
    conv: str  # the synapse node's name, e.g. "conv1"
    input_shape: tuple[int, int, int]  # (C, H, W) into the conv
    conv_shape: tuple[int, int, int]  # (C, H, W) out of the conv, before pooling
    output_shape: tuple[int, int, int]  # (C, H, W) of the neurons
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    weight: np.ndarray  # (C_out, C_in, kH, kW)
    bias: np.ndarray | None
    pool: str | None  # "sum" | "avg" | None
    pool_kernel: int
    pool_input: str  # "current" (pool before the neuron, this toolkit) or "spikes"
    neuron: str  # "LIF" or "IF"
    beta: float  # 1.0 for IF (no leak)
    threshold: float
    reset: str  # "subtract" | "zero" | "none"
    reset_timing: str  # "immediate" | "delayed"
    compare: str  # "greater" | "greater_equal"
    recurrent: bool
    graded_input: bool  # the layer's input holds counts > 1 (only the first layer of a front-end)

    @property
    def neurons(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def synapses(self) -> int:
        """Stored weights (a conv shares its kernel across positions)."""
        return int(self.weight.size)

    @property
    def fan_in(self) -> int:
        c_out, c_in, kh, kw = self.weight.shape
        pool = self.pool_kernel * self.pool_kernel if self.pool else 1
        return c_in * kh * kw * pool + (c_out if self.recurrent else 0)

    @property
    def connections(self) -> int:
        """Synapses a chip without weight sharing must store: fan-in of every neuron."""
        return self.fan_in * self.neurons


def _pair(value) -> tuple[int, int]:
    arr = np.atleast_1d(np.asarray(value)).astype(int)
    return (int(arr[0]), int(arr[-1]))


def _scalar(name: str, what: str, values) -> float:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size and not np.all(arr == arr.flat[0]):
        raise GraphShapeError(f"{name}: {what} differs between neurons; chips take one {what} per layer")
    return float(arr.flat[0]) if arr.size else 0.0


def _beta(name: str, neuron: nir.NIRNode, dt: float | None) -> float:
    if "beta" in neuron.metadata:
        return float(neuron.metadata["beta"])
    if isinstance(neuron, nir.IF):
        return 1.0
    if dt is not None and isinstance(neuron, nir.LIF):
        return 1.0 - float(dt) / _scalar(name, "tau", neuron.tau)
    raise GraphShapeError(f"{name}: a {type(neuron).__name__} without beta in its metadata (or no dt in the graph); "
                          "re-export it with neurodeploy")


def spiking_layers(graph: nir.NIRGraph) -> tuple[SpikingLayer, ...]:
    """The conv -> [pool] -> neuron layers of a front-end graph, in order from the input."""
    input_name, chain = frontend_chain(graph)  # the one walk of this toolkit's NIR layout
    input_node = graph.nodes[input_name]
    graded = bool(input_node.metadata.get("graded_input", False))
    shape = tuple(int(v) for v in np.asarray(input_node.input_type["input"]).ravel())
    dt = graph_dt(graph)
    layers: list[SpikingLayer] = []
    for link in chain:
        conv = graph.nodes[link.conv]
        weight = np.asarray(conv.weight, dtype=np.float32)
        c_out = weight.shape[0]
        kernel, stride, padding = _pair(weight.shape[2:]), _pair(conv.stride), _pair(conv.padding)
        if len(shape) != 3:
            raise GraphShapeError(f"{link.conv}: input shape {shape}; expected (C, H, W)")
        conv_hw = tuple((shape[i + 1] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in range(2))
        pool, pool_kernel, pool_input, out_hw = None, 1, "current", conv_hw
        if link.pool is not None:
            pool_node = graph.nodes[link.pool]
            pool = "sum" if isinstance(pool_node, nir.SumPool2d) else "avg"
            pool_kernel = _pair(pool_node.kernel_size)[0]
            pool_input = str(pool_node.metadata.get("pool_input", "current"))
            out_hw = tuple(v // pool_kernel for v in conv_hw)
        neuron = graph.nodes[link.neuron]
        if not isinstance(neuron, (nir.LIF, nir.IF)):
            raise GraphShapeError(f"{link.neuron}: a {type(neuron).__name__}; the hardware checks take LIF or IF neurons")
        meta = neuron.metadata
        beta = _beta(link.neuron, neuron, dt)
        layers.append(SpikingLayer(
            name=link.neuron, conv=link.conv, input_shape=shape, conv_shape=(c_out, *conv_hw),
            output_shape=(c_out, *out_hw), kernel=kernel, stride=stride, padding=padding, weight=weight,
            bias=None if conv.bias is None else np.asarray(conv.bias, dtype=np.float32),
            pool=pool, pool_kernel=pool_kernel, pool_input=pool_input,
            neuron="IF" if beta == 1.0 else "LIF", beta=beta,
            threshold=_scalar(link.neuron, "threshold", neuron.v_threshold),
            reset=str(meta.get("reset", "zero")), reset_timing=str(meta.get("reset_timing", "immediate")),
            compare=str(meta.get("compare", "greater")), recurrent=link.recurrent is not None,
            graded_input=graded and not layers,
        ))
        shape = (c_out, *out_hw)
    return tuple(layers)
