"""The offline forward at hardware speed: whole-T convolutions, the LIF and the scan in compiled kernels.

    out = offline_run(model, frames, lengths)      # frames (B, T, 2, H, W), lengths (B,) or None

Same maths as `MambaSpike.run`, arranged for throughput:
- every convolution of a layer runs once over many frames (time-major: all B*T on CUDA, chunks
  of about 256 frames on CPU, where larger ones fall out of cache), then the LIF walks time
  inside one compiled kernel (`neurodeploy.model.kernels`: numba on CPU, Triton on CUDA);
- the selective scan of each Mamba layer is one compiled kernel over (batch, time);
- samples of different lengths share a batch without being cut: frames are zero-padded to
  the longest, and `lengths` masks the rest. Everything after the front-end is causal except
  the centered interface, which reads up to `lookahead` steps ahead: spikes past a sample's end
  are zeroed first (the reference zero-pads there), and the mean over time counts only the
  sample's own steps. Each sample's logits are those of running it alone.

Exactness (checked by tests/test_offline_fast.py against tests/plain_reference.py): spikes
bit-identical, logits within 1e-4. It holds because (a) the batched convolution of a frame is
computed exactly as a per-step call computes it (`_EXACT_CONV`: measured per device; other
layouts or batchings differ in the last bit, which flips a few spikes near threshold), and (b) the LIF kernels keep
the reference's float32 operation order. `fast_math=True` drops (a) on CPU (channels-last for
every layer: faster) and allows TF32 on CUDA; then only the prediction agreement is promised,
and `neurodeploy eval --fast-math` measures it.

Recurrent front-ends (the v2 reference) need each step's spikes before the next step's
current; their LIF layers step through time in PyTorch (`lif_step`), everything else as above.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn.functional as F

from neurodeploy.model.lif import LIFState, lif_initial_state, lif_step
from neurodeploy.model.mamba import Mamba
from neurodeploy.model.mamba_spike.frontend import pool_current
from neurodeploy.model.mamba_spike.interface import moving_average
from neurodeploy.model.mamba_spike.model import MambaSpike

# Per device and layer: (channels_last, one call per time step) such that the convolution is
# bit-identical to the reference's one call per step. Measured (.../benchmarks/offline.py checks
# it on every run): oneDNN is batch-independent for conv1 in channels-last and conv2/conv3 in
# NCHW; cuDNN (H200, TF32 off) is for conv1 and conv3 in NCHW, but picks a different conv2
# algorithm for every batch size, so conv2 keeps one call of B frames per step there.
_EXACT_CONV = {"cpu": ((True, False), (False, False), (False, False)),
               "cuda": ((False, False), (False, True), (False, False))}
_FAST_CONV = ((True, False), (True, False), (True, False))
_CPU_CHUNK_FRAMES = 256


class OfflineOutput(NamedTuple):
    logits: torch.Tensor  # (B, classes)
    spikes: list[torch.Tensor]  # per LIF layer (B, T, C, H, W), zero after each sample's length
    lengths: torch.Tensor  # (B,) int64


def _kernels(device: torch.device):
    if device.type == "cuda":
        from neurodeploy.model.kernels import gpu

        return gpu.lif_over_time, gpu.selective_scan_gpu
    if device.type == "cpu":
        from neurodeploy.model.kernels import cpu

        cpu.set_threads(torch.get_num_threads())
        return cpu.lif_over_time, cpu.selective_scan_cpu
    raise ValueError(f"offline kernels exist for cpu and cuda devices, not {device.type!r}; use MambaSpike.run")


@contextlib.contextmanager
def _tf32(allowed: bool):
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) bool: True where step t belongs to the sample."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


@torch.no_grad()
def offline_run(model: MambaSpike, frames: torch.Tensor, lengths: torch.Tensor | None = None, *,
                fast_math: bool = False) -> OfflineOutput:
    """frames `(B, T, 2, H, W)` float32 (zero-padded past each sample's length) -> logits and spikes."""
    model._check_frames(frames, sequence=True)
    batch, steps = frames.shape[:2]
    device = frames.device
    lengths = (torch.full((batch,), steps, dtype=torch.int64, device=device) if lengths is None
               else torch.as_tensor(lengths, dtype=torch.int64, device=device))
    if bool((lengths < 1).any()) or bool((lengths > steps).any()):
        raise ValueError(f"lengths {lengths.tolist()} must lie in 1..{steps} (the padded number of steps)")
    lif, scan = _kernels(device)
    mask = _step_mask(lengths, steps)
    with _tf32(fast_math and device.type == "cuda"):
        spikes = _frontend(model, frames.float(), lif, fast_math)
        spikes = [s * mask[:, :, None, None, None].to(s.dtype) if int(lengths.min()) < steps else s for s in spikes]
        logits = _backbone(model, spikes[-1], mask, lengths, scan)
    return OfflineOutput(logits, spikes, lengths)


def _frontend(model: MambaSpike, frames: torch.Tensor, lif, fast_math: bool) -> list[torch.Tensor]:
    front = model.spiking_frontend
    c = front.config
    batch, steps = frames.shape[:2]
    strategy = _FAST_CONV if fast_math else _EXACT_CONV[frames.device.type]
    # CPU: chunks of about _CPU_CHUNK_FRAMES frames keep each layer's currents in cache (whole-T
    # convolutions of B=32 x T=300 frames were memory-bound and slower than the plain loops);
    # the LIF state carries over. CUDA: the whole time axis at once.
    chunk = max(1, _CPU_CHUNK_FRAMES // batch) if frames.device.type == "cpu" else steps
    states: list = [None, None, None]
    per_layer: list[list[torch.Tensor]] = [[], [], []]
    for start in range(0, steps, chunk):
        length = min(chunk, steps - start)
        x = frames[:, start:start + length].transpose(0, 1).reshape(length * batch, *frames.shape[2:])  # time-major
        for index, conv in enumerate((front.conv1, front.conv2, front.conv3)):
            channels_last, per_step = strategy[index]
            x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            current = torch.cat([conv(x[t * batch:(t + 1) * batch]) for t in range(length)]) if per_step else conv(x)
            if index < 2:
                current = pool_current(current, c.pooling)
            current = current.contiguous().reshape(length, batch, *current.shape[1:])
            if c.recurrent:
                spikes, states[index] = _recurrent_lif(front, index, current, states[index])
            else:
                spikes, states[index] = lif(current, c.beta, c.threshold, c.reset, c.reset_timing, states[index])
            per_layer[index].append(spikes)
            x = spikes.reshape(length * batch, *spikes.shape[2:])
    return [torch.cat(chunks).transpose(0, 1) for chunks in per_layer]


def _recurrent_lif(front, index: int, current: torch.Tensor, state: LIFState | None) -> tuple[torch.Tensor, LIFState]:
    """A recurrent layer: each step adds the 1x1 conv of the previous step's spikes (stepped in PyTorch)."""
    first = state is None
    if state is None:
        state = lif_initial_state(tuple(current.shape[1:]), dtype=current.dtype, device=current.device)
    spikes = []
    for t in range(current.shape[0]):
        cur_t = current[t] if first and t == 0 else current[t] + front._recurrent(index, state.spikes)
        s, state = lif_step(cur_t, state, front.lif)
        spikes.append(s)
    return torch.stack(spikes), state


def _backbone(model: MambaSpike, spikes: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor, scan) -> torch.Tensor:
    c = model.config
    smoothed = moving_average(spikes.flatten(2), c.interface_window, c.interface)
    x = model.input_proj(smoothed)
    for block in model.mamba_blocks:
        x = x + _mamba(block.mamba, block.norm(x), scan)
    weights = mask.to(x.dtype)[:, :, None]
    pooled = (x * weights).sum(dim=1) / lengths.to(x.dtype)[:, None]
    return model.head(pooled)


def _mamba(mamba: Mamba, hidden: torch.Tensor, scan) -> torch.Tensor:
    """`Mamba.forward` from a zero state, with the scan in one compiled kernel."""
    length = hidden.shape[1]
    x, z = mamba.in_proj(hidden).chunk(2, dim=-1)
    u = F.conv1d(x.transpose(1, 2), mamba.conv1d.weight, padding=mamba.d_conv - 1, groups=mamba.d_inner)[..., :length]
    u = F.silu(u).transpose(1, 2)
    delta, B, C = mamba._project(u)
    delta = F.softplus(delta + mamba.dt_proj.bias)
    A = -torch.exp(mamba.A_log.float())
    y, _ = scan(u, delta, A, B, C, mamba.D)
    return mamba.out_proj(y * F.silu(z))
