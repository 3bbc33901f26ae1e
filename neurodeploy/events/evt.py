"""Prophesee RAW EVT 2.0 / 2.1 / 3.0 files. Reads go through the project's own incremental
decoders (evt_incremental: one answer however a file is opened, and faery 0.7.1 rewrites EVT2
times silently and panics on EVT 2.1); EVT 2.0 / 3.0 writes go through faery, EVT 2.1 writes are
done here (faery 0.7.1's EVT 2.1 encoder panics)."""
from __future__ import annotations

import os

import numpy as np

from .convert import to_faery
from .boundary import library_boundary

VERSIONS = ("evt2", "evt2.1", "evt3")
_TIME_HIGH_RANGE = 1 << 28   # EVT2/2.1 TIME_HIGH counts 64 us steps in 28 bits: wraps every 4.77 h


def write(path: str | os.PathLike, events: np.ndarray, sensor_size: tuple[int, int], version: str = "evt3") -> None:
    if version not in VERSIONS:
        raise ValueError(f"EVT version must be one of {VERSIONS}, got {version!r}")
    if version == "evt2.1":
        _write_evt21(path, events, sensor_size)
        return
    import faery

    with library_boundary(path, "faery cannot write it", "check the events (t >= 0, monotonic, inside the sensor)"):
        with faery.evt.Encoder(os.fspath(path), version=version, zero_t0=False, dimensions=tuple(sensor_size),
                               enforce_monotonic=True) as encoder:
            if len(events):
                encoder.write({"events": to_faery(events)})


def _write_evt21(path, events: np.ndarray, sensor_size: tuple[int, int]) -> None:
    """Little-endian u64 words (mask low, header high). Consecutive events of one 64 us step, row,
    polarity and 32-pixel group with rising x share one vector word, so decoding gives back the
    events in their order."""
    width, height = sensor_size
    t = events["t"].astype(np.int64)
    x = events["x"].astype(np.int64)
    if len(events):
        if t.min() < 0 or np.any(t[1:] < t[:-1]):
            raise ValueError("EVT 2.1 needs non-negative, non-decreasing timestamps")
        if x.max() >= min(width, 2048) or int(events["y"].max()) >= min(height, 2048):
            raise ValueError(f"events outside the sensor {width}x{height} (EVT 2.1 addresses 2048x2048)")
    high = t >> 6
    if len(high) and np.any(np.diff(high) >= _TIME_HIGH_RANGE):
        raise ValueError("a gap of 4.77 h or more between events cannot be written unambiguously in EVT 2.1")
    y = events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)
    key_change = np.ones(len(t), bool)
    if len(t) > 1:
        key_change[1:] = ((t[1:] != t[:-1]) | (y[1:] != y[:-1]) | (p[1:] != p[:-1]) |
                          ((x[1:] >> 5) != (x[:-1] >> 5)) | (x[1:] <= x[:-1]))
    starts = np.flatnonzero(key_change)
    masks = np.bitwise_or.reduceat(np.left_shift(1, x & 31).astype(np.uint64), starts) if len(starts) else \
        np.zeros(0, np.uint64)
    g_t, g_x, g_y, g_p = t[starts], x[starts] & ~31, y[starts], p[starts]
    cd = (masks | (((g_p << 60) | ((g_t & 0x3F) << 54) | (g_x << 43) | (g_y << 32)).astype(np.uint64)))
    # a TIME_HIGH word before the first vector of every new 64 us step
    g_high = g_t >> 6
    new_high = np.ones(len(starts), bool)
    new_high[1:] = g_high[1:] != g_high[:-1]
    th = np.uint64(8 << 60) | ((g_high[new_high] % _TIME_HIGH_RANGE) << 32).astype(np.uint64)
    words = np.empty(len(cd) + len(th), np.uint64)
    th_pos = np.flatnonzero(new_high) + np.arange(len(th))
    is_th = np.zeros(len(words), bool)
    is_th[th_pos] = True
    words[is_th] = th
    words[~is_th] = cd
    header = (f"% evt 2.1\n% format EVT21;height={height};width={width}\n% geometry {width}x{height}\n"
              "% generator neurodeploy\n% end\n").encode()
    with open(os.fspath(path), "wb") as f:
        f.write(header)
        f.write(words.astype("<u8").tobytes())
