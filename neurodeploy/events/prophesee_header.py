"""The '%' text header shared by Prophesee RAW (EVT 2/3) and DAT files."""
from __future__ import annotations

import dataclasses
import re

from .incremental import header_lines


@dataclasses.dataclass(frozen=True)
class PropheseeHeader:
    length: int                        # bytes, including the DAT type/size bytes where present
    evt_version: str | None            # "evt2", "evt2.1", "evt3" or None (DAT)
    sensor_size: tuple[int, int] | None
    lines: tuple[str, ...]


def header_length(buf: bytes, final: bool) -> int | None:
    """Bytes of '%' lines; stops after a '% end' line (Metavision >= 2 writes one)."""
    pos = 0
    while True:
        if pos >= len(buf):
            return pos if final else None
        if buf[pos:pos + 1] != b"%":
            return pos
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return -1 if final else None
        line = buf[pos:nl + 1]
        pos = nl + 1
        if line.strip() == b"% end":
            return pos


def parse_header(text: bytes) -> PropheseeHeader:
    lines = tuple(line.decode("latin-1").rstrip("\r") for line in text.split(b"\n") if line.startswith(b"%"))
    version = None
    width = height = None
    for line in lines:
        body = line[1:].strip()
        low = body.lower()
        m = re.fullmatch(r"evt\s+(\d)\.(\d)", low)
        if m:
            version = {"2.0": "evt2", "2.1": "evt2.1", "3.0": "evt3"}.get(f"{m[1]}.{m[2]}", f"evt{m[1]}.{m[2]}")
        elif low.startswith("format "):
            fields = body[7:].split(";")
            name = fields[0].strip().upper()
            version = {"EVT2": "evt2", "EVT21": "evt2.1", "EVT2.1": "evt2.1", "EVT3": "evt3"}.get(name, version)
            for f in fields[1:]:
                if "=" in f:
                    k, v = f.split("=", 1)
                    if k.strip() == "width" and _DECIMAL.fullmatch(v):
                        width = int(v)
                    elif k.strip() == "height" and _DECIMAL.fullmatch(v):
                        height = int(v)
        elif low.startswith("geometry "):
            m = re.fullmatch(r"geometry\s+(\d{1,9})\s*x\s*(\d{1,9})", low)
            if m:
                width, height = int(m[1]), int(m[2])
        elif low.startswith("width "):
            if _DECIMAL.fullmatch(body[6:]):
                width = int(body[6:])
        elif low.startswith("height "):
            if _DECIMAL.fullmatch(body[7:]):
                height = int(body[7:])
    size = (width, height) if width and height else None
    return PropheseeHeader(len(text), version, size, lines)


# ASCII digits with spaces around: str.isdigit() also accepts '²' and str.strip() strips
# control characters such as '\x1c' that int() refuses
_DECIMAL = re.compile(r"[ \t]*[0-9]{1,9}[ \t]*")  # at most 9 digits: int() refuses 4300+


def is_prophesee(buf: bytes) -> bool:
    return buf[:1] == b"%"


__all__ = ["PropheseeHeader", "header_length", "parse_header", "is_prophesee", "header_lines"]
