"""tonic 1.7's Denoise(filter_time), vectorised, with its exact semantics (the reference training
used it): an event is kept when one of its 4 neighbours (not its own pixel) had an event earlier
in the stream (by order, equal timestamps included) less than filter_time us before it. Quirks
kept on purpose: the neighbourhood grid is sized from the events' own max x / max y, not the
sensor; and every pixel starts with a remembered time of filter_time, so events with
t < filter_time pass whenever a neighbour exists in that grid.

`Denoise` is also a spatial transform of `events.transforms` (`--denoise-us`): there it runs packet
by packet with the per-pixel memory carried across packets and the grid of the sensor, so a
stream split into any packets gives the same events as the whole recording in one piece. That
differs from `denoise()` only for events in the first filter_time us of the clock on the
bounding box's last row / column (tonic's grid quirk meets its initial-memory quirk there).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np


def _keep_mask(events: np.ndarray, width: int, height: int, filter_time: int, memory: np.ndarray) -> np.ndarray:
    """Which events pass, given `memory[x * height + y]` = last time + filter_time of each pixel before
    this chunk (tonic's timestamp_memory); updates `memory` with this chunk's events."""
    n = len(events)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    t = events["t"].astype(np.int64)
    pixel = x * height + y
    order = np.lexsort((np.arange(n), pixel))       # by pixel, then stream position
    key = pixel[order] * n + order                   # sorted
    t_sorted = t[order]
    keep = np.zeros(n, bool)
    index = np.arange(n)
    for dx, dy, valid in ((-1, 0, x > 0), (1, 0, x < width - 1), (0, -1, y > 0), (0, 1, y < height - 1)):
        q = np.where(valid, (x + dx) * height + (y + dy), 0)
        pos = np.searchsorted(key, q * n + index, side="left") - 1   # last event at q before this one
        found = pos >= 0
        pos_c = np.maximum(pos, 0)
        found &= (key[pos_c] // n) == q
        remembered = np.where(found, t_sorted[pos_c] + filter_time, memory[q])
        keep |= valid & (remembered > t)
    last_of_pixel = np.r_[pixel[order][1:] != pixel[order][:-1], True]
    memory[pixel[order][last_of_pixel]] = t_sorted[last_of_pixel] + filter_time
    return keep


def denoise(events: np.ndarray, filter_time: int = 10000) -> np.ndarray:
    if len(events) == 0:
        return events
    width = int(events["x"].max()) + 1
    height = int(events["y"].max()) + 1
    memory = np.full(width * height, filter_time, dtype=np.int64)
    return events[_keep_mask(events, width, height, filter_time, memory)]


@dataclasses.dataclass(frozen=True)
class Denoise:
    """Tonic-style transform: events (or a Recording's events) -> denoised events."""

    filter_time: int = 10000

    def __post_init__(self):
        if self.filter_time <= 0:
            raise ValueError(f"filter_time = {self.filter_time}; expected a positive number of microseconds "
                             "(--denoise-us)")

    def __call__(self, events):
        from .types import Recording

        if isinstance(events, Recording):
            return Recording(denoise(events.events, self.filter_time), events.sensor_size)
        return denoise(events, self.filter_time)

    # -- the spatial-transform interface of events.transforms ----------------------------------
    name = "denoise"

    def output_size(self, sensor_size: tuple[int, int]) -> tuple[int, int]:
        return tuple(sensor_size)

    def streamer(self, sensor_size: tuple[int, int]) -> Callable[[np.ndarray], np.ndarray]:
        width, height = sensor_size
        memory = np.full(width * height, self.filter_time, dtype=np.int64)

        def apply(events: np.ndarray) -> np.ndarray:
            if len(events) == 0:
                return events
            return events[_keep_mask(events, width, height, self.filter_time, memory)]

        return apply

    def describe(self) -> str:
        return f"denoise {self.filter_time} us (tonic Denoise)"

    def to_dict(self) -> dict:
        return {"name": self.name, "filter_time": self.filter_time}
