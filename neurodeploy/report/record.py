"""What a run leaves behind for a report: input frames, every LIF layer's spikes, step timings.

Any runtime can fill a `SpikeRecord`: the PyTorch model's `run()` output, per-step spikes
collected by a streaming run, or a Lava / NIR runtime. `record_run` is the built-in way: it
steps the PyTorch model one frame at a time (as the streaming runtime does) and times each step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurodeploy.report.errors import ReportError
from neurodeploy.runtimes.contract import step_pipeline
from neurodeploy.runtimes.torch import TorchBackboneRuntime, TorchFrontendRuntime


@dataclass(frozen=True)
class SpikeRecord:
    """frames `(B, T, 2, H, W)` event counts; spikes: per LIF layer `(B, T, C, H, W)` of 0/1.

    `dt_s` is the bin width (for spikes per second); `step_latency_s` the measured wall-clock
    time of each step of the runtime named `runtime` (None when it was not measured).
    """

    frames: torch.Tensor
    spikes: tuple[torch.Tensor, ...]
    dt_s: float | None = None
    step_latency_s: np.ndarray | None = None
    runtime: str = "unknown"

    @property
    def batch(self) -> int:
        return int(self.frames.shape[0])

    @property
    def steps(self) -> int:
        return int(self.frames.shape[1])

    @classmethod
    def from_output(cls, frames: torch.Tensor, output, *, dt_s: float | None = None, runtime: str = "torch") -> SpikeRecord:
        """From `MambaSpike.run(frames)` (a MambaSpikeOutput) or any object with a `.spikes` list."""
        return cls(frames, tuple(output.spikes), dt_s=dt_s, runtime=runtime)

    @classmethod
    def from_steps(cls, frames: torch.Tensor, step_spikes: list[list[torch.Tensor]], *, dt_s: float | None = None,
                   step_latency_s=None, runtime: str = "stream") -> SpikeRecord:
        """From a streaming run: `step_spikes[t][layer]` of shape `(B, C, H, W)`."""
        if not step_spikes:
            raise ReportError("no steps recorded: a report needs at least one time step of spikes")
        per_layer = tuple(torch.stack([step[k] for step in step_spikes], dim=1) for k in range(len(step_spikes[0])))
        latency = None if step_latency_s is None else np.asarray(step_latency_s, dtype=np.float64)
        return cls(frames, per_layer, dt_s=dt_s, step_latency_s=latency, runtime=runtime)


def record_run(model, frames: torch.Tensor, *, dt_s: float | None = None) -> SpikeRecord:
    """Stream `frames (B, T, 2, H, W)` through the PyTorch model step by step, timing each step.

    Each step's time covers the front-end and the backbone step (the whole streaming pipeline
    minus binning), at the batch size given.
    """
    frames = torch.as_tensor(frames).float()
    if frames.ndim != 5:
        raise ReportError(f"frames of shape {tuple(frames.shape)}; expected (B, T, 2, H, W) event-count frames")
    seconds: list[float] = []
    layers, _, _ = step_pipeline(TorchFrontendRuntime(model), TorchBackboneRuntime(model), frames, step_seconds=seconds)
    return SpikeRecord(frames, tuple(layers.values()), dt_s=dt_s, step_latency_s=np.asarray(seconds),
                       runtime=f"torch (stepped, batch {frames.shape[0]})")
