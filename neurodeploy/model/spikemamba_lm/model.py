"""SpikeMamba LM in PyTorch: offline forward and per-token `step` with explicit state (FAMILIES.md §1,
docs/spikemamba_lm.md).

    x = embedding(tokens)
    per layer:  x = x + pool(S(rmsnorm(x)))
    logits = rmsnorm_f(x) @ embedding.T                  (tied head, no bias)

S per `spike_integration`, with G the gating (hard v*s, soft v*(g*s + 1 - g)):
    pre       mamba(G(a, LIF_pre(a)))
    post      G(m, LIF_post(m)), m = mamba(a)
    pre_post  G(m, LIF_post(m)), m = mamba(G(a, LIF_pre(a)))
    residual  mamba(a) + g * LIF_res(a)
pool: none x1; learnable x(1 + p); adaptive x sigmoid(sum over gates of mean |v_final|), where
v_final is the membrane after the call's last step, averaged over batch and neurons: offline
only (it reads the whole call and couples the batch), so `step` refuses it.

Module and parameter names are upstream's, so `torch.save(model.state_dict())` files load
unchanged (`checkpoint.py`). State per layer: the Mamba block's `conv_state`, `ssm_state` and
one `GateState` (v, current, adapt, refractory) per gate. Both `forward` and `step` return
`LMOutput(logits, state, spikes)`; `spikes` maps "layers.{i}.{gate}" to the gate's spikes.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import nn

from neurodeploy.errors import NeurodeployError, UnsupportedCapabilityError
from neurodeploy.model.mamba import Mamba, MambaState
from neurodeploy.model.spikemamba_lm.config import SpikeMambaLMConfig
from neurodeploy.model.spikemamba_lm.neuron import (GateParameters, GateState, gate_initial_state, gate_sequence,
                                                    gate_step)

FAMILY_NAME = "spikemamba-lm"


class TokenIdError(NeurodeployError, ValueError):
    """Token ids that are not integers inside the vocabulary."""


def check_token_ids(tokens, vocab_size: int) -> None:
    """Refuse ids outside [0, vocab_size) (numpy arrays or tensors), naming the first bad one."""
    if len(tokens.shape) and tokens.shape[0] == 0:
        return
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise TokenIdError(f"token id {low if low < 0 else high} outside the model's vocabulary [0, {vocab_size})")


class LayerState(NamedTuple):
    mamba: MambaState
    gates: tuple[GateState, ...]  # in the order of `config.gates`


class LMState(NamedTuple):
    layers: tuple[LayerState, ...]


class LMOutput(NamedTuple):
    logits: torch.Tensor  # (B, L, V) from forward, (B, V) from step
    state: LMState
    spikes: dict[str, torch.Tensor]  # "layers.{i}.{gate}" -> (B, L, d) | (B, d)


class LIFGate(nn.Module):
    """Parameters of one upstream `LIFNeuron` (names and initial values are upstream's)."""

    def __init__(self, config: SpikeMambaLMConfig):
        super().__init__()
        d = config.d_model
        self.beta_mem = nn.Parameter(torch.tensor(config.membrane_decay))
        self.beta_syn = nn.Parameter(torch.exp(torch.tensor(-1.0 / config.tau_syn)))
        if config.adaptive_threshold:
            self.threshold_adapt = nn.Parameter(torch.ones(1) * 0.1)
            self.threshold_scale = nn.Parameter(torch.ones(d))
        self.learnable_threshold = nn.Parameter(torch.ones(d) * config.threshold)
        self._adaptive = config.adaptive_threshold
        self._refractory = config.refractory_period
        self._reset = config.reset_mode

    def parameters_tuple(self) -> GateParameters:
        return GateParameters(
            self.beta_mem, self.beta_syn, self.learnable_threshold,
            self.threshold_adapt if self._adaptive else None, self.threshold_scale if self._adaptive else None,
            self._refractory, self._reset,
        )


class SpikingMambaLayer(nn.Module):
    """Upstream's `SpikingMambaLayer` (key prefix `layers.{i}.spiking_mamba`)."""

    def __init__(self, config: SpikeMambaLMConfig):
        super().__init__()
        self.config = config
        self.mamba = Mamba(config.d_model, config.d_state, config.d_conv, config.expand,
                           dt_rank=config.resolved_dt_rank, conv_bias=config.conv_bias, bias=config.bias)
        for gate in config.gates:
            setattr(self, f"{gate}_spiking", LIFGate(config))
        if config.spike_gate_mode == "soft":
            self.spike_gate = nn.Parameter(torch.ones(config.d_model) * 0.5)
        if config.temporal_pooling == "learnable":
            self.temporal_pooling_weights = nn.Parameter(torch.ones(1) * 0.1)

    def _gate_params(self, gate: str) -> GateParameters:
        return getattr(self, f"{gate}_spiking").parameters_tuple()

    def _apply_gate(self, value: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        if self.config.spike_gate_mode == "hard":
            return value * spikes
        return value * (self.spike_gate * spikes + (1 - self.spike_gate))

    def _pool(self, out: torch.Tensor, gates: dict[str, GateState]) -> torch.Tensor:
        pooling = self.config.temporal_pooling
        if pooling == "learnable":
            return out * (1 + self.temporal_pooling_weights)
        if pooling == "adaptive":
            # upstream: a Python float from the membranes after the call, summed over gates
            activity = sum(float(torch.mean(g.v.abs())) for g in gates.values())
            return out * torch.sigmoid(torch.tensor(activity, dtype=out.dtype, device=out.device))
        return out

    def _run(self, a: torch.Tensor, state: LayerState, mamba_fn, gate_fn) -> tuple[torch.Tensor, LayerState, dict]:
        """One layer over `a`; `mamba_fn` / `gate_fn` are the sequence or single-step forms."""
        gates_in = dict(zip(self.config.gates, state.gates))
        gates_out: dict[str, GateState] = {}
        spikes: dict[str, torch.Tensor] = {}
        x = a
        if "pre" in gates_in:
            spikes["pre"], gates_out["pre"] = gate_fn(a, gates_in["pre"], self._gate_params("pre"))
            x = self._apply_gate(a, spikes["pre"])
        out, mamba_state = mamba_fn(x, state.mamba)
        if "post" in gates_in:
            spikes["post"], gates_out["post"] = gate_fn(out, gates_in["post"], self._gate_params("post"))
            out = self._apply_gate(out, spikes["post"])
        if "residual" in gates_in:
            spikes["residual"], gates_out["residual"] = gate_fn(a, gates_in["residual"], self._gate_params("residual"))
            out = out + self.spike_gate * spikes["residual"]
        out = self._pool(out, gates_out)
        return out, LayerState(mamba_state, tuple(gates_out[g] for g in self.config.gates)), spikes

    def forward(self, a: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState, dict]:
        return self._run(a, state, self.mamba.forward, gate_sequence)

    def step(self, a: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState, dict]:
        return self._run(a, state, self.mamba.step, gate_step)


class SpikingMambaBlock(nn.Module):
    def __init__(self, config: SpikeMambaLMConfig):
        super().__init__()
        self.norm = nn.RMSNorm(config.d_model, eps=config.rms_norm_eps)
        self.spiking_mamba = SpikingMambaLayer(config)


class SpikeMambaLM(nn.Module):
    def __init__(self, config: SpikeMambaLMConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(SpikingMambaBlock(config) for _ in range(config.n_layer))
        self.norm_f = nn.RMSNorm(config.d_model, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.embedding.weight  # tied, as upstream

    def initial_state(self, batch: int, *, device=None, dtype=torch.float32) -> LMState:
        d = self.config.d_model
        return LMState(tuple(
            LayerState(block.spiking_mamba.mamba.initial_state(batch, device=device, dtype=dtype),
                       tuple(gate_initial_state(batch, d, dtype=dtype, device=device) for _ in self.config.gates))
            for block in self.layers
        ))

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dtype not in (torch.int64, torch.int32):
            raise TokenIdError(f"token ids must be integers, got {tokens.dtype}")
        if tokens.numel():
            check_token_ids(tokens, self.config.vocab_size)

    def forward(self, tokens: torch.Tensor, state: LMState | None = None) -> LMOutput:
        """tokens `(B, L)` -> logits `(B, L, V)`, the state after the last token, every gate's spikes.

        A given `state` continues a previous call exactly (except adaptive pooling, which by
        definition depends on how the calls are cut; it warns).
        """
        self._check_tokens(tokens)
        if self.config.temporal_pooling == "adaptive":
            warnings.warn("temporal_pooling 'adaptive' scales each layer by the mean membrane after the whole call, over "
                          "the whole batch (upstream's definition): outputs depend on the sequence length and the other "
                          "batch rows, and cannot be streamed", stacklevel=2)
        if state is None:
            state = self.initial_state(tokens.shape[0], device=tokens.device)
        x = self.embedding(tokens)
        layer_states, spikes = [], {}
        for i, (block, layer_state) in enumerate(zip(self.layers, state.layers)):
            out, layer_state, layer_spikes = block.spiking_mamba(block.norm(x), layer_state)
            x = x + out
            layer_states.append(layer_state)
            spikes.update({f"layers.{i}.{g}": s for g, s in layer_spikes.items()})
        return LMOutput(self.lm_head(self.norm_f(x)), LMState(tuple(layer_states)), spikes)

    def step(self, token: torch.Tensor, state: LMState) -> LMOutput:
        """One token per row, `token (B,)` -> logits `(B, V)` and the next state."""
        if self.config.temporal_pooling == "adaptive":
            raise UnsupportedCapabilityError(
                FAMILY_NAME, "stream", "temporal_pooling 'adaptive' scales by the membrane after the whole call, averaged "
                "over the batch: not causal, so it has no per-token form (use the offline forward)")
        self._check_tokens(token)
        x = self.embedding(token)
        layer_states, spikes = [], {}
        for i, (block, layer_state) in enumerate(zip(self.layers, state.layers)):
            out, layer_state, layer_spikes = block.spiking_mamba.step(block.norm(x), layer_state)
            x = x + out
            layer_states.append(layer_state)
            spikes.update({f"layers.{i}.{g}": s for g, s in layer_spikes.items()})
        return LMOutput(self.lm_head(self.norm_f(x)), LMState(tuple(layer_states)), spikes)
