"""The Vision Mamba report: dense MACs, parameter footprint and energy per image on host devices.

Nothing is spiking and nothing is skipped, so every count follows from the geometry (T = the
token count, M patches plus the cls tokens; d = d_inner, n = d_state, R = dt_rank, K = d_conv):

  patch_embed   M * D * C * p²  (the strided Conv2d)
  layer, per token: norm D elementwise; in_proj D*2d; per direction (forward and backward):
                conv1d d*K, x_proj d*(R+2n), dt_proj R*d, scan 4dn + 3d, elementwise SiLU of the
                conv d, softplus d, exp(delta*A) dn, SiLU of z d; the sum of the directions d;
                out_proj d*D; the residual D
  head          norm_f over every token (D elementwise each, as the model computes it), the
                pooling, the classifier D*classes once (per token for 'max' pooling)

The per-direction terms are the ones `report.backbone.mamba_step_macs` prices for one Mamba
layer, so both families are costed alike. Energy = MACs x the device's MAC (or synaptic-op)
constant + elementwise ops x its neuron-update constant, via `report.energy.backbone_energy`,
for every `host` device of the table (a clocked device does the dense count). Constants carry
their citations; memory traffic is not costed (the table's own caveat).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurodeploy.model.family import LoadedModel
from neurodeploy.report.backbone import BackboneLayerCounts, mamba_step_macs
from neurodeploy.report.counts import module_footprint
from neurodeploy.report.devices import load_devices
from neurodeploy.report.energy import EnergyEstimate, backbone_energy
from neurodeploy.report.errors import ReportError

_PER_DIRECTION = ("conv1d", "x_proj", "dt_proj", "scan")


@dataclass(frozen=True)
class VisionMambaReport:
    family: str
    tokens: int
    rows: tuple[BackboneLayerCounts, ...]  # per token ("step") and per image ("sample")
    energy: tuple[EnergyEstimate, ...]  # one per host device

    @property
    def macs_per_image(self) -> float:
        return sum(r.macs_per_sample for r in self.rows)

    @property
    def parameters(self) -> int:
        return sum(r.parameters for r in self.rows)

    @property
    def footprint_bytes(self) -> int:
        return sum(r.footprint_bytes for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "tokens": self.tokens,
            "macs_per_image": self.macs_per_image,
            "gflops_per_image": 2 * self.macs_per_image / 1e9,
            "parameters": self.parameters,
            "footprint_bytes": self.footprint_bytes,
            "layers": [{"name": r.name, "macs_per_image": r.macs_per_sample, "elementwise_per_image": r.elementwise_per_sample,
                        "parameters": r.parameters, "footprint_bytes": r.footprint_bytes, "macs_per_token": r.breakdown_per_step}
                       for r in self.rows],
            "energy_per_image": [{"device": e.device, "name": e.device_name, "table": e.table, "joules": e.total_j,
                                  "not_costed": list(e.not_costed), "sources": list(e.sources)} for e in self.energy],
        }

    def to_markdown(self) -> str:
        lines = [f"# {self.family}: cost per image ({self.tokens} tokens)", "",
                 f"- dense MACs per image: {self.macs_per_image / 1e6:.1f} M ({2 * self.macs_per_image / 1e9:.3f} GFLOP)",
                 f"- parameters: {self.parameters:,} ({self.footprint_bytes / 2**20:.2f} MiB)", "",
                 "| host device | energy per image | constants |", "|---|---|---|"]
        for e in self.energy:
            missing = f" (not costed: {', '.join(e.not_costed)})" if e.not_costed else ""
            lines.append(f"| {e.device_name} | {e.total_j * 1e3:.3f} mJ{missing} | {'; '.join(e.sources)} |")
        lines += ["", "| stage | MMACs / image | parameters |", "|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r.name} | {r.macs_per_sample / 1e6:.2f} | {r.parameters:,} |")
        return "\n".join(lines) + "\n"


def count_vision_mamba(loaded: LoadedModel) -> tuple[BackboneLayerCounts, ...]:
    model, c = loaded.model, loaded.config
    tokens = c.num_tokens
    rows = []
    embed = c.num_patches * c.embed_dim * c.in_chans * c.patch_size**2
    params, size = module_footprint(model.patch_embed)
    extra = [getattr(model, n) for n in ("cls_token", "cls_token_head", "cls_token_tail", "pos_embed") if hasattr(model, n)]
    params += sum(p.numel() for p in extra)
    size += sum(p.numel() * p.element_size() for p in extra)
    rows.append(BackboneLayerCounts("patch_embed (+ cls, pos_embed)", embed / tokens, embed, embed, 0.0, 0.0, params, size,
                                    {"patch_embed": embed / tokens}))
    one = mamba_step_macs(c.embed_dim, c.d_inner, c.d_state, c.d_conv, c.dt_rank)
    per_token = {k: (2 * v if k in _PER_DIRECTION else v) for k, v in one.items()}
    per_token["sum of directions"] = c.d_inner
    macs = float(sum(per_token.values()))
    elementwise = float(c.embed_dim + 2 * (3 * c.d_inner + c.d_inner * c.d_state))
    for i, layer in enumerate(model.layers):
        params, size = module_footprint(layer)
        rows.append(BackboneLayerCounts(f"layers.{i}", macs, macs * tokens, macs * tokens, elementwise, elementwise * tokens,
                                        params, size, dict(per_token)))
    head_uses = tokens if (c.cls_position == "none" and c.final_pool_type == "max") else 1
    head = c.embed_dim * c.num_classes * head_uses
    params, size = module_footprint(model.norm_f, model.head)
    rows.append(BackboneLayerCounts("head (norm_f, pool, classifier)", head / tokens, float(head), float(head),
                                    float(c.embed_dim), float(c.embed_dim * tokens), params, size,
                                    {"classifier (per image)": float(head)}))
    return tuple(rows)


def vision_mamba_report(loaded: LoadedModel, *, devices_file: str | Path | None = None,
                        hosts: tuple[str, ...] | None = None) -> VisionMambaReport:
    """Counts and energy per image; `hosts` picks devices of the table (default: every host device)."""
    if not hasattr(loaded.config, "num_tokens"):
        raise ReportError(f"{loaded.family.name}: not a Vision Mamba model; use the event-stream report")
    table = load_devices(devices_file)
    if hosts is None:
        chosen = [d for d in table.devices.values() if d.kind == "host"]
    else:
        chosen = [table.get(key) for key in hosts]
    rows = count_vision_mamba(loaded)
    return VisionMambaReport(loaded.family.name, loaded.config.num_tokens, rows,
                             tuple(backbone_energy(device, rows) for device in chosen))
