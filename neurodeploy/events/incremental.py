"""Base of the hand-written byte decoders: fed bytes in any chunking, they keep state and partial
records between calls, so the same code serves load(), open() and following a growing file."""
from __future__ import annotations

import numpy as np

from .errors import DecodeStats, EventFileError
from .policy import Truncated
from .types import EVENT_DTYPE

MAX_HEADER_BYTES = 1 << 20  # a longer text header is garbage, not a header: bounds memory


class IncrementalDecoder:
    """Subclasses implement _parse_header and _decode; offsets in errors are absolute file offsets."""

    format_name = "?"

    def __init__(self, source: str = "<stream>", sensor_size: tuple[int, int] | None = None,
                 stats: DecodeStats | None = None):
        self.source = source
        self.stats = stats if stats is not None else DecodeStats()
        self.sensor_size = sensor_size          # from the header once parsed, unless overridden
        self._override = sensor_size is not None
        self._buffer = b""
        self._offset = 0                        # absolute offset of _buffer[0]
        self.header_done = False

    # -- subclass hooks -------------------------------------------------------------------------
    def _parse_header(self, buf: bytes, final: bool) -> int | None:
        """Return the header length once complete, None if more bytes are needed."""
        raise NotImplementedError

    def _decode(self, buf: bytes, offset: int) -> tuple[np.ndarray, int]:
        """Decode whole records of buf (which starts at absolute offset); return (events, consumed)."""
        raise NotImplementedError

    # -- driver ---------------------------------------------------------------------------------
    def error(self, problem: str, offset: int, fix: str | None = None) -> EventFileError:
        return EventFileError(self.source, f"{self.format_name}: {problem}", offset=offset, fix=fix)

    def feed(self, data: bytes, final: bool = False) -> np.ndarray:
        self.stats.bytes_read += len(data)
        buf = self._buffer + bytes(data) if self._buffer else bytes(data)
        if not self.header_done:
            n = self._parse_header(buf, final)
            if n is None:
                if len(buf) > MAX_HEADER_BYTES:
                    raise self.error(f"no end of header within {MAX_HEADER_BYTES} bytes", 0,
                                     "the file is not of this format or its header is corrupt")
                self._buffer = buf
                return np.zeros(0, EVENT_DTYPE)
            self.header_done = True
            buf = buf[n:]
            self._offset += n
        events, consumed = self._decode(buf, self._offset)
        self._buffer = buf[consumed:]
        self._offset += consumed
        return events

    def finish(self, truncated: Truncated = "error") -> np.ndarray:
        """End of input: decode what a final flag allows, then deal with any partial record."""
        events = self.feed(b"", final=True)
        if not self.header_done:
            raise self.error("the input ends inside the header", self._offset + len(self._buffer),
                             "the file is truncated or not of this format")
        if self._buffer:
            if truncated == "error":
                raise self.error(f"the input ends inside a record ({len(self._buffer)} bytes left over)",
                                 self._offset,
                                 "the file is truncated; pass --truncated count (truncated='count' in Python) "
                                 "to keep the whole records (counted)")
            self.stats.truncated_bytes += len(self._buffer)
            self._buffer = b""
        return events


def header_lines(buf: bytes, marker: bytes, final: bool, end_line: bytes | None = None) -> int | None:
    """Length of a block of text lines each starting with `marker` (the '%' of Prophesee files,
    the '#' of AEDAT 2/3), ending at `end_line` when given, else at the first line that does not
    start with marker. None: more bytes needed."""
    pos = 0
    while True:
        if pos >= len(buf):
            return pos if final else None
        if buf[pos:pos + 1] != marker:
            if end_line is not None:
                return -1  # a header with a required end line ended without it
            return pos
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return None if not final else -1
        line = buf[pos:nl + 1]
        pos = nl + 1
        if end_line is not None and line.rstrip(b"\r\n") == end_line:
            return pos
