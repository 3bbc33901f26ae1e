"""Vision Mamba (bimamba v2) in PyTorch, after docs/vision_mamba.md.

Module and parameter names are upstream's (`patch_embed.proj`, `cls_token`, `pos_embed`,
`layers.{i}.norm`, `layers.{i}.mixer.*` with the `_b` set, `norm_f`, `head`), so training
checkpoints load strictly. Maths per image:

    tokens = flatten(Conv2d_{p, s}(image))                       (B, M, D), row-major
    tokens = insert cls at c (middle ⌊M/2⌋, head 0, double 0 and M+1) + pos_embed
    res_0 = tokens;  h_0 = Mixer_0(Norm_0(res_0))
    res_i = res_{i-1} + h_{i-1};  h_i = Mixer_i(Norm_i(res_i))  (residual in fp32)
    f = Norm_f(res_{n-1} + h_{n-1})[:, c];  logits = head(f)

A mixer runs the official Mamba block's steps 2-7 (docs/vision_mamba.md, "Mixer") twice on one in_proj:
forward on (x, z), and backward on x and z reversed in time with the `_b` conv, projections
and scan parameters, its output reversed back; `out_proj` of the sum (halved with
`divide_out`, times `gamma` when the config applies it). The scan is
`neurodeploy.model.mamba.selective_scan` (vectorised exponentials, one recurrence loop).
The model has no step form: bidirectional mixing needs the whole sequence (docs/vision_mamba.md, "Deployment").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.errors import NeurodeployError
from neurodeploy.model.mamba import selective_scan
from neurodeploy.model.vision_mamba.config import VisionMambaConfig


class ImageShapeError(NeurodeployError, ValueError):
    """Images of another size or channel count than the model was built for."""


class RMSNorm(nn.Module):
    """Weight-only RMSNorm, as mamba_ssm's: x / sqrt(mean(x²) + eps) * weight."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


def make_norm(config: VisionMambaConfig) -> nn.Module:
    if config.norm == "rms":
        return RMSNorm(config.embed_dim, config.norm_eps)
    return nn.LayerNorm(config.embed_dim, eps=config.norm_eps)


class BiMambaMixer(nn.Module):
    """bimamba v2: one in_proj / out_proj, a forward and a time-reversed scan."""

    def __init__(self, config: VisionMambaConfig):
        super().__init__()
        c = config
        self.config = c
        self.in_proj = nn.Linear(c.embed_dim, 2 * c.d_inner, bias=c.proj_bias)
        self.out_proj = nn.Linear(c.d_inner, c.embed_dim, bias=c.proj_bias)
        for suffix in ("", "_b"):
            self.add_module(f"conv1d{suffix}", nn.Conv1d(c.d_inner, c.d_inner, c.d_conv, groups=c.d_inner,
                                                         padding=c.d_conv - 1, bias=c.conv_bias))
            self.add_module(f"x_proj{suffix}", nn.Linear(c.d_inner, c.dt_rank + 2 * c.d_state, bias=False))
            self.add_module(f"dt_proj{suffix}", nn.Linear(c.dt_rank, c.d_inner, bias=True))
        self.A_log = nn.Parameter(torch.zeros(c.d_inner, c.d_state))
        self.A_b_log = nn.Parameter(torch.zeros(c.d_inner, c.d_state))
        self.D = nn.Parameter(torch.ones(c.d_inner))
        self.D_b = nn.Parameter(torch.ones(c.d_inner))
        if c.layer_scale:
            self.gamma = nn.Parameter(torch.ones(c.embed_dim))

    def _scan(self, x: torch.Tensor, z: torch.Tensor, suffix: str) -> torch.Tensor:
        """The Mamba-1 steps conv -> gate for one direction: x, z (B, L, d_inner) in the order they are scanned."""
        c = self.config
        conv: nn.Conv1d = getattr(self, f"conv1d{suffix}")
        x_proj: nn.Linear = getattr(self, f"x_proj{suffix}")
        dt_proj: nn.Linear = getattr(self, f"dt_proj{suffix}")
        length = x.shape[1]
        u = F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, padding=c.d_conv - 1, groups=c.d_inner)[..., :length]
        u = F.silu(u).transpose(1, 2)
        dt, B, C = torch.split(x_proj(u), [c.dt_rank, c.d_state, c.d_state], dim=-1)
        A = -torch.exp(getattr(self, f"A{suffix}_log").float())
        y, _ = selective_scan(u, F.linear(dt, dt_proj.weight), A, B, C, getattr(self, f"D{suffix}"), z, dt_proj.bias)
        return y

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        y_forward = self._scan(x, z, "")
        y_backward = self._scan(x.flip(1), z.flip(1), "_b").flip(1)
        y = y_forward + y_backward
        if self.config.divide_out:
            y = y / 2
        out = self.out_proj(y)
        if self.config.layer_scale and self.config.gamma == "apply":
            out = out * self.gamma
        return out


class Block(nn.Module):
    """Add -> norm -> mixer, as upstream's `Block` (the residual is returned alongside)."""

    def __init__(self, config: VisionMambaConfig):
        super().__init__()
        self.norm = make_norm(config)
        self.mixer = BiMambaMixer(config)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        residual = hidden if residual is None else residual + hidden
        residual = residual.float()
        return self.mixer(self.norm(residual)), residual


class PatchEmbed(nn.Module):
    def __init__(self, config: VisionMambaConfig):
        super().__init__()
        self.config = config
        self.proj = nn.Conv2d(config.in_chans, config.embed_dim, config.patch_size, stride=config.stride)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        expected = (c.in_chans, c.img_size, c.img_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ImageShapeError(f"images of shape {tuple(images.shape)}; this model takes (B, {', '.join(map(str, expected))}) "
                                  "(the position embedding fixes the size; resize the images)")
        return self.proj(images).flatten(2).transpose(1, 2)  # (B, M, D), row-major patches


class VisionMamba(nn.Module):
    def __init__(self, config: VisionMambaConfig):
        super().__init__()
        c = config
        self.config = c
        self.patch_embed = PatchEmbed(c)
        if c.cls_position == "double":
            self.cls_token_head = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
            self.cls_token_tail = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        elif c.cls_position != "none":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        if c.pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(1, c.num_tokens, c.embed_dim))
        self.layers = nn.ModuleList(Block(c) for _ in range(c.depth))
        self.norm_f = make_norm(c)
        self.head = nn.Linear(c.embed_dim, c.num_classes)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the cls token(s) inserted and the position embedding added."""
        c = self.config
        x = self.patch_embed(images)
        batch = x.shape[0]
        if c.cls_position == "double":
            x = torch.cat([self.cls_token_head.expand(batch, -1, -1), x, self.cls_token_tail.expand(batch, -1, -1)], 1)
        elif c.cls_position != "none":
            at = c.cls_index[0]
            x = torch.cat([x[:, :at], self.cls_token.expand(batch, -1, -1), x[:, at:]], dim=1)
        if c.pos_embed:
            x = x + self.pos_embed
        return x

    def hidden_states(self, images: torch.Tensor) -> torch.Tensor:
        """Norm_f of the last residual, every token: (B, num_tokens, D)."""
        hidden, residual = self.tokens(images), None
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        return self.norm_f((residual + hidden).float())

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled features the head reads: (B, D), or (B, num_tokens, D) for 'max' pooling."""
        c = self.config
        states = self.hidden_states(images)
        if c.cls_position == "double":
            return (states[:, c.cls_index[0]] + states[:, c.cls_index[1]]) / 2
        if c.cls_position != "none":
            return states[:, c.cls_index[0]]
        if c.final_pool_type == "none":
            return states[:, -1]
        if c.final_pool_type == "mean":
            return states.mean(dim=1)
        return states  # 'max': a head per token, max over tokens below

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.forward_features(images))
        if self.config.final_pool_type == "max" and self.config.cls_position == "none":
            logits = logits.max(dim=1).values
        return logits
