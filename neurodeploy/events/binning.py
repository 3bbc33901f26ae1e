"""Event count frames (T, 2, H, W), channel 0 OFF, 1 ON (tonic ToFrame order).

Two modes: a fixed bin width dt_us (what streaming uses; FrameBinner does it packet by packet),
and n_time_bins per recording with tonic 1.7's exact semantics (what the reference training used).
Counts are int16 like tonic's by default; a count that does not fit raises instead of wrapping
(tonic's np.add.at wraps silently): pass dtype=np.int32 or np.float32.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from neurodeploy.errors import NeurodeployError

from .types import EVENT_DTYPE


# frames binned in one call: one event an hour after the others must not become a 6 GiB array
# (issue 21); a longer span is a refusal naming the way out (stream it, or pass n_bins)
MAX_FRAME_BYTES = 2 << 30


class FrameBudgetError(NeurodeployError, ValueError):
    """Binning that would allocate more than MAX_FRAME_BYTES."""


def _accumulate(events: np.ndarray, bin_index: np.ndarray, n_bins: int, sensor_size, dtype) -> np.ndarray:
    width, height = sensor_size
    needed = int(n_bins) * 2 * int(width) * int(height) * np.dtype(dtype).itemsize
    if needed > MAX_FRAME_BYTES:
        raise FrameBudgetError(f"{n_bins} bins of {width}x{height} would take {needed / 2**30:.1f} GiB, more than "
                               f"{MAX_FRAME_BYTES / 2**30:.0f} GiB (a time gap?); stream the events (`neurodeploy "
                               "run`), cut the recording, or bin fewer bins (n_bins=)")
    plane = height * width
    flat = (bin_index * 2 + (events["p"] > 0).astype(np.int64)) * plane \
        + events["y"].astype(np.int64) * width + events["x"].astype(np.int64)
    counts = np.bincount(flat, minlength=n_bins * 2 * plane)[: n_bins * 2 * plane]
    dtype = np.dtype(dtype)
    if dtype.kind == "i" and len(counts) and counts.max() > np.iinfo(dtype).max:
        raise OverflowError(f"a bin holds {int(counts.max())} events, more than {dtype} can count: "
                            "pass dtype=np.int32 or np.float32")
    return counts.astype(dtype).reshape(n_bins, 2, height, width)


def _check(events, sensor_size):
    width, height = sensor_size
    if len(events) and (int(events["x"].max()) >= width or int(events["y"].max()) >= height):
        raise ValueError(f"events lie outside sensor_size {tuple(sensor_size)}")


def to_frames_dt(events: np.ndarray, sensor_size: tuple[int, int], dt_us: int, t_start: int | None = None,
                 n_bins: int | None = None, dtype=np.int16) -> np.ndarray:
    """Bins [t_start + k*dt_us, t_start + (k+1)*dt_us). t_start defaults to the first event; n_bins
    defaults to enough bins to hold the last event (the last bin may be partial). With n_bins given,
    events outside the n_bins window are outside the frames by that choice; events before t_start
    raise."""
    if dt_us <= 0:
        raise ValueError("dt_us must be positive")
    _check(events, sensor_size)
    t = events["t"]
    if t_start is None:
        t_start = int(t[0]) if len(t) else 0
    if len(t) and int(t.min()) < t_start:
        raise ValueError(f"events before t_start={t_start} us")
    rel = t - t_start
    if n_bins is None:
        n_bins = int(rel.max()) // dt_us + 1 if len(t) else 0
    index = rel // dt_us
    inside = index < n_bins
    return _accumulate(events[inside], index[inside], n_bins, sensor_size, dtype)


def tonic_time_bins(t: np.ndarray, n_time_bins: int, overlap: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Start and end event indices of each bin exactly as tonic 1.7's SliceByTimeBins computes them:
    window = (t[-1] - t[0]) // n_time_bins * (1 + overlap) (integer floor division of the duration),
    bins [t0 + i*stride, t0 + i*stride + window) by searchsorted. Consequences kept on purpose:
    events past t0 + n*window (always the last event when the duration divides evenly) fall in no
    bin, and a duration shorter than n_time_bins us makes every bin empty."""
    if not 0 <= overlap < 1:
        raise ValueError("overlap must be in [0, 1)")
    window = (t[-1] - t[0]) // n_time_bins * (1 + overlap)
    stride = window * (1 - overlap)
    starts = np.arange(n_time_bins) * stride + t[0]
    ends = starts + window
    return np.searchsorted(t, starts), np.searchsorted(t, ends)


def to_frames_n_bins(events: np.ndarray, sensor_size: tuple[int, int], n_time_bins: int, overlap: float = 0.0,
                     dtype=np.int16) -> np.ndarray:
    """n_time_bins frames per recording with tonic.transforms.ToFrame(n_time_bins=...) semantics."""
    _check(events, sensor_size)
    if n_time_bins <= 0:
        raise ValueError("n_time_bins must be positive")
    if len(events) == 0:
        raise ValueError("no events: tonic's n_time_bins slicing is undefined for an empty recording")
    first, last = tonic_time_bins(events["t"], n_time_bins, overlap)
    if overlap == 0:
        counts = last - first
        index = np.repeat(np.arange(n_time_bins), counts)
        take = np.concatenate([np.arange(a, b) for a, b in zip(first, last)]) if counts.sum() else np.zeros(0, int)
        return _accumulate(events[take], index, n_time_bins, sensor_size, dtype)
    frames = [_accumulate(events[a:b], np.zeros(b - a, np.int64), 1, sensor_size, dtype)[0]
              for a, b in zip(first, last)]
    return np.stack(frames)


@dataclasses.dataclass(frozen=True)
class ToFrames:
    """Tonic-style transform: Recording or events -> frames. Exactly one of dt_us / n_time_bins."""

    sensor_size: tuple[int, int]
    dt_us: int | None = None
    n_time_bins: int | None = None
    dtype: object = np.int16

    def __post_init__(self):
        if (self.dt_us is None) == (self.n_time_bins is None):
            raise ValueError("give exactly one of dt_us and n_time_bins")

    def __call__(self, events) -> np.ndarray:
        events = getattr(events, "events", events)
        if self.dt_us is not None:
            return to_frames_dt(events, self.sensor_size, self.dt_us, dtype=self.dtype)
        return to_frames_n_bins(events, self.sensor_size, self.n_time_bins, dtype=self.dtype)


class FrameBinner:
    """Streaming fixed-dt binning: push packets, get the frames of every bin that is complete.

    A bin [t0 + k*dt, t0 + (k+1)*dt) is complete once an event at or after its end arrived (or
    advance_to() says time has passed it); empty bins come out as zero frames. flush() returns the
    last, partial bin. Events older than the bins already returned raise ValueError.
    """

    def __init__(self, sensor_size: tuple[int, int], dt_us: int, t_start: int | None = None, dtype=np.int16):
        if dt_us <= 0:
            raise ValueError("dt_us must be positive")
        self.sensor_size = tuple(sensor_size)
        self.dt_us = int(dt_us)
        self.t_start = t_start
        self.dtype = dtype
        self.bins_done = 0
        self._pending: list[np.ndarray] = []

    def _bin_start(self, k: int) -> int:
        return self.t_start + k * self.dt_us

    def push(self, events: np.ndarray, max_bins: int | None = None) -> np.ndarray:
        if len(events) == 0:
            return self._empty()
        if self.t_start is None:
            self.t_start = int(events["t"][0])
        if int(events["t"].min()) < self._bin_start(self.bins_done):
            raise ValueError(f"event at {int(events['t'].min())} us is older than the bins already returned "
                             f"(up to {self._bin_start(self.bins_done)} us)")
        self._pending.append(events)
        return self.advance_to(int(events["t"].max()), max_bins)

    def advance_to(self, t_us: int, max_bins: int | None = None) -> np.ndarray:
        """Return the bins that end at or before t_us (time known to have passed, e.g. from a clock);
        at most max_bins of them (call again for the rest: a time gap need not be binned at once)."""
        if self.t_start is None:
            return self._empty()
        n_complete = max(0, (t_us - self.t_start) // self.dt_us) - self.bins_done
        if max_bins is not None:
            n_complete = min(n_complete, max_bins)
        if n_complete <= 0:
            return self._empty()
        events = np.concatenate(self._pending) if self._pending else np.zeros(0, EVENT_DTYPE)
        end = self._bin_start(self.bins_done + n_complete)
        done = events["t"] < end
        frames = to_frames_dt(events[done], self.sensor_size, self.dt_us, t_start=self._bin_start(self.bins_done),
                              n_bins=n_complete, dtype=self.dtype)
        self._pending = [events[~done]]
        self.bins_done += n_complete
        return frames

    def flush(self) -> np.ndarray:
        """The partial last bin (one frame), or no frame if nothing is pending."""
        events = np.concatenate(self._pending) if self._pending else np.zeros(0, EVENT_DTYPE)
        self._pending = []
        if len(events) == 0:
            return self._empty()
        frames = to_frames_dt(events, self.sensor_size, self.dt_us, t_start=self._bin_start(self.bins_done),
                              n_bins=1, dtype=self.dtype)
        self.bins_done += 1
        return frames

    def _empty(self) -> np.ndarray:
        width, height = self.sensor_size
        return np.zeros((0, 2, height, width), self.dtype)
