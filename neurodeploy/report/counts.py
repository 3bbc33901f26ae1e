"""Measured per-layer counts of the spiking front-end, from a real run's spikes.

Counting conventions (NeuroBench `SynapticOperations`, `ActivationSparsity`, `MembraneUpdates`,
`Footprint`; NeuroBench hooks each Conv2d call and counts `conv(binary(input), binary(weight))`
with the bias left out):

* A nonzero input at (c, y, x) drives one synaptic op per (output position whose 3x3 window,
  padding included, holds it) x (output channel whose weight to it is nonzero). This is its
  *fan-out*, computed exactly as the adjoint of the convolution applied to ones, so border
  pixels have fewer targets (a corner of a 3x3 pad-1 conv reaches 4 positions, not 9). The conv
  computes all H x W outputs before pooling; pooling acts on currents and does not change the
  synaptic ops (avg/sum pooling could be folded into the weights on chip, max cannot).
* Effective_ACs: nonzero inputs equal to +-1 (spikes) x fan-out. Effective_MACs: nonzero inputs
  of any other value x fan-out. conv1's input is graded event counts: a bin holding 3 events
  is one MAC per synapse (a graded spike), not 3 ACs. NeuroBench decides AC vs MAC per layer
  call (any non-binary value makes the whole call MACs); we decide per input element, which
  equals NeuroBench's rule whenever a step's input is all binary or all graded, and keeps the
  total (ACs + MACs) identical in every case. `event_synaptic_ops` gives the alternative
  count where every event is delivered as its own spike (sum of counts x fan-out).
* Dense: every input position x its fan-out with all weights counted (zero or not), every step.
* Recurrent 1x1 conv (v2 models): for t > 0, every spike of the layer's previous step drives
  one AC per output channel with a nonzero weight; Dense = neurons x C_out x (T - 1).
* MembraneUpdates: neurons x steps (every LIF neuron leaks and integrates every step; NeuroBench
  counts the membranes that changed, which for a leaky neuron with any history is all of them).
* ActivationSparsity: zero outputs / all outputs of the layer's neurons over all steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.report.errors import ReportError
from neurodeploy.report.record import SpikeRecord


@dataclass(frozen=True)
class FrontendLayerCounts:
    """One front-end layer (conv [+ recurrent] -> pool -> LIF). Counts are per sample unless named."""

    name: str
    neurons: int
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    input_spikes: float  # nonzero inputs (spikes; for conv1, nonzero event-count pixels)
    input_events: float  # sum of input values (for conv1, events; else equal to input_spikes)
    output_spikes: float
    spikes_per_second: float | None
    firing_rate: float  # output spikes / (neurons x steps)
    effective_acs: float
    effective_macs: float
    dense_ops: float
    recurrent_acs: float  # part of effective_acs driven by the recurrent 1x1 conv
    event_synaptic_ops: float  # every input event delivered as one spike (conv1 differs from effective ops)
    membrane_updates: float
    active_neuron_updates: float  # neuron-steps that fired
    activation_sparsity: float
    parameters: int
    footprint_bytes: int
    spikes_per_step: tuple[float, ...]  # output spikes at each step, per sample
    synaptic_ops_per_step: tuple[float, ...]  # effective ops at each step, per sample

    @property
    def synaptic_ops(self) -> float:
        return self.effective_acs + self.effective_macs


def module_footprint(*modules: nn.Module | None) -> tuple[int, int]:
    """(parameters, bytes of parameters and buffers), NeuroBench `Footprint` per module."""
    params = size = 0
    for module in modules:
        if module is None:
            continue
        for p in module.parameters():
            params += p.numel()
            size += p.numel() * p.element_size()
        for b in module.buffers():
            size += b.numel() * b.element_size()
    return params, size


def conv_fanout(weight: torch.Tensor, input_hw: tuple[int, int], padding: int, *, dense: bool) -> torch.Tensor:
    """Synaptic ops driven by one nonzero input at each (c, y, x): `(C_in, H, W)`.

    The adjoint of the convolution (conv_transpose2d) applied to an all-ones output counts,
    for every input position, the (output position, output channel) pairs that read it.
    With `dense=False` only nonzero weights count, as NeuroBench's binary weight copy does.
    """
    w = torch.ones_like(weight) if dense else (weight != 0).to(weight.dtype)
    h, wd = input_hw
    kh, kw = weight.shape[-2:]
    out_h, out_w = h + 2 * padding - kh + 1, wd + 2 * padding - kw + 1
    ones = torch.ones(1, weight.shape[0], out_h, out_w, dtype=weight.dtype)
    return F.conv_transpose2d(ones, w.detach(), padding=padding)[0]


def check_record(model, record: SpikeRecord) -> None:
    frontend = model.spiking_frontend
    c = model.config
    frames = record.frames
    expected = (c.input_channels, c.input_height, c.input_width)
    if frames.ndim != 5 or tuple(frames.shape[2:]) != expected:
        raise ReportError(f"input frames of shape {tuple(frames.shape)}; this model expects (B, T, "
                          f"{', '.join(map(str, expected))}) event-count frames")
    shapes = frontend.layer_shapes()
    if len(record.spikes) != len(shapes):
        raise ReportError(f"{len(record.spikes)} spike tensors; this model has {len(shapes)} LIF layers "
                          "(pass MambaSpikeOutput.spikes or one (B, T, C, H, W) tensor per layer)")
    for k, (spikes, shape) in enumerate(zip(record.spikes, shapes), start=1):
        want = (*frames.shape[:2], *shape)
        if tuple(spikes.shape) != want:
            raise ReportError(f"spikes of layer lif{k} have shape {tuple(spikes.shape)}; expected {want} "
                              "(same batch and steps as the frames)")
        if bool(((spikes != 0) & (spikes != 1)).any()):
            raise ReportError(f"spikes of layer lif{k} hold values other than 0 and 1; pass the spike "
                              "tensors of the run, not membranes or rates")


STEP_CHUNK = 32  # steps per einsum: bounds the float copies of (B, T, C, H, W) for long recordings


def _per_step(x: torch.Tensor, weights: torch.Tensor, select) -> torch.Tensor:
    """sum over (c, y, x) of select(x) * weights, for each (sample, step): `(B, T)`."""
    parts = [torch.einsum("btchw,chw->bt", select(x[:, s:s + STEP_CHUNK].float()), weights.float())
             for s in range(0, x.shape[1], STEP_CHUNK)]
    return torch.cat(parts, dim=1)


@torch.no_grad()
def count_frontend(model, record: SpikeRecord) -> tuple[FrontendLayerCounts, ...]:
    """Per-layer counts of the front-end, per sample, from the recorded input frames and spikes."""
    check_record(model, record)
    frontend = model.spiking_frontend
    batch, steps = record.batch, record.steps
    inputs = [record.frames, *record.spikes[:-1]]
    convs = (frontend.conv1, frontend.conv2, frontend.conv3)
    recurrents = tuple(getattr(frontend, f"recurrent{k}", None) for k in (1, 2, 3))
    layers = []
    for k, (x, spikes, conv, rec) in enumerate(zip(inputs, record.spikes, convs, recurrents), start=1):
        in_shape = tuple(x.shape[2:])
        fanout = conv_fanout(conv.weight, in_shape[1:], conv.padding[0], dense=False)
        fanout_dense = conv_fanout(conv.weight, in_shape[1:], conv.padding[0], dense=True)
        acs_bt = _per_step(x, fanout, lambda v: ((v != 0) & (v.abs() == 1)).float())
        macs_bt = _per_step(x, fanout, lambda v: ((v != 0) & (v.abs() != 1)).float())
        nonzero = _per_step(x, torch.ones(in_shape), lambda v: (v != 0).float()).sum().item()
        events = _per_step(x, fanout, torch.abs).sum().item()
        input_events = x.abs().sum().item()
        dense = steps * batch * fanout_dense.sum().item()
        recurrent_acs = 0.0
        if rec is not None and steps > 1:
            # spikes of steps 0..T-2 reach the next step through the 1x1 conv
            rec_fanout = (rec.weight[:, :, 0, 0] != 0).float().sum(dim=0)  # (C_in,)
            rec_bt = _per_step(spikes[:, :-1], rec_fanout[:, None, None].expand(spikes.shape[2:]), lambda v: v)
            acs_bt[:, 1:] += rec_bt
            recurrent_acs = rec_bt.sum().item()
            dense += batch * (steps - 1) * spikes[0, 0].numel() * rec.weight.shape[0]
        neurons = spikes[0, 0].numel()
        out_spikes = spikes.sum().item()
        active = (spikes != 0).sum().item()
        params, footprint = module_footprint(conv, rec)
        per_sample = 1.0 / batch
        duration = steps * record.dt_s if record.dt_s else None
        layers.append(FrontendLayerCounts(
            name=f"layer{k} (conv{k}{'+recurrent' + str(k) if rec is not None else ''} -> lif{k})",
            neurons=neurons,
            input_shape=in_shape,
            output_shape=tuple(spikes.shape[2:]),
            input_spikes=nonzero * per_sample,
            input_events=input_events * per_sample,
            output_spikes=out_spikes * per_sample,
            spikes_per_second=out_spikes * per_sample / duration if duration else None,
            firing_rate=out_spikes / (batch * steps * neurons),
            effective_acs=acs_bt.sum().item() * per_sample,
            effective_macs=macs_bt.sum().item() * per_sample,
            dense_ops=dense * per_sample,
            recurrent_acs=recurrent_acs * per_sample,
            event_synaptic_ops=(events + recurrent_acs) * per_sample,
            membrane_updates=float(neurons * steps),
            active_neuron_updates=active * per_sample,
            activation_sparsity=1.0 - active / spikes.numel(),
            parameters=params,
            footprint_bytes=footprint,
            spikes_per_step=tuple((spikes.sum(dim=(0, 2, 3, 4)) * per_sample).tolist()),
            synaptic_ops_per_step=tuple(((acs_bt + macs_bt).sum(dim=0) * per_sample).tolist()),
        ))
    return tuple(layers)
