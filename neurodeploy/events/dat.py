"""Prophesee DAT files: read and written through faery; an incremental decoder (by hand) serves
following a growing file, which faery's path-based decoder cannot.

'%' header lines, then 2 bytes (event type, event size; CD = 0x0C, 8), then per event u32 t and
u32 packed (x bits 0-13, y bits 14-27, p bits 28-31).
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from . import prophesee_header
from .convert import from_faery
from .errors import EventFileError
from .incremental import IncrementalDecoder
from .types import EVENT_DTYPE

CD_TYPE = 0x0C
RECORD = np.dtype([("t", "<u4"), ("w", "<u4")])


def open_packets(path, sensor_size) -> tuple[tuple[int, int] | None, Iterator[np.ndarray]]:
    import faery

    try:
        decoder = faery.dat.Decoder(os.fspath(path), dimensions_fallback=sensor_size, version_fallback=None)
    except Exception as exc:
        raise EventFileError(path, f"faery cannot open it as DAT: {exc}", offset=0,
                             fix="check the '%' header, or pass --sensor-size WxH (sensor_size= in Python)") from exc
    if decoder.event_type != "cd":
        raise EventFileError(path, f"DAT file of {decoder.event_type!r} events, not CD (polarity) events",
                             field="event type", fix="only CD DAT files hold DVS events")
    header_size = tuple(decoder.dimensions) if decoder.dimensions else None

    def packets():
        with decoder:
            try:
                for raw in decoder:
                    if len(raw):
                        np.clip(raw["payload"], 0, 1, raw["payload"])
                        yield from_faery(raw.astype(
                            np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")]), casting="unsafe"))
            except Exception as exc:
                raise EventFileError(path, f"faery failed while decoding DAT data: {exc}",
                                     fix="the file is corrupt or truncated") from exc

    return header_size, packets()


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
