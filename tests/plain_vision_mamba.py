"""A deliberately plain, loop-by-loop Vision Mamba (bimamba v2) after docs/vision_mamba.md (FAMILIES.md §0, §3.1).

Written for the tests from the text, sharing no code with neurodeploy.model: it reads weights
from an upstream-layout state_dict by name, cuts patches with index arithmetic, and steps
every token of every layer in Python. The backward direction is written as an anti-causal
scan (t from L-1 down to 0, conv taps reaching forward in time) rather than flip -> scan ->
flip, so the two formulations check each other.
"""
from __future__ import annotations

import torch


def _sigmoid(v):
    return 1.0 / (1.0 + torch.exp(-v))


def _silu(v):
    return v * _sigmoid(v)


def _softplus(v):
    return torch.where(v > 20, v, torch.log1p(torch.exp(torch.clamp(v, max=20))))


def _norm(v, weight, bias, eps):
    """LayerNorm when `bias` is given, else weight-only RMSNorm; over the last axis."""
    if bias is None:
        return v / torch.sqrt((v * v).mean(-1, keepdim=True) + eps) * weight
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    return (v - mean) / torch.sqrt(var + eps) * weight + bias


def _patches(sd, image, patch, stride):
    """image (C, H, W) -> (M, D): one dot product per patch, row-major over the grid."""
    weight = sd["patch_embed.proj.weight"]  # (D, C, p, p)
    bias = sd["patch_embed.proj.bias"]
    grid = (image.shape[-1] - patch) // stride + 1
    flat_w = weight.reshape(weight.shape[0], -1)
    rows = []
    for gi in range(grid):
        for gj in range(grid):
            piece = image[:, gi * stride: gi * stride + patch, gj * stride: gj * stride + patch].reshape(-1)
            rows.append(flat_w @ piece + bias)
    return torch.stack(rows)


def _direction(sd, p, s, xs, zs, backward):
    """Conv, projections, scan and gate over one sequence xs, zs (L, Di). `s` is "" or "_b"."""
    length, d_inner = xs.shape
    conv_w = sd[f"{p}conv1d{s}.weight"][:, 0, :]  # (Di, K)
    conv_b = sd.get(f"{p}conv1d{s}.bias")
    K = conv_w.shape[1]
    x_proj = sd[f"{p}x_proj{s}.weight"]
    dt_w, dt_b = sd[f"{p}dt_proj{s}.weight"], sd[f"{p}dt_proj{s}.bias"]
    R = dt_w.shape[1]
    A = -torch.exp(sd[f"{p}A{s}_log"])
    N = A.shape[1]
    Dskip = sd[f"{p}D{s}"]
    h = torch.zeros(d_inner, N, dtype=xs.dtype)
    out = [None] * length
    order = range(length - 1, -1, -1) if backward else range(length)
    for t in order:
        c = torch.zeros(d_inner, dtype=xs.dtype) if conv_b is None else conv_b.clone()
        for k in range(K):
            # forward: taps x_{t-K+1+k}; backward (anti-causal): x_{t+K-1-k}
            tau = t + K - 1 - k if backward else t - K + 1 + k
            if 0 <= tau < length:
                c = c + conv_w[:, k] * xs[tau]
        u = _silu(c)
        dbl = x_proj @ u
        rho, Bt, Ct = dbl[:R], dbl[R:R + N], dbl[R + N:]
        delta = _softplus(dt_w @ rho + dt_b)
        for d in range(d_inner):
            h[d] = torch.exp(delta[d] * A[d]) * h[d] + delta[d] * u[d] * Bt
        y = h @ Ct + Dskip * u
        out[t] = y * _silu(zs[t])
    return torch.stack(out)


def _mixer(sd, i, seq, divide_out, apply_gamma):
    p = f"layers.{i}.mixer."
    W_in = sd[p + "in_proj.weight"]
    d_inner = W_in.shape[0] // 2
    xz = seq @ W_in.T
    if p + "in_proj.bias" in sd:
        xz = xz + sd[p + "in_proj.bias"]
    xs, zs = xz[:, :d_inner], xz[:, d_inner:]
    y = _direction(sd, p, "", xs, zs, backward=False) + _direction(sd, p, "_b", xs, zs, backward=True)
    if divide_out:
        y = y * 0.5
    out = y @ sd[p + "out_proj.weight"].T
    if p + "out_proj.bias" in sd:
        out = out + sd[p + "out_proj.bias"]
    if apply_gamma:
        out = out * sd[p + "gamma"]
    return out


def plain_vision_mamba(sd, images, *, patch, stride, cls_position="middle", final_pool_type="mean", eps=1e-5,
                       divide_out=False, apply_gamma=False):
    """images (B, C, H, W) -> (features (B, D), or (B, L, D) for 'max'; logits (B, classes)); image by image."""
    sd = {k: v.double() for k, v in sd.items()}
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("layers."))
    feats, logits = [], []
    for image in images.double():
        tokens = _patches(sd, image, patch, stride)
        M = tokens.shape[0]
        if cls_position == "middle":
            at = [M // 2]
            tokens = torch.cat([tokens[: M // 2], sd["cls_token"][0], tokens[M // 2:]])
        elif cls_position == "head":
            at = [0]
            tokens = torch.cat([sd["cls_token"][0], tokens])
        elif cls_position == "double":
            at = [0, M + 1]
            tokens = torch.cat([sd["cls_token_head"][0], tokens, sd["cls_token_tail"][0]])
        else:
            at = []
        if "pos_embed" in sd:
            tokens = tokens + sd["pos_embed"][0]
        residual, hidden = None, tokens
        for i in range(depth):
            residual = hidden if residual is None else residual + hidden
            normed = _norm(residual, sd[f"layers.{i}.norm.weight"], sd.get(f"layers.{i}.norm.bias"), eps)
            hidden = _mixer(sd, i, normed, divide_out, apply_gamma)
        final = _norm(residual + hidden, sd["norm_f.weight"], sd.get("norm_f.bias"), eps)
        head_w, head_b = sd["head.weight"], sd["head.bias"]
        if at:
            f = sum(final[j] for j in at) / len(at)
            feats.append(f)
            logits.append(head_w @ f + head_b)
        elif final_pool_type == "none":
            feats.append(final[-1])
            logits.append(head_w @ final[-1] + head_b)
        elif final_pool_type == "mean":
            f = final.mean(0)
            feats.append(f)
            logits.append(head_w @ f + head_b)
        else:  # max: a head per token, the max over tokens per class
            feats.append(final)  # no pooled vector: the head reads every token
            logits.append((final @ head_w.T + head_b).max(0).values)
    return torch.stack(feats).float(), torch.stack(logits).float()
