"""Spike and energy report of a SpikeMamba LM on real tokens: counted spikes, not upstream's heuristic.

Upstream's `SpikeStats` counts final membranes above 0.8 x threshold (FAMILIES.md §1.6); here
every gate's spikes are counted at every token of a real run of the model. Names follow
NeuroBench (`SynapticOperations` split into Effective_MACs / Effective_ACs / Dense,
`ActivationSparsity`, `MembraneUpdates`, `Footprint`). Per gate and layer, per token:

* spikes and firing rate (spikes / (d_model x tokens)); ActivationSparsity = 1 - firing rate.
* SynOps of the gated projection, measured from the tensors the model computed (forward hooks):
    pre gate  -> in_proj reads G(a, s): Effective_MACs = nonzero inputs x nonzero weights of
                 their column (NeuroBench: binary(input) x binary(weight)).
    post gate -> out_proj's output is multiplied by the gate factor (s, or g*s + 1 - g): an
                 output whose factor is 0 need not be computed, so Effective_MACs = nonzero
                 factors x nonzero weights of that output's row.
    residual  -> g * s added to the output: one AC per spike (Effective_ACs).
  Dense: every input x every weight, every token. With soft gating the factor is rarely 0, so
  effective and dense agree; that is the measured answer, not an estimate.
* MembraneUpdates: d_model per gate per token (every LIF neuron leaks every token).

Energy per token on the host devices of the device table: the whole model per token (every
layer's Mamba MACs as `report.backbone.mamba_step_macs` counts them, the gated projections as
above, RMSNorms and the LIF updates as neuron updates, the tied head), dense on a clocked
device and effective on an event-driven one, each term with its constant's citation. Where a
device does not publish a constant the term is named as not costed, never guessed. Neuromorphic
targets are not costed: the gates sit between analog Mamba ops that a spiking chip does not run,
so a chip estimate of the gates alone would not be the model's energy.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from neurodeploy.model.spikemamba_lm.model import SpikeMambaLM
from neurodeploy.report.backbone import mamba_step_macs
from neurodeploy.report.counts import module_footprint
from neurodeploy.report.devices import load_devices
from neurodeploy.report.errors import ReportError

PJ = 1e-12


@dataclass(frozen=True)
class GateCounts:
    name: str  # "layers.{i}.{gate}"
    projection: str  # what the spikes gate: "in_proj (input)", "out_proj (output)", "residual add"
    neurons: int
    spikes: int  # over all tokens of the run
    spikes_per_token: float
    firing_rate: float
    activation_sparsity: float
    membrane_updates_per_token: float
    effective_macs_per_token: float
    effective_acs_per_token: float
    dense_ops_per_token: float
    spikes_at_token: tuple[int, ...]  # per token position, summed over the batch


@dataclass(frozen=True)
class EnergyLine:
    device: str
    device_name: str
    event_driven: bool
    energy_per_token_j: float
    terms: tuple[dict, ...]  # {"part", "operation", "count_per_token", "constant_pj", "source", "energy_j"}
    not_costed: tuple[str, ...]


@dataclass(frozen=True)
class LMReport:
    tokens: int  # token positions x batch rows
    gates: tuple[GateCounts, ...]
    macs_per_token_dense: float
    elementwise_per_token: float
    footprint_bytes: int
    parameters: int
    energy: tuple[EnergyLine, ...]
    table: str

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [f"# SpikeMamba LM spike report ({self.tokens} tokens)", "",
                 "| gate | gates | spikes | spikes/token | firing rate | ActivationSparsity | Effective_MACs/token | "
                 "Effective_ACs/token | Dense/token |", "|---|---|---|---|---|---|---|---|---|"]
        for g in self.gates:
            lines.append(f"| {g.name} | {g.projection} | {g.spikes} | {g.spikes_per_token:.2f} | {g.firing_rate:.4f} | "
                         f"{g.activation_sparsity:.4f} | {g.effective_macs_per_token:,.0f} | {g.effective_acs_per_token:,.1f} "
                         f"| {g.dense_ops_per_token:,.0f} |")
        lines += ["", f"Whole model: {self.macs_per_token_dense:,.0f} dense MACs/token, {self.elementwise_per_token:,.0f} "
                  f"elementwise ops/token, {self.parameters:,} parameters, Footprint {self.footprint_bytes:,} bytes.", "",
                  f"## Energy per token (estimates, {self.table})", "", "| device | event-driven | energy/token | not costed |",
                  "|---|---|---|---|"]
        for e in self.energy:
            lines.append(f"| {e.device} ({e.device_name}) | {e.event_driven} | {e.energy_per_token_j * 1e9:.3f} nJ | "
                         f"{', '.join(e.not_costed) or '-'} |")
        sources = sorted({t["source"] for e in self.energy for t in e.terms if t["source"]})
        lines += ["", "Sources: " + "; ".join(sources)]
        return "\n".join(lines) + "\n"


@torch.no_grad()
def _run_with_hooks(model: SpikeMambaLM, tokens: torch.Tensor):
    """Forward once, capturing each layer's in_proj input (the gated activation)."""
    captured: dict[int, torch.Tensor] = {}
    handles = [block.spiking_mamba.mamba.in_proj.register_forward_hook(
        lambda _m, inputs, _o, i=i: captured.__setitem__(i, inputs[0].detach())) for i, block in enumerate(model.layers)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # adaptive pooling: said at load
            out = model(tokens)
    finally:
        for h in handles:
            h.remove()
    return out, captured


def count_gates(model: SpikeMambaLM, tokens: torch.Tensor) -> tuple[GateCounts, ...]:
    c = model.config
    out, in_proj_inputs = _run_with_hooks(model, tokens)
    n_tokens = tokens.numel()
    rows = []
    for i, block in enumerate(model.layers):
        layer = block.spiking_mamba
        m = layer.mamba
        for gate in c.gates:
            s = out.spikes[f"layers.{i}.{gate}"]  # (B, L, d)
            spikes = int(s.sum())
            if gate == "pre":
                fanout = (m.in_proj.weight != 0).float().sum(dim=0)  # per input column
                effective = float(((in_proj_inputs[i] != 0).float() * fanout).sum())
                dense = float(m.in_proj.weight.numel()) * n_tokens
                macs, acs, what = effective, 0.0, "in_proj (input)"
            elif gate == "post":
                factor = s if c.spike_gate_mode == "hard" else layer.spike_gate * s + (1 - layer.spike_gate)
                fanin = (m.out_proj.weight != 0).float().sum(dim=1)  # per output row
                effective = float(((factor != 0).float() * fanin).sum())
                dense = float(m.out_proj.weight.numel()) * n_tokens
                macs, acs, what = effective, 0.0, "out_proj (output)"
            else:
                macs, acs, dense, what = 0.0, float(spikes), float(c.d_model) * n_tokens, "residual add"
            rate = spikes / (c.d_model * n_tokens)
            rows.append(GateCounts(
                f"layers.{i}.{gate}", what, c.d_model, spikes, spikes / n_tokens, rate, 1.0 - rate, float(c.d_model),
                macs / n_tokens, acs / n_tokens, dense / n_tokens, tuple(int(v) for v in s.sum(dim=(0, 2)).tolist()),
            ))
    return tuple(rows)


def _per_token_work(model: SpikeMambaLM) -> tuple[float, float, dict[str, float]]:
    """Dense MACs and elementwise ops per token of the whole model, and the MACs of the gated projections."""
    c = model.config
    breakdown = mamba_step_macs(c.d_model, c.d_inner, c.d_state, c.d_conv, c.resolved_dt_rank)
    macs = c.n_layer * sum(breakdown.values()) + c.d_model * c.vocab_size  # layers + tied head
    # per layer: RMSNorm d, SiLU(conv) Di, softplus Di, exp(dA) Di*N, SiLU(z) Di, LIF d per gate; final RMSNorm d
    elementwise = c.n_layer * (c.d_model + 3 * c.d_inner + c.d_inner * c.d_state + c.d_model * len(c.gates)) + c.d_model
    gated = {"in_proj": float(breakdown["in_proj"]), "out_proj": float(breakdown["out_proj"])}
    return float(macs), float(elementwise), gated


def build_lm_report(model: SpikeMambaLM, tokens: torch.Tensor, *, hosts: tuple[str, ...] = ("cpu", "gpu", "arm", "cmos45nm"),
                    devices_file: str | Path | None = None) -> LMReport:
    if tokens.ndim != 2 or tokens.numel() == 0:
        raise ReportError(f"tokens of shape {tuple(tokens.shape)}; expected (batch, length >= 1) token ids")
    table = load_devices(devices_file)
    gates = count_gates(model, tokens)
    macs, elementwise, gated = _per_token_work(model)
    params, footprint = module_footprint(model)
    energy = []
    for key in hosts:
        device = table.get(key)
        if device.kind != "host":
            raise ReportError(f"{key!r} is a {device.kind} target; this family's report costs host devices (`--host`): "
                              f"{', '.join(sorted(k for k, d in table.devices.items() if d.kind == 'host'))}")
        # the gated projections are replaced by their effective counts on an event-driven device
        ungated_macs = macs
        terms_in = []
        for g in gates:
            proj = "in_proj" if g.projection.startswith("in_proj") else "out_proj" if g.projection.startswith("out_proj") else None
            if proj and device.event_driven:
                ungated_macs -= gated[proj]
                terms_in.append((g.name, "mac", g.effective_macs_per_token))
            if g.effective_acs_per_token and device.event_driven:
                terms_in.append((g.name, "ac", g.effective_acs_per_token))
            elif not proj and not device.event_driven:
                terms_in.append((g.name, "ac", g.dense_ops_per_token))
        terms_in.append(("model (dense part)" if device.event_driven else "model", "mac", ungated_macs))
        terms_in.append(("model", "neuron_update", elementwise))
        terms, not_costed = [], []
        for part, op, count in terms_in:
            constant = device.energy_per(op)
            if constant is None:
                if count > 0:
                    not_costed.append(f"{op} ({part})")
                terms.append({"part": part, "operation": op, "count_per_token": count, "constant_pj": None,
                              "source": None, "energy_j": None})
            else:
                terms.append({"part": part, "operation": op, "count_per_token": count, "constant_pj": constant.value,
                              "source": constant.source, "energy_j": count * constant.value * PJ})
        total = sum(t["energy_j"] for t in terms if t["energy_j"] is not None)
        energy.append(EnergyLine(key, device.name, device.event_driven, total, tuple(terms), tuple(not_costed)))
    return LMReport(int(tokens.numel()), gates, macs, elementwise, footprint, params, tuple(energy), table.version)


def write_lm_report(report: LMReport, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    paths["markdown"].write_text(report.to_markdown())
    return paths
