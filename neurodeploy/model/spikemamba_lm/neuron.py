"""SpikeMamba's LIF gate neuron: a functional core with an explicit state tuple (norse style).

Per neuron, after upstream's `LIFNeuron.forward` (FAMILIES.md §1.1):

    I_t  = beta_syn * I_{t-1} + x_t
    v'_t = beta_mem * v_{t-1} + 1[r_{t-1} <= 0] * I_t
    th_t = threshold + (adapt_gain * a_{t-1}) * adapt_scale   (adaptive threshold) | threshold
    s_t  = 1[v'_t >= th_t]                                     (>=, not >)
    v_t  = v'_t - s_t * th_t  (reset "subtract")  |  v'_t * (1 - s_t)  ("zero")
    a_t  = 0.9 * a_{t-1} + 0.1 * s_t               (adaptive only; else a stays 0)
    r_t  = P if s_t else max(r_{t-1} - 1, 0)

The refractory counter withholds only the synaptic input; I keeps integrating and v keeps
decaying (and may fire, which restarts the counter). The counter is a float, as upstream's, so
the state is four float tensors of shape (B, d). The 0.9 / 0.1 adaptation constants are
upstream's, hard-coded there too. The products are taken in upstream's order so that float
results, hence spikes, match it bit for bit where the op order decides.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

ADAPT_DECAY = 0.9
ADAPT_GAIN = 0.1


class GateState(NamedTuple):
    v: torch.Tensor  # membrane after the reset
    current: torch.Tensor  # synaptic current I
    adapt: torch.Tensor  # threshold adaptation trace a (zero without adaptive threshold)
    refractory: torch.Tensor  # steps left in the refractory period, as float


class GateParameters(NamedTuple):
    beta_mem: torch.Tensor  # () upstream `beta_mem`
    beta_syn: torch.Tensor  # () upstream `beta_syn`
    threshold: torch.Tensor  # (d,) upstream `learnable_threshold`
    adapt_gain: torch.Tensor | None  # (1,) upstream `threshold_adapt`; None without adaptive threshold
    adapt_scale: torch.Tensor | None  # (d,) upstream `threshold_scale`
    refractory_period: int
    reset_mode: str  # "subtract" | "zero"


def gate_initial_state(batch: int, d: int, *, dtype=torch.float32, device=None) -> GateState:
    zeros = torch.zeros(batch, d, dtype=dtype, device=device)
    return GateState(zeros, zeros.clone(), zeros.clone(), zeros.clone())


def gate_step(x: torch.Tensor, state: GateState, p: GateParameters) -> tuple[torch.Tensor, GateState]:
    """One time step for input `x (B, d)`; returns `(spikes, new_state)`."""
    current = p.beta_syn * state.current + x
    open_ = (state.refractory <= 0).to(x.dtype)
    v = p.beta_mem * state.v + current * open_
    if p.adapt_gain is not None:
        threshold = p.threshold + p.adapt_gain * state.adapt * p.adapt_scale
    else:
        threshold = p.threshold.expand_as(v)
    spikes = (v >= threshold).to(x.dtype)
    if p.reset_mode == "subtract":
        v = v - spikes * threshold
    else:
        v = v * (1 - spikes)
    adapt = ADAPT_DECAY * state.adapt + ADAPT_GAIN * spikes if p.adapt_gain is not None else state.adapt
    refractory = torch.where(spikes > 0.5, torch.full_like(spikes, float(p.refractory_period)),
                             torch.clamp(state.refractory - 1, min=0))
    return spikes, GateState(v, current, adapt, refractory)


def gate_sequence(x: torch.Tensor, state: GateState, p: GateParameters) -> tuple[torch.Tensor, GateState]:
    """Run over `x (B, L, d)`; returns spikes `(B, L, d)` and the state after the last step."""
    spikes = []
    for t in range(x.shape[1]):
        s, state = gate_step(x[:, t], state, p)
        spikes.append(s)
    return torch.stack(spikes, dim=1), state
