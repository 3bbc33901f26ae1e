"""tonic 1.7's Denoise(filter_time), vectorised, with its exact semantics (the reference training
used it): an event is kept when one of its 4 neighbours (not its own pixel) had an event earlier
in the stream (by order, equal timestamps included) less than filter_time us before it. Quirks
kept on purpose: the neighbourhood grid is sized from the events' own max x / max y, not the
sensor; and every pixel starts with a remembered time of filter_time, so events with
t < filter_time pass whenever a neighbour exists in that grid."""
from __future__ import annotations

import dataclasses

import numpy as np


def denoise(events: np.ndarray, filter_time: int = 10000) -> np.ndarray:
    n = len(events)
    if n == 0:
        return events
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    t = events["t"].astype(np.int64)
    width = int(x.max()) + 1
    height = int(y.max()) + 1
    pixel = x * height + y
    order = np.lexsort((np.arange(n), pixel))       # by pixel, then stream position
    key = pixel[order] * n + order                   # sorted
    t_sorted = t[order]
    keep = np.zeros(n, bool)
    index = np.arange(n)
    for dx, dy, valid in ((-1, 0, x > 0), (1, 0, x < width - 1), (0, -1, y > 0), (0, 1, y < height - 1)):
        q = (x + dx) * height + (y + dy)
        pos = np.searchsorted(key, q * n + index, side="left") - 1   # last event at q before this one
        found = pos >= 0
        pos_c = np.maximum(pos, 0)
        found &= (key[pos_c] // n) == q
        remembered = np.where(found, t_sorted[pos_c] + filter_time, filter_time)
        keep |= valid & (remembered > t)
    return events[keep]


@dataclasses.dataclass(frozen=True)
class Denoise:
    """Tonic-style transform: events (or a Recording's events) -> denoised events."""

    filter_time: int = 10000

    def __call__(self, events):
        from .types import Recording

        if isinstance(events, Recording):
            return Recording(denoise(events.events, self.filter_time), events.sensor_size)
        return denoise(events, self.filter_time)
