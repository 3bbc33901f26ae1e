"""Which event format a file holds: magic bytes and header first, the extension only for formats
that have no header (N-MNIST .bin, CSV)."""
from __future__ import annotations

import os

from . import prophesee_header
from .errors import EventFileError

FORMATS = ("aedat4", "aedat3", "aedat2", "evt2", "evt2.1", "evt3", "dat", "nmnist_bin", "csv", "npy", "npz")
HEADERLESS_EXTENSIONS = {".bin": "nmnist_bin", ".csv": "csv", ".txt": "csv"}
_PROBE_BYTES = 1 << 16


def detect_format(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        head = f.read(_PROBE_BYTES)
    return detect_from_bytes(head, os.fspath(path))


def detect_from_bytes(head: bytes, name: str = "<stream>") -> str:
    if head.startswith(b"#!AER-DAT4"):
        return "aedat4"
    if head.startswith(b"#!AER-DAT3.1"):
        return "aedat3"
    if head.startswith(b"#!AER-DAT2"):
        return "aedat2"
    if head.startswith(b"#!AER-DAT"):
        raise EventFileError(name, f"unsupported AEDAT version {head[:14]!r}", offset=0,
                             fix="convert it to AEDAT4 with DV or jAER")
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.startswith(b"%"):
        n = prophesee_header.header_length(head, final=True)
        header = prophesee_header.parse_header(head[:max(n or 0, 0)] if n else head)
        if header.evt_version is not None:
            return header.evt_version
        if any(line[1:].strip().lower().startswith(("version", "width", "height", "date", "data file"))
               for line in header.lines):
            return "dat"
        raise EventFileError(name, "a '%' header that names neither an EVT version nor a DAT file", offset=0,
                             fix="pass --format evt2, evt3 or dat (format= in Python)")
    ext = os.path.splitext(name)[1].lower()
    if ext in HEADERLESS_EXTENSIONS:
        return HEADERLESS_EXTENSIONS[ext]
    if ext == ".csv" or head[:1] == b"#":
        return "csv"
    raise EventFileError(name, f"unknown event format (first bytes {head[:16]!r})", offset=0,
                         fix=f"pass --format (format= in Python; one of {', '.join(FORMATS)})")
