"""The Mamba block, whole and with its `step()`, after the official `mamba_simple.Mamba`.

Parameter names and maths are the official block's (docs/mamba_spike_model.md), so reference
checkpoints load unchanged:

    x, z  = in_proj(h).chunk(2)
    u     = silu(causal depthwise conv1d(x) [+ conv bias])  (no conv bias in Mamba-Spike)
    dt, B, C = x_proj(u).split(dt_rank, d_state, d_state)
    delta = softplus(dt_proj.weight @ dt + dt_proj.bias)
    h_t   = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,   A = -exp(A_log)
    y_t   = <h_t, C_t> + D * u_t;  y *= silu(z);  out = out_proj(y)

Options of the official block that other families use: `conv_bias` (conv1d.bias), `bias`
(in_proj.bias and out_proj.bias together), `dt_rank`. `z=None` in the scan functions gives the
ungated output `<h, C> + D * u` for variants that gate outside the scan.

Streaming state per layer: `conv_state (B, d_inner, d_conv)`, `ssm_state (B, d_inner, d_state)`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class MambaState(NamedTuple):
    conv_state: torch.Tensor
    ssm_state: torch.Tensor


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor,
    h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The selective scan, batch-first: u, delta, z `(B, L, d_inner)`; B, C `(B, L, d_state)`.

    `delta` is the pre-softplus projection (dt_proj.weight @ dt); `delta_bias` is dt_proj.bias,
    as in the official kernel's signature. Returns `y (B, L, d_inner)` (already gated by
    silu(z), ungated when `z` is None) and `h_last (B, d_inner, d_state)`. The exponentials and input terms of every step
    are computed in one vectorised call; only the first-order recurrence steps through time.
    """
    delta = F.softplus(delta + delta_bias)
    deltaA = torch.exp(delta.unsqueeze(-1) * A)  # (B, L, d_inner, d_state)
    deltaB_u = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # (B, L, d_inner, d_state)
    batch, length, d_inner = u.shape
    h = h0 if h0 is not None else u.new_zeros(batch, d_inner, A.shape[-1])
    states = []
    for t in range(length):
        h = deltaA[:, t] * h + deltaB_u[:, t]
        states.append(h)
    hs = torch.stack(states, dim=1)  # (B, L, d_inner, d_state)
    y = torch.einsum("bldn,bln->bld", hs, C) + u * D
    return (y if z is None else y * F.silu(z)), h


def selective_state_update(
    ssm_state: torch.Tensor,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the scan: u, delta, z `(B, d_inner)`; B, C `(B, d_state)`. Returns `(y, ssm_state)`;
    `z=None` leaves y ungated."""
    delta = F.softplus(delta + delta_bias)
    dA = torch.exp(delta.unsqueeze(-1) * A)
    dBu = (delta * u).unsqueeze(-1) * B.unsqueeze(1)
    ssm_state = ssm_state * dA + dBu
    y = torch.einsum("bdn,bn->bd", ssm_state, C) + u * D
    return (y if z is None else y * F.silu(z)), ssm_state


class Mamba(nn.Module):
    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, *,
                 dt_rank: int | None = None, conv_bias: bool = False, bias: bool = False):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        # S4D-real initialisation and dt initialisation of the official block
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        with torch.no_grad():
            dt_init_std = self.dt_rank**-0.5
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def initial_state(self, batch: int, *, device=None, dtype=torch.float32) -> MambaState:
        return MambaState(
            conv_state=torch.zeros(batch, self.d_inner, self.d_conv, device=device, dtype=dtype),
            ssm_state=torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=dtype),
        )

    def _project(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x_dbl = self.x_proj(u)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def forward(self, hidden: torch.Tensor, state: MambaState | None = None) -> tuple[torch.Tensor, MambaState]:
        """hidden `(B, L, d_model)` -> `(B, L, d_model)` and the state after the last step.

        A given `state` continues a previous chunk exactly (conv history and ssm_state).
        """
        batch, length, _ = hidden.shape
        if state is None:
            state = self.initial_state(batch, device=hidden.device, dtype=hidden.dtype)
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        x_t = x.transpose(1, 2)  # (B, d_inner, L)
        # prepend the last d_conv-1 inputs of the previous chunk: a causal conv without padding
        history = state.conv_state[:, :, 1:]
        x_padded = torch.cat([history, x_t], dim=-1)
        u = F.conv1d(x_padded, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)
        u = F.silu(u).transpose(1, 2)
        delta, B, C = self._project(u)
        A = -torch.exp(self.A_log.float())
        y, ssm_state = selective_scan(u, delta, A, B, C, self.D, z, self.dt_proj.bias, state.ssm_state)
        conv_state = x_padded[:, :, -self.d_conv:]
        if conv_state.shape[-1] < self.d_conv:
            conv_state = F.pad(conv_state, (self.d_conv - conv_state.shape[-1], 0))
        return self.out_proj(y), MambaState(conv_state, ssm_state)

    def step(self, hidden: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """hidden `(B, d_model)` -> `(B, d_model)`, one token, as the official `step()`."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        conv_state = torch.cat([state.conv_state[:, :, 1:], x.unsqueeze(-1)], dim=-1)
        c = (conv_state * self.conv1d.weight[:, 0, :]).sum(dim=-1)
        u = F.silu(c if self.conv1d.bias is None else c + self.conv1d.bias)
        delta, B, C = self._project(u)
        A = -torch.exp(self.A_log.float())
        y, ssm_state = selective_state_update(state.ssm_state, u, delta, A, B, C, self.D, z, self.dt_proj.bias)
        return self.out_proj(y), MambaState(conv_state, ssm_state)
