"""Backbone work per step and per sample: interface, input projection, Mamba layers, head.

The backbone runs dense on the host, so its counts follow from the geometry (MACs per step),
except the input projection, whose input (the moving average of binary spikes) is sparse: its
Effective_MACs are measured from the recorded spikes, NeuroBench-style (nonzero inputs x
nonzero weights of their column).

What one step of one Mamba layer costs, as written in docs/mamba_spike_model.md (d = d_inner, n = d_state):
  MACs: in_proj d_model*2d, conv1d d*d_conv, x_proj d*(dt_rank+2n), dt_proj dt_rank*d,
        scan 4dn + 3d (delta*A, delta*u*B, h = dA*h + dBu, y = <h, C>; D*u, delta*u, the gate),
        out_proj d*d_model, residual add d_model.
  elementwise (nonlinear or normalising, one per output element): LayerNorm d_model,
        SiLU of the conv d, softplus d, exp(delta*A) dn, SiLU of z d.
The interface is a k-tap moving average (F*k MACs per step); the head accumulates the mean
(d_model per step) and, once per sample, LayerNorm (d_model elementwise) and the classifier.
Elementwise ops are priced as neuron updates (KerasSpiking's convention: one neuron update
per unit activation); LayerNorm statistics, biases and the softmax are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from neurodeploy.model.mamba_spike.interface import moving_average
from neurodeploy.report.counts import module_footprint
from neurodeploy.report.record import SpikeRecord


@dataclass(frozen=True)
class BackboneLayerCounts:
    """One backbone stage. `macs_per_step` is dense; `effective_macs` is per sample."""

    name: str
    macs_per_step: float
    macs_per_sample: float  # dense, steps x per step + once-per-sample work
    effective_macs: float  # per sample: what a zero-skipping device would do
    elementwise_per_step: float
    elementwise_per_sample: float
    parameters: int
    footprint_bytes: int
    breakdown_per_step: dict[str, float] = field(default_factory=dict)


def mamba_step_macs(d_model: int, d_inner: int, d_state: int, d_conv: int, dt_rank: int) -> dict[str, float]:
    return {
        "in_proj": d_model * 2 * d_inner,
        "conv1d": d_inner * d_conv,
        "x_proj": d_inner * (dt_rank + 2 * d_state),
        "dt_proj": dt_rank * d_inner,
        "scan": 4 * d_inner * d_state + 3 * d_inner,
        "out_proj": d_inner * d_model,
        "residual": d_model,
    }


def mamba_step_elementwise(d_model: int, d_inner: int, d_state: int) -> float:
    return d_model + d_inner + d_inner + d_inner * d_state + d_inner


@torch.no_grad()
def count_backbone(model, record: SpikeRecord) -> tuple[BackboneLayerCounts, ...]:
    c = model.config
    steps, batch = record.steps, record.batch
    features = c.spike_features
    rows = []

    interface_step = features * c.interface_window
    rows.append(BackboneLayerCounts("interface (moving average)", interface_step, interface_step * steps,
                                    interface_step * steps, 0.0, 0.0, 0, 0, {"moving_average": interface_step}))

    # input_proj reads the smoothed spikes: measured nonzeros x nonzero weights of each column
    smoothed = moving_average(record.spikes[-1].float().flatten(2), c.interface_window, c.interface)
    column_fanout = (model.input_proj.weight != 0).float().sum(dim=0)  # (features,)
    effective = torch.einsum("btf,f->", (smoothed != 0).float(), column_fanout).item() / batch
    proj_step = features * c.d_model
    params, size = module_footprint(model.input_proj)
    rows.append(BackboneLayerCounts("input_proj", proj_step, proj_step * steps, effective, 0.0, 0.0, params, size,
                                    {"input_proj": proj_step}))

    for i, block in enumerate(model.mamba_blocks):
        breakdown = mamba_step_macs(c.d_model, c.d_inner, c.d_state, c.d_conv, c.dt_rank)
        per_step = float(sum(breakdown.values()))
        elementwise = float(mamba_step_elementwise(c.d_model, c.d_inner, c.d_state))
        params, size = module_footprint(block)
        rows.append(BackboneLayerCounts(f"mamba_blocks.{i}", per_step, per_step * steps, per_step * steps,
                                        elementwise, elementwise * steps, params, size, breakdown))

    head_once = c.d_model * c.num_classes
    params, size = module_footprint(model.norm, model.classifier)
    rows.append(BackboneLayerCounts("head (mean, norm, classifier)", c.d_model, c.d_model * steps + head_once,
                                    c.d_model * steps + head_once, 0.0, float(c.d_model), params, size,
                                    {"mean": c.d_model, "classifier (once per sample)": head_once}))
    return tuple(rows)
