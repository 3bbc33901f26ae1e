"""Spiking front-end -> NIR graph (`frontend.nir`), and the conventions every reader relies on.

The graph layout, the metadata keys and the LIF/dt mapping are the toolkit's NIR format,
defined once in `neurodeploy.formats.nir_frontend` (docs/time_and_lif.md explains the mapping);
this module builds such a graph from a model, and rewrites max pooling on request.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass

import nir
import numpy as np
import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.formats.nir_frontend import FORMAT, RECURRENT_METADATA, lif_node
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.frontend import LAYER_NAMES, SpikingFrontend
from neurodeploy.model.mamba_spike.model import MambaSpike

POOL_REWRITES = ("avg", "sum")
# synthetic sample for the pool_rewrite report when the user supplies none
SYNTHETIC_SAMPLES, SYNTHETIC_STEPS, SYNTHETIC_RATE, SYNTHETIC_SEED = 16, 30, 0.1, 0


class UnsupportedLayerError(NeurodeployError, ValueError):
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
                        sample_description: str | None = None
                        ) -> tuple[MambaSpike | SpikingFrontend, PoolRewriteReport]:
    """Replace max pooling by `pool_rewrite` ("avg" or "sum") and measure what changes.

    The weights are kept as they are. Neither rewrite is scale-equivalent to max pooling:
    avg of four currents is at most their max, and sum of four currents is up to four times
    it for positive currents (and smaller for mixed signs), so spike counts move either way;
    the report says by how much on `sample` (`(N, T, 2, H, W)` event counts) or, when none is
    given, on a seeded synthetic Poisson sample. `sample_description` names the data (a
    calibration file); without it a given sample is reported as synthetic.
    """
    if pool_rewrite not in POOL_REWRITES:
        raise UnsupportedLayerError(f"--pool-rewrite {pool_rewrite!r}: expected one of {POOL_REWRITES} "
                                    "(pool_rewrite= in Python; leave it out to refuse max pooling)")
    if model.config.pooling != "max":
        raise UnsupportedLayerError(f"--pool-rewrite {pool_rewrite} given, but the model pools with "
                                    f"{model.config.pooling!r}, not max: nothing to rewrite; leave --pool-rewrite out "
                                    "(pool_rewrite=None)")
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


def _conv_node(conv: torch.nn.Conv2d, input_shape: tuple[int, int], **metadata) -> nir.Conv2d:
    return nir.Conv2d(input_shape=input_shape, weight=_array(conv.weight), stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                      bias=_array(conv.bias), metadata=metadata)


def _refuse_max_pooling(frontend: SpikingFrontend) -> None:
    raise UnsupportedLayerError(
        "spiking_frontend pools with MaxPool2d(2) after conv1 (pool1) and conv2 (pool2); NIR has no max "
        "pooling, so this front-end cannot be exported exactly. Ways out: (1) export with "
        "--pool-rewrite avg|sum (pool_rewrite='avg' or 'sum' in Python; an approximation: the export measures "
        "and reports how many spikes "
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
        raise UnsupportedLayerError(f"dt_s={dt_s!r}; expected the bin width in seconds (> 0), e.g. 1e-3 for 1 ms bins")
    report = None
    if model.config.pooling == "max":
        if pool_rewrite is None:
            _refuse_max_pooling(model.spiking_frontend if isinstance(model, MambaSpike) else model)
        model, report = rewrite_max_pooling(model, pool_rewrite, sample)
        warnings.warn(report.summary(), stacklevel=2)
    elif pool_rewrite is not None:
        raise UnsupportedLayerError(f"--pool-rewrite {pool_rewrite} given, but the model pools with "
                                    f"{model.config.pooling!r}, not max: nothing to rewrite; leave --pool-rewrite out "
                                    "(pool_rewrite=None)")
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
        nodes[name] = lif_node(shape, dt_s, beta=config.beta, threshold=config.threshold, reset=config.reset,
                               reset_timing=config.reset_timing)
        edges.append((into_lif, name))
        if config.recurrent:
            recurrent = getattr(frontend, f"recurrent{k}")
            nodes[f"rec{k}"] = _conv_node(recurrent, shape[1:], recurrent_of=name, **RECURRENT_METADATA)
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
