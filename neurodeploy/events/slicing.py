"""Cutting event streams into windows: by time (delta_t_us), by count (n_events), or mixed
(whichever closes first), with overlap; empty time windows come out as empty packets; the last
partial window is kept or dropped by explicit choice. One streaming Slicer does the work;
slice_events() runs it over a whole array."""
from __future__ import annotations

import dataclasses

import numpy as np

from .types import EVENT_DTYPE


@dataclasses.dataclass(frozen=True)
class EventWindow:
    t_start_us: int
    t_end_us: int        # exclusive for time windows; last event time + 1 for count windows
    events: np.ndarray

    def __len__(self) -> int:
        return len(self.events)


class Slicer:
    """Streaming slicer. Modes: delta_t_us only (time windows [t0 + k*stride, + delta_t_us) with
    stride = delta_t_us - overlap_us), n_events only (windows of n_events, stride n_events - overlap),
    or both (mixed: a window closes when delta_t_us passed or n_events arrived, whichever first; the
    next starts where it ended; no overlap). push() returns the windows completed so far; finish()
    the partial last window when keep_partial."""

    def __init__(self, delta_t_us: int | None = None, n_events: int | None = None, overlap: int = 0,
                 keep_partial: bool = True, t_start_us: int | None = None):
        if delta_t_us is None and n_events is None:
            raise ValueError("give delta_t_us, n_events or both")
        if delta_t_us is not None and delta_t_us <= 0 or n_events is not None and n_events <= 0:
            raise ValueError("delta_t_us and n_events must be positive")
        if delta_t_us is not None and n_events is not None and overlap:
            raise ValueError("mixed slicing has no overlap")
        size = delta_t_us if delta_t_us is not None else n_events
        if not 0 <= overlap < size:
            raise ValueError("overlap must be >= 0 and smaller than the window")
        self.delta_t_us = delta_t_us
        self.n_events = n_events
        self.overlap = overlap
        self.keep_partial = keep_partial
        self.t_start = t_start_us
        self._buffer = np.zeros(0, EVENT_DTYPE)
        self._last_t: int | None = None
        self._emitted = False

    def push(self, events: np.ndarray) -> list[EventWindow]:
        if len(events):
            t = events["t"]
            if self._last_t is not None and int(t[0]) < self._last_t or np.any(t[1:] < t[:-1]):
                raise ValueError("slicing needs non-decreasing timestamps")
            self._last_t = int(events["t"][-1])
            if self.t_start is None:
                self.t_start = int(events["t"][0])
            self._buffer = np.concatenate([self._buffer, events]) if len(self._buffer) else events
        return self._emit(final=False)

    def finish(self) -> list[EventWindow]:
        return self._emit(final=True)

    def _emit(self, final: bool) -> list[EventWindow]:
        if self.t_start is None:
            return []
        if self.delta_t_us is not None and self.n_events is None:
            return self._emit_time(final)
        if self.delta_t_us is None:
            return self._emit_count(final)
        return self._emit_mixed(final)

    def _emit_time(self, final):
        out = []
        stride = self.delta_t_us - self.overlap
        t = self._buffer["t"]
        while True:
            end = self.t_start + self.delta_t_us
            complete = self._last_t is not None and self._last_t >= end
            if not complete:
                if final and self.keep_partial and len(self._buffer):
                    out.append(EventWindow(self.t_start, end, self._buffer))
                    self._buffer = self._buffer[:0]
                break
            i_end = int(np.searchsorted(t, end))
            out.append(EventWindow(self.t_start, end, self._buffer[:i_end]))
            self.t_start += stride
            drop = int(np.searchsorted(t, self.t_start))
            self._buffer, t = self._buffer[drop:], t[drop:]
        return out

    def _emit_count(self, final):
        out = []
        stride = self.n_events - self.overlap
        while len(self._buffer) >= self.n_events:
            w = self._buffer[: self.n_events]
            out.append(EventWindow(int(w["t"][0]), int(w["t"][-1]) + 1, w))
            self._buffer = self._buffer[stride:]
        if out:
            self._emitted = True
        # the buffer still holds the overlap of the last full window: only new events make a window
        if final and self.keep_partial and len(self._buffer) > (self.overlap if self._emitted else 0):
            w = self._buffer
            out.append(EventWindow(int(w["t"][0]), int(w["t"][-1]) + 1, w))
            self._buffer = self._buffer[:0]
        return out

    def _emit_mixed(self, final):
        out = []
        while True:
            end = self.t_start + self.delta_t_us
            t = self._buffer["t"]
            i_time = int(np.searchsorted(t, end))
            if i_time >= self.n_events:      # count closes first
                w = self._buffer[: self.n_events]
                t_end = int(w["t"][-1]) + 1
                out.append(EventWindow(self.t_start, t_end, w))
                self._buffer = self._buffer[self.n_events:]
                self.t_start = int(w["t"][-1])
                continue
            if self._last_t is not None and self._last_t >= end:   # time closes first
                out.append(EventWindow(self.t_start, end, self._buffer[:i_time]))
                self._buffer = self._buffer[i_time:]
                self.t_start = end
                continue
            if final and self.keep_partial and len(self._buffer):
                out.append(EventWindow(self.t_start, end, self._buffer))
                self._buffer = self._buffer[:0]
            return out


def slice_events(events: np.ndarray, delta_t_us: int | None = None, n_events: int | None = None,
                 overlap: int = 0, keep_partial: bool = True, t_start_us: int | None = None) -> list[EventWindow]:
    slicer = Slicer(delta_t_us, n_events, overlap, keep_partial, t_start_us)
    return slicer.push(events) + slicer.finish()


def slice_packets(packets, delta_t_us: int | None = None, n_events: int | None = None, overlap: int = 0,
                  keep_partial: bool = True):
    """Re-cut an iterator of packets (a file source, a live source) into windows, lazily."""
    slicer = Slicer(delta_t_us, n_events, overlap, keep_partial)
    for packet in packets:
        yield from slicer.push(packet)
    yield from slicer.finish()
