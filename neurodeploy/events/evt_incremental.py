"""Incremental EVT 2.0 / EVT 3.0 decoders, for following a RAW file while it is written.

faery decodes whole files from a path and cannot resume on a file that grows, and EVT3 is
stateful (the current y, time high/low and vector base live in earlier words), so following a
file needs a decoder that keeps that state between reads. load() uses faery; these decoders are
checked against it in the tests.
"""
from __future__ import annotations

import numpy as np

from . import prophesee_header
from .incremental import IncrementalDecoder
from .types import EVENT_DTYPE


def _ffill(mask: np.ndarray, values: np.ndarray, init: int) -> np.ndarray:
    """For each index: values at the last index <= it where mask holds, else init."""
    idx = np.where(mask, np.arange(len(mask)), -1)
    np.maximum.accumulate(idx, out=idx)
    out = values[np.maximum(idx, 0)].astype(np.int64)
    out[idx < 0] = init
    return out


def _wraps(mask: np.ndarray, values: np.ndarray, previous: int) -> tuple[np.ndarray, int]:
    """Per index, how many times the counter values[mask] went down (a wrap) so far; and the total."""
    v = values[mask].astype(np.int64)
    if len(v) == 0:
        return np.zeros(len(mask), np.int64), 0
    prev = np.concatenate(([previous], v[:-1]))
    cum = np.cumsum((v < prev) & (prev >= 0))
    return _ffill(mask, _scatter(mask, cum), 0), int(cum[-1])


def _scatter(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(mask), np.int64)
    out[mask] = values
    return out


class _RawDecoder(IncrementalDecoder):
    version = "?"

    def _parse_header(self, buf: bytes, final: bool) -> int | None:
        n = prophesee_header.header_length(buf, final)
        if n is None:
            return None
        if n < 0:
            raise self.error("header line without end", 0, "the file is truncated inside its header")
        header = prophesee_header.parse_header(buf[:n])
        if n == 0:
            raise self.error("no '%' header", 0, "this is not a Prophesee RAW file")
        if header.evt_version is not None and header.evt_version != self.version:
            raise self.error(f"header says {header.evt_version}, decoder is {self.version}", 0,
                             f"open it as format={header.evt_version!r}")
        if not self._override:
            self.sensor_size = header.sensor_size
        return n


class Evt2Decoder(_RawDecoder):
    """32-bit words; type in bits 28-31: 0/1 CD OFF/ON (t low 6 bits, x 11, y 11), 8 TIME_HIGH (28 bits)."""

    format_name = "EVT2"
    version = "evt2"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._time_high = -1
        self._wraps = 0

    def _decode(self, buf: bytes, offset: int):
        n = len(buf) // 4
        w = np.frombuffer(buf, dtype="<u4", count=n)
        typ = w >> 28
        is_th = typ == 8
        th = _ffill(is_th, (w & 0x0FFFFFFF).astype(np.int64), self._time_high)
        wraps, new_wraps = _wraps(is_th, (w & 0x0FFFFFFF), self._time_high)
        wraps += self._wraps
        is_cd = typ <= 1
        known = is_cd | is_th | (typ == 0xA) | (typ == 0xE) | (typ == 0xF)
        self.stats.unknown_words += int(np.count_nonzero(~known))
        no_base = is_cd & (th < 0)
        self.stats.events_before_time_base += int(np.count_nonzero(no_base))
        sel = is_cd & (th >= 0)
        ws = w[sel]
        events = np.empty(len(ws), EVENT_DTYPE)
        events["x"] = (ws >> 11) & 0x7FF
        events["y"] = ws & 0x7FF
        events["p"] = (ws >> 28) & 1
        events["t"] = (((wraps[sel] << 28) | th[sel]) << 6) | ((ws >> 22) & 0x3F).astype(np.int64)
        if n:
            self._time_high = int(th[-1])
            self._wraps += new_wraps
            self.stats.time_wraps += new_wraps
        return events, n * 4


class Evt3Decoder(_RawDecoder):
    """16-bit stateful words (type in bits 12-15): 0 ADDR_Y, 2 ADDR_X (+p, one event), 3 VECT_BASE_X
    (+p), 4 VECT_12, 5 VECT_8 (valid masks from the base, which then advances), 6 TIME_LOW,
    8 TIME_HIGH (12 bits each, 24-bit time that wraps every 16.7 s: unrolled and counted),
    7/A/E/F continued, trigger, others (skipped)."""

    format_name = "EVT3"
    version = "evt3"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._y = -1
        self._time_high = -1
        self._time_low = 0
        self._wraps = 0
        self._base_x = 0
        self._base_p = 0

    def _decode(self, buf: bytes, offset: int):
        n = len(buf) // 2
        if n == 0:
            return np.zeros(0, EVENT_DTYPE), 0
        w = np.frombuffer(buf, dtype="<u2", count=n).astype(np.int64)
        typ = w >> 12
        val = w & 0xFFF
        known = np.isin(typ, (0, 2, 3, 4, 5, 6, 7, 8, 0xA, 0xE, 0xF))
        self.stats.unknown_words += int(np.count_nonzero(~known))
        y = _ffill(typ == 0, w & 0x7FF, self._y)
        is_th = typ == 8
        th = _ffill(is_th, val, self._time_high)
        wraps, new_wraps = _wraps(is_th, val, self._time_high)
        wraps += self._wraps
        tl = _ffill(typ == 6, val, self._time_low)
        t = (wraps << 24) | (np.maximum(th, 0) << 12) | tl
        valid_state = (y >= 0) & (th >= 0)

        # single events
        single = typ == 2
        # vectors: base of each vector word = last VECT_BASE_X + widths of vector words since it
        is_base = typ == 3
        width = np.where(typ == 4, 12, np.where(typ == 5, 8, 0))
        cw = np.cumsum(width)
        base_x = _ffill(is_base, w & 0x7FF, self._base_x)
        base_p = _ffill(is_base, (w >> 11) & 1, self._base_p)
        cw_at_base = _ffill(is_base, cw, 0)
        vec_start = base_x + (cw - width) - cw_at_base
        keys, xs, ps, idxs = [], [], [], []
        s_idx = np.flatnonzero(single)
        keys.append(s_idx * 16)
        xs.append(w[s_idx] & 0x7FF)
        ps.append((w[s_idx] >> 11) & 1)
        idxs.append(s_idx)
        for vtype, nbits in ((4, 12), (5, 8)):
            v_idx = np.flatnonzero(typ == vtype)
            if len(v_idx) == 0:
                continue
            bits = (val[v_idx, None] >> np.arange(nbits)) & 1
            r, c = np.nonzero(bits)
            wi = v_idx[r]
            keys.append(wi * 16 + c)
            xs.append(vec_start[wi] + c)
            ps.append(base_p[wi])
            idxs.append(wi)
        key = np.concatenate(keys)
        order = np.argsort(key, kind="stable")
        x = np.concatenate(xs)[order]
        p = np.concatenate(ps)[order]
        wi = np.concatenate(idxs)[order]
        ok = valid_state[wi]
        self.stats.events_before_time_base += int(np.count_nonzero(~ok))
        # an x past 2047 (a vector running off the 11-bit address space) is garbage, kept so that the
        # sensor bounds check reports it rather than being dropped here
        x, p, wi = x[ok], p[ok], wi[ok]
        events = np.empty(len(x), EVENT_DTYPE)
        events["x"] = np.minimum(x, 65535)
        events["y"] = y[wi]
        events["t"] = t[wi]
        events["p"] = p
        self._y = int(y[-1])
        self._time_high = int(th[-1])
        self._time_low = int(tl[-1])
        self._wraps += new_wraps
        self.stats.time_wraps += new_wraps
        self._base_x = int(base_x[-1] + cw[-1] - cw_at_base[-1])
        self._base_p = int(base_p[-1])
        return events, n * 2
