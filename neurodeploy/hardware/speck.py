"""Speck / DYNAP-CNN in software, through sinabs: the 8-bit model of an IAF front-end.

`run_speck_model` builds, per spiking layer, the core Speck would run (the conv with its
pooling of currents folded in, then sinabs' IAF with the model's reset, in the same update)
and runs it twice on the same event-count frames: in float, and discretised exactly as sinabs
prepares a network for the chip (its `discretize_conv_spk_`: one scale per layer shared by
weights, biases, threshold and membrane floor, 8-bit weights, 16-bit state). Each run's spikes
are compared, per layer and neuron-step, with this toolkit's float front-end on the same frames.

Decisions:
- The membrane floor (`min_v_mem`) sets the state scale with the threshold. Left unset, sinabs
  assumes -2^15, the scale collapses and 8-bit weights round to zero: a layer falls silent
  without an error. The floor is set per layer to the lowest membrane the float IAF reaches on
  the given frames (never above -threshold), so it never clips those inputs; the report says
  how many steps it would have clipped (zero on the calibration frames by construction).
- sinabs' `backend.dynapcnn` package imports `samna` (the chip driver; its PyPI package is an
  installer stub), so its `discretize.py`, which needs only torch and sinabs.layers, is loaded
  from its file on its own. Nothing else of that package is used.
- Only IAF models run: a leaky model is refused, with the reason, because Speck neurons do not
  leak; fine-tune with beta = 1 first.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.hardware.fit import fold, folded_bias, folded_weight
from neurodeploy.hardware.layers import SpikingLayer


class SpeckModelError(NeurodeployError, ValueError):
    """A front-end the Speck software model cannot run (the message says why and what to change)."""


@dataclass(frozen=True)
class SpeckLayerAgreement:
    layer: str
    float_agreement: float  # float sinabs IAF vs the toolkit's float front-end, fraction of neuron-steps
    quantised_agreement: float  # 8-bit sinabs model vs the toolkit's float front-end
    reference_spikes: int
    quantised_spikes: int
    membrane_floor: float  # in float units
    scale: float  # integer units per float unit after discretisation
    silent: bool  # the 8-bit layer produced no spike where the float one did


def _discretize():
    import sinabs

    path = Path(sinabs.__file__).parent / "backend" / "dynapcnn" / "discretize.py"
    spec = importlib.util.spec_from_file_location("_sinabs_dynapcnn_discretize", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_runnable(layers: tuple[SpikingLayer, ...]) -> None:
    for layer in layers:
        if layer.beta != 1.0:
            raise SpeckModelError(
                f"{layer.name}: neurons leak (beta = {layer.beta:g}); Speck neurons are integrate-and-fire. "
                "Fine-tune the front-end with beta = 1 before a Speck software run")
        if layer.reset_timing != "immediate" or layer.reset not in ("subtract", "zero"):
            raise SpeckModelError(f"{layer.name}: reset {layer.reset}/{layer.reset_timing}; Speck resets by subtraction "
                                  "or to zero in the same update (fine-tune with reset_timing 'immediate')")
        if layer.recurrent:
            raise SpeckModelError(f"{layer.name}: recurrent; sinabs maps feed-forward chains of cores only")


def _iaf(layer: SpikingLayer, floor: float | None):
    import sinabs.activation as sa
    import sinabs.layers as sl

    reset = sa.MembraneSubtract() if layer.reset == "subtract" else sa.MembraneReset()
    return sl.IAF(spike_threshold=torch.tensor(float(layer.threshold)), spike_fn=sa.SingleSpike, reset_fn=reset,
                  min_v_mem=floor)


def _core(layer: SpikingLayer) -> torch.nn.Conv2d:
    f = fold(layer)
    weight = torch.from_numpy(folded_weight(layer))
    conv = torch.nn.Conv2d(f.in_channels, f.out_channels, f.kernel, stride=f.stride, padding=layer.padding,
                           bias=layer.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if layer.bias is not None:
            conv.bias.copy_(torch.from_numpy(folded_bias(layer)))
    return conv


def _run_core(conv: torch.nn.Conv2d, iaf, x: torch.Tensor, out_hw: tuple[int, int]) -> tuple[torch.Tensor, float]:
    """x (B, T, C, H, W) -> spikes (B, T, C', H', W') and the lowest membrane reached."""
    b, t = x.shape[:2]
    current = conv(x.reshape(b * t, *x.shape[2:]))
    current = current[..., : out_hw[0], : out_hw[1]]  # floor of the pooled size, as the model's pooling
    current = current.reshape(b, t, *current.shape[1:])
    iaf.reset_states()
    spikes, lowest = [], float("inf")
    for step in range(t):  # stepwise, to see the membrane after each update
        spikes.append(iaf(current[:, step: step + 1])[:, 0])
        lowest = min(lowest, float(iaf.v_mem.min()))
    return torch.stack(spikes, dim=1), lowest


@torch.no_grad()
def run_speck_model(layers: tuple[SpikingLayer, ...], frames: torch.Tensor,
                    reference: dict[str, torch.Tensor]) -> list[SpeckLayerAgreement]:
    """Float and 8-bit Speck models of `layers` on `frames (B, T, 2, H, W)`, each layer fed the
    previous layer's spikes of its own kind, compared with `reference` (layer -> spikes
    (B, T, C, H, W) of the toolkit's float front-end on the same frames)."""
    check_runnable(layers)
    discretize = _discretize()
    x_float = x_quant = frames.float()
    results = []
    for layer in layers:
        conv = _core(layer)
        out_hw = layer.output_shape[1:]
        float_spikes, lowest = _run_core(conv, _iaf(layer, None), x_float, out_hw)
        floor = min(lowest, -float(layer.threshold))
        q_conv, q_iaf = discretize._discretize_conv_spk_(_core(layer), _iaf(layer, floor), to_int=True)
        scale = float(q_iaf.spike_threshold) / float(layer.threshold)
        quant_spikes, _ = _run_core(q_conv, q_iaf, x_quant, out_hw)
        ref = reference[layer.name].float()
        results.append(SpeckLayerAgreement(
            layer=layer.name,
            float_agreement=float((float_spikes == ref).float().mean()),
            quantised_agreement=float((quant_spikes == ref).float().mean()),
            reference_spikes=int(ref.sum()), quantised_spikes=int(quant_spikes.sum()),
            membrane_floor=floor, scale=scale,
            silent=bool(ref.sum() > 0 and quant_spikes.sum() == 0),
        ))
        x_float, x_quant = float_spikes, quant_spikes
    return results
