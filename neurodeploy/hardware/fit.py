"""Does a front-end fit a chip? Per target, per layer, with the reason and what would make it fit.

Checks, each against a cited number of `limits.json`: the neuron model (leak, reset mode and
timing, compare), pooling kind and where it sits, kernel size, stride, channels, neuron /
synapse / kernel memory, weight precision (and the quantisation error it implies on these
weights), input encoding (graded counts vs binary spikes) and recurrence.

Decisions:
- Pooling of currents before the neuron (this toolkit's layout) folds into the synapse on
  every chip that has convolution: conv k, stride s + non-overlapping sum pool P is one conv of
  kernel k + (P-1)s and stride sP (as the netx export does), so geometry checks use the folded
  conv. Average pooling folds the same way with weights / P^2.
- A strict compare (v > thr) on a chip that spikes on v >= thr is reported as a note, not a
  blocker: the two differ only when a membrane equals the threshold exactly.
- Loihi cores hold a conv kernel once (population connectivity, Davies et al. 2018): cores are
  counted by neurons, and the kernel must fit a core's synaptic memory; the bytes a mapping
  without weight sharing would need are reported beside it.
- Speck memory uses sinabs' own formulas (kernel: c * 2^(ceil log2(kh kw) + ceil log2 f),
  neurons: f * 2^(ceil log2 h + ceil log2 w)) and assigns layers to distinct cores by maximum
  bipartite matching (networkx), as sinabs' mapper does with a flow graph.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from neurodeploy.errors import NeurodeployError
from neurodeploy.hardware.layers import SpikingLayer

LIMITS_FILE = "limits.json"


class TargetError(NeurodeployError, ValueError):
    """An unknown target or an unreadable limits file."""


@dataclass(frozen=True)
class LayerFit:
    layer: str
    fits: bool
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetFit:
    target: str
    name: str
    path: str
    fits: bool
    layers: tuple[LayerFit, ...]
    reasons: tuple[str, ...]  # whole-network reasons (total cores, neuron budget...)
    changes: tuple[str, ...]  # what the user can change to make it fit
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def memory_fits(self) -> bool:
        """Fits once the neuron model is made compatible: only geometry and memory counted."""
        return not self.figures.get("memory_blockers", 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "name": self.name, "path": self.path, "fits": self.fits,
            "memory_fits": self.memory_fits, "reasons": list(self.reasons), "changes": list(self.changes),
            "figures": self.figures,
            "layers": [{"layer": l.layer, "fits": l.fits, "reasons": list(l.reasons), "notes": list(l.notes),
                        "figures": l.figures} for l in self.layers],
        }


def load_limits(path: str | Path | None = None) -> dict[str, Any]:
    try:
        if path is None:
            text = resources.files("neurodeploy.hardware").joinpath(LIMITS_FILE).read_text()
        else:
            text = Path(path).read_text()
        data = json.loads(text)
        return data
    except (OSError, json.JSONDecodeError) as err:
        raise TargetError(f"{path or LIMITS_FILE}: not a readable limits file ({err})") from None


def _value(spec: dict[str, Any], key: str) -> Any:
    return spec["limits"].get(key, {}).get("value")


@dataclass(frozen=True)
class FoldedConv:
    """The conv a core runs once pooling of currents is folded into it."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    in_channels: int
    out_channels: int
    output_hw: tuple[int, int]


def fold(layer: SpikingLayer) -> FoldedConv:
    p = layer.pool_kernel if layer.pool else 1
    kernel = tuple(layer.kernel[i] + (p - 1) * layer.stride[i] for i in range(2))
    stride = tuple(layer.stride[i] * p for i in range(2))
    return FoldedConv(kernel, stride, layer.input_shape[0], layer.output_shape[0], layer.output_shape[1:])


def folded_weight(layer: SpikingLayer) -> np.ndarray:
    """The folded kernel: the conv kernel summed over the pool window's shifts (/P^2 for avg)."""
    if not layer.pool:
        return layer.weight
    p, (sh, sw) = layer.pool_kernel, layer.stride
    c_out, c_in, kh, kw = layer.weight.shape
    out = np.zeros((c_out, c_in, kh + (p - 1) * sh, kw + (p - 1) * sw), dtype=np.float64)
    for dy in range(p):
        for dx in range(p):
            out[:, :, dy * sh: dy * sh + kh, dx * sw: dx * sw + kw] += layer.weight
    return (out / (p * p) if layer.pool == "avg" else out).astype(np.float32)


def folded_bias(layer: SpikingLayer) -> np.ndarray | None:
    """The bias of the folded conv: a sum pool adds P^2 copies of the conv bias, an average one."""
    if layer.bias is None:
        return None
    return layer.bias * (layer.pool_kernel ** 2 if layer.pool == "sum" else 1)


def quantisation_error(weight: np.ndarray, bits: int) -> float:
    """Relative RMS error of symmetric per-layer quantisation to `bits` signed bits."""
    peak = float(np.abs(weight).max())
    if peak == 0:
        return 0.0
    step = peak / (2 ** (bits - 1) - 1)
    quantised = np.round(weight / step) * step
    return float(np.linalg.norm(weight - quantised) / np.linalg.norm(weight))


def _neuron_checks(layer: SpikingLayer, spec: dict[str, Any], name: str) -> tuple[list[str], list[str], list[str]]:
    neuron = spec["neuron"]
    reasons, notes, changes = [], [], []
    if layer.beta < 1.0 and not neuron["leak"]:
        reasons.append(f"neurons leak (beta = {layer.beta:g}); {name} neurons integrate without leak (IAF)")
        changes.append("retrain or fine-tune the front-end as integrate-and-fire (config beta = 1)")
    if layer.reset not in neuron["reset"]:
        reasons.append(f"reset {layer.reset!r}; {name} resets by {' or '.join(neuron['reset'])}")
        changes.append(f"fine-tune with reset {neuron['reset'][0]!r}")
    if layer.reset_timing not in neuron["reset_timing"]:
        reasons.append(f"reset applied {layer.reset_timing}; {name} applies it {' or '.join(neuron['reset_timing'])}")
        changes.append(f"fine-tune with reset timing {neuron['reset_timing'][0]!r} (the deployable settings)")
    if layer.compare not in neuron["compare"]:
        notes.append(f"compare: the model spikes on v > thr, {name} on v >= thr; they differ only at exact equality")
    return reasons, notes, changes


def _speck_memory(layer: SpikingLayer, folded: FoldedConv) -> tuple[int, int]:
    from sinabs.validate_memory_speck import ValidateMapping  # sinabs' own memory maths

    mapping = ValidateMapping.__new__(ValidateMapping)  # its __init__ raises on limits we report ourselves
    mapping.input_feature_size, mapping.output_feature_size = folded.in_channels, folded.out_channels
    mapping.kernel_size, mapping.input_dimension = folded.kernel, folded.output_hw
    kernel = int(mapping.calculate_kernel_memory())
    neurons = int(folded.out_channels * 2 ** (math.ceil(math.log2(folded.output_hw[0])) + math.ceil(math.log2(folded.output_hw[1]))))
    return kernel, neurons


def _assign_cores(needs: list[tuple[int, int, int]], kernel_mem: list[int], neuron_mem: list[int],
                  bias_mem: int) -> dict[int, int]:
    """Layer index -> core index, each layer on its own core where it fits (maximum matching)."""
    import networkx as nx

    graph = nx.Graph()
    layers = [("layer", i) for i in range(len(needs))]
    graph.add_nodes_from(layers)
    graph.add_nodes_from(("core", c) for c in range(len(kernel_mem)))
    for i, (k, n, b) in enumerate(needs):
        for c in range(len(kernel_mem)):
            if k <= kernel_mem[c] and n <= neuron_mem[c] and b <= bias_mem:
                graph.add_edge(("layer", i), ("core", c))
    matching = nx.algorithms.bipartite.maximum_matching(graph, top_nodes=layers)
    return {node[1]: matching[node][1] for node in layers if node in matching}


def _check_speck(layers: tuple[SpikingLayer, ...], spec: dict[str, Any]) -> tuple[list[LayerFit], list[str], dict]:
    kernel_mem, neuron_mem = _value(spec, "kernel_memory_per_core"), _value(spec, "neuron_memory_per_core")
    bias_mem, kmax = _value(spec, "bias_memory_per_core"), _value(spec, "kernel_max")
    strides, fmax = _value(spec, "strides"), _value(spec, "output_features_max")
    fits, needs, memory_blockers = [], [], 0
    for i, layer in enumerate(layers):
        f = fold(layer)
        reasons, notes, _ = _neuron_checks(layer, spec, "Speck")
        kernel, neurons = _speck_memory(layer, f)
        bias = 0 if layer.bias is None else layer.output_shape[0]
        geometry = []
        if max(f.kernel) > kmax:
            geometry.append(f"folded kernel {f.kernel[0]}x{f.kernel[1]} > {kmax}x{kmax}")
        if any(s not in strides for s in f.stride):
            geometry.append(f"folded stride {f.stride} not in {strides}")
        if f.out_channels > fmax:
            geometry.append(f"{f.out_channels} output channels > {fmax}")
        if i == 0 and any(v > m for v, m in zip(layer.input_shape[1:], _value(spec, "input_size_max"))):
            geometry.append(f"input {layer.input_shape[2]}x{layer.input_shape[1]} larger than the 128x128 sensor input: crop or downsample (`--center-crop 128x128`, `--downsample`)")
        if layer.recurrent:
            geometry.append("recurrent connection: sinabs maps feed-forward chains of cores")
        if neurons > max(neuron_mem):
            geometry.append(f"neuron memory {neurons:,} > {max(neuron_mem):,} (largest core)")
        if kernel > max(kernel_mem):
            geometry.append(f"kernel memory {kernel:,} > {max(kernel_mem):,} (largest core)")
        memory_blockers += bool(geometry)
        needs.append((kernel, neurons, bias))
        if layer.pool:
            notes.append(f"{layer.pool} pooling of currents folded into a {f.kernel[0]}x{f.kernel[1]} stride-{f.stride[0]} conv")
        fits.append(LayerFit(layer.name, not (reasons or geometry), tuple(reasons + geometry), tuple(notes),
                             {"kernel_memory": kernel, "neuron_memory": neurons, "bias_memory": bias,
                              "folded_kernel": list(f.kernel), "folded_stride": list(f.stride),
                              "weight_quantisation_rel_rms": round(quantisation_error(folded_weight(layer), _value(spec, "weight_bits")), 6)}))
    cores = _assign_cores(needs, kernel_mem, neuron_mem, bias_mem)
    network = []
    if len(cores) < len(layers):
        unplaced = [layers[i].name for i in range(len(layers)) if i not in cores]
        network.append(f"no assignment of layers to distinct cores fits: {', '.join(unplaced)} find no free core")
        memory_blockers += 1
    fits = [LayerFit(l.layer, l.fits, l.reasons, l.notes, {**l.figures, "core": cores.get(i)}) for i, l in enumerate(fits)]
    return fits, network, {"cores_used": len(cores), "cores": len(kernel_mem), "memory_blockers": memory_blockers}


def _check_loihi(layers: tuple[SpikingLayer, ...], spec: dict[str, Any], name: str) -> tuple[list[LayerFit], list[str], dict]:
    npc, mem = _value(spec, "neurons_per_core"), _value(spec, "synaptic_memory_bytes_per_core")
    bits, graded_bits = _value(spec, "weight_bits"), _value(spec, "graded_input_bits")
    fits, total_cores = [], 0
    for layer in layers:
        reasons, notes, _ = _neuron_checks(layer, spec, name)
        # Loihi stores a conv kernel once per core (population connectivity, Davies et al. 2018);
        # the unshared figure is what a mapping without it would need
        kernel_bytes = layer.synapses * bits // 8
        synapse_bytes = layer.connections * bits // 8
        cores = math.ceil(layer.neurons / npc)
        if kernel_bytes > mem:
            reasons.append(f"kernel of {kernel_bytes:,} B > {mem:,} B synaptic memory per core")
        total_cores += cores
        if layer.graded_input and not graded_bits:
            reasons.append(f"input holds event counts; {name} spikes are binary (the netx simulation feeds counts "
                           "as graded spikes, which only Loihi 2 has)")
        if layer.recurrent:
            notes.append("recurrence: the chip supports it; lava-dl netx 0.6 has no convolutional recurrent layer")
        fits.append(LayerFit(layer.name, not reasons, tuple(reasons), tuple(notes),
                             {"neurons": layer.neurons, "fan_in": layer.fan_in, "kernel_bytes": kernel_bytes,
                              "synapse_bytes_unshared": synapse_bytes,
                              "cores": cores,
                              "weight_quantisation_rel_rms": round(quantisation_error(folded_weight(layer), bits), 6)}))
    network = []
    if total_cores > _value(spec, "cores"):
        network.append(f"needs {total_cores} cores > {_value(spec, 'cores')} on one chip")
    return fits, network, {"cores_used": total_cores, "cores": _value(spec, "cores"), "memory_blockers": len(network)}


def _check_xylo(layers: tuple[SpikingLayer, ...], spec: dict[str, Any]) -> tuple[list[LayerFit], list[str], dict]:
    fits = []
    for layer in layers:
        reasons, notes, _ = _neuron_checks(layer, spec, "Xylo")
        reasons.insert(0, "convolution: Xylo has dense (and recurrent) weights only")
        fits.append(LayerFit(layer.name, False, tuple(reasons), tuple(notes), {"neurons": layer.neurons}))
    hidden = sum(l.neurons for l in layers)
    inputs = int(np.prod(layers[0].input_shape))
    network = []
    if hidden > _value(spec, "hidden_neurons"):
        network.append(f"{hidden:,} neurons > {_value(spec, 'hidden_neurons')} hidden neurons")
    if inputs > _value(spec, "input_channels"):
        network.append(f"{inputs:,} inputs > {_value(spec, 'input_channels')} input channels")
    outputs = layers[-1].neurons
    if outputs > _value(spec, "output_neurons"):
        network.append(f"{outputs:,} output neurons > {_value(spec, 'output_neurons')}")
    return fits, network, {"hidden_neurons": hidden, "memory_blockers": len(layers) + len(network)}


def _check_spinnaker2(layers: tuple[SpikingLayer, ...], spec: dict[str, Any]) -> tuple[list[LayerFit], list[str], dict]:
    fits, state_bytes = [], 0
    for layer in layers:
        reasons, notes, _ = _neuron_checks(layer, spec, "SpiNNaker2")
        if layer.pool == "avg":
            notes.append("AvgPool2d is not read by the SpiNNaker2 NIR path: fold it into the conv (weights / 4)")
        if layer.graded_input and not _value(spec, "graded_input_bits"):
            reasons.append("input holds event counts; SpiNNaker2 spike sources are binary")
        state_bytes += layer.neurons * 8 + layer.synapses * 4  # fp32 membrane + current, shared fp32 kernel per core
        fits.append(LayerFit(layer.name, not reasons, tuple(reasons), tuple(notes), {"neurons": layer.neurons}))
    budget = _value(spec, "cores") * _value(spec, "sram_bytes_per_core")
    network = [f"state and weights {state_bytes:,} B > {budget:,} B of SRAM"] if state_bytes > budget else []
    return fits, network, {"bytes_estimate": state_bytes, "sram_bytes": budget, "memory_blockers": len(network)}


def _check_host(layers: tuple[SpikingLayer, ...], spec: dict[str, Any]) -> tuple[list[LayerFit], list[str], dict]:
    return [LayerFit(l.name, True, (), (), {"neurons": l.neurons}) for l in layers], [], {"memory_blockers": 0}


_CHECKS = {
    "loihi": lambda layers, spec: _check_loihi(layers, spec, "Loihi"),
    "loihi2": lambda layers, spec: _check_loihi(layers, spec, "Loihi 2"),
    "speck": _check_speck,
    "xylo": _check_xylo,
    "spinnaker2": _check_spinnaker2,
    "host": _check_host,
}


def check_targets(layers: tuple[SpikingLayer, ...], targets: Iterable[str] | None = None,
                  limits: dict[str, Any] | None = None) -> list[TargetFit]:
    """Every requested target (default: all in the limits file), each with its per-layer verdicts."""
    limits = limits or load_limits()
    known = limits["targets"]
    names = list(targets) if targets else list(known)
    unknown = [n for n in names if n not in known or n not in _CHECKS]
    if unknown:
        raise TargetError(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(known)} (`--target NAME`)")
    results = []
    for target in names:
        spec = known[target]
        layer_fits, network, figures = _CHECKS[target](layers, spec)
        changes: list[str] = []
        for layer in layers:
            for change in _neuron_checks(layer, spec, spec["name"])[2]:
                if change not in changes:
                    changes.append(change)
        if layers[0].graded_input and not _value(spec, "graded_input_bits") and target in ("loihi", "spinnaker2"):
            changes.append("bin the events finely enough that no pixel receives more than one event per bin "
                           "(smaller `--dt-us`), or split counts over several input neurons")
        if figures.get("memory_blockers"):
            changes.append("fewer channels (conv_channels / spiking_channels) or a smaller input "
                           "(`--center-crop`, `--downsample`) and a retrained model")
        if target == "xylo":
            changes = ["no change makes a convolutional front-end fit Xylo: it needs a dense network of <= 1000 "
                       "neurons with <= 16 inputs"]
        fits = all(l.fits for l in layer_fits) and not network
        results.append(TargetFit(target, spec["name"], spec["path"], fits, tuple(layer_fits), tuple(network),
                                 tuple(changes), figures))
    return results
