"""Mamba-Liquid-Spiking reports: spikes per encoder layer, SynOps, energy per token.

The spike encoders are costed on a neuromorphic target, everything else (embedding lookup
aside) on the host, with the device table and the energy functions of the Mamba-Spike report
(`neurodeploy.report.devices`, `.energy`). Counts are measured on real token ids; energies are
estimates with the table's citations.

Counting conventions (those of `neurodeploy.report.counts` carried to dense layers):
- encoder fc1: its input x_p is real-valued, so each nonzero input element drives one MAC per
  nonzero weight in its column (Effective_MACs); fc2: each lif1 spike drives one AC per nonzero
  weight of its column (one MAC instead when the graded spike factor g != 1). Dense: in x out
  per token. MembraneUpdates: neurons x tokens; active updates: neuron-steps that fired.
- host, per token, dense MACs: residual_proj F0*H, input_proj of the next block H*F0, CfC
  4*(S+U)*U (ff1, ff2, time_a, time_b; the mask does not skip work on a host) or fallback S*U,
  liquid_to_hidden U*H, the Mamba layer (`mamba_step_macs` without the residual add), the
  temporal adapter S*k + S*H, the gate 2H^2 + 4H + 3H, the cross-attention (projections,
  8x8 scores and mixes over e), the head H*out. Elementwise ops (tanh, sigmoid, LayerNorm
  outputs, silu, softplus, exp) are priced as neuron updates, as the Mamba-Spike report does.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from neurodeploy.model.liquid.config import XATTN_HEADS
from neurodeploy.model.liquid.model import LiquidBlock, MambaLiquidSpiking
from neurodeploy.report.backbone import BackboneLayerCounts, mamba_step_elementwise, mamba_step_macs
from neurodeploy.report.counts import FrontendLayerCounts, module_footprint
from neurodeploy.report.devices import load_devices
from neurodeploy.report.energy import EnergyEstimate, backbone_energy, frontend_energy


def _fanout(weight: torch.Tensor) -> torch.Tensor:
    """Nonzero weights in each input column: the synapses one input element drives."""
    return (weight != 0).sum(0).to(torch.float64)


def _encoder_layer(name: str, fc: torch.nn.Linear, inputs: torch.Tensor, spikes: torch.Tensor, *,
                   binary_input: bool) -> FrontendLayerCounts:
    """inputs (B, T, in), spikes (B, T, out) of one encoder layer; counts per sample."""
    batch, steps, _ = inputs.shape
    fanout = _fanout(fc.weight)
    nonzero = (inputs != 0).to(torch.float64)
    ops_per_step = (nonzero * fanout).sum(-1).sum(0) / batch  # (T,)
    effective = float(ops_per_step.sum())
    fired = (spikes != 0).to(torch.float64)
    neurons = fc.out_features
    output_spikes = float(fired.sum()) / batch
    params, footprint = module_footprint(fc)
    return FrontendLayerCounts(
        name=name, neurons=neurons, input_shape=(fc.in_features, 1, 1), output_shape=(neurons, 1, 1),
        input_spikes=float(nonzero.sum()) / batch, input_events=float(inputs.abs().sum()) / batch,
        output_spikes=output_spikes, spikes_per_second=None, firing_rate=output_spikes / (neurons * steps),
        effective_acs=effective if binary_input else 0.0, effective_macs=0.0 if binary_input else effective,
        dense_ops=float(fc.in_features * neurons * steps), recurrent_acs=0.0, event_synaptic_ops=effective,
        membrane_updates=float(neurons * steps), active_neuron_updates=output_spikes,
        activation_sparsity=1.0 - output_spikes / (neurons * steps), parameters=params, footprint_bytes=footprint,
        spikes_per_step=tuple(float(v) for v in fired.sum((0, 2)) / batch),
        synaptic_ops_per_step=tuple(float(v) for v in ops_per_step),
    )


def _host_macs(model: MambaLiquidSpiking, index: int, block: LiquidBlock, steps: int) -> tuple[dict[str, float], float]:
    """Dense MACs per token by part, and elementwise ops per token, of block `index` on the host."""
    c = model.config
    F0, H, S, U, Di, N = c.input_dim, c.hidden_dim, c.spiking_units, c.liquid_units, c.d_inner, c.mamba_d_state
    macs: dict[str, float] = {}
    elementwise = 0.0
    if block.residual_proj is not None:
        macs["residual_proj"] = F0 * H
    if block.liquid_cell.stateful:
        macs["cfc"] = 4 * (S + U) * U + 3 * U
        elementwise += 3 * U  # tanh, tanh, sigmoid
    else:
        macs["fallback"] = S * U
    macs["liquid_to_hidden"] = U * H
    elementwise += H
    mamba = mamba_step_macs(H, Di, N, c.mamba_d_conv, c.dt_rank)
    mamba.pop("residual")
    macs.update({f"mamba.{k}": v for k, v in mamba.items()})
    elementwise += mamba_step_elementwise(H, Di, N) + Di  # + the LayerNorm(d_inner) before the gate
    if c.integration_mode != "sequential":
        macs["temporal_adapter"] = S * min(block.spike_to_mamba.temporal_kernel.numel(), steps) + S * H
    if c.integration_mode == "parallel":
        macs["gate"] = 2 * H * H + 4 * H + 3 * H
        elementwise += 4
    if c.integration_mode == "bidirectional":
        e = c.xattn_head_dim
        width = XATTN_HEADS * e
        macs["cross_attention"] = (U * width + H * 2 * width + H * width + U * 2 * width
                                   + 2 * 2 * XATTN_HEADS * XATTN_HEADS * e + width * U + width * H + U * H)
        elementwise += 2 * XATTN_HEADS * XATTN_HEADS + H
    macs["residual_norm2"] = H
    elementwise += H
    if index + 1 < len(model.blocks) and model.blocks[index + 1].input_proj is not None:
        macs["next_input_proj"] = H * F0
    if index == len(model.blocks) - 1:
        macs["output_head"] = H * c.output_dim
    return macs, elementwise


@dataclass(frozen=True)
class LiquidReport:
    tokens_per_sample: int
    samples: int
    encoder_layers: tuple[FrontendLayerCounts, ...]
    host_layers: tuple[BackboneLayerCounts, ...]
    encoder_energy: tuple[EnergyEstimate, ...]  # one per neuromorphic target
    host_energy: EnergyEstimate

    def energy_per_token_j(self) -> dict[str, float]:
        host = self.host_energy.total_j / self.tokens_per_sample
        return {e.device: e.total_j / self.tokens_per_sample + host for e in self.encoder_energy}

    def to_dict(self) -> dict:
        return {
            "tokens_per_sample": self.tokens_per_sample, "samples": self.samples,
            "encoder_layers": [{k: v for k, v in asdict(layer).items() if not k.endswith("_per_step")}
                               for layer in self.encoder_layers],
            "synaptic_ops_per_token": sum(l.synaptic_ops for l in self.encoder_layers) / self.tokens_per_sample,
            "host_macs_per_token": sum(l.macs_per_step for l in self.host_layers),
            "energy_per_token_j": {
                "encoders": {e.device: e.total_j / self.tokens_per_sample for e in self.encoder_energy},
                "host": {self.host_energy.device: self.host_energy.total_j / self.tokens_per_sample},
                "total": self.energy_per_token_j(),
            },
            "not_costed": sorted({n for e in (*self.encoder_energy, self.host_energy) for n in e.not_costed}),
            "sources": sorted({s for e in (*self.encoder_energy, self.host_energy) for s in e.sources}),
        }

    def markdown(self) -> str:
        lines = ["| encoder layer | spikes/sample | firing rate | SynOps/sample (AC + MAC) | dense ops |",
                 "|---|---|---|---|---|"]
        for layer in self.encoder_layers:
            lines.append(f"| {layer.name} | {layer.output_spikes:.1f} | {layer.firing_rate:.3f} | "
                         f"{layer.synaptic_ops:.0f} | {layer.dense_ops:.0f} |")
        lines += ["", "| encoders on | energy per token (encoders on chip + rest on "
                  f"{self.host_energy.device_name}) |", "|---|---|"]
        for device, joules in self.energy_per_token_j().items():
            lines.append(f"| {device} | {joules * 1e9:.3f} nJ |")
        return "\n".join(lines)


@torch.no_grad()
def liquid_report(model: MambaLiquidSpiking, ids: torch.Tensor, *, targets: tuple[str, ...] = ("loihi",),
                  host: str = "cpu", devices_file: str | Path | None = None,
                  spikes: tuple[dict[str, torch.Tensor], ...] | None = None) -> LiquidReport:
    """Counts and energy of `model` on token ids (B, T). `spikes` (per block {"lif1", "lif2"}, e.g.
    from the NIR pipeline `LiquidRun.spikes`) replaces the torch model's own encoder spikes."""
    _, blocks = model(ids, return_internals=True)
    table = load_devices(devices_file)
    encoder_layers, host_layers = [], []
    steps = blocks[0]["lif2"].shape[1]
    for i, (block, inner) in enumerate(zip(model.blocks, blocks)):
        layer_spikes = spikes[i] if spikes is not None else inner
        x_p = inner["x_p"]
        encoder_in = x_p.repeat(1, model.config.num_spike_steps, 1) if x_p.shape[1] == 1 else x_p
        encoder = block.spike_encoder
        encoder_layers.append(_encoder_layer(f"blocks.{i}.lif1", encoder.fc1, encoder_in, layer_spikes["lif1"],
                                             binary_input=False))
        encoder_layers.append(_encoder_layer(f"blocks.{i}.lif2", encoder.fc2, layer_spikes["lif1"], layer_spikes["lif2"],
                                             binary_input=encoder.lif1.graded_factor == 1.0))
        macs, elementwise = _host_macs(model, i, block, steps)
        per_step = float(sum(macs.values()))
        params, footprint = module_footprint(*(m for name, m in block.named_children() if name != "spike_encoder"))
        host_layers.append(BackboneLayerCounts(
            name=f"blocks.{i}", macs_per_step=per_step, macs_per_sample=per_step * steps, effective_macs=per_step * steps,
            elementwise_per_step=elementwise, elementwise_per_sample=elementwise * steps, parameters=params,
            footprint_bytes=footprint, breakdown_per_step=macs))
    encoder_layers_t, host_layers_t = tuple(encoder_layers), tuple(host_layers)
    targets_energy = []
    for key in targets:
        device = table.get(key)
        targets_energy.append(frontend_energy(device, encoder_layers_t))
    return LiquidReport(steps, int(ids.shape[0]), encoder_layers_t, host_layers_t, tuple(targets_energy),
                        backbone_energy(table.get(host), host_layers_t))
