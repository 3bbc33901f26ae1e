"""CUDA kernels (Triton) for the LIF recurrence over time and the selective scan.

Why hand-written: on a GPU the per-step PyTorch loop launches a few tiny kernels per time step
(thousands per batch), so the H200 idled (issue 18: 929 samples/s). Each kernel here walks the
whole time axis inside one launch, with the state in registers.

Exactness. The LIF kernel spells every operation with an explicit round-to-nearest intrinsic
(`mul_rn`, `add_rn`, `sub_rn`): plain `*` and `+` may be contracted into a fused multiply-add
by the compiler, which rounds once instead of twice and can flip a spike near threshold. With
the intrinsics the arithmetic is the reference's, operation by operation. The scan keeps the
compiler's freedom (its tolerance is on logits, 1e-4).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from neurodeploy.model.kernels import RESET_MODES


@triton.jit
def _lif_kernel(cur_ptr, out_ptr, steps, neurons, beta, thr, RESET: tl.constexpr, IMMEDIATE: tl.constexpr,
                BLOCK: tl.constexpr):  # pragma: no cover - runs on the GPU
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < neurons
    beta_v = tl.full([BLOCK], beta, tl.float32)
    thr_v = tl.full([BLOCK], thr, tl.float32)
    one = tl.full([BLOCK], 1.0, tl.float32)
    v = tl.zeros([BLOCK], tl.float32)
    s = tl.zeros([BLOCK], tl.float32)
    cur = cur_ptr + offs
    out = out_ptr + offs
    for _ in range(steps):
        c = tl.load(cur, mask=mask, other=0.0)
        if IMMEDIATE:
            v = libdevice.add_rn(libdevice.mul_rn(beta_v, v), c)
            s = tl.where(libdevice.sub_rn(v, thr_v) > 0.0, 1.0, 0.0)
            if RESET == 0:
                v = libdevice.sub_rn(v, libdevice.mul_rn(s, thr_v))
            elif RESET == 1:
                v = libdevice.mul_rn(v, libdevice.sub_rn(one, s))
        else:
            if RESET == 0:
                v = libdevice.sub_rn(libdevice.add_rn(libdevice.mul_rn(beta_v, v), c), libdevice.mul_rn(s, thr_v))
            elif RESET == 1:
                v = libdevice.add_rn(libdevice.mul_rn(libdevice.mul_rn(beta_v, libdevice.sub_rn(one, s)), v), c)
            else:
                v = libdevice.add_rn(libdevice.mul_rn(beta_v, v), c)
            s = tl.where(libdevice.sub_rn(v, thr_v) > 0.0, 1.0, 0.0)
        tl.store(out, s, mask=mask)
        cur += neurons
        out += neurons


def lif_over_time(currents: torch.Tensor, beta: float, threshold: float, reset: str, reset_timing: str,
                  state: None = None) -> tuple[torch.Tensor, None]:
    """currents `(T, ...)` float32 on a CUDA device, from a zero state -> spikes `(T, ...)` (0/1 float32).

    The GPU path runs the whole time axis at once, so no state is carried between calls."""
    if state is not None:
        raise ValueError("the CUDA LIF kernel starts from a zero state; run the whole time axis in one call")
    flat = currents.detach().reshape(currents.shape[0], -1).contiguous()
    out = torch.empty_like(flat)
    steps, neurons = flat.shape
    block = 256
    _lif_kernel[(triton.cdiv(neurons, block),)](flat, out, steps, neurons, float(beta), float(threshold),
                                              RESET=RESET_MODES[reset], IMMEDIATE=reset_timing == "immediate",
                                              BLOCK=block)
    return out.reshape(currents.shape), None


@triton.jit
def _scan_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, y_ptr, h_ptr, length, d_inner, d_state,
                 BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):  # pragma: no cover - runs on the GPU
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_mask = d < d_inner
    n_mask = n < d_state
    dn_mask = d_mask[:, None] & n_mask[None, :]
    A = tl.load(A_ptr + d[:, None] * d_state + n[None, :], mask=dn_mask, other=0.0)
    D = tl.load(D_ptr + d, mask=d_mask, other=0.0)
    h = tl.zeros([BLOCK_D, BLOCK_N], tl.float32)
    row = b.to(tl.int64) * length
    for t in range(length):
        base = (row + t) * d_inner
        u = tl.load(u_ptr + base + d, mask=d_mask, other=0.0)
        dt = tl.load(delta_ptr + base + d, mask=d_mask, other=0.0)
        base_n = (row + t) * d_state
        Bt = tl.load(B_ptr + base_n + n, mask=n_mask, other=0.0)
        Ct = tl.load(C_ptr + base_n + n, mask=n_mask, other=0.0)
        h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
        y = tl.sum(h * Ct[None, :], axis=1) + D * u
        tl.store(y_ptr + base + d, y, mask=d_mask)
    tl.store(h_ptr + (b.to(tl.int64) * d_inner + d[:, None]) * d_state + n[None, :], h, mask=dn_mask)


def selective_scan_gpu(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                       D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """As `kernels.cpu.selective_scan_cpu` (delta after softplus, y not gated), from a zero state."""
    batch, length, d_inner = u.shape
    d_state = A.shape[1]
    tensors = [t.detach().float().contiguous() for t in (u, delta, A, B, C, D)]
    y = torch.empty(batch, length, d_inner, device=u.device, dtype=torch.float32)
    h_last = torch.empty(batch, d_inner, d_state, device=u.device, dtype=torch.float32)
    block_d = 32
    grid = (batch, triton.cdiv(d_inner, block_d))
    _scan_kernel[grid](*tensors, y, h_last, length, d_inner, d_state, BLOCK_D=block_d,
                       BLOCK_N=triton.next_power_of_2(d_state))
    return y, h_last
