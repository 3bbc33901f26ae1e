"""Writing ONNX graphs node by node: the builder every exporter of this toolkit uses.

Why by hand and not `torch.onnx`: the exporters keep one `ai.neurodeploy` custom-op node per
Mamba layer, carried as an ONNX function (docs/custom_ops.md); the torch 2.x exporter inlines
functions, so keeping the node through it needs a torch.library op, an onnxscript
translation and the FunctionProto attached afterwards. Writing the graph directly gives the
same file with the node count under control (it sets the batch-1 step latency), exports in
milliseconds and keeps the maths reviewable beside the PyTorch model.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import FunctionProto, TensorProto, helper, numpy_helper

from neurodeploy.exporters.onnx_functions import DOMAIN, DOMAIN_VERSION

INT64_MAX = np.iinfo(np.int64).max
# make_model stamps the newest IR version this onnx knows; older onnxruntimes refuse those
MAX_IR_VERSION = 10


class GraphBuilder:
    """Collects nodes, initializers, graph inputs/outputs and used functions under unique names."""

    def __init__(self, prefix: str, *, opset: int):
        self.prefix = prefix
        self.opset = opset  # of the model, and so of every function it carries
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.functions: dict[str, FunctionProto] = {}
        self._counter = 0
        self._constants: dict[tuple, str] = {}

    def _name(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}_{self._counter}"

    def op(self, op_type: str, *inputs: str, outputs: int = 1, name: str | None = None, domain: str = "",
           out_names: list[str] | None = None, **attrs) -> str | list[str]:
        names = out_names or [self._name(name or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self._name(f"{name or op_type}_node"),
                                           domain=domain, **attrs))
        return names[0] if len(names) == 1 and outputs == 1 else names

    def call(self, function: FunctionProto, *inputs: str, outputs: int, name: str) -> list[str]:
        """A node calling an `ai.neurodeploy` function; the function travels with the model."""
        self.functions[function.name] = function
        return self.op(function.name, *inputs, outputs=outputs, domain=function.domain, name=name)

    def weight(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.array(value, order="C"), name))  # keeps 0-d shapes
        return name

    def ints(self, *values: int) -> str:
        key = ("i64", values)
        if key not in self._constants:
            self._constants[key] = self.weight(self._name("ints"), np.array(values, dtype=np.int64))
        return self._constants[key]

    def scalar(self, value, dtype) -> str:
        key = (np.dtype(dtype).str, value)
        if key not in self._constants:
            self._constants[key] = self.weight(self._name("scalar"), np.array(value, dtype=dtype))
        return self._constants[key]

    def input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, value: str, name: str, elem_type: int, shape: list) -> None:
        # rename the producer's output rather than add an Identity: every node costs
        # dispatch time in the batch-1 step graph
        producers = [n for n in self.nodes if value in n.output]
        if producers and value not in {v.name for v in self.inputs}:
            for node in self.nodes:
                for field in (node.input, node.output):
                    for i, existing in enumerate(field):
                        if existing == value:
                            field[i] = name
        else:
            self.nodes.append(helper.make_node("Identity", [value], [name], name=self._name(f"{name}_node")))
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def model(self, graph_name: str, *, producer_version: str, doc: str,
              metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, graph_name, self.inputs, self.outputs, self.initializers)
        imports = [helper.make_opsetid("", self.opset)]
        if self.functions:
            imports.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
        proto = helper.make_model(graph, opset_imports=imports, functions=list(self.functions.values()),
                                  producer_name="neurodeploy", producer_version=producer_version, doc_string=doc)
        proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
        if metadata:
            helper.set_model_props(proto, dict(metadata))
        return proto


def silu(b: GraphBuilder, x: str) -> str:
    """x * sigmoid(x): ONNX before opset 24 has no SiLU."""
    return b.op("Mul", x, b.op("Sigmoid", x))


def layer_norm(b: GraphBuilder, x: str, scale: np.ndarray, bias: np.ndarray, eps: float, tag: str) -> str:
    return b.op("LayerNormalization", x, b.weight(f"{tag}.weight", scale), b.weight(f"{tag}.bias", bias),
                axis=-1, epsilon=eps, name=tag)


def linear(b: GraphBuilder, x: str, weight_t: np.ndarray, bias: np.ndarray | None, tag: str) -> str:
    """x @ W^T (+ b) over the last axis, `weight_t` already transposed `(in, out)`."""
    y = b.op("MatMul", x, b.weight(f"{tag}.weight_t", weight_t), name=tag)
    return y if bias is None else b.op("Add", y, b.weight(f"{tag}.bias", bias))


def reverse_time(b: GraphBuilder, x: str, axis: int = 1) -> str:
    """Reverse a sequence along `axis` with one Slice of step -1 (no custom op needed)."""
    return b.op("Slice", x, b.ints(-1), b.ints(-INT64_MAX), b.ints(axis), b.ints(-1))


def stack_states(b: GraphBuilder, per_layer: Sequence[str], trailing: tuple[int, ...]) -> str:
    """Per-layer `(B, *trailing)` states -> `(n_layers, B, *trailing)`: one Concat and one
    Reshape, where an Unsqueeze per layer would cost a node each in the step graph."""
    return b.op("Reshape", b.op("Concat", *per_layer, axis=0), b.ints(len(per_layer), -1, *trailing))


def float_input(b: GraphBuilder, name: str, shape: list) -> str:
    return b.input(name, TensorProto.FLOAT, shape)
