"""Seeded SpikeMamba LMs whose gates fire: fixtures for tests, the README tour and benchmarks.

Upstream's initial values (threshold 1, every threshold scale 1, gate 0.5) leave some gates
silent on short inputs, which would let a spike test pass without testing spikes. Here every
LIF parameter is drawn per neuron in a range where RMS-normalised inputs and the Mamba
outputs cross threshold within a few tokens, and every other weight is upstream-like random.
`write_upstream_checkpoint` saves what upstream's users have: `torch.save(model.state_dict())`
(tied keys both present) and a JSON config of the fields the state_dict cannot tell.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from neurodeploy.model.spikemamba_lm.config import SpikeMambaLMConfig
from neurodeploy.model.spikemamba_lm.model import SpikeMambaLM


def firing_model(config: SpikeMambaLMConfig, seed: int = 0) -> SpikeMambaLM:
    torch.manual_seed(seed)
    model = SpikeMambaLM(config)
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=gen) * (hi - lo) + lo

    with torch.no_grad():
        # upstream's init (N(0, 0.02)): small against the layer outputs, so generation does not just
        # repeat the last token
        model.embedding.weight.normal_(0.0, 0.02, generator=gen)
        for block in model.layers:
            block.norm.weight.copy_(uniform(block.norm.weight.shape, 0.5, 1.5))
            layer = block.spiking_mamba
            m = layer.mamba
            m.out_proj.weight.mul_(4.0)  # Mamba outputs of order 1, so the post gates fire too
            if m.conv1d.bias is not None:
                m.conv1d.bias.copy_(uniform(m.conv1d.bias.shape, -0.2, 0.2))
            for proj in (m.in_proj, m.out_proj):
                if proj.bias is not None:
                    proj.bias.copy_(uniform(proj.bias.shape, -0.1, 0.1))
            m.dt_proj.bias.copy_(uniform(m.dt_proj.bias.shape, -3.0, -1.0))
            for gate in config.gates:
                lif = getattr(layer, f"{gate}_spiking")
                lif.beta_mem.fill_(float(uniform((), 0.6, 0.95)))
                lif.beta_syn.fill_(float(uniform((), 0.5, 0.9)))
                # the post gate sees Mamba outputs (smaller than the normalised inputs of the others)
                low, high = (0.05, 0.3) if gate == "post" else (0.3, 1.2)
                lif.learnable_threshold.copy_(uniform(lif.learnable_threshold.shape, low, high))
                if config.adaptive_threshold:
                    lif.threshold_adapt.fill_(float(uniform((), 0.5, 2.0)))
                    lif.threshold_scale.copy_(uniform(lif.threshold_scale.shape, 0.2, 1.5))
            if config.spike_gate_mode == "soft":
                layer.spike_gate.copy_(uniform(layer.spike_gate.shape, 0.1, 0.9))
            if config.temporal_pooling == "learnable":
                layer.temporal_pooling_weights.fill_(float(uniform((), -0.3, 0.3)))
        model.norm_f.weight.copy_(uniform(model.norm_f.weight.shape, 0.5, 1.5))
    return model.eval()


# the fields an upstream state_dict cannot tell (FAMILIES.md §1.3), as a user would write them
def upstream_config(config: SpikeMambaLMConfig) -> dict:
    out = {"reset_mode": config.reset_mode, "refractory_period": config.refractory_period,
           "temporal_pooling": config.temporal_pooling}
    if config.rms_norm_eps != SpikeMambaLMConfig.__dataclass_fields__["rms_norm_eps"].default:
        out["rms_norm_eps"] = config.rms_norm_eps
    return out


def write_upstream_checkpoint(model: SpikeMambaLM, directory: str | Path, stem: str = "spikemamba") -> tuple[Path, Path]:
    """`<stem>.pt` (torch.save of the state_dict, as upstream) and `<stem>.json` (the config)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, config = directory / f"{stem}.pt", directory / f"{stem}.json"
    torch.save(model.state_dict(), weights)
    config.write_text(json.dumps(upstream_config(model.config), indent=2) + "\n", encoding="utf-8")
    return weights, config
