""".npy / .npz event arrays. Never unpickles (allow_pickle=False). An .npz may carry 'sensor_size'
beside 'events'; an .npy carries no sensor size, so it must be passed.

Hostile files (issue 21): the .npy header is parsed and its claimed size compared with the bytes
that are really there before anything is allocated (a header claiming 10^9 events in a small file
is an error, not a 12 GiB allocation); an .npz member's inflated size is checked against its
compressed size before inflating (a 1.9 MB zip bomb would inflate to 3.8 GB); every exception of
numpy's header parser (TokenError, SyntaxError, OverflowError, zlib.error, ...) becomes an
EventFileError at `library_boundary`.
"""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from .boundary import library_boundary
from .convert import from_structured
from .errors import EventFileError

# np.savez stores members uncompressed (ratio 1); savez_compressed squeezes event arrays 2-6x. A
# member claiming more than this ratio is refused before inflating.
MAX_INFLATE_RATIO = 32
_INFLATE_SLACK = 1 << 16   # small members (a sensor_size) may compress better than the ratio
_FIX = "the file is truncated, not a .npy/.npz, or holds Python objects (never unpickled)"


def _read_npy(path, f, available: int, member: str = "") -> np.ndarray:
    """An array from an open .npy stream of `available` bytes, its size checked before reading."""
    where = f"{member}: " if member else ""
    with library_boundary(path, f"numpy cannot read {where}the .npy header", _FIX, offset=0):
        version = np.lib.format.read_magic(f)
        # the one parser of all three header versions (read_array_header_1_0/2_0 lack 3.0)
        shape, fortran, dtype = np.lib.format._read_array_header(f, version, max_header_size=10_000)
        header_end = f.tell()
    if dtype.hasobject:
        raise EventFileError(path, f"{where}array of dtype {dtype} holds Python objects", field="dtype",
                             fix="store a structured array with fields x, y, t, p (objects are never unpickled)")
    count = 1
    for n in shape:
        count *= int(n)
    claimed = count * dtype.itemsize
    if claimed > available - header_end:
        raise EventFileError(path, f"{where}the header claims {count} elements of {dtype.itemsize} bytes "
                                   f"({claimed} bytes), the file holds {max(available - header_end, 0)}",
                             offset=header_end, fix="the file is truncated or its header is corrupt")
    with library_boundary(path, f"numpy cannot read {where}the array", _FIX, offset=header_end):
        data = f.read(claimed)
        array = np.frombuffer(data, dtype=dtype, count=count)
        return array.reshape(shape, order="F" if fortran else "C")


def _read_npz(path) -> tuple[np.ndarray, tuple[int, int] | None]:
    with library_boundary(path, "not a readable .npz (zip) file", _FIX, offset=0):
        archive = zipfile.ZipFile(os.fspath(path))
    with archive:
        members = {info.filename[:-4] if info.filename.endswith(".npy") else info.filename: info
                   for info in archive.infolist()}
        if "events" not in members:
            raise EventFileError(path, f"no 'events' array (arrays: {sorted(members)})", field="events",
                                 fix="save with neurodeploy.events.save() or np.savez(events=..., sensor_size=...)")
        arrays = {}
        for name in ("events", "sensor_size"):
            info = members.get(name)
            if info is None:
                continue
            if info.file_size > MAX_INFLATE_RATIO * info.compress_size + _INFLATE_SLACK:
                raise EventFileError(
                    path, f"member {info.filename!r} inflates from {info.compress_size} to {info.file_size} bytes "
                          f"(more than {MAX_INFLATE_RATIO}x)", field=name,
                    fix="a zip bomb or a corrupt archive; re-save with np.savez (uncompressed)")
            # zipfile stops inflating at the member's declared file_size: memory is bounded by it
            with library_boundary(path, f"cannot inflate member {info.filename!r}", _FIX):
                raw = archive.read(info)
            arrays[name] = _read_npy(path, io.BytesIO(raw), len(raw), member=info.filename)
    size = None
    if "sensor_size" in arrays:
        s = arrays["sensor_size"].ravel()
        if len(s) < 2 or s.dtype.kind not in "iu" or int(s[0]) <= 0 or int(s[1]) <= 0 or max(s[:2]) > 65536:
            raise EventFileError(path, f"sensor_size {s.tolist()[:4]} is not (width, height) in 1..65536",
                                 field="sensor_size", fix="store sensor_size as [width, height]")
        size = (int(s[0]), int(s[1]))
    return arrays["events"], size


def read(path) -> tuple[np.ndarray, tuple[int, int] | None]:
    with open(os.fspath(path), "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        array, size = _read_npz(path)
    else:
        with open(os.fspath(path), "rb") as f:
            array, size = _read_npy(path, f, os.fstat(f.fileno()).st_size), None
    if array.dtype.names is None:
        raise EventFileError(path, f"array of dtype {array.dtype} has no named fields", field="dtype",
                             fix="store a structured array with fields x, y, t, p")
    try:
        return from_structured(array.ravel()), size
    except (ValueError, TypeError) as exc:
        raise EventFileError(path, str(exc), field="dtype", fix="store a structured array with fields x, y, t, p") \
            from exc


def write(path, events: np.ndarray, sensor_size: tuple[int, int] | None) -> None:
    path = os.fspath(path)
    if path.endswith(".npz"):
        if sensor_size is None:
            np.savez(path, events=events)
        else:
            np.savez(path, events=events, sensor_size=np.asarray(sensor_size, np.int64))
    else:
        np.save(path, events, allow_pickle=False)
