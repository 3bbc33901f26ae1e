"""Bundle + event file -> the frames and spike record a report is built from (`neurodeploy report`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neurodeploy.report.errors import ReportError
from neurodeploy.report.record import SpikeRecord
from neurodeploy.runtimes.contract import FrontendRuntime, step_layers


def frames_of_samples(bundle, events_path: str | Path, *, window_us: int | None = None, max_samples: int = 16,
                      labels_path: str | Path | None = None) -> tuple[torch.Tensor, str]:
    """The event file cut into samples (labels file, fixed windows, or the whole recording), binned at
    the bundle's dt, as one batch `(N, T, 2, H, W)`. Samples shorter than the longest keep their
    length: the batch is cut to the shortest sample's T, and the description says so."""
    from neurodeploy.events import labels_beside, load, read_label_file
    from neurodeploy.stream import check_sensor_size, offline_frames

    recording = load(events_path)
    check_sensor_size(bundle, recording.sensor_size, str(events_path))
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
    per_sample = [offline_frames(events, recording.sensor_size, bundle.dt_us, a, b) for a, b in spans]
    steps = min(f.shape[0] for f in per_sample)
    cut = sum(f.shape[0] - steps for f in per_sample)
    frames = torch.from_numpy(np.stack([f[:steps] for f in per_sample]))
    description = f"{len(spans)} sample(s) from {events_path} ({how}), {steps} bins of {bundle.dt_us} us each"
    if cut:
        description += f"; {cut} trailing bin(s) of longer samples left out to batch them at one length"
    return frames, description


def record_frontend_run(runtime: FrontendRuntime, frames: torch.Tensor, *, dt_s: float, name: str) -> SpikeRecord:
    """Step a FrontendRuntime over `frames`, keeping every layer's spikes and each step's time."""
    seconds: list[float] = []
    spikes = step_layers(runtime, frames, step_seconds=seconds)
    return SpikeRecord(frames, tuple(spikes.values()), dt_s=dt_s, step_latency_s=np.asarray(seconds),
                       runtime=f"{name} front-end (stepped, batch {frames.shape[0]})")
