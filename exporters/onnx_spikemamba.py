"""SpikeMamba LM -> ONNX: a full-sequence graph and a one-token step graph, stock onnxruntime.

model_full.onnx  (`graph="full"`)
    tokens (batch, time) int64 -> logits (batch, time, vocab), the spikes of every gate kind
    `spikes_<gate>` (n_layers, batch, time, d_model), and the state after the last token as
    `<state>_out` (the same names the step graph takes: a prefill hands them on). One
    `ai.neurodeploy::SelectiveScan` per layer (the shared emitter `onnx_mamba`, conv bias
    included); each LIF gate is one ONNX `Scan` over time whose body is the per-token neuron.
model_step.onnx  (`graph="step"`)
    (token (batch,) int64, *STATE) -> (logits (batch, vocab), spikes_<gate> (n_layers, batch,
    d_model), *STATE_out); one `ai.neurodeploy::SelectiveStateUpdate` per layer and the LIF
    gates as elementwise nodes. Refused for adaptive temporal pooling (not causal).

States (all float32, stacked over layers, named as the bundle convention: input X, output X_out):
    conv_state (n_layers, B, d_inner, d_conv), ssm_state (n_layers, B, d_inner, d_state),
    per gate g of the integration mode: g_v, g_current, g_adapt, g_refractory (n_layers, B, d_model).

RMSNorm is ReduceMean(x^2) + eps, Sqrt, Div, Mul (RMSNormalization exists only from opset
23); eps is the config's, recorded in the metadata. The tied head is MatMul with Transpose(E):
the embedding is stored once. Every export is checked against the PyTorch model in
onnxruntime (logits, spikes, states), like the Mamba-Spike backbone exporter.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from neurodeploy.errors import NeurodeployError, UnsupportedCapabilityError
from neurodeploy.exporters.onnx_graph import GraphBuilder, stack_states
from neurodeploy.exporters.onnx_mamba import MambaLayerWeights, emit_layer_sequence, emit_layer_step
from neurodeploy.formats.onnx_spikemamba import GATE_FIELDS, state_names, state_to_feeds
from neurodeploy.model.spikemamba_lm.model import FAMILY_NAME, SpikeMambaLM
from neurodeploy.model.spikemamba_lm.neuron import ADAPT_DECAY, ADAPT_GAIN

DEFAULT_OPSET = 20
DEFAULT_TOLERANCE = 1e-4
FORMAT = "neurodeploy.spikemamba-lm.{graph}/1"
GraphKind = Literal["full", "step"]


class SpikeMambaOnnxError(NeurodeployError, ValueError):
    """The exported graph does not reproduce the PyTorch model, or an argument is unusable."""


@dataclass(frozen=True)
class SpikeMambaExportResult:
    path: Path
    graph: GraphKind
    opset: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: int
    custom_nodes: int  # ai.neurodeploy nodes: one per Mamba layer
    scan_nodes: int  # ONNX Scan nodes of the LIF gates (full graph)
    size_bytes: int
    export_seconds: float
    parity_logits_max_abs: float
    parity_states_max_abs: float
    parity_spikes_identical: bool
    parity_sample: tuple[int, int]
    tolerance: float

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


class _PrefixedBuilder(GraphBuilder):
    """A Scan body: its value names must not shadow the outer graph's."""

    def _name(self, hint: str) -> str:
        return f"{self.prefix}/{super()._name(hint)}"


# -- shared pieces ---------------------------------------------------------------------------------
def _arr(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float32).cpu().numpy())


def _rms_norm(b: GraphBuilder, x: str, weight: torch.Tensor, eps: float, tag: str) -> str:
    mean_square = b.op("ReduceMean", b.op("Mul", x, x), b.ints(-1), keepdims=1, name=f"{tag}.mean_square")
    root = b.op("Sqrt", b.op("Add", mean_square, b.scalar(float(eps), np.float32)))
    return b.op("Mul", b.op("Div", x, root), b.weight(f"{tag}.weight", _arr(weight)), name=tag)


class _GateWeights:
    """One LIF gate's parameters as graph values of builder `b`."""

    def __init__(self, b: GraphBuilder, lif, tag: str):
        p = lif.parameters_tuple()
        self.beta_mem = b.weight(f"{tag}.beta_mem", _arr(p.beta_mem))
        self.beta_syn = b.weight(f"{tag}.beta_syn", _arr(p.beta_syn))
        self.threshold = b.weight(f"{tag}.threshold", _arr(p.threshold))
        self.adaptive = p.adapt_gain is not None
        if self.adaptive:
            self.adapt_gain = b.weight(f"{tag}.threshold_adapt", _arr(p.adapt_gain))
            self.adapt_scale = b.weight(f"{tag}.threshold_scale", _arr(p.adapt_scale))
        self.period = float(p.refractory_period)
        self.reset = p.reset_mode


def _emit_gate_step(b: GraphBuilder, w: _GateWeights, x: str, v: str, current: str, adapt: str,
                    refractory: str) -> tuple[str, tuple[str, str, str, str]]:
    """The neuron of `neurodeploy.model.spikemamba_lm.neuron.gate_step`, same op order."""
    one, zero = b.scalar(1.0, np.float32), b.scalar(0.0, np.float32)
    current = b.op("Add", b.op("Mul", w.beta_syn, current), x)
    open_ = b.op("Cast", b.op("LessOrEqual", refractory, zero), to=TensorProto.FLOAT)
    v = b.op("Add", b.op("Mul", w.beta_mem, v), b.op("Mul", current, open_))
    if w.adaptive:
        threshold = b.op("Add", w.threshold, b.op("Mul", b.op("Mul", w.adapt_gain, adapt), w.adapt_scale))
    else:
        threshold = w.threshold
    spikes = b.op("Cast", b.op("GreaterOrEqual", v, threshold), to=TensorProto.FLOAT)
    if w.reset == "subtract":
        v = b.op("Sub", v, b.op("Mul", spikes, threshold))
    else:
        v = b.op("Mul", v, b.op("Sub", one, spikes))
    if w.adaptive:
        adapt = b.op("Add", b.op("Mul", b.scalar(ADAPT_DECAY, np.float32), adapt),
                     b.op("Mul", b.scalar(ADAPT_GAIN, np.float32), spikes))
    else:
        adapt = b.op("Identity", adapt)
    counted_down = b.op("Max", b.op("Sub", refractory, one), zero)
    refractory = b.op("Where", b.op("Greater", spikes, b.scalar(0.5, np.float32)), b.scalar(w.period, np.float32),
                      counted_down)
    return spikes, (v, current, adapt, refractory)


def _gate_scan(b: GraphBuilder, lif, x: str, state: tuple[str, ...], tag: str, d: int) -> tuple[str, tuple[str, ...]]:
    """A Scan over time (axis 1 of x (B, L, d)) whose body is the neuron for one token."""
    body = _PrefixedBuilder(tag, opset=b.opset)
    names = [body.input(f"{tag}/{f}_in", TensorProto.FLOAT, ["batch", d]) for f in GATE_FIELDS]
    x_t = body.input(f"{tag}/x_t", TensorProto.FLOAT, ["batch", d])
    spikes, new_state = _emit_gate_step(body, _GateWeights(body, lif, tag), x_t, *names)
    for field, value in zip(GATE_FIELDS, new_state):
        body.output(value, f"{tag}/{field}_out", TensorProto.FLOAT, ["batch", d])
    body.output(spikes, f"{tag}/spikes_t", TensorProto.FLOAT, ["batch", d])
    graph = helper.make_graph(body.nodes, f"{tag}.lif_step", body.inputs, body.outputs, body.initializers)
    outputs = b.op("Scan", *state, x, outputs=5, num_scan_inputs=1, scan_input_axes=[1], scan_output_axes=[1],
                   body=graph, name=f"{tag}.lif_scan")
    return outputs[4], tuple(outputs[:4])


def _gating(b: GraphBuilder, gate_weights: tuple[str, str] | None, value: str, spikes: str) -> str:
    """hard: value * s; soft: value * (g * s + (1 - g)), with `gate_weights` = (g, 1 - g)."""
    if gate_weights is None:
        return b.op("Mul", value, spikes)
    g, one_minus_g = gate_weights
    return b.op("Mul", value, b.op("Add", b.op("Mul", g, spikes), one_minus_g))


def _pool(b: GraphBuilder, layer, out: str, membranes: list[str], tag: str) -> str:
    pooling = layer.config.temporal_pooling
    if pooling == "learnable":
        return b.op("Mul", out, b.weight(f"{tag}.pooling_scale", _arr(1 + layer.temporal_pooling_weights)))
    if pooling == "adaptive":
        means = [b.op("ReduceMean", b.op("Abs", v), keepdims=0) for v in membranes]
        activity = means[0] if len(means) == 1 else b.op("Sum", *means)
        return b.op("Mul", out, b.op("Sigmoid", activity))
    return out


def _layer(b: GraphBuilder, model: SpikeMambaLM, i: int, x: str, states: dict[str, str], *, step: bool):
    """x + pool(S(rmsnorm(x))) for layer i; returns (x, spikes per gate, new states per name)."""
    block = model.layers[i]
    layer = block.spiking_mamba
    c = model.config
    tag = f"layers.{i}"
    a = _rms_norm(b, x, block.norm.weight, c.rms_norm_eps, f"{tag}.norm")
    spikes, new_states, membranes = {}, {}, []

    def gate(name: str, value: str) -> str:
        lif = getattr(layer, f"{name}_spiking")
        state = tuple(states[f"{name}_{f}"] for f in GATE_FIELDS)
        if step:
            s, out_state = _emit_gate_step(b, _GateWeights(b, lif, f"{tag}.{name}"), value, *state)
        else:
            s, out_state = _gate_scan(b, lif, value, state, f"{tag}.{name}", c.d_model)
        spikes[name] = s
        new_states.update({f"{name}_{f}": o for f, o in zip(GATE_FIELDS, out_state)})
        membranes.append(out_state[0])
        return s

    weights = MambaLayerWeights.from_module(layer.mamba)
    soft = None
    if c.spike_gate_mode == "soft":
        gating = c.spike_integration != "residual"  # residual adds g * s, it gates nothing
        soft = (b.weight(f"{tag}.spike_gate", _arr(layer.spike_gate)),
                b.weight(f"{tag}.one_minus_spike_gate", _arr(1 - layer.spike_gate)) if gating else "")
    m_in = _gating(b, soft, a, gate("pre", a)) if "pre" in c.gates else a
    if step:
        out, mixed = emit_layer_step(b, weights, m_in, f"{tag}.mamba", conv_state=states["conv_state"],
                                     ssm_state=states["ssm_state"])
    else:
        out, mixed = emit_layer_sequence(b, weights, m_in, f"{tag}.mamba", h0=states["ssm_state"],
                                         conv_state=states["conv_state"])
    new_states.update(conv_state=mixed.conv_state, ssm_state=mixed.ssm_state)
    if "post" in c.gates:
        out = _gating(b, soft, out, gate("post", out))
    if "residual" in c.gates:
        s = gate("residual", a)
        out = b.op("Add", out, b.op("Mul", soft[0], s))  # residual is soft-only (config check)
    out = _pool(b, layer, out, membranes, tag)
    return b.op("Add", x, out), spikes, new_states


def _state_shapes(model: SpikeMambaLM, batch="batch") -> dict[str, list]:
    c = model.config
    L = c.n_layer
    shapes = {"conv_state": [L, batch, c.d_inner, c.d_conv], "ssm_state": [L, batch, c.d_inner, c.d_state]}
    shapes.update({f"{g}_{f}": [L, batch, c.d_model] for g in c.gates for f in GATE_FIELDS})
    return shapes


def _outputs(b: GraphBuilder, model: SpikeMambaLM, embedding: str, x: str, per_layer_spikes: list,
             per_layer_states: list, time_axis: bool) -> None:
    c = model.config
    head = b.op("Transpose", embedding, perm=[1, 0])  # tied: the embedding is stored once
    logits = b.op("MatMul", _rms_norm(b, x, model.norm_f.weight, c.rms_norm_eps, "norm_f"), head, name="lm_head")
    b.output(logits, "logits", TensorProto.FLOAT, ["batch", "time", c.vocab_size] if time_axis else ["batch", c.vocab_size])
    per_token = ["time", c.d_model] if time_axis else [c.d_model]
    for g in c.gates:
        layers = [s[g] for s in per_layer_spikes]
        if time_axis:  # (B, L, d) each: the length is dynamic, so Unsqueeze + Concat
            stacked = b.op("Concat", *[b.op("Unsqueeze", s, b.ints(0)) for s in layers], axis=0)
        else:
            stacked = stack_states(b, layers, (c.d_model,))
        b.output(stacked, f"spikes_{g}", TensorProto.FLOAT, [c.n_layer, "batch", *per_token])
    shapes = _state_shapes(model)
    for name in state_names(model):
        trailing = tuple(shapes[name][2:])
        b.output(stack_states(b, [s[name] for s in per_layer_states], trailing), f"{name}_out", TensorProto.FLOAT,
                 shapes[name])


def _full_graph(b: GraphBuilder, model: SpikeMambaLM) -> None:
    c = model.config
    tokens = b.input("tokens", TensorProto.INT64, ["batch", "time"])
    embedding = b.weight("embedding.weight", _arr(model.embedding.weight))
    x = b.op("Gather", embedding, tokens, axis=0, name="embedding")
    batch = b.op("Shape", tokens, start=0, end=1)
    zero = numpy_helper.from_array(np.zeros(1, np.float32))

    def zeros(*trailing: int) -> str:
        return b.op("ConstantOfShape", b.op("Concat", batch, b.ints(*trailing), axis=0), value=zero)

    # a zero conv history (not the emitter's zero padding) so that conv_state_out comes out too
    initial = {"conv_state": zeros(c.d_inner, c.d_conv), "ssm_state": zeros(c.d_inner, c.d_state)}
    neuron_zero = zeros(c.d_model)
    initial.update({f"{g}_{f}": neuron_zero for g in c.gates for f in GATE_FIELDS})
    spikes, states = [], []
    for i in range(c.n_layer):
        x, s, st = _layer(b, model, i, x, initial, step=False)
        spikes.append(s)
        states.append(st)
    _outputs(b, model, embedding, x, spikes, states, time_axis=True)


def _step_graph(b: GraphBuilder, model: SpikeMambaLM) -> None:
    c = model.config
    token = b.input("token", TensorProto.INT64, ["batch"])
    stacked = {name: b.input(name, TensorProto.FLOAT, shape) for name, shape in _state_shapes(model).items()}
    embedding = b.weight("embedding.weight", _arr(model.embedding.weight))
    x = b.op("Gather", embedding, token, axis=0, name="embedding")
    spikes, states = [], []
    for i in range(c.n_layer):
        index = b.scalar(i, np.int64)
        layer_states = {name: b.op("Gather", value, index, axis=0) for name, value in stacked.items()}
        x, s, st = _layer(b, model, i, x, layer_states, step=True)
        spikes.append(s)
        states.append(st)
    _outputs(b, model, embedding, x, spikes, states, time_axis=False)


# -- entry points ----------------------------------------------------------------------------------
def build_spikemamba_model(model: SpikeMambaLM, graph: GraphKind, *, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    if graph not in ("full", "step"):
        raise SpikeMambaOnnxError(f"graph kind {graph!r}; expected 'full' or 'step'")
    if graph == "step" and not model.config.streamable:
        raise UnsupportedCapabilityError(FAMILY_NAME, "onnx_step", "temporal_pooling 'adaptive' is not causal (it scales "
                                         "by the membrane after the whole call, over the batch): no step graph")
    if graph == "full" and not model.config.streamable:
        warnings.warn("temporal_pooling 'adaptive': the full graph reproduces upstream's per-call, batch-coupled "
                      "scaling; its outputs depend on the sequence length and the other rows", stacklevel=2)
    for name, tensor in model.state_dict().items():
        if not torch.isfinite(tensor).all():
            raise SpikeMambaOnnxError(f"weight {name!r} holds NaN or inf; the checkpoint is damaged")
    from neurodeploy import __version__

    b = GraphBuilder(graph, opset=opset)
    (_full_graph if graph == "full" else _step_graph)(b, model)
    c = model.config
    metadata = {
        "neurodeploy.format": FORMAT.format(graph=graph),
        "neurodeploy.family": FAMILY_NAME,
        "neurodeploy.graph": graph,
        "neurodeploy.model_config": c.to_json(),
        "neurodeploy.rms_norm_eps": repr(c.rms_norm_eps),
        "neurodeploy.gates": ",".join(c.gates),
        "neurodeploy.state_inputs": ",".join(state_names(model)) if graph == "step" else "",
        "neurodeploy.state_outputs": ",".join(f"{n}_out" for n in state_names(model)),
        "neurodeploy.opset": str(opset),
    }
    return b.model(f"spikemamba_lm_{graph}", producer_version=__version__,
                   doc=f"SpikeMamba LM, {graph} graph (see neurodeploy.exporters.onnx_spikemamba)", metadata=metadata)


def export_spikemamba(model: SpikeMambaLM, path: str | Path, graph: GraphKind, *, opset: int = DEFAULT_OPSET,
                      sample: torch.Tensor | None = None, tolerance: float = DEFAULT_TOLERANCE) -> SpikeMambaExportResult:
    """Write one graph and check it in a plain onnxruntime session against the PyTorch model.

    `sample`: token ids (B, T); by default seeded ids at batch 2 and 9 tokens. Raises
    `SpikeMambaOnnxError` when logits or states differ beyond `tolerance` or a spike differs.
    """
    import onnxruntime

    path = Path(path)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said once by the caller (capabilities / model load)
        proto = build_spikemamba_model(model, graph, opset=opset)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    seconds = time.perf_counter() - start
    onnx.checker.check_model(str(path), full_check=True)
    if sample is None:
        sample = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = model(sample)
    names = state_names(model)
    if graph == "full":
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"tokens": sample.numpy()})))
        logits_err = _max_abs(outputs["logits"], reference.logits)
        spikes_ok = all(np.array_equal(outputs[f"spikes_{g}"], _stack_spikes(reference.spikes, g, model.config.n_layer))
                        for g in model.config.gates)
        final = {n: outputs[f"{n}_out"] for n in names}
    else:
        feeds = state_to_feeds(model.initial_state(sample.shape[0]), model.config.gates)
        logits_err, spikes_ok = 0.0, True
        for t in range(sample.shape[1]):
            out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"token": sample[:, t].numpy(), **feeds})))
            feeds = {n: out[f"{n}_out"] for n in names}
            logits_err = max(logits_err, _max_abs(out["logits"], reference.logits[:, t]))
            spikes_ok &= all(np.array_equal(out[f"spikes_{g}"], _stack_spikes(reference.spikes, g, model.config.n_layer)[:, :, t])
                             for g in model.config.gates)
        final = feeds
    expected = state_to_feeds(reference.state, model.config.gates)
    states_err = max(_max_abs(final[n], expected[n]) for n in names)
    if not (logits_err <= tolerance and states_err <= tolerance and spikes_ok):
        raise SpikeMambaOnnxError(
            f"{path}: onnxruntime differs from PyTorch (logits {logits_err:.3g}, states {states_err:.3g}, tolerance "
            f"{tolerance:g}; spikes {'identical' if spikes_ok else 'DIFFER'}) on tokens of shape {tuple(sample.shape)}; "
            f"the {graph} graph is not a faithful export")
    return SpikeMambaExportResult(
        path=path, graph=graph, opset=opset, inputs=tuple(i.name for i in proto.graph.input),
        outputs=tuple(o.name for o in proto.graph.output), nodes=len(proto.graph.node),
        custom_nodes=sum(1 for n in proto.graph.node if n.domain == "ai.neurodeploy"),
        scan_nodes=sum(1 for n in proto.graph.node if n.op_type == "Scan"), size_bytes=path.stat().st_size,
        export_seconds=seconds, parity_logits_max_abs=logits_err, parity_states_max_abs=states_err,
        parity_spikes_identical=spikes_ok, parity_sample=(int(sample.shape[0]), int(sample.shape[1])), tolerance=tolerance,
    )


def _stack_spikes(spikes: dict[str, torch.Tensor], gate: str, n_layers: int) -> np.ndarray:
    return torch.stack([spikes[f"layers.{i}.{gate}"] for i in range(n_layers)]).numpy()


def _max_abs(a, b) -> float:
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return float(diff.max()) if diff.size else 0.0

