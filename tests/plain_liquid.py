"""A deliberately plain, loop-by-loop Mamba-Liquid-Spiking (FAMILIES.md §2), written for the tests.

It reads weights from an upstream-layout state_dict by name and steps every time step (and
every conv tap, kernel tap and head) in Python, with hand-written LayerNorm, silu and softmax.
It shares no code with neurodeploy.model, so it is an independent check of the model, the
ONNX graphs and the NIR encoders.
"""
from __future__ import annotations

import math

import torch


def _linear(sd, name, x, bias=True):
    y = x @ sd[f"{name}.weight"].T
    return y + sd[f"{name}.bias"] if bias else y


def _layer_norm(sd, name, x, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def _silu(x):
    return x / (1 + torch.exp(-x))


def _sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def _softplus(x):
    return torch.log1p(torch.exp(x))


def plain_encoder(sd, p, x):
    """snnTorch Leaky x2: x (B, T, F0) -> spikes of both layers; membranes zero at the start."""
    T = x.shape[1]
    layers = ([], [])
    v = [None, None]
    inp = None
    for t in range(T):
        inp = x[:, t]
        for k, name in enumerate(("lif1", "lif2")):
            cur = _linear(sd, f"{p}spike_encoder.fc{k + 1}", inp)
            beta = sd[f"{p}spike_encoder.{name}.beta"].clamp(0, 1)
            thr = sd[f"{p}spike_encoder.{name}.threshold"]
            g = sd[f"{p}spike_encoder.{name}.graded_spikes_factor"]
            if v[k] is None:
                v[k] = torch.zeros_like(cur)
            reset = (v[k] - thr > 0).float()
            v[k] = beta * v[k] + cur - reset * thr
            inp = g * (v[k] - thr > 0).float()
            layers[k].append(inp)
    return torch.stack(layers[0], 1), torch.stack(layers[1], 1)


def plain_liquid(sd, p, o, backbone, h0=None):
    """o (B, T, S) -> q (B, T, U)."""
    if backbone != "ncp":
        return _linear(sd, f"{p}liquid_cell.fallback", o)
    c = f"{p}liquid_cell.cell.rnn_cell.layer_0."
    mask = sd[c + "sparsity_mask"]
    U = mask.shape[0]
    h = torch.zeros(o.shape[0], U) if h0 is None else h0
    out = []
    for t in range(o.shape[1]):
        x = torch.cat([o[:, t], h], 1)
        f1 = torch.tanh(x @ (sd[c + "ff1.weight"] * mask).T + sd[c + "ff1.bias"])
        f2 = torch.tanh(x @ (sd[c + "ff2.weight"] * mask).T + sd[c + "ff2.bias"])
        tau = _sigmoid(_linear(sd, c + "time_a", x) + _linear(sd, c + "time_b", x))
        h = f1 * (1 - tau) + tau * f2
        out.append(h)
    return torch.stack(out, 1)


def plain_mamba(sd, p, a):
    """a (B, T, H) -> (out (B, T, H), scan output y before LayerNorm (B, T, Di))."""
    m = f"{p}mamba."
    W_in = sd[m + "in_proj.weight"]
    Di = W_in.shape[0] // 2
    w = sd[m + "conv1d.weight"][:, 0]  # (Di, K)
    K = w.shape[1]
    A = -torch.exp(sd[m + "ssm.A_log"])
    N = A.shape[1]
    W_x = sd[m + "ssm.x_proj.weight"]
    R = W_x.shape[0] - 2 * N
    B_, T = a.shape[:2]
    xz = a @ W_in.T
    x, z = xz[..., :Di], xz[..., Di:]
    h = torch.zeros(B_, Di, N)
    ys, outs = [], []
    for t in range(T):
        c = sd[m + "conv1d.bias"].expand(B_, Di).clone()
        for k in range(K):
            tau = t - K + 1 + k
            if tau >= 0:
                c = c + w[:, k] * x[:, tau]
        u = _silu(c)
        proj = u @ W_x.T
        rho, Bt, Ct = proj[:, :R], proj[:, R:R + N], proj[:, R + N:]
        delta = _softplus(rho @ sd[m + "ssm.dt_proj.weight"].T + sd[m + "ssm.dt_proj.bias"])
        h = torch.exp(delta[:, :, None] * A) * h + (delta * u)[:, :, None] * Bt[:, None, :]
        y = (h * Ct[:, None, :]).sum(-1) + sd[m + "ssm.D"] * u
        ys.append(y)
        outs.append((_layer_norm(sd, m + "norm", y) * _silu(z[:, t])) @ sd[m + "out_proj.weight"].T)
    return torch.stack(outs, 1), torch.stack(ys, 1)


def plain_temporal(sd, p, o):
    kappa = sd[f"{p}spike_to_mamba.temporal_kernel"]
    T = o.shape[1]
    k = min(kappa.numel(), T)
    pad = k // 2
    rho = []
    for t in range(T):
        acc = torch.zeros_like(o[:, 0])
        for j in range(k):
            src = t + j - pad
            if 0 <= src < T:
                acc = acc + kappa[j] * o[:, src]
        rho.append(acc)
    return _linear(sd, f"{p}spike_to_mamba.spike_projection", torch.stack(rho, 1))


def plain_gate(sd, p, liquid, mamba, heads=4):
    g = _sigmoid(_linear(sd, f"{p}gate.gate_projection",
                         _linear(sd, f"{p}gate.liquid_query", liquid) * _linear(sd, f"{p}gate.mamba_key", mamba))
                 / sd[f"{p}gate.temperature"])
    H = liquid.shape[-1]
    width = H // heads
    out = torch.empty_like(liquid)
    for hd in range(heads):
        sl = slice(hd * width, (hd + 1) * width)
        out[..., sl] = g[..., hd:hd + 1] * liquid[..., sl] + (1 - g[..., hd:hd + 1]) * mamba[..., sl]
    return out


def _heads_attention(query, key_value, e, heads=8):
    """query (B, heads*e), key_value (B, heads*2e) -> (B, heads*e); attention across heads."""
    out = []
    for i in range(heads):
        q = query[:, i * e:(i + 1) * e]
        scores = torch.stack([(q * key_value[:, j * 2 * e:j * 2 * e + e]).sum(-1) / math.sqrt(e)
                              for j in range(heads)], -1)
        weights = torch.exp(scores - scores.max(-1, keepdim=True).values)
        weights = weights / weights.sum(-1, keepdim=True)
        out.append(sum(weights[:, j:j + 1] * key_value[:, j * 2 * e + e:(j + 1) * 2 * e] for j in range(heads)))
    return torch.cat(out, -1)


def plain_xattn(sd, p, q_liquid, m):
    c = f"{p}cross_attention."
    e = min(q_liquid.shape[-1], m.shape[-1]) // 8
    lq, mq = [], []
    for t in range(q_liquid.shape[1]):
        ql, mt = q_liquid[:, t], m[:, t]
        lq.append(ql + _linear(sd, c + "liquid_out",
                               _heads_attention(_linear(sd, c + "liquid_q", ql), _linear(sd, c + "mamba_kv", mt), e)))
        mq.append(mt + _linear(sd, c + "mamba_out",
                               _heads_attention(_linear(sd, c + "mamba_q", mt), _linear(sd, c + "liquid_kv", ql), e)))
    return torch.stack(lq, 1), torch.stack(mq, 1)


def plain_forward(sd, ids, *, mode, backbone, num_spike_steps=1):
    """ids (B, T) -> (logits, [per-block dict of intermediates])."""
    x = sd["embedding.weight"][ids]
    f0 = x.shape[-1]
    n = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    blocks = []
    for i in range(n):
        p = f"blocks.{i}."
        x_p = _linear(sd, p + "input_proj", x) if x.shape[-1] != f0 else x
        r = _linear(sd, p + "residual_proj", x_p) if p + "residual_proj.weight" in sd else x_p
        enc_in = x_p.repeat(1, num_spike_steps, 1) if x_p.shape[1] == 1 else x_p
        s1, o = plain_encoder(sd, p, enc_in)
        q = plain_liquid(sd, p, o, backbone)

        def lh(v):
            return _layer_norm(sd, p + "liquid_to_hidden.norm", v @ sd[p + "liquid_to_hidden.projection.weight"].T)

        ell = lh(q)
        if mode == "sequential":
            m, y = plain_mamba(sd, p, _layer_norm(sd, p + "norm1", ell))
            out = _layer_norm(sd, p + "norm2", m + r)
        else:
            m, y = plain_mamba(sd, p, _layer_norm(sd, p + "norm1", plain_temporal(sd, p, o)))
            if mode == "parallel":
                out = _layer_norm(sd, p + "norm2", plain_gate(sd, p, ell, m) + r)
            else:
                qn, mn = plain_xattn(sd, p, q, m)
                out = _layer_norm(sd, p + "norm2", 0.5 * lh(qn) + 0.5 * mn + r)
        blocks.append({"lif1": s1, "lif2": o, "liquid": q, "scan": y, "mamba": m, "output": out})
        x = out
    return _linear(sd, "output_head", x), blocks
