"""Discrete LIF neuron: a functional core (norse style) used by every front-end layer.

    v_t = beta * v_{t-1} + I_t              (integration)
    s_t = H(v_t - threshold), H(z) = [z > 0]  (strict compare)

Reset variants (docs/time_and_lif.md):
  delayed   (snnTorch Leaky): the reset decided at t-1 is applied at t, before the compare:
            subtract: v_t = beta*v_{t-1} + I_t - s_{t-1}*thr
            zero:     v_t = beta*(1 - s_{t-1})*v_{t-1} + I_t
  immediate (Lava): integrate, compare, then reset the same step:
            subtract: v_t = beta*v_{t-1} + I_t - s_t*thr
            zero:     v_t = (beta*v_{t-1} + I_t) * (1 - s_t)
  none: never reset.
The state is `(v, s)`: the membrane after the step and the step's spikes (the delayed reset
and the recurrent connection both need the previous spikes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

SURROGATE_SLOPE = 25.0


class LIFState(NamedTuple):
    v: torch.Tensor
    spikes: torch.Tensor


@dataclass(frozen=True)
class LIFParameters:
    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "subtract"
    reset_timing: str = "delayed"


class _HeavisideFastSigmoid(torch.autograd.Function):
    """Forward: H(x) with H(0) = 0. Backward: snnTorch's fast sigmoid 1/(1+k|x|)^2."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output / (1.0 + SURROGATE_SLOPE * x.abs()) ** 2


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Spike function; differentiable through the surrogate only when autograd is recording."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _HeavisideFastSigmoid.apply(x)
    return (x > 0).to(x.dtype)


def lif_initial_state(shape: tuple[int, ...], *, dtype=torch.float32, device=None) -> LIFState:
    zeros = torch.zeros(shape, dtype=dtype, device=device)
    return LIFState(v=zeros, spikes=zeros.clone())


def lif_step(current: torch.Tensor, state: LIFState, p: LIFParameters) -> tuple[torch.Tensor, LIFState]:
    """One time step of the LIF layer; returns `(spikes, new_state)`."""
    v_prev, s_prev = state
    if p.reset_timing == "delayed":
        # snnTorch detaches the reset from the graph; so do we.
        reset = s_prev.detach()
        if p.reset == "subtract":
            v = p.beta * v_prev + current - reset * p.threshold
        elif p.reset == "zero":
            v = p.beta * (1.0 - reset) * v_prev + current
        else:
            v = p.beta * v_prev + current
        spikes = heaviside(v - p.threshold)
        return spikes, LIFState(v, spikes)
    v = p.beta * v_prev + current
    spikes = heaviside(v - p.threshold)
    reset = spikes.detach()
    if p.reset == "subtract":
        v = v - reset * p.threshold
    elif p.reset == "zero":
        v = v * (1.0 - reset)
    return spikes, LIFState(v, spikes)


def lif_sequence(currents: torch.Tensor, state: LIFState, p: LIFParameters) -> tuple[torch.Tensor, LIFState]:
    """Run the LIF over a time-major current tensor `(T, ...)`; returns spikes `(T, ...)`."""
    spikes = []
    for current in currents:
        s, state = lif_step(current, state, p)
        spikes.append(s)
    return torch.stack(spikes), state
