"""Mamba-Liquid-Spiking (`MambaLiquidSpikingNetwork`, FAMILIES.md §2), offline and stepped.

Module and parameter names are upstream's, so an upstream state_dict loads strictly once the
dead modules are dropped. One block on x (B, T, F)::

    x_p = input_proj(x) (blocks >= 1 when H != F0)      r = residual_proj(x_p) (when F0 != H)
    o   = SpikeEncoder(x_p)   two snnTorch Leaky layers, membranes zero at every call
    q   = Liquid(o)           ncp: CfC (ncps 1.0.1 WiredCfCCell, ts = 1); cfc/ltc: the Linear fallback
    l   = LH(q)               liquid_to_hidden: LayerNorm(W q)
    sequential     norm2(MambaL(norm1(l)) + r)
    parallel       m = MambaL(norm1(P(o))); norm2(Gate(l, m) + r)
    bidirectional  m = MambaL(norm1(P(o))); (q~, m~) = XAttn(q, m); norm2(0.5 LH(q~) + 0.5 m~ + r)

MambaL is the Mamba-1 block with a LayerNorm(d_inner) between the scan and the gate; the scan
is `neurodeploy.model.mamba.selective_scan` without its gate (z=None).

Decisions where upstream is broken (FAMILIES.md §2.6): `ncp` runs the CfC at every batch size
(upstream falls back to the Linear at batch 1); `cfc` / `ltc` run the Linear fallback, which
is all upstream ever computes for them. A length-1 input is repeated `num_spike_steps` times
by the encoder, as upstream does, in `forward`; `step` streams with full-sequence semantics.

Streaming (`sequential` only, `initial_state` / `step`): per block the two Leaky states
(membrane and last 0/1 spikes, the delayed reset), the CfC hidden state and the Mamba
conv/ssm states; nothing else carries over. `parallel` / `bidirectional` are not causal:
the temporal adapter P looks ahead and, for T < 50, its kernel depends on T; they stream
with a fixed delay in `neurodeploy.model.liquid.delayed`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.errors import UnsupportedCapabilityError
from neurodeploy.model.lif import LIFParameters, LIFState, lif_initial_state, lif_step
from neurodeploy.model.liquid.config import (
    GATE_HEADS,
    LAYER_NORM_EPS,
    TEMPORAL_KERNEL_LENGTH,
    TEMPORAL_TAU,
    XATTN_HEADS,
    LiquidConfig,
)
from neurodeploy.model.mamba import MambaState, selective_scan, selective_state_update


# -- spike encoder ---------------------------------------------------------------------------
class Leaky(nn.Module):
    """The buffers of an snnTorch 1.0 `Leaky` (subtractive reset, delayed: bound at construction)."""

    def __init__(self, beta: float = 0.95):
        super().__init__()
        self.register_buffer("beta", torch.tensor(float(beta)))
        self.register_buffer("threshold", torch.tensor(1.0))
        self.register_buffer("graded_spikes_factor", torch.tensor(1.0))
        self.register_buffer("reset_mechanism_val", torch.tensor(0, dtype=torch.int64))

    def parameters_lif(self) -> LIFParameters:
        # snnTorch computes beta.clamp(0, 1) * mem: the clamp is part of the model
        return LIFParameters(beta=float(self.beta.clamp(0, 1)), threshold=float(self.threshold),
                             reset="subtract", reset_timing="delayed")

    @property
    def graded_factor(self) -> float:
        return float(self.graded_spikes_factor)


class EncoderState(NamedTuple):
    lif1: LIFState  # v (B, 2S) and the last 0/1 spikes (the delayed reset)
    lif2: LIFState  # v (B, S)


class SpikeEncoder(nn.Module):
    """fc1 -> Leaky -> (dropout: identity in eval) -> fc2 -> Leaky, one time step at a time."""

    def __init__(self, input_dim: int, units: int):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, 2 * units)
        self.fc2 = nn.Linear(2 * units, units)
        self.lif1 = Leaky()
        self.lif2 = Leaky()

    def initial_state(self, batch: int, *, dtype=torch.float32, device=None) -> EncoderState:
        return EncoderState(lif_initial_state((batch, self.fc1.out_features), dtype=dtype, device=device),
                            lif_initial_state((batch, self.fc2.out_features), dtype=dtype, device=device))

    def _constants(self) -> tuple[LIFParameters, float, LIFParameters, float]:
        return self.lif1.parameters_lif(), self.lif1.graded_factor, self.lif2.parameters_lif(), self.lif2.graded_factor

    def _step(self, x_t: torch.Tensor, state: EncoderState, constants) -> tuple[torch.Tensor, torch.Tensor, EncoderState]:
        p1, g1, p2, g2 = constants
        s1, lif1 = lif_step(self.fc1(x_t), state.lif1, p1)
        s1 = s1 * g1
        s2, lif2 = lif_step(self.fc2(s1), state.lif2, p2)
        return s1, s2 * g2, EncoderState(lif1, lif2)

    def step(self, x_t: torch.Tensor, state: EncoderState) -> tuple[torch.Tensor, torch.Tensor, EncoderState]:
        """x_t (B, F0) -> (layer-1 spikes (B, 2S), layer-2 spikes (B, S), state); spikes are g * {0, 1}."""
        return self._step(x_t, state, self._constants())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, F0) -> spikes of both layers (B, T, 2S), (B, T, S); membranes start at zero."""
        state = self.initial_state(x.shape[0], dtype=x.dtype, device=x.device)
        constants = self._constants()
        layer1, layer2 = [], []
        for t in range(x.shape[1]):
            s1, s2, state = self._step(x[:, t], state, constants)
            layer1.append(s1)
            layer2.append(s2)
        return torch.stack(layer1, 1), torch.stack(layer2, 1)


# -- liquid cell -----------------------------------------------------------------------------
class CfCLayer(nn.Module):
    """ncps 1.0.1 `CfCCell`, mode "default", no backbone, with a sparsity mask on ff1 and ff2."""

    def __init__(self, in_features: int, units: int):
        super().__init__()
        self.sparsity_mask = nn.Parameter(torch.ones(units, in_features + units), requires_grad=False)
        self.ff1 = nn.Linear(in_features + units, units)
        self.ff2 = nn.Linear(in_features + units, units)
        self.time_a = nn.Linear(in_features + units, units)
        self.time_b = nn.Linear(in_features + units, units)

    def _packed(self, inputs: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ff1, ff2 (masked), time_a, time_b stacked: input halves (4U, S), recurrent halves (U, 4U), biases."""
        weights = torch.cat([self.ff1.weight * self.sparsity_mask, self.ff2.weight * self.sparsity_mask,
                             self.time_a.weight, self.time_b.weight])
        bias = torch.cat([self.ff1.bias, self.ff2.bias, self.time_a.bias, self.time_b.bias])
        return weights[:, :inputs], weights[:, inputs:].T.contiguous(), bias

    @staticmethod
    def _update(from_input: torch.Tensor, h: torch.Tensor, recurrent: torch.Tensor) -> torch.Tensor:
        # x = [o ; h]: W x = W_o o + W_h h; ts = 1, so tau = sigmoid(time_a(x) + time_b(x))
        f1, f2, time_a, time_b = (from_input + h @ recurrent).chunk(4, dim=-1)
        tau = torch.sigmoid(time_a + time_b)
        return torch.tanh(f1) * (1.0 - tau) + tau * torch.tanh(f2)

    def step(self, o_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """o_t (B, S), h (B, U) -> the new h."""
        input_weights, recurrent, bias = self._packed(o_t.shape[-1])
        return self._update(F.linear(o_t, input_weights, bias), h, recurrent)

    def sequence(self, o: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """o (B, T, S) -> (h_1..h_T (B, T, U), h_T): the input halves of every step in one matmul."""
        input_weights, recurrent, bias = self._packed(o.shape[-1])
        from_input = F.linear(o, input_weights, bias)  # (B, T, 4U)
        outputs = []
        for t in range(o.shape[1]):
            h = self._update(from_input[:, t], h, recurrent)
            outputs.append(h)
        return torch.stack(outputs, 1), h


class _WiredCfC(nn.Module):
    """ncps' `WiredCfCCell` for a FullyConnected wiring: one layer (key `rnn_cell.layer_0`)."""

    def __init__(self, in_features: int, units: int):
        super().__init__()
        self.layer_0 = CfCLayer(in_features, units)


class _CfC(nn.Module):
    def __init__(self, in_features: int, units: int):
        super().__init__()
        self.rnn_cell = _WiredCfC(in_features, units)


class LiquidCell(nn.Module):
    """`ncp`: the CfC; `cfc` / `ltc`: upstream's `fallback` Linear (its cells never run, bug 2)."""

    def __init__(self, spiking_units: int, units: int, backbone: str):
        super().__init__()
        self.backbone = backbone
        self.units = units
        self.fallback = nn.Linear(spiking_units, units)
        if backbone == "ncp":
            self.cell = _CfC(spiking_units, units)

    @property
    def stateful(self) -> bool:
        return self.backbone == "ncp"

    def step(self, o_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """o_t (B, S), h (B, U) -> q_t = new h (ncp) or fallback(o_t)."""
        if self.stateful:
            return self.cell.rnn_cell.layer_0.step(o_t, h)
        return self.fallback(o_t)

    def forward(self, o: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """o (B, T, S) -> (q (B, T, U), final state (B, U)); for cfc/ltc the state is h0 or zeros."""
        h = h0 if h0 is not None else o.new_zeros(o.shape[0], self.units)
        if not self.stateful:
            return self.fallback(o), h
        return self.cell.rnn_cell.layer_0.sequence(o, h)


# -- liquid Mamba ----------------------------------------------------------------------------
class SelectiveSSM(nn.Module):
    """Upstream's `SelectiveSSM` parameters (key prefix `mamba.ssm.`)."""

    def __init__(self, d_inner: int, d_state: int, dt_rank: int):
        super().__init__()
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)


class LiquidMamba(nn.Module):
    """Mamba-1 with LayerNorm(d_inner) between the scan and the gate: out = W_out(LN(y) * silu(z))."""

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = -(-d_model // 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=True)
        self.ssm = SelectiveSSM(self.d_inner, d_state, self.dt_rank)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.norm = nn.LayerNorm(self.d_inner, eps=LAYER_NORM_EPS)

    def initial_state(self, batch: int, *, dtype=torch.float32, device=None) -> MambaState:
        return MambaState(torch.zeros(batch, self.d_inner, self.d_conv, dtype=dtype, device=device),
                          torch.zeros(batch, self.d_inner, self.d_state, dtype=dtype, device=device))

    def _scan_inputs(self, u: torch.Tensor):
        dt, B, C = torch.split(self.ssm.x_proj(u), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.ssm.dt_proj.weight), B, C, -torch.exp(self.ssm.A_log)

    def forward(self, hidden: torch.Tensor, state: MambaState | None = None) -> tuple[torch.Tensor, torch.Tensor, MambaState]:
        """hidden (B, L, H) -> (out (B, L, H), scan output y before the norm (B, L, Di), state)."""
        if state is None:
            state = self.initial_state(hidden.shape[0], dtype=hidden.dtype, device=hidden.device)
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        x_padded = torch.cat([state.conv_state[:, :, 1:], x.transpose(1, 2)], dim=-1)
        u = F.silu(F.conv1d(x_padded, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)).transpose(1, 2)
        delta, B, C, A = self._scan_inputs(u)
        y, ssm_state = selective_scan(u, delta, A, B, C, self.ssm.D, None, self.ssm.dt_proj.bias, state.ssm_state)
        out = self.out_proj(self.norm(y) * F.silu(z))
        return out, y, MambaState(x_padded[:, :, -self.d_conv:], ssm_state)

    def step(self, hidden: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, torch.Tensor, MambaState]:
        """hidden (B, H) -> (out (B, H), y (B, Di), state): one token, the official `step` order."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        conv_state = torch.cat([state.conv_state[:, :, 1:], x.unsqueeze(-1)], dim=-1)
        u = F.silu((conv_state * self.conv1d.weight[:, 0, :]).sum(-1) + self.conv1d.bias)
        delta, B, C, A = self._scan_inputs(u)
        y, ssm_state = selective_state_update(state.ssm_state, u, delta, A, B, C, self.ssm.D, None, self.ssm.dt_proj.bias)
        return self.out_proj(self.norm(y) * F.silu(z)), y, MambaState(conv_state, ssm_state)


# -- adapters --------------------------------------------------------------------------------
class StateProjection(nn.Module):
    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.projection = nn.Linear(input_dim, output_dim, bias=False)
        self.norm = nn.LayerNorm(output_dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.projection(x))


def temporal_kernel(length: int = TEMPORAL_KERNEL_LENGTH, tau: float = TEMPORAL_TAU) -> torch.Tensor:
    kernel = torch.exp(-torch.arange(length, dtype=torch.float32) / tau)
    return kernel / kernel.sum()


class TemporalAdapter(nn.Module):
    """P: rho_t = sum_{j<k} kappa_j o_{t+j-p}, k = min(50, T), p = k // 2; then a Linear S -> H.

    Not causal: it reads k-1-p steps ahead (24 for T >= 50), and for T < 50 the kernel is cut
    to T taps, so its output depends on the sequence length.
    """

    def __init__(self, spiking_units: int, hidden_dim: int):
        super().__init__()
        self.spike_projection = nn.Linear(spiking_units, hidden_dim)
        self.register_buffer("temporal_kernel", temporal_kernel())

    def smooth(self, o: torch.Tensor) -> torch.Tensor:
        steps, channels = o.shape[1], o.shape[2]
        k = min(self.temporal_kernel.numel(), steps)
        kernel = self.temporal_kernel[:k].view(1, 1, k).expand(channels, 1, k)
        rho = F.conv1d(o.transpose(1, 2), kernel, padding=k // 2, groups=channels)[:, :, :steps]
        return rho.transpose(1, 2)

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        return self.spike_projection(self.smooth(o))


class Gate(nn.Module):
    """4-head gate: out_h = g_h l_h + (1 - g_h) m_h, g = sigmoid(W_g(W_q l * W_k m) / temperature)."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.liquid_query = nn.Linear(hidden_dim, hidden_dim)
        self.mamba_key = nn.Linear(hidden_dim, hidden_dim)
        self.gate_projection = nn.Linear(hidden_dim, GATE_HEADS)
        self.temperature = nn.Parameter(torch.ones(1))

    def forward(self, liquid: torch.Tensor, mamba: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.sigmoid(self.gate_projection(self.liquid_query(liquid) * self.mamba_key(mamba)) / self.temperature)
        shape = (*liquid.shape[:-1], GATE_HEADS, liquid.shape[-1] // GATE_HEADS)
        g = weights.unsqueeze(-1)
        fused = g * liquid.view(shape) + (1 - g) * mamba.view(shape)
        return fused.view(liquid.shape), weights


class CrossAttention(nn.Module):
    """Per time step, 8 heads attend to the other pathway's 8 heads (softmax over heads, not time)."""

    def __init__(self, liquid_dim: int, mamba_dim: int):
        super().__init__()
        self.head_dim = min(liquid_dim, mamba_dim) // XATTN_HEADS
        width = XATTN_HEADS * self.head_dim
        self.liquid_q = nn.Linear(liquid_dim, width)
        self.mamba_kv = nn.Linear(mamba_dim, 2 * width)
        self.mamba_q = nn.Linear(mamba_dim, width)
        self.liquid_kv = nn.Linear(liquid_dim, 2 * width)
        self.liquid_out = nn.Linear(width, liquid_dim)
        self.mamba_out = nn.Linear(width, mamba_dim)

    def _attend(self, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
        lead = query.shape[:-1]
        q = query.view(*lead, XATTN_HEADS, self.head_dim)
        k, v = key_value.view(*lead, XATTN_HEADS, 2 * self.head_dim).chunk(2, dim=-1)
        scores = torch.matmul(q, k.transpose(-2, -1)) / self.head_dim**0.5
        return torch.matmul(F.softmax(scores, dim=-1), v).reshape(*lead, -1)

    def forward(self, liquid: torch.Tensor, mamba: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        liquid_new = liquid + self.liquid_out(self._attend(self.liquid_q(liquid), self.mamba_kv(mamba)))
        mamba_new = mamba + self.mamba_out(self._attend(self.mamba_q(mamba), self.liquid_kv(liquid)))
        return liquid_new, mamba_new


# -- block and network -----------------------------------------------------------------------
class BlockState(NamedTuple):
    encoder: EncoderState
    liquid_h: torch.Tensor  # (B, U); passed through unchanged by the cfc/ltc fallback
    mamba: MambaState


class LiquidBlock(nn.Module):
    def __init__(self, config: LiquidConfig, index: int):
        super().__init__()
        c = config
        self.mode = c.integration_mode
        self.spike_encoder = SpikeEncoder(c.input_dim, c.spiking_units)
        self.liquid_cell = LiquidCell(c.spiking_units, c.liquid_units, c.liquid_backbone)
        self.mamba = LiquidMamba(c.hidden_dim, c.mamba_d_state, c.mamba_d_conv, c.mamba_expand)
        self.liquid_to_hidden = StateProjection(c.liquid_units, c.hidden_dim)
        self.norm1 = nn.LayerNorm(c.hidden_dim, eps=LAYER_NORM_EPS)
        self.norm2 = nn.LayerNorm(c.hidden_dim, eps=LAYER_NORM_EPS)
        if self.mode != "sequential":
            self.spike_to_mamba = TemporalAdapter(c.spiking_units, c.hidden_dim)
        if self.mode == "parallel":
            self.gate = Gate(c.hidden_dim)
        if self.mode == "bidirectional":
            self.cross_attention = CrossAttention(c.liquid_units, c.hidden_dim)
        # created lazily upstream (bug 3): built up front from the config
        self.input_proj = nn.Linear(c.hidden_dim, c.input_dim) if index >= 1 and c.hidden_dim != c.input_dim else None
        self.residual_proj = nn.Linear(c.input_dim, c.hidden_dim) if c.input_dim != c.hidden_dim else None
        self.num_spike_steps = c.num_spike_steps

    def project_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_p, residual): the encoder input and the residual branch of block input x."""
        x_p = self.input_proj(x) if self.input_proj is not None else x
        return x_p, (self.residual_proj(x_p) if self.residual_proj is not None else x_p)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """x (B, T, F) -> (output (B, T', H), liquid state (B, U), internals); T' = num_spike_steps if T = 1."""
        x_p, residual = self.project_input(x)
        encoder_in = x_p.repeat(1, self.num_spike_steps, 1) if x_p.shape[1] == 1 else x_p
        spikes1, spikes = self.spike_encoder(encoder_in)
        q, h = self.liquid_cell(spikes, h0)
        liquid = self.liquid_to_hidden(q)
        internals = {"x_p": x_p, "lif1": spikes1, "lif2": spikes, "liquid": q, "liquid_hidden": liquid}
        if self.mode == "sequential":
            m, y, _ = self.mamba(self.norm1(liquid))
            out = self.norm2(m + residual)
        else:
            m, y, _ = self.mamba(self.norm1(self.spike_to_mamba(spikes)))
            if self.mode == "parallel":
                fused, internals["gate"] = self.gate(liquid, m)
                out = self.norm2(fused + residual)
            else:
                q_new, m_new = self.cross_attention(q, m)
                out = self.norm2(0.5 * self.liquid_to_hidden(q_new) + 0.5 * m_new + residual)
        internals.update(scan=y, mamba=m, output=out)
        return out, h, internals

    def initial_state(self, batch: int, *, dtype=torch.float32, device=None) -> BlockState:
        return BlockState(self.spike_encoder.initial_state(batch, dtype=dtype, device=device),
                          torch.zeros(batch, self.liquid_cell.units, dtype=dtype, device=device),
                          self.mamba.initial_state(batch, dtype=dtype, device=device))

    def step(self, x_t: torch.Tensor, state: BlockState) -> tuple[torch.Tensor, BlockState, dict]:
        """x_t (B, F) -> (output (B, H), state, internals): one token, sequential mode only."""
        x_p, residual = self.project_input(x_t)
        spikes1, spikes, encoder = self.spike_encoder.step(x_p, state.encoder)
        q = self.liquid_cell.step(spikes, state.liquid_h)
        h = q if self.liquid_cell.stateful else state.liquid_h
        liquid = self.liquid_to_hidden(q)
        m, y, mamba = self.mamba.step(self.norm1(liquid), state.mamba)
        out = self.norm2(m + residual)
        internals = {"x_p": x_p, "lif1": spikes1, "lif2": spikes, "liquid": q, "liquid_hidden": liquid,
                     "scan": y, "mamba": m, "output": out}
        return out, BlockState(encoder, h, mamba), internals


class MambaLiquidSpiking(nn.Module):
    """ids (B, T) int64 -> logits (B, T, output_dim); `step` streams sequential-mode models."""

    def __init__(self, config: LiquidConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.input_dim)
        self.blocks = nn.ModuleList([LiquidBlock(config, i) for i in range(config.num_layers)])
        self.output_head = nn.Linear(config.hidden_dim, config.output_dim)

    def forward(self, ids: torch.Tensor, h_states: list[torch.Tensor | None] | None = None, *,
                return_internals: bool = False):
        """Logits (B, T, out) [, internals per block]; `h_states` are initial liquid states (B, U)."""
        x = self.embedding(ids)
        internals = []
        for i, block in enumerate(self.blocks):
            x, _, inner = block(x, None if h_states is None else h_states[i])
            internals.append(inner)
        logits = self.output_head(x)
        return (logits, internals) if return_internals else logits

    @property
    def streamable(self) -> bool:
        return self.config.integration_mode == "sequential"

    def initial_state(self, batch: int = 1, *, dtype=torch.float32, device=None) -> tuple[BlockState, ...]:
        return tuple(block.initial_state(batch, dtype=dtype, device=device) for block in self.blocks)

    def step(self, ids_t: torch.Tensor, state: tuple[BlockState, ...], *, return_internals: bool = False):
        """ids_t (B,) -> (logits (B, out), state [, internals]); the same numbers as `forward` at each t."""
        if not self.streamable:
            raise UnsupportedCapabilityError("liquid", "step", STREAM_REFUSAL.format(mode=self.config.integration_mode))
        x = self.embedding(ids_t)
        states, internals = [], []
        for block, block_state in zip(self.blocks, state):
            x, new_state, inner = block.step(x, block_state)
            states.append(new_state)
            internals.append(inner)
        logits = self.output_head(x)
        return (logits, tuple(states), internals) if return_internals else (logits, tuple(states))


STREAM_REFUSAL = (
    "integration_mode {mode!r} feeds the Mamba through the temporal spike adapter, a centred kernel that "
    "reads up to 24 future steps and whose taps depend on the sequence length when T < 50, so the model is "
    "not causal: no per-token step; stream it with a delay of 24 tokens per block with "
    "neurodeploy.model.liquid.delayed.DelayedStream, or run it offline (only 'sequential' models step)"
)
