"""The one exception for bad event input, and the counters of documented recoveries."""
from __future__ import annotations

import dataclasses
import os

from neurodeploy.errors import NeurodeployError


class EventFileError(NeurodeployError, ValueError):
    """Bad event input: names the source, where (byte offset or field) and the way out."""

    def __init__(self, source: str | os.PathLike, problem: str, *, offset: int | None = None,
                 field: str | None = None, fix: str | None = None):
        self.source = os.fspath(source)
        self.problem = problem
        self.offset = offset
        self.field = field
        self.fix = fix
        where = []
        if offset is not None:
            where.append(f"at byte {offset}")
        if field is not None:
            where.append(f"field {field!r}")
        message = f"{self.source}: {problem}"
        if where:
            message += f" ({', '.join(where)})"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


@dataclasses.dataclass
class DecodeStats:
    """What a reader or live source saw. Every event that was not delivered is counted here.

    Mutable on purpose: decoders and live sources add to it as they go.
    """

    events: int = 0                  # events delivered
    packets: int = 0                 # packets delivered (file packets, datagrams, batches)
    bytes_read: int = 0
    time_wraps: int = 0              # timestamp counter wraps unrolled (EVT2/EVT3/AEDAT3.1 overflow/DAT)
    out_of_bounds: int = 0           # events outside the sensor, dropped by request
    non_monotonic: int = 0           # events whose t went backwards (kept or sorted by request)
    events_before_time_base: int = 0 # EVT2/EVT3 events before the first TIME_HIGH word: no absolute time
    skipped_events: int = 0          # non-polarity or invalid-flagged events of the container (APS, IMU, ...)
    skipped_packets: int = 0         # container packets of other types (frames, IMU, triggers)
    unknown_words: int = 0           # EVT2/EVT3 words of reserved types
    truncated_bytes: int = 0         # a partial record at the end, by request not an error
    packets_lost: int = 0            # live: datagrams that arrived out of order and were dropped
    bytes_lost: int = 0              # live: bytes that did not make a whole event

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
