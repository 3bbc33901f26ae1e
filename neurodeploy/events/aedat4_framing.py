"""The framing of AEDAT4 files and DV network streams, checked in Python before a native decoder
sees the bytes (issue 21): faery 0.7.1 aborts the interpreter (a pyo3 panic in a destructor) on
an IOHeader whose description is not UTF-8, and dv-processing aborts on a 3-character type
identifier. Only the framing is read here; the events are still decoded by the library.

IOHeader (dv-processing's IOHeader.fbs): a little-endian int32 size, then a flatbuffer with file
identifier "IOHE" holding the table {compression: int32 enum, dataTablePosition: int64,
infoNode: string (the XML description)}. A file starts with "#!AER-DAT4.0\\r\\n" before it; a
network stream starts with the size. Flatbuffers are read by hand here (a root offset, a vtable,
a string): the `flatbuffers` runtime would need generated code for one three-field table.
"""
from __future__ import annotations

import dataclasses
import re
import struct

from .errors import EventFileError

FILE_MAGIC = b"#!AER-DAT4.0\r\n"
MAX_IO_HEADER_BYTES = 1 << 20        # a DV description is a few KB; more is garbage, not a header
COMPRESSIONS = {0: "NONE", 1: "LZ4", 2: "LZ4_HIGH", 3: "ZSTD", 4: "ZSTD_HIGH"}
# the type identifiers of the AEDAT4 packet types (four characters, dv-processing's flatbuffers)
_TYPE_IDENTIFIER = re.compile(r'typeIdentifier"[^>]*>\s*([^<]*)<|typeIdentifier" value="([^"]*)"')


@dataclasses.dataclass(frozen=True)
class IoHeader:
    compression: str
    data_table_position: int
    description: str
    length: int                       # bytes of the size prefix and the flatbuffer


def _u32(buf: bytes, at: int) -> int:
    return struct.unpack_from("<I", buf, at)[0]


def _field(buf: bytes, table: int, index: int) -> int | None:
    """Absolute offset of field `index` of the flatbuffer table at `table`, None when absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    if not 0 <= vtable <= len(buf) - 4:
        raise ValueError(f"vtable offset {vtable} outside the header")
    vt_size = struct.unpack_from("<H", buf, vtable)[0]
    slot = 4 + 2 * index
    if slot + 2 > vt_size:
        return None
    if vtable + slot + 2 > len(buf):
        raise ValueError("vtable runs past the header")
    offset = struct.unpack_from("<H", buf, vtable + slot)[0]
    return table + offset if offset else None


def parse_io_header(buf: bytes, source: str, base_offset: int = 0) -> IoHeader | None:
    """The IOHeader at the start of buf (which starts at the int32 size); None when buf is too short
    to hold it yet. Raises EventFileError naming the offset for anything malformed."""
    if len(buf) < 4:
        return None
    size = struct.unpack_from("<i", buf, 0)[0]
    if not 8 <= size <= MAX_IO_HEADER_BYTES:
        raise EventFileError(source, f"AEDAT4 IOHeader size {size} outside 8..{MAX_IO_HEADER_BYTES}",
                             offset=base_offset, fix="the file or stream is corrupt or not AEDAT4")
    if len(buf) < 4 + size:
        return None
    fb = bytes(buf[4:4 + size])
    try:
        if fb[4:8] != b"IOHE":
            raise ValueError(f"file identifier {fb[4:8]!r}, expected b'IOHE'")
        table = _u32(fb, 0)
        if not 8 <= table <= size - 4:
            raise ValueError(f"root table offset {table} outside the header")
        compression_at, position_at, info_at = (_field(fb, table, i) for i in range(3))
        compression = struct.unpack_from("<i", fb, compression_at)[0] if compression_at is not None else 0
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression {compression} unknown (expected {sorted(COMPRESSIONS)})")
        position = struct.unpack_from("<q", fb, position_at)[0] if position_at is not None else -1
        if info_at is None:
            raise ValueError("no description (infoNode)")
        string_at = info_at + _u32(fb, info_at)
        length = _u32(fb, string_at)
        if string_at + 4 + length > size:
            raise ValueError(f"description of {length} bytes runs past the header")
        description = fb[string_at + 4:string_at + 4 + length].decode("utf-8")
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise EventFileError(source, f"corrupt AEDAT4 IOHeader: {exc}", offset=base_offset + 4,
                             fix="the file or stream is corrupt or not AEDAT4") from None
    for match in _TYPE_IDENTIFIER.finditer(description):
        identifier = (match.group(1) or match.group(2) or "").strip()
        if len(identifier) != 4:
            raise EventFileError(source, f"stream type identifier {identifier!r} is not four characters",
                                 offset=base_offset + 4, field="typeIdentifier",
                                 fix="the file or stream is corrupt")
    return IoHeader(COMPRESSIONS[compression], position, description, 4 + size)


def check_file(path, file_size: int) -> IoHeader:
    """The magic line and IOHeader of an AEDAT4 file, checked; bounded reads."""
    with open(path, "rb") as f:
        head = f.read(len(FILE_MAGIC) + 4 + MAX_IO_HEADER_BYTES)
    if not head.startswith(FILE_MAGIC):
        raise EventFileError(path, f"no AEDAT4 magic line (first bytes {head[:14]!r})", offset=0,
                             fix="this is not an AEDAT4 file")
    header = parse_io_header(head[len(FILE_MAGIC):], str(path), base_offset=len(FILE_MAGIC))
    if header is None:
        raise EventFileError(path, "the file ends inside its IOHeader", offset=len(FILE_MAGIC),
                             fix="the file is truncated")
    return header


def stream_ids(description: str) -> set[int]:
    """The stream ids (outInfo/<id>) the description declares."""
    return {int(i) for i in re.findall(r'path="[^"]*/outInfo/(\d+)/"', description)}


def scan_packets(path, start: int, end: int, ids: set[int]) -> tuple[int, int]:
    """Walk the packet headers (int32 stream id, int32 size) from start to end without reading the
    payloads: (offset where the last complete packet ends, number of complete packets). A header
    with an unknown stream id or a size that is not positive is an error; a packet that runs past
    `end` is where the complete packets stop (a truncated file, or a size that lies: both must
    not reach a decoder that allocates the claimed size)."""
    offset, count = start, 0
    with open(path, "rb") as f:
        while offset + 8 <= end:
            f.seek(offset)
            stream_id, size = struct.unpack("<ii", f.read(8))
            if stream_id not in ids:
                raise EventFileError(path, f"packet of unknown stream {stream_id} (declared: {sorted(ids)})",
                                     offset=offset, fix="the file is corrupt")
            if size <= 0:
                raise EventFileError(path, f"packet claims {size} bytes", offset=offset, fix="the file is corrupt")
            if offset + 8 + size > end:
                break
            offset += 8 + size
            count += 1
    return offset, count
