"""AEDAT 2.0 (jAER) files, by hand: tonic 1.7's readers for it are broken (read_dvs_128 swaps x and
y; the generic reader keys on the version float and leaves the address decoding to the caller) and
no maintained library reads the format.

'#'-prefixed text header lines (first '#!AER-DAT2.0'), then big-endian (u32 address, u32 t us)
pairs. The address layout depends on the sensor and is chosen from the '# AEChip:' header line
or given explicitly (layout='dvs128' / 'davis').
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from .incremental import IncrementalDecoder
from .types import EVENT_DTYPE

RECORD = np.dtype([("address", ">u4"), ("t", ">u4")])
MAGIC = b"#!AER-DAT2.0"


@dataclasses.dataclass(frozen=True)
class AddressLayout:
    """Where x, y and polarity sit in a 32-bit jAER address, and jAER's flips."""

    name: str
    x_shift: int
    x_bits: int
    y_shift: int
    y_bits: int
    p_shift: int
    flip_x: bool          # jAER stores x mirrored: x = width-1 - raw
    flip_y: bool
    on_bit: int           # the bit value that means ON
    dvs_mask: int = 0     # address bits that must be 0 for a polarity (DVS) event
    sensor_size: tuple[int, int] | None = None


# jAER DVS128 extractor: p bit 0 (0 = ON), x bits 1-7 mirrored, y bits 8-14.
DVS128 = AddressLayout("dvs128", 1, 7, 8, 7, 0, flip_x=True, flip_y=False, on_bit=0, sensor_size=(128, 128))
# jAER DAVIS (ApsDvsEvent): bit 31 = APS/IMU sample, bit 10 = external event, p bit 11 (1 = ON),
# x bits 12-21, y bits 22-30, both mirrored against the sensor size.
DAVIS = AddressLayout("davis", 12, 10, 22, 9, 11, flip_x=True, flip_y=True, on_bit=1,
                      dvs_mask=(1 << 31) | (1 << 10))
LAYOUTS = {"dvs128": DVS128, "davis": DAVIS}
# chip class name fragments of the '# AEChip:' line -> (layout, sensor size)
CHIPS = (("DVS128", "dvs128", (128, 128)), ("DAVIS240", "davis", (240, 180)), ("DAVIS346", "davis", (346, 260)),
         ("DAVIS128", "davis", (128, 128)), ("DAVIS640", "davis", (640, 480)))


def chip_from_header(text: str) -> tuple[str | None, tuple[int, int] | None]:
    m = re.search(r"^#\s*AEChip:\s*(\S+)", text, re.MULTILINE)
    if not m:
        return None, None
    chip = m.group(1).upper()
    for fragment, layout, size in CHIPS:
        if fragment in chip:
            return layout, size
    return None, None


class Aedat2Decoder(IncrementalDecoder):
    format_name = "AEDAT 2.0"

    def __init__(self, source="<stream>", sensor_size=None, stats=None, layout: str | None = None):
        super().__init__(source, sensor_size, stats)
        self.layout_name = layout
        self.layout: AddressLayout | None = None

    def _parse_header(self, buf, final):
        if len(buf) < len(MAGIC):
            if final or not MAGIC.startswith(buf):
                raise self.error("missing the '#!AER-DAT2.0' magic", 0, "this is not an AEDAT 2.0 file")
            return None
        if not buf.startswith(MAGIC):
            raise self.error("missing the '#!AER-DAT2.0' magic", 0, "this is not an AEDAT 2.0 file")
        pos = 0
        # jAER header lines start with '#'; data starts at the first byte that is not '#'
        while True:
            if pos >= len(buf):
                if not final:
                    return None
                break
            if buf[pos:pos + 1] != b"#":
                break
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if final:
                    raise self.error("header line without end", pos, "the file is truncated inside its header")
                return None
            pos = nl + 1
        text = buf[:pos].decode("latin-1")
        chip_layout, chip_size = chip_from_header(text)
        name = self.layout_name or chip_layout
        if name is None:
            raise self.error("cannot tell the address layout: no known '# AEChip:' header line", 0,
                             "pass --layout dvs128 or --layout davis (and --sensor-size for DAVIS; "
                             "layout= / sensor_size= in Python)")
        if name not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {name!r}")
        self.layout = LAYOUTS[name]
        if not self._override:
            self.sensor_size = chip_size if (chip_layout == name and chip_size) else self.layout.sensor_size
        if self.sensor_size is None:
            raise self.error("no sensor size for the DAVIS layout in the header", 0,
                             "pass --sensor-size WxH (sensor_size=(width, height) in Python)")
        return pos

    def _decode(self, buf, offset):
        n = len(buf) // 8
        raw = np.frombuffer(buf, dtype=RECORD, count=n)
        address = raw["address"].astype(np.int64)
        lay = self.layout
        dvs = (address & lay.dvs_mask) == 0
        self.stats.skipped_events += int(n - np.count_nonzero(dvs))
        address = address[dvs]
        x = (address >> lay.x_shift) & ((1 << lay.x_bits) - 1)
        y = (address >> lay.y_shift) & ((1 << lay.y_bits) - 1)
        width, height = self.sensor_size
        if lay.flip_x:
            x = width - 1 - x
        if lay.flip_y:
            y = height - 1 - y
        # a raw coordinate beyond the sensor flips to a negative one: keep it out of range for the
        # bounds check rather than letting it wrap into the sensor
        x = np.where(x < 0, 65535, x)
        y = np.where(y < 0, 65535, y)
        events = np.empty(len(address), EVENT_DTYPE)
        events["x"] = x
        events["y"] = y
        events["p"] = ((address >> lay.p_shift) & 1) == lay.on_bit
        events["t"] = raw["t"][dvs]
        return events, n * 8


def write(path: str | os.PathLike, events: np.ndarray, sensor_size: tuple[int, int], layout: str = "dvs128") -> None:
    """jAER-style AEDAT 2.0 (for tests and interchange); t must fit in u32 microseconds."""
    lay = LAYOUTS[layout]
    width, height = sensor_size
    if layout == "dvs128" and tuple(sensor_size) != (128, 128):
        raise ValueError("the DVS128 layout is for a 128x128 sensor")
    if len(events) and (int(events["t"].min()) < 0 or int(events["t"].max()) > 0xFFFFFFFF):
        raise ValueError("AEDAT 2.0 holds t in u32 microseconds")
    chip = "ch.unizh.ini.jaer.chip.retina.DVS128" if layout == "dvs128" else {
        (240, 180): "eu.seebetter.ini.chips.davis.DAVIS240C", (346, 260): "eu.seebetter.ini.chips.davis.DAVIS346B",
    }.get(tuple(sensor_size))
    if chip is None:
        raise ValueError(f"no jAER chip class known for a DAVIS of size {sensor_size}")
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if lay.flip_x:
        x = width - 1 - x
    if lay.flip_y:
        y = height - 1 - y
    p = np.where(events["p"] > 0, lay.on_bit, 1 - lay.on_bit)
    raw = np.empty(len(events), RECORD)
    raw["address"] = (x << lay.x_shift) | (y << lay.y_shift) | (p << lay.p_shift)
    raw["t"] = events["t"]
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
                b"# Timestamps tick is 1 us\r\n")
        f.write(f"# AEChip: {chip}\r\n".encode())
        f.write(raw.tobytes())
