"""Prophesee DAT files: written through faery; read by the incremental decoder here, which also
serves following a growing file. faery 0.7.1's reader clamps times that go back to the previous
value without counting them and drops a final partial record silently (issue 21): reading with
it would give another answer than following the same file.

'%' header lines, then 2 bytes (event type, event size; CD = 0x0C, 8), then per event u32 t and
u32 packed (x bits 0-13, y bits 14-27, p bits 28-31).
"""
from __future__ import annotations

import os
import numpy as np

from . import prophesee_header
from .incremental import IncrementalDecoder
from .types import EVENT_DTYPE

CD_TYPE = 0x0C
RECORD = np.dtype([("t", "<u4"), ("w", "<u4")])


def write(path, events: np.ndarray, sensor_size: tuple[int, int]) -> None:
    import faery

    if len(events) and (int(events["t"].min()) < 0 or int(events["t"].max()) > 0xFFFFFFFF):
        raise ValueError("DAT holds t in u32 microseconds")
    raw = np.empty(len(events), np.dtype([("t", "=u8"), ("x", "=u2"), ("y", "=u2"), ("payload", "u1")]))
    raw["t"] = events["t"]
    raw["x"] = events["x"]
    raw["y"] = events["y"]
    raw["payload"] = events["p"] > 0
    with faery.dat.Encoder(os.fspath(path), version="dat2", event_type="cd", zero_t0=False,
                           dimensions=tuple(sensor_size)) as encoder:
        if len(raw):
            encoder.write(raw)


class DatDecoder(IncrementalDecoder):
    format_name = "DAT"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_t = -1
        self._wraps = 0

    def _parse_header(self, buf, final):
        n = prophesee_header.header_length(buf, final)
        if n is None:
            return None
        if n <= 0:
            raise self.error("no complete '%' header", 0, "this is not a Prophesee DAT file")
        if len(buf) < n + 2:
            if final:
                raise self.error("the file ends before the event type/size bytes", n, "the file is truncated")
            return None
        header = prophesee_header.parse_header(buf[:n])
        if header.evt_version is not None:
            raise self.error(f"this is a RAW {header.evt_version} file, not DAT", 0, f"open it as format={header.evt_version!r}")
        if buf[n] != CD_TYPE or buf[n + 1] != 8:
            raise self.error(f"event type {buf[n]:#x} size {buf[n + 1]} (expected CD 0x0c, 8)", n,
                             "only CD DAT files hold DVS events")
        if not self._override:
            self.sensor_size = header.sensor_size
        return n + 2

    def _decode(self, buf, offset):
        n = len(buf) // 8
        raw = np.frombuffer(buf, RECORD, count=n)
        t = raw["t"].astype(np.int64)
        # the u32 time counter wraps every 71.6 min: a drop of more than half its range is a wrap
        prev = np.concatenate(([self._last_t], t[:-1])) if n else t
        wrap = (prev - t) > (1 << 31)
        cum = np.cumsum(wrap) + self._wraps
        events = np.empty(n, EVENT_DTYPE)
        events["t"] = t + (cum << 32)
        events["x"] = raw["w"] & 0x3FFF
        events["y"] = (raw["w"] >> 14) & 0x3FFF
        events["p"] = np.minimum(raw["w"] >> 28, 1)
        if n:
            self.stats.time_wraps += int(cum[-1] - self._wraps)
            self._wraps = int(cum[-1])
            self._last_t = int(t[-1])
        return events, n * 8
