"""Small seeded Mamba-Liquid-Spiking checkpoints in upstream's layout, for the liquid tests.

Each is a bare state_dict (as upstream's users save it, after a forward call: the lazy
projections are present) with the dead modules upstream creates, plus the ModelConfig JSON
fields. Weights are scaled so the encoders fire; one LIF has beta > 1 (snnTorch clamps it)
and one a graded spike factor, the CfC mask is sparse, and A_log is S4D-real.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

SIZES = dict(vocab_size=23, input_dim=12, hidden_dim=16, output_dim=23, spiking_units=10, liquid_units=16,
             num_layers=2, mamba_d_state=4, mamba_d_conv=3, mamba_expand=2)


def upstream_config(mode: str, backbone: str = "ncp", **extra) -> dict:
    """The JSON upstream's save_config writes (the fields that matter plus a few it ignores)."""
    return {"task_type": "llm", **SIZES, "liquid_backbone": backbone, "integration_mode": mode,
            "spike_threshold": 1.0, "beta": 0.9, "dropout": 0.2, "num_spike_steps": 3, "sequence_length": 12,
            "use_mamba": True, "use_cross_attention": mode == "bidirectional", "cross_attn_heads": 8,
            "num_gate_heads": 4, "spike_to_mamba_method": "temporal", "spike_temporal_tau": 20.0,
            "layer_norm_eps": 1e-5, "use_adaptive_gating": True, **extra}


def make_state_dict(mode: str, backbone: str = "ncp", seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    S, U, H, F0 = SIZES["spiking_units"], SIZES["liquid_units"], SIZES["hidden_dim"], SIZES["input_dim"]
    Di, N, K = SIZES["mamba_expand"] * H, SIZES["mamba_d_state"], SIZES["mamba_d_conv"]
    R = -(-H // 16)
    e = min(U, H) // 8

    def w(*shape, scale=None):
        scale = scale if scale is not None else shape[-1] ** -0.5
        return torch.randn(*shape, generator=g) * scale

    def linear(sd, name, out, inp, bias=True, scale=None):
        sd[f"{name}.weight"] = w(out, inp, scale=scale)
        if bias:
            sd[f"{name}.bias"] = w(out, scale=0.1)

    def norm(sd, name, width):
        sd[f"{name}.weight"] = 1 + w(width, scale=0.1)
        sd[f"{name}.bias"] = w(width, scale=0.1)

    sd: dict[str, torch.Tensor] = {"embedding.weight": w(SIZES["vocab_size"], F0, scale=1.0)}
    kernel = torch.exp(-torch.arange(50, dtype=torch.float32) / 20.0)
    for i in range(SIZES["num_layers"]):
        p = f"blocks.{i}."
        linear(sd, p + "spike_encoder.fc1", 2 * S, F0, scale=1.2)
        linear(sd, p + "spike_encoder.fc2", S, 2 * S, scale=0.9)
        for k, (beta, graded) in enumerate(((0.9, 1.0), (1.2, 2.0) if i == 1 else (0.8, 1.0))):
            q = f"{p}spike_encoder.lif{k + 1}."
            sd[q + "threshold"] = torch.tensor(1.0)
            sd[q + "beta"] = torch.tensor(beta)
            sd[q + "graded_spikes_factor"] = torch.tensor(graded)
            sd[q + "reset_mechanism_val"] = torch.tensor(0)
        linear(sd, p + "liquid_cell.fallback", U, S)
        if backbone == "ncp":
            c = p + "liquid_cell.cell.rnn_cell.layer_0."
            mask = torch.ones(U, S + U)
            mask[:, :S] = (torch.rand(U, S, generator=g) > 0.3).float()
            sd[c + "sparsity_mask"] = mask
            for name in ("ff1", "ff2", "time_a", "time_b"):
                linear(sd, c + name, U, S + U)
        elif backbone == "cfc":
            for layer in range(3):  # AutoNCP(U+4, U) layers: never run upstream
                linear(sd, f"{p}liquid_cell.cell.rnn_cell.layer_{layer}.ff1", 4, S + 4)
        else:
            sd[p + "liquid_cell.cell.rnn_cell.gleak"] = torch.ones(U + 4)
        m = p + "mamba."
        sd[m + "in_proj.weight"] = w(2 * Di, H)
        sd[m + "conv1d.weight"] = w(Di, 1, K, scale=0.5)
        sd[m + "conv1d.bias"] = w(Di, scale=0.1)
        sd[m + "out_proj.weight"] = w(H, Di)
        norm(sd, m + "norm", Di)
        sd[m + "ssm.A_log"] = torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(Di, 1)
        sd[m + "ssm.D"] = 1 + w(Di, scale=0.1)
        sd[m + "ssm.x_proj.weight"] = w(R + 2 * N, Di)
        linear(sd, m + "ssm.dt_proj", Di, R)
        sd[m + "ssm.dt_proj.bias"] = torch.log(torch.expm1(torch.full((Di,), 0.05))) + w(Di, scale=0.1)
        sd[p + "spike_to_mamba.temporal_kernel"] = kernel / kernel.sum()
        linear(sd, p + "spike_to_mamba.spike_projection", H, S, scale=1.0)
        linear(sd, p + "mamba_to_spike.projection", S, H)  # dead
        sd[p + "mamba_to_spike.adaptive_threshold"] = torch.ones(1) * 0.5
        sd[p + "liquid_to_hidden.projection.weight"] = w(H, U)
        norm(sd, p + "liquid_to_hidden.norm", H)
        sd[p + "hidden_to_liquid.projection.weight"] = w(U, H)  # dead
        norm(sd, p + "hidden_to_liquid.norm", U)
        if mode == "parallel":
            linear(sd, p + "gate.liquid_query", H, H)
            linear(sd, p + "gate.mamba_key", H, H)
            linear(sd, p + "gate.gate_projection", 4, H, scale=1.0)
            sd[p + "gate.temperature"] = torch.tensor([0.7])
        if mode == "bidirectional":
            linear(sd, p + "bidirectional_exchange.liquid_to_mamba_B", N, U)  # dead
            for name, out, inp in (("liquid_q", 8 * e, U), ("mamba_kv", 16 * e, H), ("mamba_q", 8 * e, H),
                                   ("liquid_kv", 16 * e, U), ("liquid_out", U, 8 * e), ("mamba_out", H, 8 * e)):
                linear(sd, p + "cross_attention." + name, out, inp, scale=0.8)
        norm(sd, p + "norm1", H)
        norm(sd, p + "norm2", H)
        if i >= 1:
            linear(sd, p + "input_proj", F0, H, scale=1.0)
        linear(sd, p + "residual_proj", H, F0)
    linear(sd, "output_head", SIZES["output_dim"], H)
    return sd


def write_checkpoint(directory: Path, mode: str, backbone: str = "ncp", seed: int = 0, **config_extra) -> tuple[Path, Path]:
    """Write `model.pt` (bare state_dict) and `config.json` (upstream ModelConfig JSON) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ckpt, config = directory / "model.pt", directory / "config.json"
    torch.save(make_state_dict(mode, backbone, seed), ckpt)
    config.write_text(json.dumps(upstream_config(mode, backbone, **config_extra)))
    return ckpt, config
