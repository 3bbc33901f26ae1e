"""Bundle + event file -> the frames and spike record a report is built from (`neurodeploy report`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neurodeploy.report.errors import ReportError
from neurodeploy.report.record import SpikeRecord
from neurodeploy.runtimes.contract import FrontendRuntime, step_layers


def frames_of_samples(bundle, events_path: str | Path, *, window_us: int | None = None, max_samples: int = 16,
                      labels_path: str | Path | None = None, transforms=None,
                      reading: dict | None = None) -> tuple[torch.Tensor, str]:
    """The event file cut into samples (labels file, fixed windows, or the whole recording), binned at
    the bundle's dt, as one batch `(N, T, 2, H, W)`. Samples shorter than the longest keep their
    length: the batch is cut to the shortest sample's T, and the description says so."""
    c = bundle.config
    return frames_of_file(events_path, (c.input_width, c.input_height), bundle.dt_us, window_us=window_us,
                          max_samples=max_samples, labels_path=labels_path, transforms=transforms, reading=reading)


def frames_of_file(events_path: str | Path, model_size: tuple[int, int], dt_us: int, *, window_us: int | None = None,
                   max_samples: int = 16, labels_path: str | Path | None = None, transforms=None,
                   reading: dict | None = None) -> tuple[torch.Tensor, str]:
    """`frames_of_samples` for a model input size and dt (also what `export --calibration` measures on)."""
    from neurodeploy.events import labels_beside, read_label_file
    from neurodeploy.sources import load_fitted
    from neurodeploy.stream import offline_frames

    recording = load_fitted(events_path, transforms, model_size, **(reading or {}))
    events = recording.events
    if len(events) == 0:
        raise ReportError(f"{events_path}: holds no events; a report needs a run over events")
    labels_path = labels_path or (None if window_us else labels_beside(str(events_path)))
    if labels_path:
        spans = [(s.t_start_us, s.t_end_us) for s in read_label_file(labels_path)]
        how = f"labelled samples of {labels_path}"
    elif window_us:
        t0, t1 = int(events["t"][0]), int(events["t"][-1]) + 1
        spans = [(t, t + window_us) for t in range(t0, t1, window_us)]
        how = f"windows of {window_us} us"
    else:
        spans = [(int(events["t"][0]), int(events["t"][-1]) + 1)]
        how = "the whole recording as one sample"
    spans = spans[:max_samples]
    per_sample = [offline_frames(events, recording.sensor_size, dt_us, a, b) for a, b in spans]
    steps = min(f.shape[0] for f in per_sample)
    cut = sum(f.shape[0] - steps for f in per_sample)
    frames = torch.from_numpy(np.stack([f[:steps] for f in per_sample]))
    description = f"{len(spans)} sample(s) from {events_path} ({how}), {steps} bins of {dt_us} us each"
    if transforms:
        description += f"; input transforms: {transforms.describe()}"
    if cut:
        description += f"; {cut} trailing bin(s) of longer samples left out to batch them at one length"
    return frames, description


def record_frontend_run(runtime: FrontendRuntime, frames: torch.Tensor, *, dt_s: float, name: str,
                        on_step=None) -> SpikeRecord:
    """Step a FrontendRuntime over `frames`, keeping every layer's spikes and each step's time
    (`on_step()` after each step: a progress bar)."""
    seconds: list[float] = []
    spikes = step_layers(runtime, frames, step_seconds=seconds, on_step=on_step)
    return SpikeRecord(frames, tuple(spikes.values()), dt_s=dt_s, step_latency_s=np.asarray(seconds),
                       runtime=f"{name} front-end (stepped, batch {frames.shape[0]})")
