"""Incremental EVT 2.0 / 2.1 / 3.0 decoders: what load(), open() and following a growing RAW file use.

faery decodes whole files from a path and cannot resume on a file that grows, and EVT3 is
stateful (the current y, time high/low and vector base live in earlier words), so following a
file needs a decoder that keeps that state between reads. load() uses these too, so that one
recording gives one answer however it is opened: faery 0.7.1 clamps EVT2 timestamps that go back
to the previous value without counting them and drops a final partial word silently, panics on
every EVT 2.1 file, and loses EVT3's time wrap when events are sparse (issue 21). The decoders are
checked against faery's on valid files in the tests.
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


_EVT3_KNOWN = np.zeros(16, bool)
_EVT3_KNOWN[[0, 2, 3, 4, 5, 6, 7, 8, 0xA, 0xE, 0xF]] = True


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
        w = np.frombuffer(buf, dtype="<u2", count=n).astype(np.int32)
        typ = w >> 12
        self.stats.unknown_words += int(np.count_nonzero(~_EVT3_KNOWN[typ]))
        positions = np.arange(n, dtype=np.int32)

        def last(mask):  # index of the last word <= i of that type, -1 if none in this chunk
            idx = np.where(mask, positions, -1)
            np.maximum.accumulate(idx, out=idx)
            return idx

        is_th, is_base = typ == 8, typ == 3
        last_y, last_th, last_tl, last_base = last(typ == 0), last(is_th), last(typ == 6), last(is_base)
        # time-high wraps: count the TIME_HIGH words whose value went down, cumulatively
        th_idx = np.flatnonzero(is_th)
        th_val = w[th_idx] & 0xFFF
        prev = np.concatenate(([self._time_high], th_val[:-1])) if len(th_val) else th_val
        wrap_cum = np.cumsum((th_val < prev) & (prev >= 0)) if len(th_val) else np.zeros(0, np.int64)
        th_rank = np.cumsum(is_th, dtype=np.int32) - 1   # rank of the last TIME_HIGH word at i
        # vectors: the x of a vector word = its base x + the widths of the vector words since that base
        width = np.where(typ == 4, 12, np.where(typ == 5, 8, 0)).astype(np.int32)
        cw = np.cumsum(width, dtype=np.int64)

        s_idx = np.flatnonzero(typ == 2)
        keys, xs, ps, idxs = [s_idx.astype(np.int64) * 16], [w[s_idx] & 0x7FF], [(w[s_idx] >> 11) & 1], [s_idx]
        for vtype, nbits in ((4, 12), (5, 8)):
            v_idx = np.flatnonzero(typ == vtype)
            if len(v_idx) == 0:
                continue
            bits = (w[v_idx, None] >> np.arange(nbits, dtype=np.int32)) & 1
            r, c = np.nonzero(bits)
            wi = v_idx[r]
            lb = last_base[wi]
            has_base = lb >= 0
            lbc = np.maximum(lb, 0)
            base_x = np.where(has_base, w[lbc] & 0x7FF, self._base_x)
            base_p = np.where(has_base, (w[lbc] >> 11) & 1, self._base_p)
            start = base_x + (cw[wi] - width[wi]) - np.where(has_base, cw[lbc], 0)
            keys.append(wi.astype(np.int64) * 16 + c)
            xs.append(start + c)
            ps.append(base_p)
            idxs.append(wi)
        key = np.concatenate(keys)
        order = np.argsort(key, kind="stable")
        x = np.concatenate(xs)[order]
        p = np.concatenate(ps)[order]
        wi = np.concatenate(idxs)[order]

        ly, lth, ltl = last_y[wi], last_th[wi], last_tl[wi]
        y = np.where(ly >= 0, w[np.maximum(ly, 0)] & 0x7FF, self._y)
        th = np.where(lth >= 0, w[np.maximum(lth, 0)] & 0xFFF, self._time_high)
        tl = np.where(ltl >= 0, w[np.maximum(ltl, 0)] & 0xFFF, self._time_low)
        wraps = self._wraps + (np.where(lth >= 0, wrap_cum[np.maximum(th_rank[wi], 0)], 0) if len(wrap_cum)
                               else 0)
        ok = (y >= 0) & (th >= 0)
        self.stats.events_before_time_base += int(np.count_nonzero(~ok))
        # an x past 2047 (a vector running off the 11-bit address space) is garbage: kept so that the
        # sensor bounds check reports it rather than being dropped here
        events = np.empty(int(np.count_nonzero(ok)), EVENT_DTYPE)
        events["x"] = np.minimum(x[ok], 65535)
        events["y"] = y[ok]
        events["t"] = ((np.asarray(wraps, np.int64) << 24) | (th.astype(np.int64) << 12) | tl)[ok]
        events["p"] = p[ok]

        # carry the state to the next chunk
        if last_y[-1] >= 0:
            self._y = int(w[last_y[-1]] & 0x7FF)
        if last_th[-1] >= 0:
            self._time_high = int(th_val[-1])
            self._wraps += int(wrap_cum[-1])
            self.stats.time_wraps += int(wrap_cum[-1])
        if last_tl[-1] >= 0:
            self._time_low = int(w[last_tl[-1]] & 0xFFF)
        lb = int(last_base[-1])
        if lb >= 0:
            self._base_x = int(w[lb] & 0x7FF) + int(cw[-1] - cw[lb])
            self._base_p = int((w[lb] >> 11) & 1)
        else:
            self._base_x += int(cw[-1])
        return events, n * 2


class Evt21Decoder(_RawDecoder):
    """EVT 2.1: 64-bit words, type in the top 4 bits of the header half: 0/1 CD OFF/ON vectors
    (t low 6 bits, x base 11 bits (a multiple of 32 from the sensor), y 11 bits, and a 32-bit
    valid mask: one event at x base + k for every set bit k), 8 TIME_HIGH (28 bits), A trigger,
    E/F others/continued (skipped). Vectorised: one row per word, 32 mask bits per row.

    Byte order (Prophesee docs, "EVT 2.1 Format"): a plain little-endian u64 (GenX320: mask in
    bytes 0-3, header half in bytes 4-7) unless the header's format line says
    `endianness=legacy` (IMX636: header half first, then the mask), as OpenEB records both.
    """

    format_name = "EVT2.1"
    version = "evt2.1"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._time_high = -1
        self._wraps = 0
        self._legacy = False

    def _parse_header(self, buf: bytes, final: bool) -> int | None:
        n = super()._parse_header(buf, final)
        if n is not None:
            header = prophesee_header.parse_header(buf[:n])
            self._legacy = any("endianness=legacy" in line.replace(" ", "").lower() for line in header.lines)
        return n

    def _decode(self, buf: bytes, offset: int):
        n = len(buf) // 8
        pairs = np.frombuffer(buf, dtype="<u4", count=2 * n).reshape(n, 2)
        head, mask = (pairs[:, 0], pairs[:, 1]) if self._legacy else (pairs[:, 1], pairs[:, 0])
        typ = head >> 28
        is_th = typ == 8
        th = _ffill(is_th, (head & 0x0FFFFFFF).astype(np.int64), self._time_high)
        wraps, new_wraps = _wraps(is_th, head & 0x0FFFFFFF, self._time_high)
        wraps += self._wraps
        is_cd = typ <= 1
        known = is_cd | is_th | (typ == 0xA) | (typ == 0xE) | (typ == 0xF)
        self.stats.unknown_words += int(np.count_nonzero(~known))
        no_base = is_cd & (th < 0)
        # every set mask bit of a word before the first TIME_HIGH is an event without absolute time
        self.stats.events_before_time_base += int(np.unpackbits(np.ascontiguousarray(mask[no_base]).view(np.uint8)).sum())
        rows = np.flatnonzero(is_cd & (th >= 0))
        # one row per CD word, one column per mask bit: bounded by 32 events per 8 input bytes
        bits = ((mask[rows, None] >> np.arange(32, dtype=np.uint32)) & 1).astype(bool)
        r, k = np.nonzero(bits)
        words = head[rows][r]
        events = np.empty(len(r), EVENT_DTYPE)
        x = ((words >> 11) & 0x7FF).astype(np.int64) + k
        # a base near the top of the 11-bit range plus the bit index can pass 65535 only in garbage;
        # kept (clamped to the field) so that the sensor bounds check reports it
        events["x"] = np.minimum(x, 65535)
        events["y"] = words & 0x7FF
        events["p"] = (words >> 28) & 1
        sel = rows[r]
        events["t"] = (((wraps[sel] << 28) | th[sel]) << 6) | ((words >> 22) & 0x3F).astype(np.int64)
        if n:
            self._time_high = int(th[-1])
            self._wraps += new_wraps
            self.stats.time_wraps += new_wraps
        return events, n * 8

