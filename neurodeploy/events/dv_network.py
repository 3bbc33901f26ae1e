"""The DV network stream (AEDAT4 over TCP or a UNIX socket) read and decoded here, in Python,
with every size checked before it is allocated (issue 21).

dv-processing's NetworkReader, used before, aborted the interpreter on garbage after the stream
header or a wrong type identifier (exit -6), grew to 3.7 GB on garbage before it, believed a
packet that claimed 2 GB, and dropped the packets still queued in its reader thread when the
sender disconnected (the summary said 0 lost). Here the socket is read synchronously: a packet is
delivered, or counted as lost, or the stream ends with an error that names the offset.

Framing (what dv-processing's NetworkWriter sends): the IOHeader (aedat4_framing), then packets
of int32 stream id, int32 size and `size` bytes, compressed as the header says (NONE, LZ4 frame,
ZSTD), holding a size-prefixed flatbuffer with file identifier "EVTS": a table whose first field
is a vector of 16-byte Event structs {int64 timestamp, int16 x, int16 y, bool polarity, 3 pad}.
"""
from __future__ import annotations

import re
import socket
import struct
from xml.etree import ElementTree

import numpy as np

from .aedat4_framing import MAX_IO_HEADER_BYTES, IoHeader, parse_io_header
from .errors import DecodeStats, EventFileError
from .types import EVENT_DTYPE

DV_EVENT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1"), ("pad", "V3")])
MAX_PACKET_BYTES = 16 << 20   # a DV event packet is well under 1 MB; 16 MB is a million events
_FIX = "the peer is not a DV event stream or sent corrupt data"


class StreamEnded(Exception):
    """The peer closed the connection; carries the bytes of the unfinished read."""

    def __init__(self, partial: int):
        super().__init__(partial)
        self.partial = partial


def _stream_info(description: str, name: str) -> tuple[int | None, tuple[int, int] | None]:
    """(stream id, resolution) of the event output (typeIdentifier EVTS) in the XML description:
    <node path=".../outInfo/<id>/"> with <attr key="typeIdentifier"> and an <node name="info">
    holding sizeX / sizeY."""
    if "<!" in description:  # no DTD, no entities: nothing to expand
        raise EventFileError(name, "the stream description holds a DTD or entity declarations", offset=4, fix=_FIX)
    try:
        root = ElementTree.fromstring(description)
    except ElementTree.ParseError as err:
        raise EventFileError(name, f"the stream description is not XML: {err}", offset=4, fix=_FIX) from None
    for node in root.iter("node"):
        match = re.search(r"/outInfo/(\d+)/$", node.get("path", ""))
        attrs = {a.get("key"): (a.text or "").strip() for a in node.findall("attr")}
        if match and attrs.get("typeIdentifier") == "EVTS":
            info = {a.get("key"): (a.text or "").strip() for a in node.findall("node[@name='info']/attr")}
            size_x, size_y = info.get("sizeX", ""), info.get("sizeY", "")
            sizes = [re.fullmatch(r"[0-9]{1,9}", v) for v in (size_x, size_y)]
            resolution = (int(size_x), int(size_y)) if all(sizes) else None
            return int(match.group(1)), resolution
    return None, None


class DvStreamReader:
    """Packets of EVENT_DTYPE from a connected socket; stats counts bytes, packets, skips and losses."""

    def __init__(self, sock: socket.socket, name: str, stats: DecodeStats, *, read_timeout_s: float = 10.0,
                 max_packet_bytes: int = MAX_PACKET_BYTES, max_bytes: int | None = None):
        self.sock, self.name, self.stats = sock, name, stats
        self.max_packet_bytes, self.max_bytes = max_packet_bytes, max_bytes
        self.read_timeout_s = read_timeout_s
        sock.settimeout(read_timeout_s)
        self.offset = 0
        try:
            head = self._read_exactly(4, header=True)
            size = struct.unpack("<i", head)[0]
            if not 8 <= size <= MAX_IO_HEADER_BYTES:  # garbage before the header: refused, not read
                raise EventFileError(name, f"stream header size {size} outside 8..{MAX_IO_HEADER_BYTES}", offset=0,
                                     fix=_FIX)
            self.header: IoHeader = parse_io_header(head + self._read_exactly(size, header=True), name)
        except StreamEnded:
            raise EventFileError(name, "the peer closed inside the stream header", offset=self.offset,
                                 fix=_FIX) from None
        self.stream_id, self.resolution = _stream_info(self.header.description, name)
        if self.stream_id is None:
            raise EventFileError(name, "the DV stream carries no event output (typeIdentifier EVTS)", field="stream",
                                 fix="connect to an event output")

    def _read_exactly(self, n: int, header: bool = False) -> bytes:
        if self.max_bytes is not None and self.stats.bytes_read + n > self.max_bytes:
            raise EventFileError(self.name, f"the peer sent more than the budget of {self.max_bytes} bytes",
                                 offset=self.offset, fix="raise max_bytes, or check the sender")
        chunks, got = [], 0
        while got < n:
            try:
                data = self.sock.recv(min(n - got, 1 << 20))
            except socket.timeout:
                raise EventFileError(self.name, f"no data for {self.read_timeout_s} s", offset=self.offset + got,
                                     fix="check the sender, or raise read_timeout_s") from None
            except OSError as err:
                raise StreamEnded(got) from err
            if not data:
                if header and got == 0 and not self.offset:
                    raise EventFileError(self.name, "the peer closed before sending the stream header", offset=0,
                                         fix="connect to a DV event output")
                raise StreamEnded(got)
            chunks.append(data)
            got += len(data)
            self.stats.bytes_read += len(data)
        self.offset += n
        return b"".join(chunks)

    def _decompress(self, payload: bytes) -> bytes:
        limit = self.max_packet_bytes
        compression = self.header.compression
        try:
            if compression == "NONE":
                return payload
            if compression.startswith("LZ4"):
                import lz4.frame

                decompressor = lz4.frame.LZ4FrameDecompressor()
                out = decompressor.decompress(payload, max_length=limit)
                if not decompressor.eof:
                    raise ValueError(f"inflates past {limit} bytes or is cut")
                return out
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(payload)
            out = reader.read(limit + 1)
            if len(out) > limit:
                raise ValueError(f"inflates past {limit} bytes")
            return out
        except Exception as err:  # noqa: BLE001  (lz4: RuntimeError; zstandard: ZstdError, an Exception)
            raise EventFileError(self.name, f"a {compression} packet does not decompress: {err}", offset=self.offset,
                                 fix=_FIX) from None

    def _events(self, body: bytes) -> np.ndarray:
        """The Event vector of a size-prefixed EVTS flatbuffer, every offset checked."""
        at = self.offset
        try:
            fb = body[4:]
            if struct.unpack_from("<I", body, 0)[0] != len(fb) or fb[4:8] != b"EVTS":
                raise ValueError("not a size-prefixed EVTS flatbuffer")
            table = struct.unpack_from("<I", fb, 0)[0]
            vtable = table - struct.unpack_from("<i", fb, table)[0]
            if struct.unpack_from("<H", fb, vtable)[0] < 6:
                return np.zeros(0, EVENT_DTYPE)
            field = struct.unpack_from("<H", fb, vtable + 4)[0]
            if field == 0:
                return np.zeros(0, EVENT_DTYPE)
            vector = table + field + struct.unpack_from("<I", fb, table + field)[0]
            count = struct.unpack_from("<I", fb, vector)[0]
            if vector + 4 + count * DV_EVENT.itemsize > len(fb):
                raise ValueError(f"{count} events run past the packet")
            raw = np.frombuffer(fb, DV_EVENT, count=count, offset=vector + 4)
        except (struct.error, ValueError) as err:
            raise EventFileError(self.name, f"corrupt event packet: {err}", offset=at, fix=_FIX) from None
        if count and (raw["x"].min() < 0 or raw["y"].min() < 0):
            raise EventFileError(self.name, "an event packet holds negative coordinates", offset=at, fix=_FIX)
        events = np.empty(count, EVENT_DTYPE)
        events["t"], events["x"], events["y"], events["p"] = raw["t"], raw["x"], raw["y"], raw["p"] > 0
        return events

    def next_packet(self) -> np.ndarray | None:
        """The next event packet; None when the peer closed between packets. A close inside a
        packet counts it in packets_lost / bytes_lost and also returns None."""
        try:
            head = self._read_exactly(8)
        except StreamEnded as end:
            if end.partial:
                self.stats.packets_lost += 1
                self.stats.bytes_lost += end.partial
            return None
        stream_id, size = struct.unpack("<ii", head)
        if not 0 < size <= self.max_packet_bytes:
            raise EventFileError(self.name, f"packet of stream {stream_id} claims {size} bytes (allowed 1.."
                                            f"{self.max_packet_bytes})", offset=self.offset - 8, fix=_FIX)
        try:
            payload = self._read_exactly(size)
        except StreamEnded as end:
            self.stats.packets_lost += 1
            self.stats.bytes_lost += 8 + end.partial
            return None
        if stream_id != self.stream_id:
            self.stats.skipped_packets += 1
            return np.zeros(0, EVENT_DTYPE)
        return self._events(self._decompress(payload))
