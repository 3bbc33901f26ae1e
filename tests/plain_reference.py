"""A deliberately plain, loop-by-loop implementation of the Mamba-Spike maths of docs/mamba_spike_model.md.

It reads weights from a reference-layout state_dict by name and uses only torch.nn.functional,
stepping every time step in Python, as the reference repository does. It shares no code with
neurodeploy.model, so it is an independent check for tests and the baseline for
benchmarks/offline.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _lif_reference(current, v_prev, beta, thr, reset):
    """snnTorch Leaky with reset applied one step late and a strict compare."""
    reset_t = (v_prev - thr > 0).float()
    if reset == "subtract":
        v = beta * v_prev + current - reset_t * thr
    elif reset == "zero":
        v = beta * (1 - reset_t) * v_prev + current
    else:
        v = beta * v_prev + current
    return (v - thr > 0).float(), v


def plain_frontend(sd, frames, beta, thr, reset="subtract", recurrent=False):
    """frames (B, T, 2, H, W) -> spikes of the last layer (B, T, C, h, w), one step at a time."""
    p = "spiking_frontend."
    B, T = frames.shape[:2]
    v = [None, None, None]
    s_prev = [None, None, None]
    out = []
    for t in range(T):
        x = frames[:, t]
        for k in range(3):
            cur = F.conv2d(x, sd[f"{p}conv{k + 1}.weight"], sd[f"{p}conv{k + 1}.bias"], padding=1)
            if k < 2:
                cur = F.max_pool2d(cur, 2)
            if recurrent and t > 0:
                cur = cur + F.conv2d(s_prev[k], sd[f"{p}recurrent{k + 1}.weight"], sd[f"{p}recurrent{k + 1}.bias"])
            if v[k] is None:
                v[k] = torch.zeros_like(cur)
            x, v[k] = _lif_reference(cur, v[k], beta, thr, reset)
            s_prev[k] = x
        out.append(x)
    return torch.stack(out, dim=1)


def plain_interface(spikes, k, centered):
    """(B, T, C, h, w) -> (B, T, C*h*w), 5-tap average with zero padding, divisor k."""
    flat = spikes.reshape(spikes.shape[0], spikes.shape[1], -1)
    T = flat.shape[1]
    out = []
    for t in range(T):
        lo, hi = (t - k // 2, t + k // 2) if centered else (t - k + 1, t)
        acc = torch.zeros_like(flat[:, 0])
        for j in range(lo, hi + 1):
            if 0 <= j < T:
                acc = acc + flat[:, j]
        out.append(acc / k)
    return torch.stack(out, dim=1)


def plain_mamba(sd, prefix, x):
    """The official block's maths with a Python loop over time (selective_scan_ref style)."""
    L = x.shape[1]
    A_log = sd[prefix + "A_log"]
    d_inner, d_state = A_log.shape
    dt_rank = sd[prefix + "dt_proj.weight"].shape[1]
    xz = x @ sd[prefix + "in_proj.weight"].T
    xs, z = xz[..., :d_inner], xz[..., d_inner:]
    conv_w = sd[prefix + "conv1d.weight"]
    u = F.conv1d(xs.transpose(1, 2), conv_w, padding=conv_w.shape[-1] - 1, groups=d_inner)[..., :L]
    u = F.silu(u).transpose(1, 2)
    x_dbl = u @ sd[prefix + "x_proj.weight"].T
    dt, Bm, Cm = x_dbl[..., :dt_rank], x_dbl[..., dt_rank:dt_rank + d_state], x_dbl[..., dt_rank + d_state:]
    delta = F.softplus(dt @ sd[prefix + "dt_proj.weight"].T + sd[prefix + "dt_proj.bias"])
    A = -torch.exp(A_log)
    h = torch.zeros(x.shape[0], d_inner, d_state, device=x.device)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * Bm[:, t, None, :] * u[:, t, :, None]
        ys.append(torch.einsum("bdn,bn->bd", h, Cm[:, t]) + sd[prefix + "D"] * u[:, t])
    y = torch.stack(ys, dim=1) * F.silu(z)
    return y @ sd[prefix + "out_proj.weight"].T


def plain_forward(sd, frames, *, beta, thr, reset="subtract", recurrent=False, centered=True, k=5):
    """Whole model: frames (B, T, 2, H, W) -> logits (B, classes)."""
    spikes = plain_frontend(sd, frames, beta, thr, reset, recurrent)
    x = plain_interface(spikes, k, centered) @ sd["input_proj.weight"].T + sd["input_proj.bias"]
    n_layers = len({key.split(".")[1] for key in sd if key.startswith("mamba_blocks.")})
    for i in range(n_layers):
        p = f"mamba_blocks.{i}."
        normed = F.layer_norm(x, x.shape[-1:], sd[p + "norm.weight"], sd[p + "norm.bias"])
        x = x + plain_mamba(sd, p + "mamba.", normed)
    pooled = x.mean(dim=1)
    pooled = F.layer_norm(pooled, pooled.shape[-1:], sd["norm.weight"], sd["norm.bias"])
    return pooled @ sd["classifier.weight"].T + sd["classifier.bias"]
