"""A deliberately plain, loop-by-loop SpikeMamba LM after FAMILIES.md §0-1, for the tests only.

It reads an upstream-layout state_dict by name and steps every token, every neuron state and
every conv tap in Python loops with elementary tensor ops. It shares no code with
neurodeploy.model (no Mamba module, no RMSNorm module, no LIF helper), so agreement with the
toolkit's model is an independent check. Returns logits, the spikes of every gate and the
final states, in the toolkit's naming ("layers.{i}.{gate}").
"""
from __future__ import annotations

import math

import torch


def _rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def _sigmoid(x):
    return 1.0 / (1.0 + torch.exp(-x))


def _softplus(x):
    return torch.where(x > 20, x, torch.log1p(torch.exp(x)))


def _mamba_token(sd, p, a, conv_hist, h):
    """One token of the official Mamba block. a (B, d); conv_hist (B, Di, K) raw x, oldest first."""
    Di, N = sd[p + "A_log"].shape
    xz = a @ sd[p + "in_proj.weight"].T
    if p + "in_proj.bias" in sd:
        xz = xz + sd[p + "in_proj.bias"]
    x, z = xz[:, :Di], xz[:, Di:]
    conv_hist = torch.cat([conv_hist[:, :, 1:], x[:, :, None]], dim=2)
    w = sd[p + "conv1d.weight"][:, 0, :]
    K = w.shape[1]
    c = torch.zeros_like(x)
    for k in range(K):
        c = c + conv_hist[:, :, k] * w[:, k]
    if p + "conv1d.bias" in sd:
        c = c + sd[p + "conv1d.bias"]
    u = c * _sigmoid(c)
    R = sd[p + "dt_proj.weight"].shape[1]
    dbl = u @ sd[p + "x_proj.weight"].T
    rho, Bm, Cm = dbl[:, :R], dbl[:, R:R + N], dbl[:, R + N:]
    delta = _softplus(rho @ sd[p + "dt_proj.weight"].T + sd[p + "dt_proj.bias"])
    A = -torch.exp(sd[p + "A_log"])
    h = torch.exp(delta[:, :, None] * A) * h + (delta * u)[:, :, None] * Bm[:, None, :]
    y = (h * Cm[:, None, :]).sum(-1) + sd[p + "D"] * u
    y = y * (z * _sigmoid(z))
    out = y @ sd[p + "out_proj.weight"].T
    if p + "out_proj.bias" in sd:
        out = out + sd[p + "out_proj.bias"]
    return out, conv_hist, h


def _lif_token(sd, p, x, st, reset_mode, period):
    """One step of one LIF gate; st = dict(v, I, a, r)."""
    adaptive = p + "threshold_adapt" in sd
    I = sd[p + "beta_syn"] * st["I"] + x
    mask = (st["r"] <= 0).float()
    v = sd[p + "beta_mem"] * st["v"] + I * mask
    theta = sd[p + "learnable_threshold"]
    if adaptive:
        theta = theta + sd[p + "threshold_adapt"] * st["a"] * sd[p + "threshold_scale"]
    else:
        theta = theta.expand_as(v)
    s = (v >= theta).float()
    if reset_mode == "subtract":
        v = v - s * theta
    else:
        v = v * (1 - s)
    a = 0.9 * st["a"] + 0.1 * s if adaptive else st["a"]
    r = st["r"].clone()
    for b in range(r.shape[0]):
        for j in range(r.shape[1]):
            r[b, j] = float(period) if s[b, j] == 1 else max(float(r[b, j]) - 1.0, 0.0)
    return s, {"v": v, "I": I, "a": a, "r": r}


def plain_spikemamba(sd, tokens, *, reset_mode="subtract", refractory_period=2, temporal_pooling="none",
                     rms_eps=2.0 ** -23, state=None):
    """tokens (B, L) int -> (logits (B, L, V), spikes {"layers.i.gate": (B, L, d)}, final state).

    `state` (optional, from a previous call) continues exactly; adaptive pooling uses the
    membranes after this call's last token.
    """
    B, L = tokens.shape
    E = sd["embedding.weight"]
    d = E.shape[1]
    n_layers = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    if state is None:
        state = []
        for i in range(n_layers):
            p = f"layers.{i}.spiking_mamba."
            Di, N = sd[p + "mamba.A_log"].shape
            K = sd[p + "mamba.conv1d.weight"].shape[-1]
            gates = [g for g in ("pre", "post", "residual") if f"{p}{g}_spiking.beta_mem" in sd]
            zeros = lambda: torch.zeros(B, d)  # noqa: E731
            state.append({"conv": torch.zeros(B, Di, K), "h": torch.zeros(B, Di, N),
                          "gates": {g: {"v": zeros(), "I": zeros(), "a": zeros(), "r": zeros()} for g in gates}})
    spikes = {}
    # layer by layer over the whole sequence (adaptive pooling needs the layer's final membranes)
    x = torch.stack([E[tokens[:, t]] for t in range(L)], dim=1)
    for i in range(n_layers):
        p = f"layers.{i}.spiking_mamba."
        st = state[i]
        soft = p + "spike_gate" in sd
        g = sd[p + "spike_gate"] if soft else None

        def gate(v, s):
            return v * (g * s + 1 - g) if soft else v * s

        outs = []
        for gname in st["gates"]:
            spikes[f"layers.{i}.{gname}"] = []
        for t in range(L):
            a = _rmsnorm(x[:, t], sd[f"layers.{i}.norm.weight"], rms_eps)
            m_in = a
            if "pre" in st["gates"]:
                s, st["gates"]["pre"] = _lif_token(sd, p + "pre_spiking.", a, st["gates"]["pre"], reset_mode, refractory_period)
                spikes[f"layers.{i}.pre"].append(s)
                m_in = gate(a, s)
            out, st["conv"], st["h"] = _mamba_token(sd, p + "mamba.", m_in, st["conv"], st["h"])
            if "post" in st["gates"]:
                s, st["gates"]["post"] = _lif_token(sd, p + "post_spiking.", out, st["gates"]["post"], reset_mode,
                                                    refractory_period)
                spikes[f"layers.{i}.post"].append(s)
                out = gate(out, s)
            if "residual" in st["gates"]:
                s, st["gates"]["residual"] = _lif_token(sd, p + "residual_spiking.", a, st["gates"]["residual"], reset_mode,
                                                        refractory_period)
                spikes[f"layers.{i}.residual"].append(s)
                out = out + g * s
            outs.append(out)
        if temporal_pooling == "learnable":
            scale = 1 + sd[p + "temporal_pooling_weights"]
        elif temporal_pooling == "adaptive":
            activity = 0.0
            for gs in st["gates"].values():
                activity += float(gs["v"].abs().mean())
            scale = 1.0 / (1.0 + math.exp(-activity))
        else:
            scale = 1.0
        x = torch.stack([x[:, t] + outs[t] * scale for t in range(L)], dim=1)
        for gname in st["gates"]:
            spikes[f"layers.{i}.{gname}"] = torch.stack(spikes[f"layers.{i}.{gname}"], dim=1)
    logits = torch.stack([_rmsnorm(x[:, t], sd["norm_f.weight"], rms_eps) @ E.T for t in range(L)], dim=1)
    return logits, spikes, state
