"""Front-end NIR graph -> lava-dl netx HDF5 (`frontend.net`), the artifact a Loihi 2 user deploys.

Two steps, each usable on its own:

1. `neurodeploy.runtimes.lava_layers.lava_layers(graph)` reads the NIR graph into Lava-shaped
   float layers (pooling folded into the convs, semantics Lava cannot run refused), which the
   floating-point Lava runtime runs as they are.
2. `quantize_layers(layers, ...)` / `export_netx(graph, path, ...)` map the float layers to
   Loihi's fixed point (docs/lava.md) and write the netx file.

Fixed-point mapping per layer, with weight scale s (float -> integer units):
    weight   mantissa m (`weight_bits`, mixed sign: multiples of 2**(9-bits) in [-256, 256-2**(9-bits)],
             i.e. even values in [-256, 254] for 8 bits) and exponent e >= 0; the file holds
             the effective integers m * 2**e (netx's Conv block applies no weight exponent,
             so the exponent lives in the integers; `wgtExp` records it)
    bias     round(s * bias)            13-bit signed mantissa; netx applies bias_exp = 6
    vThMant  round(s * threshold)       17-bit; the state is compared with vThMant << 6
    iDecay   4096                        the current decays fully: u = a_in every step
    vDecay   round(4096 * (1 - beta))    12-bit; v = v*(4096 - vDecay) >> 12 + u + bias
Every layer's input is either binary spikes or integer event counts, so each layer's scale
is independent of the others. The default s fills the weight mantissa (max |w| -> 254 for 8
bits); a calibration sample can lower it so that no current or membrane leaves the 24-bit
state. Rounding is measured and saturation is counted, never silent (`NetxExport.summary`).

Graded input: the first conv layer receives the event counts themselves as graded spikes
(netx `Network(..., input_message_bits=b)`, recorded in the file attribute
`input_message_bits`): a_in = sum(w_int * count) exactly, for counts in [0, 2**b - 1].
No netx `input` neuron layer is written (its pass-through neuron would add one more
quantised step); the `input` layer holds only the shape.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import h5py
import nir
import numpy as np
import torch
import torch.nn.functional as F

from neurodeploy.runtimes.lava_layers import LavaLayer, LavaMappingError, lava_layers

FORMAT = "neurodeploy.netx/1"
DECAY_UNITY = 4096  # 12-bit decays: 4096 means "decays fully in one step"
STATE_BITS = 24  # u and v are 24-bit signed on Loihi; inputs, bias, threshold are << 6
STATE_SHIFT = 6
BIAS_BITS = 13
THRESHOLD_BITS = 17
MAX_STATE_UNITS = 2 ** (STATE_BITS - 1 - STATE_SHIFT)  # |value| in integer units that fits in u / v


# -- quantisation --------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerQuantization:
    """One layer in Loihi fixed point, and what the mapping cost (measured, not estimated)."""

    name: str
    weight_scale: float  # integer units per float unit
    weight_exponent: int
    weight_bits: int
    weight: np.ndarray  # effective integers m * 2**e, torch layout
    bias: np.ndarray  # bias mantissa per output channel (bias_exp 6 applied by netx)
    v_threshold: int  # vThMant
    v_decay: int  # vDecay
    i_decay: int  # iDecay
    stride: tuple[int, int]
    padding: tuple[int, int]
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    weights_saturated: int
    bias_saturated: int
    weight_max_rounding: float  # max |w_int/s - w| in float units
    bias_max_rounding: float
    threshold_rounding: float
    effective_beta: float
    scale_limited_by: str  # "weights" | "calibration current" | "calibration membrane" | "user"

    @property
    def saturated(self) -> int:
        return self.weights_saturated + self.bias_saturated


@dataclass(frozen=True)
class NetxExport:
    path: Path
    layers: tuple[LayerQuantization, ...]
    input_message_bits: int

    def summary(self) -> str:
        lines = [f"netx {self.path} (graded input {self.input_message_bits} bits):"]
        for q in self.layers:
            lines.append(
                f"  {q.name}: scale {q.weight_scale:.4g} ({q.scale_limited_by}), weights {q.weight_bits}-bit exp "
                f"{q.weight_exponent}, vThMant {q.v_threshold}, vDecay {q.v_decay} (beta {q.effective_beta:.5f}), "
                f"max rounding w {q.weight_max_rounding:.3g} b {q.bias_max_rounding:.3g}, "
                f"saturated weights {q.weights_saturated} biases {q.bias_saturated}")
        return "\n".join(lines)


def _mantissa_grid(weight_bits: int) -> tuple[int, int, int]:
    """(step, low, high) of a mixed-sign Loihi weight mantissa with `weight_bits` bits."""
    if not isinstance(weight_bits, int) or not 2 <= weight_bits <= 8:
        raise LavaMappingError(f"weight_bits={weight_bits!r}; Loihi weights have 2..8 bits")
    step = 2 ** (9 - weight_bits)
    return step, -256, 256 - step


def calibration_peaks(layers: tuple[LavaLayer, ...], frames: np.ndarray | torch.Tensor) -> list[tuple[float, float]]:
    """Per layer (max |input current|, max |membrane before reset|) of the float layers on `frames`.

    `frames` (N, T, C, H, W) event counts; the float model is the one Lava floating_pt runs.
    """
    x_all = torch.as_tensor(np.asarray(frames), dtype=torch.float64)
    if x_all.ndim != 5:
        raise LavaMappingError(f"calibration frames have shape {tuple(x_all.shape)}; expected (N, T, C, H, W)")
    peaks = [[0.0, 0.0] for _ in layers]
    for sample in x_all:
        states = [torch.zeros((1, *layer.output_shape), dtype=torch.float64) for layer in layers]
        spikes_prev = [torch.zeros_like(s) for s in states]
        for t, frame in enumerate(sample):
            x = frame[None]
            for k, layer in enumerate(layers):
                current = F.conv2d(x, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias),
                                   stride=layer.stride, padding=layer.padding)
                if layer.recurrent_weight is not None and t > 0:
                    current = current + F.conv2d(spikes_prev[k], torch.from_numpy(layer.recurrent_weight),
                                                 torch.from_numpy(layer.recurrent_bias))
                v = layer.beta * states[k] + current
                peaks[k][0] = max(peaks[k][0], float(current.abs().max()))
                peaks[k][1] = max(peaks[k][1], float(v.abs().max()))
                spikes = (v > layer.threshold).to(v.dtype)
                states[k] = v * (1 - spikes)
                spikes_prev[k] = spikes
                x = spikes
    return [(a, b) for a, b in peaks]


def quantize_layer(layer: LavaLayer, *, weight_bits: int = 8, weight_scale: float | None = None,
                   peaks: tuple[float, float] | None = None, headroom: float = 0.5) -> LayerQuantization:
    """Loihi fixed point for one layer (see the module docstring for the mapping).

    `weight_scale` None: the largest |weight| fills the mantissa, then (with calibration
    `peaks`) the scale is lowered until the peak current and membrane use at most `headroom`
    of the 24-bit state. A given `weight_scale` is used as it is; mantissas that do not fit
    take a weight exponent, and what still does not fit saturates and is counted.
    """
    if layer.recurrent_weight is not None:
        raise LavaMappingError(
            f"{layer.name}: has a recurrent 1x1 conv; netx 0.6.0 loads recurrence only for dense layers "
            "('dense_rec'), not convolutions, so this front-end has no netx form. Ways out: run it in Lava "
            "floating point (LavaFrontendRuntime.floating(graph)), or use a model without recurrence.")
    step, low, high = _mantissa_grid(weight_bits)
    w, b = layer.weight, layer.bias
    w_max = float(np.abs(w).max())
    if w_max == 0:
        raise LavaMappingError(f"{layer.name}: all weights are zero; nothing to scale")
    if weight_scale is None:
        scale, limited_by = high / w_max, "weights"
        if peaks is not None:
            current_peak, membrane_peak = peaks
            budget = headroom * MAX_STATE_UNITS
            if current_peak * scale > budget:
                scale, limited_by = budget / current_peak, "calibration current"
            if membrane_peak * scale > budget:
                scale, limited_by = budget / membrane_peak, "calibration membrane"
    else:
        if not (isinstance(weight_scale, (int, float)) and math.isfinite(weight_scale) and weight_scale > 0):
            raise LavaMappingError(f"{layer.name}: weight_scale={weight_scale!r}; expected a positive number")
        scale, limited_by = float(weight_scale), "user"
    exponent = 0
    while w_max * scale / 2 ** exponent > high + step / 2 and exponent < 7:
        exponent += 1
    unit = step * 2 ** exponent
    mantissa = np.round(w * scale / unit) * step
    weights_saturated = int(np.count_nonzero((mantissa < low) | (mantissa > high)))
    mantissa = np.clip(mantissa, low, high)
    w_int = (mantissa * 2 ** exponent).astype(np.int64)
    bias_lim = 2 ** (BIAS_BITS - 1)
    b_round = np.round(b * scale)
    bias_saturated = int(np.count_nonzero((b_round < -bias_lim) | (b_round > bias_lim - 1)))
    b_int = np.clip(b_round, -bias_lim, bias_lim - 1).astype(np.int64)
    v_th = int(round(layer.threshold * scale))
    if not 1 <= v_th < 2 ** THRESHOLD_BITS:
        raise LavaMappingError(
            f"{layer.name}: threshold {layer.threshold} x scale {scale:.4g} = vThMant {v_th}, outside Loihi's "
            f"17-bit range [1, {2 ** THRESHOLD_BITS - 1}]. Way out: pass a weight_scale for this layer "
            f"between {1 / layer.threshold:.3g} and {(2 ** THRESHOLD_BITS - 1) / layer.threshold:.3g}.")
    v_decay = int(round(DECAY_UNITY * (1.0 - layer.beta)))
    if not 0 <= v_decay <= DECAY_UNITY - 1:
        raise LavaMappingError(f"{layer.name}: beta {layer.beta} needs vDecay {v_decay}, outside 12 bits [0, 4095]; "
                               "Lava's LIF cannot forget the membrane completely (beta = 0)")
    return LayerQuantization(
        name=layer.name, weight_scale=scale, weight_exponent=exponent, weight_bits=weight_bits, weight=w_int,
        bias=b_int, v_threshold=v_th, v_decay=v_decay, i_decay=DECAY_UNITY, stride=layer.stride,
        padding=layer.padding, input_shape=layer.input_shape, output_shape=layer.output_shape,
        weights_saturated=weights_saturated, bias_saturated=bias_saturated,
        weight_max_rounding=float(np.abs(w_int / scale - w).max()),
        bias_max_rounding=float(np.abs(b_int / scale - b).max()),
        threshold_rounding=abs(v_th / scale - layer.threshold),
        effective_beta=1.0 - v_decay / DECAY_UNITY, scale_limited_by=limited_by)


def quantize_layers(layers: tuple[LavaLayer, ...], *, weight_bits: int = 8,
                    weight_scale: float | Mapping[str, float] | None = None,
                    calibration: np.ndarray | torch.Tensor | None = None) -> tuple[LayerQuantization, ...]:
    """`quantize_layer` for every layer; `weight_scale` one number or per layer name."""
    if isinstance(weight_scale, Mapping):
        unknown = set(weight_scale) - {layer.name for layer in layers}
        if unknown:
            raise LavaMappingError(f"weight_scale names unknown layers {sorted(unknown)}; layers: {[l.name for l in layers]}")
    peaks = calibration_peaks(layers, calibration) if calibration is not None else [None] * len(layers)
    result = []
    for layer, peak in zip(layers, peaks):
        scale = weight_scale.get(layer.name) if isinstance(weight_scale, Mapping) else weight_scale
        result.append(quantize_layer(layer, weight_bits=weight_bits, weight_scale=scale, peaks=peak))
    return tuple(result)


# -- writing -------------------------------------------------------------------------------
def _write_layer(group: h5py.Group, q: LayerQuantization) -> None:
    group.create_dataset("type", data=np.bytes_("conv"))
    group.create_dataset("shape", data=np.array(q.output_shape))
    group.create_dataset("inChannels", data=q.input_shape[0])
    group.create_dataset("outChannels", data=q.output_shape[0])
    group.create_dataset("kernelSize", data=np.array(q.weight.shape[2:]))
    group.create_dataset("stride", data=np.array(q.stride))
    group.create_dataset("padding", data=np.array(q.padding))
    group.create_dataset("dilation", data=np.array([1, 1]))
    group.create_dataset("groups", data=1)
    group.create_dataset("weight", data=q.weight.astype(np.int32))
    group.create_dataset("wgtExp", data=q.weight_exponent)
    group.create_dataset("bias", data=q.bias.astype(np.int32))
    neuron = group.create_group("neuron")
    neuron.create_dataset("type", data=np.bytes_("CUBA"))
    neuron.create_dataset("iDecay", data=q.i_decay)
    neuron.create_dataset("vDecay", data=q.v_decay)
    neuron.create_dataset("vThMant", data=q.v_threshold)
    neuron.create_dataset("refDelay", data=1)
    neuron.create_dataset("gradedSpike", data=False)


def export_netx(graph: nir.NIRGraph, path: str | Path, *, weight_bits: int = 8,
                weight_scale: float | Mapping[str, float] | None = None,
                calibration: np.ndarray | torch.Tensor | None = None,
                input_message_bits: int = 8) -> NetxExport:
    """Write the front-end `graph` as a netx HDF5 network (`frontend.net`) and say what it cost.

    `calibration` (N, T, 2, H, W) event counts, optional, bounds the weight scale by the
    currents and membranes it produces (module docstring). `input_message_bits`: the graded
    input's width; the runtime refuses counts >= 2**input_message_bits.
    """
    if not 1 <= int(input_message_bits) <= 24:
        raise LavaMappingError(f"input_message_bits={input_message_bits!r}; Loihi graded spikes carry 1..24 bits")
    layers = lava_layers(graph)
    quantized = quantize_layers(layers, weight_bits=weight_bits, weight_scale=weight_scale, calibration=calibration)
    path = Path(path)
    meta = graph.metadata or {}
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["input_message_bits"] = int(input_message_bits)
        f.attrs["lif_layers"] = ",".join(q.name for q in quantized)
        f.attrs["weight_scales"] = json.dumps({q.name: q.weight_scale for q in quantized})
        if "dt" in meta:
            f.attrs["dt"] = float(meta["dt"])
        if "model_config" in meta:
            f.attrs["model_config"] = str(meta["model_config"])
        layer_group = f.create_group("layer")
        inp = layer_group.create_group("0")
        inp.create_dataset("type", data=np.bytes_("input"))
        inp.create_dataset("shape", data=np.array(layers[0].input_shape))
        for index, q in enumerate(quantized, start=1):
            _write_layer(layer_group.create_group(str(index)), q)
    return NetxExport(path=path, layers=quantized, input_message_bits=int(input_message_bits))


__all__ = ["FORMAT", "LayerQuantization", "NetxExport", "calibration_peaks", "export_netx", "quantize_layer",
           "quantize_layers"]
