"""CSV event files and streams (by hand, incremental, so that stdin and growing files work too).

Optional leading comment lines may carry the sensor size ('# sensor_size: 34x34' or
'# width=34 height=34'); an optional column line names the order (t,x,y,p by default; 'on' and
'polarity' are accepted for p). Values are integers, t in microseconds, p > 0 is ON.
"""
from __future__ import annotations

import io
import os
import re

import numpy as np

from .incremental import IncrementalDecoder
from .types import EVENT_DTYPE

COLUMN_ALIASES = {"t": "t", "timestamp": "t", "ts": "t", "x": "x", "y": "y", "p": "p", "on": "p",
                  "polarity": "p", "pol": "p"}


def size_from_comments(text: str) -> tuple[int, int] | None:
    m = re.search(r"sensor[_ ]size\s*[:=]\s*\(?\s*(\d{1,9})\s*[x,]\s*(\d{1,9})", text, re.IGNORECASE)
    if m:
        return int(m[1]), int(m[2])
    w = re.search(r"width\s*[:=]\s*(\d{1,9})(?!\d)", text, re.IGNORECASE)
    h = re.search(r"height\s*[:=]\s*(\d{1,9})(?!\d)", text, re.IGNORECASE)
    if w and h:
        return int(w[1]), int(h[1])
    return None


_NUMERIC_LINE = re.compile(r"[0-9+\-, \t\r]*")


class CsvDecoder(IncrementalDecoder):
    format_name = "CSV"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.columns = ("t", "x", "y", "p")
        self._line = 0

    def _parse_header(self, buf, final):
        pos = 0
        comments = []
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if not final:
                    return None
                nl = len(buf)
            line = buf[pos:nl].strip()
            if line.startswith(b"#"):
                comments.append(line.decode("utf-8", "replace"))
                pos = nl + 1
                self._line += 1
                if pos >= len(buf):
                    if not final:
                        return None
                    break
                continue
            if line and not (line[:1].isdigit() or line[:1] in (b"-", b"+")):
                names = [c.strip().lower() for c in line.decode("utf-8", "replace").split(",")]
                mapped = [COLUMN_ALIASES.get(c) for c in names]
                if sorted(m for m in mapped if m) != ["p", "t", "x", "y"] or len(mapped) != 4:
                    raise self.error(f"column line {line[:80]!r} does not name t, x, y and p", pos,
                                     "write a 't,x,y,p' header line or none")
                self.columns = tuple(mapped)
                pos = nl + 1
                self._line += 1
            break
        if not self._override:
            self.sensor_size = size_from_comments("\n".join(comments))
        return min(pos, len(buf))

    def _decode(self, buf, offset):
        end = buf.rfind(b"\n") + 1
        if end == 0:
            return np.zeros(0, EVENT_DTYPE), 0
        text = buf[:end].decode("utf-8", "replace")
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        # only digits, signs, commas and blanks reach numpy: its loadtxt tokenizer crashed the
        # process (SIGSEGV, now and then) on a line of non-ASCII garbage in benchmarks/fuzz.py
        bad = next((ln for ln in lines if not _NUMERIC_LINE.fullmatch(ln)), None)
        if bad is not None:
            raise self.error(f"unparsable line after line {self._line}: {bad[:60]!r}", offset,
                             "every data line must be four integers separated by commas")
        try:
            values = np.loadtxt(io.StringIO("\n".join(lines)), delimiter=",", dtype=np.int64, ndmin=2) \
                if lines else np.zeros((0, 4), np.int64)
        except ValueError as exc:
            raise self.error(f"unparsable line after line {self._line}: {exc}", offset,
                             "every data line must be four integers separated by commas") from None
        if values.shape[1] != 4:
            raise self.error(f"{values.shape[1]} columns instead of 4 after line {self._line}", offset,
                             "every data line must be four integers t,x,y,p")
        self._line += text.count("\n")
        cols = {name: values[:, i] for i, name in enumerate(self.columns)}
        for name in ("x", "y"):
            bad = (cols[name] < 0) | (cols[name] > 65535)
            if bad.any():
                raise self.error(f"{name} = {int(cols[name][np.argmax(bad)])} is not a pixel coordinate", offset,
                                 "coordinates are integers 0..65535")
        events = np.empty(len(values), EVENT_DTYPE)
        events["t"] = cols["t"]
        events["x"] = cols["x"]
        events["y"] = cols["y"]
        events["p"] = cols["p"] > 0
        return events, end

    def finish(self, truncated="error"):
        # a last line without its newline is a whole line in a file that simply does not end in '\n'
        if self._buffer and self.header_done and not self._buffer.endswith(b"\n"):
            self._buffer += b"\n"
        return super().finish(truncated)


def write(path: str | os.PathLike, events: np.ndarray, sensor_size: tuple[int, int]) -> None:
    with open(path, "w", newline="\n") as f:
        f.write(f"# sensor_size: {sensor_size[0]}x{sensor_size[1]}\n")
        f.write("t,x,y,p\n")
        if len(events):
            table = np.stack([events["t"], events["x"].astype(np.int64), events["y"].astype(np.int64),
                              events["p"].astype(np.int64)], axis=1)
            np.savetxt(f, table, fmt="%d", delimiter=",")
