"""CPU kernels (numba) for the two recurrences the offline forward cannot vectorise over time.

Why hand-written: the LIF and the selective scan are first-order recurrences; in PyTorch each
of the T steps is a few small kernel calls, and that Python loop is where the offline time went
(issue 18). numba compiles one loop over time per block of neurons (or per batch row for the
scan), with the state in registers / L1.

Exactness. `lif_over_time` reproduces the float32 operation order of `neurodeploy.model.lif`
(and of the reference loops): `v = beta*v_prev + I - s_prev*thr`, each operation rounded to
float32, no fused multiply-add (numba leaves `fastmath` off, so LLVM does not contract), and
the strict compare `v - thr > 0`. Given the same currents its spikes are bit-identical.
The scan reorders nothing that matters for its tolerance (logits within 1e-4).
"""
from __future__ import annotations

import os

import numba
import numpy as np
import torch
from numba import prange

from neurodeploy.model.kernels import RESET_MODES
# numba's default OpenMP pool spins between parallel regions and starves torch's own OpenMP
# threads (the convolutions between our kernels): measured 2.5x slower alone and 6x slower with
# two processes side by side on 2 cores. The workqueue pool sleeps when idle. A user's
# NUMBA_THREADING_LAYER wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
_BLOCK = 512  # neurons per parallel work item: contiguous rows of one time step


@numba.njit(parallel=True, cache=True, nogil=True)
def _lif_kernel(currents, beta, thr, reset_mode, immediate, v_state, s_state, spikes):  # pragma: no cover
    # the variant is chosen outside the neuron loop and nothing is allocated inside it, so that
    # the inner loop compiles to straight vector code
    steps, neurons = currents.shape
    one = np.float32(1.0)
    zero = np.float32(0.0)
    n_blocks = (neurons + _BLOCK - 1) // _BLOCK
    for block in prange(n_blocks):
        lo = block * _BLOCK
        hi = min(neurons, lo + _BLOCK)
        v = v_state[lo:hi].copy()
        s = s_state[lo:hi].copy()
        for t in range(steps):
            if immediate:
                for k in range(hi - lo):
                    vk = beta * v[k] + currents[t, lo + k]
                    sk = one if (vk - thr) > zero else zero
                    if reset_mode == 0:
                        vk = vk - sk * thr
                    elif reset_mode == 1:
                        vk = vk * (one - sk)
                    v[k] = vk
                    s[k] = sk
            elif reset_mode == 0:
                for k in range(hi - lo):
                    vk = beta * v[k] + currents[t, lo + k] - s[k] * thr
                    v[k] = vk
                    s[k] = one if (vk - thr) > zero else zero
            elif reset_mode == 1:
                for k in range(hi - lo):
                    vk = beta * (one - s[k]) * v[k] + currents[t, lo + k]
                    v[k] = vk
                    s[k] = one if (vk - thr) > zero else zero
            else:
                for k in range(hi - lo):
                    vk = beta * v[k] + currents[t, lo + k]
                    v[k] = vk
                    s[k] = one if (vk - thr) > zero else zero
            spikes[t, lo:hi] = s
        v_state[lo:hi] = v
        s_state[lo:hi] = s


def lif_over_time(currents: torch.Tensor, beta: float, threshold: float, reset: str, reset_timing: str,
                  state: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[torch.Tensor, tuple[np.ndarray, np.ndarray]]:
    """currents `(T, ...)` float32 on CPU -> spikes `(T, ...)` float32 (0/1) and the state after the
    last step (membrane, spikes; flat float32 arrays, updated in place when given)."""
    flat = currents.detach().reshape(currents.shape[0], -1).contiguous().numpy()
    if state is None:
        state = (np.zeros(flat.shape[1], np.float32), np.zeros(flat.shape[1], np.float32))
    out = np.empty_like(flat)
    _lif_kernel(flat, np.float32(beta), np.float32(threshold), RESET_MODES[reset], reset_timing == "immediate",
                state[0], state[1], out)
    return torch.from_numpy(out).reshape(currents.shape), state


@numba.njit(parallel=True, cache=True, nogil=True)
def _scan_kernel(u, delta, A, Bm, Cm, D, h0, y, h_last):  # pragma: no cover - compiled
    batch, length, d_inner = u.shape
    d_state = A.shape[1]
    for b in prange(batch):
        h = h0[b].copy()  # (d_inner, d_state): the whole state of one row stays in L1
        for t in range(length):
            for d in range(d_inner):
                dt = delta[b, t, d]
                du = dt * u[b, t, d]
                acc = np.float32(0.0)
                for n in range(d_state):
                    hn = np.exp(dt * A[d, n]) * h[d, n] + du * Bm[b, t, n]
                    h[d, n] = hn
                    acc += hn * Cm[b, t, n]
                y[b, t, d] = acc + D[d] * u[b, t, d]
        h_last[b] = h


def selective_scan_cpu(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                       D: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The scan with `delta` already through softplus: u, delta `(B, L, d)`; B, C `(B, L, n)`; A `(d, n)`.

    Returns `y = <h_t, C_t> + D*u` (not yet gated) `(B, L, d)` and `h_last (B, d, n)`.
    """
    batch, length, d_inner = u.shape
    d_state = A.shape[1]
    as_np = [t.detach().float().contiguous().numpy() for t in (u, delta, A, B, C, D)]
    h = np.zeros((batch, d_inner, d_state), np.float32) if h0 is None else h0.detach().float().contiguous().numpy()
    y = np.empty((batch, length, d_inner), np.float32)
    h_last = np.empty((batch, d_inner, d_state), np.float32)
    _scan_kernel(*as_np, h, y, h_last)
    return torch.from_numpy(y), torch.from_numpy(h_last)


def set_threads(n: int) -> None:
    """Use as many numba threads as torch does (the benchmarks pin both)."""
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
