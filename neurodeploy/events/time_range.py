"""Which timestamps a file format can hold, checked before writing.

Prophesee EVT 2.0 / 3.0 count time from zero at the start of the file: faery's encoder writes
time words for every counter period between 0 and the first event, so a recording stamped with
epoch time (microseconds since 1970, as cameras' host clocks give) becomes a file of hundreds of
megabytes of empty time (measured here: 3 events at t = 1.7e15 us made an 810 MB EVT3 file in
27 s, and a 101 MB EVT2 file). DAT holds t in 32 bits (71.6 minutes); N-MNIST .bin in 23 bits
(8.4 s). `check_time_range` refuses such a write with the reason, and `rebase` moves the
recording to start at t = 0 when the caller asks for it (`save(..., rebase_time=True)`).
"""
from __future__ import annotations

import numpy as np

from .errors import EventFileError

# the latest first timestamp (us) a format is written with; later ones are refused
FIRST_T_LIMIT_US = {"evt2": 1 << 32, "evt2.1": 1 << 32, "evt3": 1 << 32}
# the largest timestamp (us) a format holds at all
T_LIMIT_US = {"dat": (1 << 32) - 1, "nmnist_bin": (1 << 23) - 1}


def check_time_range(path, events: np.ndarray, fmt: str) -> None:
    if not len(events):
        return
    first, last = int(events["t"][0]), int(events["t"].max())
    fix = "rebase the recording to start at 0 (save(..., rebase_time=True)), keeping the offset elsewhere"
    if first < 0:
        raise EventFileError(path, f"the first timestamp is negative ({first} us); {fmt} holds times from 0",
                             field="t", fix=fix)
    if fmt in FIRST_T_LIMIT_US and first > FIRST_T_LIMIT_US[fmt]:
        raise EventFileError(
            path, f"the recording starts at t = {first} us ({first / 3.6e9:.1f} hours: epoch timestamps?); {fmt} "
                  "counts time from 0 at the start of the file, so the writer would emit time words for all of it "
                  "(hundreds of MB before the first event)", field="t", fix=fix)
    if fmt in T_LIMIT_US and last > T_LIMIT_US[fmt]:
        raise EventFileError(path, f"t reaches {last} us; {fmt} holds at most {T_LIMIT_US[fmt]} us", field="t",
                             fix=fix)


def rebase(events: np.ndarray) -> np.ndarray:
    """The events with the first one at t = 0."""
    if not len(events):
        return events
    out = events.copy()
    out["t"] -= int(events["t"][0])
    return out
