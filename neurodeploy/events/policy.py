"""What a reader does with events that break the stream's invariants, and the check itself.

Every choice other than 'error' is a documented recovery that is counted in DecodeStats.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from .errors import DecodeStats, EventFileError

OutOfBounds = Literal["error", "drop"]
NonMonotonic = Literal["error", "keep", "sort"]
Truncated = Literal["error", "count"]


@dataclasses.dataclass(frozen=True)
class ReadPolicy:
    """out_of_bounds: events outside the sensor -> 'error' or 'drop' (counted).
    non_monotonic: t going backwards -> 'error', 'keep' (counted) or 'sort' (counted; a streaming
    reader sorts within each packet and keeps, counted, what goes back across packets).
    truncated: a partial record at the end of the input -> 'error' or 'count' (bytes counted).
    """

    out_of_bounds: OutOfBounds = "error"
    non_monotonic: NonMonotonic = "error"
    truncated: Truncated = "error"

    def __post_init__(self):
        if self.out_of_bounds not in ("error", "drop"):
            raise ValueError(f"out_of_bounds must be 'error' or 'drop', got {self.out_of_bounds!r}")
        if self.non_monotonic not in ("error", "keep", "sort"):
            raise ValueError(f"non_monotonic must be 'error', 'keep' or 'sort', got {self.non_monotonic!r}")
        if self.truncated not in ("error", "count"):
            raise ValueError(f"truncated must be 'error' or 'count', got {self.truncated!r}")


class PacketChecker:
    """Applies a ReadPolicy packet by packet, carrying the last timestamp across packets."""

    def __init__(self, source: str, sensor_size: tuple[int, int], policy: ReadPolicy, stats: DecodeStats):
        self.source = source
        self.width, self.height = sensor_size
        self.policy = policy
        self.stats = stats
        self.last_t: int | None = None
        self.index = 0  # events seen so far, for error messages

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if len(events) == 0:
            return events
        outside = (events["x"] >= self.width) | (events["y"] >= self.height)
        n_out = int(np.count_nonzero(outside))
        if n_out:
            if self.policy.out_of_bounds == "error":
                i = int(np.argmax(outside))
                e = events[i]
                raise EventFileError(
                    self.source,
                    f"event {self.index + i} at (x={int(e['x'])}, y={int(e['y'])}) lies outside the sensor "
                    f"{self.width}x{self.height}",
                    field="x/y",
                    fix="pass the right --sensor-size WxH, or --out-of-bounds drop to drop and count them "
                        "(sensor_size= / out_of_bounds='drop' in Python)")
            events = events[~outside]
            self.stats.out_of_bounds += n_out
        t = events["t"]
        if len(t):
            # compare, never subtract: a difference of two int64 times can overflow and flip sign
            back = t[1:] < t[:-1]
            n_back = int(np.count_nonzero(back))
            crossing = self.last_t is not None and int(t[0]) < self.last_t
            if n_back or crossing:
                if self.policy.non_monotonic == "error":
                    i = 0 if crossing else int(np.argmax(back)) + 1
                    before = self.last_t if crossing else int(t[i - 1])
                    raise EventFileError(
                        self.source,
                        f"timestamp goes backwards at event {self.index + i}: {int(t[i])} us after {before} us",
                        field="t",
                        fix="pass --non-monotonic sort or keep to accept it, counted (non_monotonic= in Python)")
                self.stats.non_monotonic += n_back + int(crossing)
                if self.policy.non_monotonic == "sort" and n_back:
                    events = events[np.argsort(t, kind="stable")]
            self.last_t = int(events["t"][-1]) if self.last_t is None else max(self.last_t, int(events["t"][-1]))
        self.index += len(events) + n_out
        self.stats.events += len(events)
        self.stats.packets += 1
        return events
