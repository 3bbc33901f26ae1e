"""N-MNIST / N-Caltech101 .bin files, by hand: no library reads them apart from tonic's
read_mnist_file, which needs tonic's whole dependency tree and neither bounds-checks nor streams.

No header. 5 bytes per event: x (u8), y (u8), then p in bit 7 of byte 2 and a 23-bit timestamp
in us in the rest of bytes 2-4 (big-endian). N-MNIST's sensor is defined as 34x34.
"""
from __future__ import annotations

import os

import numpy as np

from .incremental import IncrementalDecoder
from .types import EVENT_DTYPE

NMNIST_SENSOR_SIZE = (34, 34)
RECORD_BYTES = 5
T_LIMIT = 1 << 23  # 8.39 s: the 23-bit counter is never unrolled (recordings are 0.3 s)


class NmnistBinDecoder(IncrementalDecoder):
    format_name = "N-MNIST .bin"

    def __init__(self, source="<stream>", sensor_size=None, stats=None):
        super().__init__(source, sensor_size if sensor_size is not None else NMNIST_SENSOR_SIZE, stats)

    def _parse_header(self, buf, final):
        return 0

    def _decode(self, buf, offset):
        n = len(buf) // RECORD_BYTES
        raw = np.frombuffer(buf, dtype=np.uint8, count=n * RECORD_BYTES).reshape(n, RECORD_BYTES)
        events = np.empty(n, EVENT_DTYPE)
        events["x"] = raw[:, 0]
        events["y"] = raw[:, 1]
        events["p"] = raw[:, 2] >> 7
        events["t"] = ((raw[:, 2].astype(np.int64) & 0x7F) << 16) | (raw[:, 3].astype(np.int64) << 8) | raw[:, 4]
        return events, n * RECORD_BYTES


def write(path: str | os.PathLike, events: np.ndarray) -> None:
    if len(events):
        if int(events["x"].max()) > 255 or int(events["y"].max()) > 255:
            raise ValueError("N-MNIST .bin holds x and y in one byte each (0..255)")
        if int(events["t"].min()) < 0 or int(events["t"].max()) >= T_LIMIT:
            raise ValueError(f"N-MNIST .bin holds t in 23 bits (0..{T_LIMIT - 1} us)")
    t = events["t"].astype(np.int64)
    raw = np.empty((len(events), RECORD_BYTES), np.uint8)
    raw[:, 0] = events["x"]
    raw[:, 1] = events["y"]
    raw[:, 2] = ((events["p"].astype(np.int64) > 0) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    with open(path, "wb") as f:
        f.write(raw.tobytes())
