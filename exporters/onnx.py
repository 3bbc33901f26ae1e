"""The SSM backbone -> ONNX: the full-sequence graph, the chunk graph and the step graph.

Three files, one per way the backbone is driven (docs/streaming_state.md):

backbone.onnx (`export_backbone`)
    spikes (batch, time, C, H, W) float32 -> logits (batch, classes); dynamic batch and
    length. Interface smoothing (centered or causal), input projection, one
    `ai.neurodeploy::SelectiveScan` node per Mamba layer, mean over time, head.

backbone_chunk.onnx (`export_backbone_chunk`) and backbone_step.onnx (`export_backbone_step`)
    (spikes | spikes_t, *STATE_NAMES) -> (logits, *STATE_OUTPUT_NAMES): a packet of T bins, or
    one bin (one `ai.neurodeploy::SelectiveStateUpdate` node per layer), with the streaming
    state in and out. File names, input/output names and the state layout are the toolkit's
    ONNX format, defined once in `neurodeploy.formats.onnx_backbone` (docs/streaming_state.md).

The centered interface's look-ahead lives in the graphs: a push with `pushed + 1 <= lookahead` ((k-1)//2 for centered, 0 for causal)
only fills the ring (the blocks' states, sum and count pass through unchanged), as
`MambaSpike.backbone_step` does, so a consumer of the step graph needs no extra logic. The
chunk graph drops the warm-up rows of a packet with a dynamic slice; onnxruntime's Scan and
Conv refuse zero-length sequences, so a packet that lies wholly inside the warm-up
(`pushed + T <= lookahead`) must go through the step graph (the runtime does this). Finishing a
sample (`flush`: lookahead zero frames after the last real one) is a runtime's job: it needs the
count of real frames, which the graphs do not carry.

The graphs are written node by node (`neurodeploy.exporters.onnx_graph` says why), each
Mamba layer by the shared emitter `neurodeploy.exporters.onnx_mamba`. Parity against the
PyTorch model is checked at every export.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

from neurodeploy.errors import NeurodeployError
from neurodeploy.exporters.onnx_functions import DOMAIN, DOMAIN_VERSION, SELECTIVE_SCAN, SELECTIVE_STATE_UPDATE
from neurodeploy.exporters.onnx_graph import INT64_MAX, GraphBuilder, layer_norm, stack_states
from neurodeploy.exporters.onnx_mamba import MambaLayerWeights, emit_layer_sequence, emit_layer_step
from neurodeploy.formats.onnx_backbone import (
    GRAPH_KINDS,
    LOGITS,
    META_GRAPH,
    META_MODEL_CONFIG,
    META_STATE_INPUTS,
    META_STATE_OUTPUTS,
    SEQUENCE_INPUT,
    STATE_NAMES,
    STATE_OUTPUT_NAMES,
    STEP_INPUT,
    GraphKind,
    state_layout,
)
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.model import MambaSpike
from neurodeploy.runtimes.onnxruntime import parity_with_model

DEFAULT_OPSET = 20
MIN_OPSET = 20
DEFAULT_TOLERANCE = 1e-4


class OnnxExportError(NeurodeployError, ValueError):
    """A model or argument the ONNX exporter cannot turn into a faithful graph."""


class OnnxParityError(NeurodeployError, RuntimeError):
    """The exported graph, run in onnxruntime, does not reproduce the PyTorch model."""


@dataclass(frozen=True)
class OnnxExportResult:
    """What one export wrote and how closely onnxruntime reproduced PyTorch on a sample."""

    path: Path
    graph: GraphKind
    opset: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: int  # top-level nodes; the custom ops count once each
    custom_nodes: int  # ai.neurodeploy nodes (one per Mamba layer)
    size_bytes: int
    export_seconds: float
    parity_max_abs: float  # max |logits_onnxruntime - logits_torch| over the sample
    parity_sample: tuple[int, int]  # (batch, time steps) of the sample
    tolerance: float

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


# -- export entry points -------------------------------------------------------------------
def export_backbone(
    model: MambaSpike,
    path: str | Path,
    *,
    dt: float,
    opset: int = DEFAULT_OPSET,
    sample: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> OnnxExportResult:
    """Write the full-sequence graph (backbone.onnx) and check it against the model.

    `dt` is the bin width in seconds the model runs at (recorded in the metadata). `sample`
    is front-end spikes `(B, T, C, H, W)`; by default seeded random spikes at batch 3 and 11
    steps. Raises OnnxParityError if onnxruntime and PyTorch differ by more than `tolerance`.
    """
    return _export(model, Path(path), "full", dt=dt, opset=opset, sample=sample, tolerance=tolerance)


def export_backbone_chunk(
    model: MambaSpike,
    path: str | Path,
    *,
    dt: float,
    opset: int = DEFAULT_OPSET,
    sample: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> OnnxExportResult:
    """Write the chunk graph (backbone_chunk.onnx): T bins with the streaming state in and out.

    Checked by streaming `sample` in two packets and comparing the anytime logits after each
    packet and after the flush with `MambaSpike.backbone_step` / `backbone_flush`.
    """
    return _export(model, Path(path), "chunk", dt=dt, opset=opset, sample=sample, tolerance=tolerance)


def export_backbone_step(
    model: MambaSpike,
    path: str | Path,
    *,
    dt: float,
    opset: int = DEFAULT_OPSET,
    sample: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> OnnxExportResult:
    """Write the step graph (backbone_step.onnx): one bin with the streaming state in and out.

    Checked by stepping `sample` and comparing every step's anytime logits and the flushed
    logits with `MambaSpike.backbone_step` / `backbone_flush`.
    """
    return _export(model, Path(path), "step", dt=dt, opset=opset, sample=sample, tolerance=tolerance)


def build_backbone_model(model: MambaSpike, graph: GraphKind, *, dt: float, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The ONNX model of one graph kind, in memory, unchecked."""
    _check_arguments(model, graph, dt, opset)
    weights = _Weights.of(model)
    builder = GraphBuilder(graph, opset=opset)
    if graph == "full":
        _full_graph(builder, weights)
    elif graph == "chunk":
        _chunk_graph(builder, weights)
    else:
        _step_graph(builder, weights)
    return builder.model(
        f"neurodeploy_backbone_{graph}", producer_version=_versions()["neurodeploy"],
        doc=f"Mamba-Spike SSM backbone, {graph} graph (see neurodeploy.exporters.onnx)",
        metadata=_metadata(model.config, graph, dt, opset),
    )


# -- weights -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _BlockWeights:
    norm_scale: np.ndarray
    norm_bias: np.ndarray
    norm_eps: float
    mamba: MambaLayerWeights


@dataclass(frozen=True)
class _Weights:
    config: MambaSpikeConfig
    input_proj_t: np.ndarray  # (F, d_model)
    input_proj_bias: np.ndarray
    layers: tuple[_BlockWeights, ...]
    norm_scale: np.ndarray
    norm_bias: np.ndarray
    norm_eps: float
    classifier: np.ndarray  # (classes, d_model)
    classifier_bias: np.ndarray

    @classmethod
    def of(cls, model: MambaSpike) -> _Weights:
        def arr(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy())

        layers = tuple(
            _BlockWeights(arr(block.norm.weight), arr(block.norm.bias), float(block.norm.eps),
                          MambaLayerWeights.from_module(block.mamba))
            for block in model.mamba_blocks
        )
        return cls(
            config=model.config,
            input_proj_t=np.ascontiguousarray(arr(model.input_proj.weight).T),
            input_proj_bias=arr(model.input_proj.bias),
            layers=layers,
            norm_scale=arr(model.norm.weight), norm_bias=arr(model.norm.bias), norm_eps=float(model.norm.eps),
            classifier=arr(model.classifier.weight), classifier_bias=arr(model.classifier.bias),
        )


# -- graph construction ----------------------------------------------------------------------
_ONNX_TYPES = {np.float32: TensorProto.FLOAT, np.int64: TensorProto.INT64}


def _state_inputs(b: GraphBuilder, c: MambaSpikeConfig) -> dict[str, str]:
    return {name: b.input(name, _ONNX_TYPES[dtype], dims) for name, (dtype, dims) in state_layout(c).items()}


def _state_outputs(b: GraphBuilder, c: MambaSpikeConfig, values: dict[str, str]) -> None:
    for (name, (dtype, dims)), out_name in zip(state_layout(c).items(), STATE_OUTPUT_NAMES):
        b.output(values[name], out_name, _ONNX_TYPES[dtype], dims)


def _head(b: GraphBuilder, w: _Weights, pooled: str) -> str:
    normed = layer_norm(b, pooled, w.norm_scale, w.norm_bias, w.norm_eps, "head.norm")
    return b.op("Gemm", normed, b.weight("classifier.weight", w.classifier), b.weight("classifier.bias", w.classifier_bias),
                transB=1, name="classifier")


def _smooth_projected(b: GraphBuilder, projected: str, window: int, pads: tuple[int, int]) -> str:
    """k-tap moving average over time of `(B, T, D)`; zero padding counts in the divisor."""
    channels_first = b.op("Transpose", projected, perm=[0, 2, 1])
    pooled = b.op("AveragePool", channels_first, kernel_shape=[window], pads=list(pads), count_include_pad=1,
                  name="interface")
    return b.op("Transpose", pooled, perm=[0, 2, 1])


def _block_sequence(b: GraphBuilder, bw: _BlockWeights, x: str, tag: str, conv_state: str | None,
                    h0: str) -> tuple[str, str | None, str]:
    """One `x + mamba(norm(x))` over `(B, L, d_model)`; returns (x, conv_state_out, h_last)."""
    normed = layer_norm(b, x, bw.norm_scale, bw.norm_bias, bw.norm_eps, f"{tag}.norm")
    out, mixed = emit_layer_sequence(b, bw.mamba, normed, tag, h0=h0, conv_state=conv_state)
    return b.op("Add", x, out), mixed.conv_state, mixed.ssm_state


def _full_graph(b: GraphBuilder, w: _Weights) -> None:
    c = w.config
    spikes = b.input(SEQUENCE_INPUT, TensorProto.FLOAT, ["batch", "time", c.spiking_channels, c.feature_height, c.feature_width])
    flat = b.op("Reshape", spikes, b.ints(0, 0, -1))  # (B, T, F) in (C, H, W) order
    # input_proj is linear and the smoothing is linear in time, so project first and smooth
    # d_model channels instead of F; the bias goes after (zero padding never sees it).
    projected = b.op("MatMul", flat, b.weight("input_proj.weight", w.input_proj_t), name="input_proj")
    left = c.interface_window // 2 if c.interface == "centered" else c.interface_window - 1
    smoothed = _smooth_projected(b, projected, c.interface_window, (left, c.interface_window - 1 - left))
    x = b.op("Add", smoothed, b.weight("input_proj.bias", w.input_proj_bias))
    batch = b.op("Shape", flat, start=0, end=1)
    h0_shape = b.op("Concat", batch, b.ints(c.d_inner, c.d_state), axis=0)
    h0 = b.op("ConstantOfShape", h0_shape, value=numpy_helper.from_array(np.zeros(1, np.float32)))
    for i, bw in enumerate(w.layers):
        x, _, _ = _block_sequence(b, bw, x, f"mamba_blocks.{i}", None, h0)
    pooled = b.op("ReduceMean", x, b.ints(1), keepdims=0, name="mean_over_time")
    b.output(_head(b, w, pooled), LOGITS, TensorProto.FLOAT, ["batch", c.num_classes])


def _anytime_logits(b: GraphBuilder, w: _Weights, feature_sum: str, count: str) -> str:
    denominator = b.op("Max", b.op("Cast", count, to=TensorProto.FLOAT), b.scalar(1.0, np.float32))
    return _head(b, w, b.op("Div", feature_sum, denominator))


def _chunk_graph(b: GraphBuilder, w: _Weights) -> None:
    c = w.config
    k = c.interface_window
    spikes = b.input(SEQUENCE_INPUT, TensorProto.FLOAT, ["batch", "time", c.spiking_channels, c.feature_height, c.feature_width])
    state = _state_inputs(b, c)
    flat = b.op("Reshape", spikes, b.ints(0, 0, -1))
    window = b.op("Concat", state["interface_ring"], flat, axis=1)  # (B, k-1+T, F)
    steps = b.op("Shape", flat, start=1, end=2)  # (1,) int64
    ring_out = b.op("Slice", window, steps, b.ints(INT64_MAX), b.ints(1))
    projected = b.op("MatMul", window, b.weight("input_proj.weight", w.input_proj_t), name="input_proj")
    smoothed = _smooth_projected(b, projected, k, (0, 0))  # the ring supplies the causal history
    x = b.op("Add", smoothed, b.weight("input_proj.bias", w.input_proj_bias))
    # warm-up of the centered interface: the first `lookahead` pushes of a sample run no block
    skip = b.op("Min", b.op("Max", b.op("Sub", b.ints(c.lookahead), state["pushed"]), b.ints(0)), steps)  # (1,)
    x = b.op("Slice", x, skip, b.ints(INT64_MAX), b.ints(1))
    active = b.op("Sub", steps, skip)
    convs, ssms = [], []
    for i, bw in enumerate(w.layers):
        index = b.scalar(i, np.int64)
        conv_i = b.op("Gather", state["conv_state"], index, axis=0)
        ssm_i = b.op("Gather", state["ssm_state"], index, axis=0)
        x, conv_out, h_last = _block_sequence(b, bw, x, f"mamba_blocks.{i}", conv_i, ssm_i)
        convs.append(conv_out)
        ssms.append(h_last)
    feature_sum = b.op("Add", state["feature_sum"], b.op("ReduceSum", x, b.ints(1), keepdims=0))
    count = b.op("Add", state["count"], b.op("Squeeze", active, b.ints(0)))
    pushed = b.op("Add", state["pushed"], b.op("Squeeze", steps, b.ints(0)))
    b.output(_anytime_logits(b, w, feature_sum, count), LOGITS, TensorProto.FLOAT, ["batch", c.num_classes])
    _state_outputs(b, c, {
        "interface_ring": ring_out, "conv_state": stack_states(b, convs, (c.d_inner, c.d_conv)),
        "ssm_state": stack_states(b, ssms, (c.d_inner, c.d_state)), "feature_sum": feature_sum, "count": count,
        "pushed": pushed,
    })


def _step_graph(b: GraphBuilder, w: _Weights) -> None:
    c = w.config
    k = c.interface_window
    spikes = b.input(STEP_INPUT, TensorProto.FLOAT, ["batch", c.spiking_channels, c.feature_height, c.feature_width])
    state = _state_inputs(b, c)
    flat = b.op("Unsqueeze", b.op("Reshape", spikes, b.ints(0, -1)), b.ints(1))  # (B, 1, F)
    window = b.op("Concat", state["interface_ring"], flat, axis=1)  # (B, k, F)
    ring_out = b.op("Slice", window, b.ints(1), b.ints(INT64_MAX), b.ints(1))
    summed = b.op("ReduceSum", window, b.ints(1), keepdims=0)
    # Gemm's alpha divides by k after the projection: W (sum / k) + b in one node
    x = b.op("Gemm", summed, b.weight("input_proj.weight", w.input_proj_t), b.weight("input_proj.bias", w.input_proj_bias),
             alpha=1.0 / k, name="input_proj")
    pushed = b.op("Add", state["pushed"], b.scalar(1, np.int64))
    # the centered interface's warm-up: blocks run (their state is kept) only past `lookahead` pushes
    active = b.op("Greater", pushed, b.scalar(c.lookahead, np.int64))
    convs, ssms = [], []
    for i, bw in enumerate(w.layers):
        tag = f"mamba_blocks.{i}"
        index = b.scalar(i, np.int64)
        conv_state = b.op("Gather", state["conv_state"], index, axis=0)  # (B, d_inner, d_conv)
        ssm_state = b.op("Gather", state["ssm_state"], index, axis=0)
        normed = layer_norm(b, x, bw.norm_scale, bw.norm_bias, bw.norm_eps, f"{tag}.norm")
        out, mixed = emit_layer_step(b, bw.mamba, normed, tag, conv_state=conv_state, ssm_state=ssm_state)
        x = b.op("Add", x, out)
        convs.append(mixed.conv_state)
        ssms.append(mixed.ssm_state)
    conv_out = b.op("Where", active, stack_states(b, convs, (c.d_inner, c.d_conv)), state["conv_state"])
    ssm_out = b.op("Where", active, stack_states(b, ssms, (c.d_inner, c.d_state)), state["ssm_state"])
    feature_sum = b.op("Where", active, b.op("Add", state["feature_sum"], x), state["feature_sum"])
    count = b.op("Add", state["count"], b.op("Cast", active, to=TensorProto.INT64))
    b.output(_anytime_logits(b, w, feature_sum, count), LOGITS, TensorProto.FLOAT, ["batch", c.num_classes])
    _state_outputs(b, c, {
        "interface_ring": ring_out, "conv_state": conv_out, "ssm_state": ssm_out,
        "feature_sum": feature_sum, "count": count, "pushed": pushed,
    })


# -- metadata ---------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    import onnxruntime

    from neurodeploy import __version__

    return {"neurodeploy": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


def _metadata(config: MambaSpikeConfig, graph: GraphKind, dt: float, opset: int) -> dict[str, str]:
    props = {
        "neurodeploy.format": f"neurodeploy.backbone.{graph}/1",
        META_GRAPH: graph,
        META_MODEL_CONFIG: config.to_json(),
        "neurodeploy.dt": repr(float(dt)),
        "neurodeploy.interface": config.interface,
        "neurodeploy.lookahead": str(config.lookahead),
        "neurodeploy.opset": str(opset),
        f"{DOMAIN}.version": str(DOMAIN_VERSION),
        "neurodeploy.custom_op": SELECTIVE_SCAN if graph != "step" else SELECTIVE_STATE_UPDATE,
        "neurodeploy.versions": json.dumps(_versions(), sort_keys=True),
    }
    if graph != "full":
        props[META_STATE_INPUTS] = ",".join(STATE_NAMES)
        props[META_STATE_OUTPUTS] = ",".join(STATE_OUTPUT_NAMES)
    return props


# -- checks and validation ----------------------------------------------------------------------
def _check_arguments(model: MambaSpike, graph: str, dt: float, opset: int) -> None:
    if not isinstance(model, MambaSpike):
        raise OnnxExportError(f"expected a neurodeploy.model.MambaSpike, got {type(model).__name__}; "
                              "load checkpoints with neurodeploy.model.mamba_spike.checkpoint first")
    if graph not in GRAPH_KINDS:
        raise OnnxExportError(f"graph kind {graph!r}; expected 'full', 'chunk' or 'step'")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise OnnxExportError(f"opset {opset!r}; the backbone graphs need ONNX opset {MIN_OPSET} or newer")
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise OnnxExportError(f"dt = {dt!r}; give the bin width in seconds the model runs at (e.g. dt=1e-3)")
    for name, tensor in model.state_dict().items():
        if not torch.isfinite(tensor).all():
            raise OnnxExportError(f"weight {name!r} holds NaN or inf; the checkpoint is damaged")


def _default_sample(config: MambaSpikeConfig, batch: int = 3, steps: int = 11) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    shape = (batch, steps, config.spiking_channels, config.feature_height, config.feature_width)
    return (torch.rand(shape, generator=gen) < 0.2).to(torch.float32)


def _check_sample(config: MambaSpikeConfig, sample: torch.Tensor) -> torch.Tensor:
    expected = (config.spiking_channels, config.feature_height, config.feature_width)
    if sample.ndim != 5 or tuple(sample.shape[2:]) != expected or sample.shape[1] < 1:
        raise OnnxExportError(f"validation sample of shape {tuple(sample.shape)}; expected front-end spikes "
                              f"(B, T>=1, {', '.join(map(str, expected))})")
    return sample.detach().to(torch.float32).cpu()


def _export(model: MambaSpike, path: Path, graph: GraphKind, *, dt: float, opset: int, sample: torch.Tensor | None,
            tolerance: float) -> OnnxExportResult:
    start = time.perf_counter()
    proto = build_backbone_model(model, graph, dt=dt, opset=opset)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    export_seconds = time.perf_counter() - start
    onnx.checker.check_model(str(path), full_check=True)
    sample = _check_sample(model.config, sample if sample is not None else _default_sample(model.config))
    # plain sessions: the file must run with no custom-op library registered
    worst = parity_with_model(model, path, graph, sample)
    if not worst <= tolerance:  # also catches NaN
        raise OnnxParityError(f"{path}: onnxruntime differs from PyTorch by {worst:.3g} (tolerance {tolerance:g}) on "
                              f"a sample of shape {tuple(sample.shape)}; the {graph} graph is not a faithful export")
    custom = sum(1 for n in proto.graph.node if n.domain == DOMAIN)
    return OnnxExportResult(
        path=path, graph=graph, opset=opset,
        inputs=tuple(i.name for i in proto.graph.input), outputs=tuple(o.name for o in proto.graph.output),
        nodes=len(proto.graph.node), custom_nodes=custom, size_bytes=path.stat().st_size,
        export_seconds=export_seconds, parity_max_abs=float(worst),
        parity_sample=(int(sample.shape[0]), int(sample.shape[1])), tolerance=tolerance,
    )
