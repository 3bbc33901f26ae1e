"""Spiking front-end -> NIR graph (`frontend.nir`), and the conventions every reader relies on.

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

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import torch

from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.frontend import LAYER_NAMES, SpikingFrontend
from neurodeploy.model.mamba_spike.model import MambaSpike

FORMAT = "neurodeploy.frontend/1"
POOL_REWRITES = ("avg", "sum")
# synthetic sample for the pool_rewrite report when the user supplies none
SYNTHETIC_SAMPLES, SYNTHETIC_STEPS, SYNTHETIC_RATE, SYNTHETIC_SEED = 16, 30, 0.1, 0


class UnsupportedLayerError(ValueError):
    """A layer of the model that NIR cannot express, with the ways out in the message."""


@dataclass(frozen=True)
class PoolRewriteReport:
    """The measured effect of replacing max pooling (asked for with `pool_rewrite`).

    Spike counts are totals over the sample (all samples, steps and neurons) per LIF layer.
    `changed_predictions` lists the sample indices whose argmax class changed; it is None
    when only a front-end (no backbone) was given.
    """

    rewrite: str
    sample: str
    n_samples: int
    n_steps: int
    spikes_before: dict[str, int]
    spikes_after: dict[str, int]
    changed_predictions: tuple[int, ...] | None
    # layers that spiked before and are silent after; layers whose neurons fire at >= SATURATED of
    # their steps after (and more than before): either way the layer stops carrying information
    silent_layers: tuple[str, ...] = ()
    saturated_layers: tuple[str, ...] = ()
    neuron_steps: dict[str, int] = dataclasses.field(default_factory=dict)  # per layer: neurons x steps x samples
    logit_drift_max: float | None = None  # max |logit after - logit before| over samples and classes
    logit_drift_mean: float | None = None
    synthetic: bool = True  # measured on synthetic counts, not on the user's recordings

    @property
    def prediction_agreement(self) -> float | None:
        if self.changed_predictions is None:
            return None
        return 1.0 - len(self.changed_predictions) / self.n_samples

    def summary(self) -> str:
        def rate(name: str, count: int) -> str:
            steps = self.neuron_steps.get(name)
            return f" ({count / steps:.1%})" if steps else ""

        layers = ", ".join(
            f"{name} {self.spikes_before[name]:,}{rate(name, self.spikes_before[name])} -> "
            f"{self.spikes_after[name]:,}{rate(name, self.spikes_after[name])}" for name in self.spikes_before
        )
        if self.changed_predictions is None:
            predictions = "predictions not measured (front-end only)"
        else:
            predictions = (f"prediction agreement {self.prediction_agreement:.0%} "
                           f"({len(self.changed_predictions)}/{self.n_samples} changed")
            predictions += f", samples {list(self.changed_predictions)})" if self.changed_predictions else ")"
        if self.logit_drift_max is not None:
            predictions += f"; logit drift max {self.logit_drift_max:.3g}, mean {self.logit_drift_mean:.3g}"
        warnings_ = []
        if self.silent_layers:
            warnings_.append(f"WARNING: {', '.join(self.silent_layers)} fell SILENT (no spikes after the rewrite): "
                             "the layers after it see nothing; fine-tune instead (neurodeploy train --init-from)")
        if self.saturated_layers:
            warnings_.append(f"WARNING: {', '.join(self.saturated_layers)} SATURATED (>= {SATURATED:.0%} of "
                             "neuron-steps spike after the rewrite); fine-tune instead (neurodeploy train --init-from)")
        last = list(self.spikes_after)[-1] if self.spikes_after else None
        if last is not None and self.spikes_after[last] == 0 and self.changed_predictions is not None:
            warnings_.append(f"WARNING: {last} made no spikes after the rewrite, so the backbone saw none and the "
                             "prediction agreement says nothing")
        if self.synthetic:
            warnings_.append("measured on SYNTHETIC samples, not on your recordings: pass --calibration FILE "
                             "to measure on data you name")
        return (f"max pooling replaced by {self.rewrite} pooling, measured on {self.sample}: "
                f"spikes {layers}; {predictions}" + "".join(f". {w}" for w in warnings_))

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "prediction_agreement": self.prediction_agreement},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PoolRewriteReport:
        data = json.loads(text)
        data.pop("prediction_agreement", None)
        if data["changed_predictions"] is not None:
            data["changed_predictions"] = tuple(data["changed_predictions"])
        for key in ("silent_layers", "saturated_layers"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


# -- pooling rewrite ---------------------------------------------------------------------
def synthetic_event_sample(config: MambaSpikeConfig, *, n_samples: int = SYNTHETIC_SAMPLES,
                           n_steps: int = SYNTHETIC_STEPS, rate: float = SYNTHETIC_RATE,
                           seed: int = SYNTHETIC_SEED) -> torch.Tensor:
    """Seeded Poisson event counts `(N, T, 2, H, W)` at `rate` events per pixel per step."""
    generator = torch.Generator().manual_seed(seed)
    shape = (n_samples, n_steps, config.input_channels, config.input_height, config.input_width)
    return torch.poisson(torch.full(shape, rate), generator=generator)


def _with_pooling(model: MambaSpike | SpikingFrontend, pooling: str) -> MambaSpike | SpikingFrontend:
    """The same weights under another pooling (pooling has no parameters)."""
    config = dataclasses.replace(model.config, pooling=pooling)
    rewritten = type(model)(config)
    rewritten.load_state_dict(model.state_dict())
    return rewritten.eval()


SATURATED = 0.5  # fraction of neuron-steps spiking at which a layer counts as saturated


@torch.no_grad()
def rewrite_max_pooling(model: MambaSpike | SpikingFrontend, pool_rewrite: str,
                        sample: torch.Tensor | None = None, *,
                        sample_description: str | None = None) -> tuple[MambaSpike | SpikingFrontend, PoolRewriteReport]:
    """Replace max pooling by `pool_rewrite` ("avg" or "sum") and measure what changes.

    The weights are kept as they are. Neither rewrite is scale-equivalent to max pooling:
    avg of four currents is at most their max, and sum of four currents is up to four times
    it for positive currents (and smaller for mixed signs), so spike counts move either way;
    the report says by how much on `sample` (`(N, T, 2, H, W)` event counts) or, when none is
    given, on a seeded synthetic Poisson sample. `sample_description` names the data (a
    calibration file); without it a given sample is reported as synthetic.
    """
    if pool_rewrite not in POOL_REWRITES:
        raise ValueError(f"--pool-rewrite {pool_rewrite!r}: expected one of {POOL_REWRITES} (pool_rewrite= in Python; "
                         "leave it out to refuse max pooling)")
    if model.config.pooling != "max":
        raise ValueError(f"--pool-rewrite {pool_rewrite} given, but the model pools with {model.config.pooling!r}, "
                         "not max: nothing to rewrite; leave --pool-rewrite out (pool_rewrite=None)")
    synthetic = sample is None or sample_description is None
    if sample is None:
        sample = synthetic_event_sample(model.config)
        description = (f"synthetic samples ({SYNTHETIC_SAMPLES} x {SYNTHETIC_STEPS} steps of Poisson counts, "
                       f"rate {SYNTHETIC_RATE}, seed {SYNTHETIC_SEED})")
    elif sample_description is None:
        description = f"synthetic samples ({sample.shape[0]} x {sample.shape[1]} steps, given without a name)"
    else:
        description = f"{sample_description} ({sample.shape[0]} samples x {sample.shape[1]} steps)"
    rewritten = _with_pooling(model, pool_rewrite)
    model = model.eval()

    def measure(m: MambaSpike | SpikingFrontend) -> tuple[dict[str, int], torch.Tensor | None]:
        frontend = m.spiking_frontend if isinstance(m, MambaSpike) else m
        spikes, _ = frontend(sample)
        counts = {name: int(s.sum().item()) for name, s in zip(LAYER_NAMES, spikes)}
        logits = m.backbone_forward(spikes[-1]) if isinstance(m, MambaSpike) else None
        return counts, logits

    before, logits_before = measure(model)
    after, logits_after = measure(rewritten)
    changed, drift_max, drift_mean = None, None, None
    if logits_before is not None:
        moved = logits_before.argmax(-1) != logits_after.argmax(-1)
        changed = tuple(int(i) for i in torch.nonzero(moved).flatten())
        drift = (logits_after - logits_before).abs()
        drift_max, drift_mean = float(drift.max()), float(drift.mean())
    neuron_steps = {name: int(n) for name, n in zip(LAYER_NAMES, _neuron_steps(model, sample))}
    silent = tuple(name for name in before if before[name] > 0 and after[name] == 0)
    saturated = tuple(name for name in before if after[name] > before[name]
                      and after[name] >= SATURATED * neuron_steps[name])
    report = PoolRewriteReport(pool_rewrite, description, int(sample.shape[0]), int(sample.shape[1]),
                               before, after, changed, silent, saturated, neuron_steps, drift_max, drift_mean,
                               synthetic)
    return rewritten, report


def _neuron_steps(model: MambaSpike | SpikingFrontend, sample: torch.Tensor) -> list[int]:
    """Neurons x steps x samples of each LIF layer (the most spikes a layer can make on `sample`)."""
    frontend = model.spiking_frontend if isinstance(model, MambaSpike) else model
    with torch.no_grad():
        spikes, _ = frontend(sample[:, :1])
    return [int(s[0, 0].numel()) * int(sample.shape[0]) * int(sample.shape[1]) for s in spikes]


# -- export ------------------------------------------------------------------------------
def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def _lif_node(config: MambaSpikeConfig, shape: tuple[int, ...], dt_s: float) -> nir.NIRNode:
    metadata = {"dt": dt_s, "beta": float(config.beta), "reset": config.reset,
                "reset_timing": config.reset_timing, "compare": "greater"}
    threshold = np.full(shape, config.threshold, dtype=np.float32)
    if config.beta == 1.0:
        # no leak: NIR's IF (dv/dt = R I) with R = 1/dt integrates I once per step
        return nir.IF(r=np.full(shape, 1.0 / dt_s, dtype=np.float32), v_threshold=threshold,
                      v_reset=np.zeros(shape, np.float32), metadata=metadata)
    tau = dt_s / (1.0 - config.beta)
    return nir.LIF(tau=np.full(shape, tau, dtype=np.float32), r=np.full(shape, tau / dt_s, dtype=np.float32),
                   v_leak=np.zeros(shape, np.float32), v_threshold=threshold,
                   v_reset=np.zeros(shape, np.float32), metadata=metadata)


def _conv_node(conv: torch.nn.Conv2d, input_shape: tuple[int, int], **metadata) -> nir.Conv2d:
    return nir.Conv2d(input_shape=input_shape, weight=_array(conv.weight), stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                      bias=_array(conv.bias), metadata=metadata)


def _refuse_max_pooling(frontend: SpikingFrontend) -> None:
    raise UnsupportedLayerError(
        "spiking_frontend pools with MaxPool2d(2) after conv1 (pool1) and conv2 (pool2); NIR has no max "
        "pooling, so this front-end cannot be exported exactly. Ways out: (1) export with "
        "--pool-rewrite avg|sum (pool_rewrite='avg' or 'sum' in Python; an approximation: the export measures and reports how many spikes "
        "per layer and which predictions change); (2) fine-tune with pooling='avg' or 'sum' "
        "(MambaSpikeConfig.deployable()) and export that; (3) keep the front-end in PyTorch "
        "(neurodeploy.runtimes.torch.TorchFrontendRuntime)."
    )


def export_frontend(model: MambaSpike | SpikingFrontend, dt_s: float, *, pool_rewrite: str | None = None,
                    sample: torch.Tensor | None = None) -> nir.NIRGraph:
    """The spiking front-end as a NIR graph (layout and metadata in this module's docstring).

    A max-pooling model is refused unless `pool_rewrite` ("avg" | "sum") asks for the
    rewrite; the measured effect (PoolRewriteReport) is then warned about and stored as JSON
    under the graph metadata key "pool_rewrite_report".
    """
    if not isinstance(model, (MambaSpike, SpikingFrontend)):
        raise TypeError(f"export_frontend takes a MambaSpike or SpikingFrontend, not {type(model).__name__}")
    if not (isinstance(dt_s, (int, float)) and math.isfinite(dt_s) and dt_s > 0):
        raise ValueError(f"dt_s={dt_s!r}; expected the bin width in seconds (> 0), e.g. 1e-3 for 1 ms bins")
    report = None
    if model.config.pooling == "max":
        if pool_rewrite is None:
            _refuse_max_pooling(model.spiking_frontend if isinstance(model, MambaSpike) else model)
        model, report = rewrite_max_pooling(model, pool_rewrite, sample)
        warnings.warn(report.summary(), stacklevel=2)
    elif pool_rewrite is not None:
        raise ValueError(f"--pool-rewrite {pool_rewrite} given, but the model pools with "
                         f"{model.config.pooling!r}, not max: nothing to rewrite; leave --pool-rewrite out (pool_rewrite=None)")
    frontend = model.spiking_frontend if isinstance(model, MambaSpike) else model
    config = frontend.config
    dt_s = float(dt_s)

    pool_type = nir.AvgPool2d if config.pooling == "avg" else nir.SumPool2d
    pool_metadata = {"pool_input": "current"}
    if report is not None:
        pool_metadata["rewritten_from"] = "max"
    in_shape = (config.input_channels, config.input_height, config.input_width)
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type=np.array(in_shape), metadata={"graded_input": True, "channel_order": "OFF,ON"}),
    }
    edges: list[tuple[str, str]] = []
    previous, spatial = "input", (config.input_height, config.input_width)
    convs = (frontend.conv1, frontend.conv2, frontend.conv3)
    for index, (name, shape) in enumerate(zip(LAYER_NAMES, frontend.layer_shapes())):
        k = index + 1
        nodes[f"conv{k}"] = _conv_node(convs[index], spatial)
        edges.append((previous, f"conv{k}"))
        into_lif = f"conv{k}"
        if index < 2:
            nodes[f"pool{k}"] = pool_type(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                          padding=np.array([0, 0]), metadata=dict(pool_metadata))
            edges.append((f"conv{k}", f"pool{k}"))
            into_lif = f"pool{k}"
        nodes[name] = _lif_node(config, shape, dt_s)
        edges.append((into_lif, name))
        if config.recurrent:
            recurrent = getattr(frontend, f"recurrent{k}")
            nodes[f"rec{k}"] = _conv_node(recurrent, shape[1:], recurrent_of=name, delay_steps=1, active_from_step=1)
            edges += [(name, f"rec{k}"), (f"rec{k}", name)]
        previous, spatial = name, shape[1:]
    last = frontend.layer_shapes()[-1]
    nodes["flatten"] = nir.Flatten(input_type={"input": np.array(last)}, start_dim=0, end_dim=-1,
                                   metadata={"order": "CHW"})
    nodes["output"] = nir.Output(output_type=np.array([int(np.prod(last))]))
    edges += [(previous, "flatten"), ("flatten", "output")]

    from neurodeploy import __version__
    metadata = {"dt": dt_s, "producer": f"neurodeploy {__version__}", "format": FORMAT,
                "model_config": config.to_json(), "lif_layers": ",".join(LAYER_NAMES)}
    if report is not None:
        metadata["pool_rewrite_report"] = report.to_json()
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


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
        raise FileNotFoundError(f"NIR file {path} does not exist; write one with `neurodeploy export` or write_frontend()")
    try:
        try:
            graph = nir.read(path)
        except ValueError:
            # graphs from other writers often leave shapes undefined or scalar (snnTorch's LIF
            # parameters are 0-d); read them untyped and let the importer check the shapes
            graph = nir.read(path, type_check=False)
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a readable NIR graph ({error}); re-export it with write_frontend()") from error
    graph.metadata = {k: _plain(v) for k, v in graph.metadata.items()}
    for node in graph.nodes.values():
        node.metadata = {k: _plain(v) for k, v in node.metadata.items()}
    return graph
