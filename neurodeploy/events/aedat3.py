"""AEDAT 3.1 (cAER) files, by hand: tonic 1.7's reader for it is broken (it reads every packet as
polarity events and ignores the tsOverflow field), and no maintained library reads 3.1.

Text header '#!AER-DAT3.1' ... '#!END-HEADER'. Then packets: a 28-byte little-endian header
(eventType i16, eventSource i16, eventSize i32, eventTSOffset i32, eventTSOverflow i32,
eventCapacity i32, eventNumber i32, eventValid i32) and eventCapacity * eventSize bytes.
Polarity events (type 1, 8 bytes): u32 data (bit 0 valid, bit 1 p, y bits 2-16, x bits 17-31)
and i32 t; the 64-bit time is t | tsOverflow << 31 (the overflow is unrolled and counted).
Other packet types are skipped and counted; invalid-flagged events are skipped and counted.
"""
from __future__ import annotations

import os
import re

import numpy as np

from .incremental import IncrementalDecoder
from .types import EVENT_DTYPE

MAGIC = b"#!AER-DAT3.1"
END = b"#!END-HEADER"
PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                          ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
POLARITY = np.dtype([("data", "<u4"), ("t", "<i4")])
POLARITY_TYPE = 1
MAX_PACKET_BYTES = 1 << 28  # a packet claiming more is corrupt: bounds memory while following a file
# the chip name of '#Source N: NAME' -> sensor size
SOURCE_SIZES = (("DVS128", (128, 128)), ("DAVIS240", (240, 180)), ("DAVIS346", (346, 260)),
                ("DAVIS640", (640, 480)), ("DVXPLORER", (640, 480)))


def _sizes_from_header(text: str) -> tuple[int, int] | None:
    m = re.search(r"^#Sensor-Size:\s*(\d{1,9})x(\d{1,9})", text, re.MULTILINE)  # written by this toolkit
    if m:
        return int(m[1]), int(m[2])
    m = re.search(r"^#Source \d+:\s*(\S+)", text, re.MULTILINE)
    if m:
        name = m[1].upper()
        for fragment, size in SOURCE_SIZES:
            if name.startswith(fragment):
                return size
    return None


class Aedat3Decoder(IncrementalDecoder):
    format_name = "AEDAT 3.1"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._overflow = None

    def _parse_header(self, buf, final):
        if not buf.startswith(MAGIC):
            if len(buf) < len(MAGIC) and MAGIC.startswith(buf) and not final:
                return None
            raise self.error("missing the '#!AER-DAT3.1' magic", 0, "this is not an AEDAT 3.1 file")
        end = buf.find(END)
        if end < 0:
            return None
        nl = buf.find(b"\n", end)
        if nl < 0:
            return None
        text = buf[:nl].decode("latin-1")
        if not self._override:
            self.sensor_size = _sizes_from_header(text)
        if self.sensor_size is None:
            raise self.error("the header names no sensor this reader knows", 0,
                             "pass --sensor-size WxH (sensor_size=(width, height) in Python)")
        return nl + 1

    def _decode(self, buf, offset):
        out = []
        pos = 0
        while len(buf) - pos >= PACKET_HEADER.itemsize:
            h = np.frombuffer(buf, PACKET_HEADER, count=1, offset=pos)[0]
            size, capacity, number = int(h["size"]), int(h["capacity"]), int(h["number"])
            if size <= 0 or capacity < 0 or not (0 <= number <= capacity) or int(h["ts_overflow"]) < 0 \
                    or not (0 <= int(h["ts_offset"]) <= size - 4) or size * capacity > MAX_PACKET_BYTES:
                raise self.error(f"corrupt packet header (type {int(h['type'])}, size {size}, capacity {capacity}, "
                                 f"number {number}, overflow {int(h['ts_overflow'])})", offset + pos,
                                 "the file is corrupt from here; --truncated count is no help, cut the file "
                                 "before this offset")
            body = size * capacity
            if len(buf) - pos - PACKET_HEADER.itemsize < body:
                break  # wait for the rest of the packet
            start = pos + PACKET_HEADER.itemsize
            if int(h["type"]) != POLARITY_TYPE:
                self.stats.skipped_packets += 1
            else:
                if size != 8 or int(h["ts_offset"]) != 4:
                    raise self.error(f"polarity packet with event size {size}, ts offset {int(h['ts_offset'])} "
                                     "(expected 8, 4)", offset + pos, "the file is corrupt from here")
                raw = np.frombuffer(buf, POLARITY, count=number, offset=start)
                valid = (raw["data"] & 1) == 1
                self.stats.skipped_events += int(number - np.count_nonzero(valid))
                raw = raw[valid]
                if np.any(raw["t"] < 0):
                    bad = int(np.argmax(raw["t"] < 0))
                    raise self.error("negative 31-bit timestamp", offset + start + 8 * bad + 4,
                                     "the file is corrupt here")
                overflow = int(h["ts_overflow"])
                if self._overflow is not None and overflow > self._overflow:
                    self.stats.time_wraps += overflow - self._overflow
                self._overflow = overflow if self._overflow is None else max(overflow, self._overflow)
                data = raw["data"]
                events = np.empty(len(raw), EVENT_DTYPE)
                events["x"] = (data >> 17) & 0x7FFF
                events["y"] = (data >> 2) & 0x7FFF
                events["p"] = (data >> 1) & 1
                events["t"] = raw["t"].astype(np.int64) | (np.int64(overflow) << 31)
                out.append(events)
            pos = start + body
        events = np.concatenate(out) if out else np.zeros(0, EVENT_DTYPE)
        return events, pos


def write(path: str | os.PathLike, events: np.ndarray, sensor_size: tuple[int, int],
          events_per_packet: int = 4096) -> None:
    """cAER-style AEDAT 3.1 with polarity packets (for tests and interchange), splitting packets at
    31-bit timestamp overflows. The sensor size goes into a '#Sensor-Size: WxH' header line."""
    width, height = sensor_size
    if width > 32768 or height > 32768:
        raise ValueError("AEDAT 3.1 holds x and y in 15 bits")
    if len(events) and int(events["t"].min()) < 0:
        raise ValueError("AEDAT 3.1 holds non-negative timestamps")
    t = events["t"].astype(np.int64)
    overflow = t >> 31
    data = (events["x"].astype(np.uint32) << 17) | (events["y"].astype(np.uint32) << 2) \
        | ((events["p"] > 0).astype(np.uint32) << 1) | np.uint32(1)
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n")
        f.write(f"#Source 1: neurodeploy\r\n#Sensor-Size: {width}x{height}\r\n".encode())
        f.write(b"#!END-HEADER\r\n")
        # cut where the overflow changes and every events_per_packet events
        cuts = set(np.flatnonzero(np.diff(overflow)) + 1) | set(range(0, len(events), events_per_packet))
        bounds = sorted(cuts | {len(events)})
        for a, b in zip(bounds[:-1], bounds[1:]):
            n = b - a
            header = np.array([(POLARITY_TYPE, 1, 8, 4, int(overflow[a]), n, n, n)], PACKET_HEADER)
            body = np.empty(n, POLARITY)
            body["data"] = data[a:b]
            body["t"] = t[a:b] & 0x7FFFFFFF
            f.write(header.tobytes())
            f.write(body.tobytes())
