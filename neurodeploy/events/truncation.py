"""A partial record at the end of a file, found before any event is decoded.

The formats with fixed-size records after a header (DAT, EVT 2.0/2.1/3.0, N-MNIST .bin, AEDAT
2.0) show a cut-off file in their size alone, and AEDAT 3.1 in its chain of packet headers, so
`EventFileSource` checks it when the file is opened: a truncated file is refused (or, with
`--truncated count`, counted) the same way in every one of these formats, and before the first
event reaches a model, not after samples were printed. faery's DAT and EVT2 decoders drop a
partial last record without a word; the hand-written decoders find it only at the end of the
stream. CSV has no record size: a last line without its newline is read as it stands.
"""
from __future__ import annotations

import os

import numpy as np

from .errors import EventFileError
from .incremental import header_lines
from .prophesee_header import header_length

# bytes per record after the header; DAT has two more header bytes (event type, event size)
RECORD_BYTES = {"dat": 8, "evt2": 4, "evt2.1": 8, "evt3": 2, "nmnist_bin": 5, "aedat2": 8}
_NAMES = {"dat": "DAT", "evt2": "EVT2", "evt2.1": "EVT2.1", "evt3": "EVT3", "nmnist_bin": "N-MNIST .bin",
          "aedat2": "AEDAT 2.0", "aedat3": "AEDAT 3.1"}


def partial_tail(path: str | os.PathLike, fmt: str) -> tuple[int, int] | None:
    """(bytes left over, offset where the partial record starts), or None when the file ends on a
    record boundary or the format has no fixed record size."""
    if fmt == "aedat3":
        return _aedat3_tail(path)
    record = RECORD_BYTES.get(fmt)
    if record is None:
        return None
    size = os.path.getsize(path)
    data_start = 0
    if fmt != "nmnist_bin":
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        final = len(head) == size
        n = header_lines(head, b"#", final) if fmt == "aedat2" else header_length(head, final=final)
        if n is None or n < 0:
            return None  # the format's reader reports a broken header itself
        data_start = n + (2 if fmt == "dat" else 0)
    left = (size - data_start) % record if size > data_start else 0
    return (left, size - left) if left else None


def _aedat3_tail(path) -> tuple[int, int] | None:
    """Walk the 28-byte packet headers; a last packet that the file cuts short is the partial tail."""
    from .aedat3 import END, PACKET_HEADER

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        end = head.find(END)
        nl = head.find(b"\n", end) if end >= 0 else -1
        if nl < 0:
            return None
        pos = nl + 1
        while pos + PACKET_HEADER.itemsize <= size:
            f.seek(pos)
            h = np.frombuffer(f.read(PACKET_HEADER.itemsize), PACKET_HEADER)[0]
            body = int(h["size"]) * int(h["capacity"])
            if int(h["size"]) <= 0 or body < 0:
                return None  # corrupt: the reader says where
            if pos + PACKET_HEADER.itemsize + body > size:
                break
            pos += PACKET_HEADER.itemsize + body
    return (size - pos, pos) if pos < size else None


def check_tail(path: str | os.PathLike, fmt: str, truncated: str) -> int:
    """Raise for a partial last record (truncated='error'); else return its length in bytes."""
    tail = partial_tail(path, fmt)
    if tail is None:
        return 0
    left, offset = tail
    if truncated == "error":
        raise EventFileError(path, f"{_NAMES[fmt]}: the input ends inside a record ({left} bytes left over)",
                             offset=offset,
                             fix="the file is truncated; pass --truncated count (truncated='count' in Python) to "
                                 "keep the whole records (counted)")
    return left
