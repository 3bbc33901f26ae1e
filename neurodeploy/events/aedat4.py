"""AEDAT4 (iniVation DV) files. Reads go through faery's Rust decoder; writes through faery (fast,
LZ4) or dv-processing (MonoCameraWriter, event by event). Sensor size from the event track.

Why faery and not dv-processing for reading (issue 21, measured by benchmarks/fuzz.py): on
mutated files dv-processing 2.0.4 spins forever in its LZ4 loop on one flipped bit inside a
compressed packet (Ctrl-C ignored, only SIGKILL ends it), aborts the interpreter
(std::out_of_range, exit 134) on a 3-character stream type identifier, and raises unwrapped
`std::get` variant errors with 40-frame C++ stack traces. faery rejected each of those files with
a clean error in about a second. The price: a million valid events take 0.07 s through load()
with faery against 0.03 s for dv-processing's bare batch loop (best of 3, loaded 2-core machine),
both far above any camera's rate. Isolating dv-processing in a child process with a time and memory limit was
the alternative: it would cost a process start (0.1-0.5 s to import dv-processing here) and a copy of every
event per file and still leave the hang to a timeout. faery's panics (pyo3 PanicException, a
BaseException) are turned into EventFileError at `library_boundary`; the one faery abort the fuzz
benchmark found (a description that is not UTF-8: a panic in a destructor) is prevented by
checking the IOHeader in Python first (aedat4_framing).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from .convert import from_faery, to_dv, to_faery
from .errors import DecodeStats, EventFileError
from . import aedat4_framing
from .boundary import library_boundary

_FIX = "the file is truncated or corrupt; re-export it from DV"


def _stream_names(description) -> dict[str, int]:
    """Track id of each output name in the XML description (<outInfo>/<id>/originalOutputName)."""
    names: dict[str, int] = {}
    for node in description:
        if node.name != "outInfo":
            continue
        for child in node.nodes:
            attribute = child.attributes.get("originalOutputName")
            if attribute is not None and child.name.isdigit():
                names[str(attribute.value)] = int(child.name)
    return names


def open_packets(path, stream: str = "events", truncated: str = "error",
                 stats: DecodeStats | None = None) -> tuple[tuple[int, int] | None, Iterator[np.ndarray]]:
    import faery

    path = os.fspath(path)
    stats = stats if stats is not None else DecodeStats()
    size = os.path.getsize(path)
    # faery aborts on some corrupt headers and allocates whatever a packet header claims: check the
    # framing (IOHeader, every packet header) first, without reading the payloads
    header = aedat4_framing.check_file(path, size)
    start = len(aedat4_framing.FILE_MAGIC) + header.length
    end = header.data_table_position if start <= header.data_table_position < size else size
    complete_end, n_packets = aedat4_framing.scan_packets(path, start, end,
                                                          aedat4_framing.stream_ids(header.description))
    decode_path, scratch = path, None
    if header.data_table_position >= size:
        # the header says where the data table starts, past the end: packets were lost with it
        if truncated == "error":
            raise EventFileError(path, f"the header puts the data table at byte {header.data_table_position}, past "
                                       f"the end of the file ({size} bytes)", offset=size,
                                 fix="the file is truncated; pass truncated='count' to keep the whole packets "
                                     "(the missing bytes are counted)")
        stats.truncated_bytes += header.data_table_position - size
    if complete_end < end:
        if truncated == "error":
            raise EventFileError(path, f"the file ends inside a packet ({end - complete_end} bytes left over)",
                                 offset=complete_end, fix="the file is truncated; pass truncated='count' to keep the "
                                                          "whole packets (counted)")
        stats.truncated_bytes += end - complete_end
        # faery would allocate the partial packet's claimed size: give it the whole packets only
        scratch = tempfile.NamedTemporaryFile(suffix=".aedat4", delete=False)
        with open(path, "rb") as source, scratch:
            remaining = complete_end
            while remaining:
                block = source.read(min(remaining, 1 << 20))
                scratch.write(block)
                remaining -= len(block)
        decode_path = scratch.name
    try:
        with library_boundary(path, "faery cannot open it as AEDAT4", _FIX, offset=0):
            decoder = faery.aedat.Decoder(decode_path)
            tracks = decoder.tracks()
            names = _stream_names(decoder.description())
    except BaseException:
        _remove(scratch)
        raise
    events_tracks = {t.id: t for t in tracks if t.data_type == "events"}
    if stream in names:
        track = events_tracks.get(names[stream])
    elif not names and len(events_tracks) == 1 and stream == "events":
        track = next(iter(events_tracks.values()))  # a description without names: the one event track
    else:
        track = None
    if track is None:
        _remove(scratch)
        available = sorted(n for n, i in names.items() if i in events_tracks)
        raise EventFileError(path, f"no event stream named {stream!r} (event streams: {available})",
                             field="stream", fix="pass --event-stream with one of those names (stream= in Python)")
    header_size = tuple(int(v) for v in track.dimensions) if track.dimensions else None

    def packets():
        seen = 0
        try:
            with library_boundary(path, "faery failed while decoding AEDAT4", _FIX):
                try:
                    for packet_track, data in decoder:
                        seen += 1
                        if packet_track.id != track.id or not isinstance(data, np.ndarray) or not len(data):
                            if packet_track.id != track.id:
                                stats.skipped_packets += 1
                            continue
                        yield from_faery(data)
                except Exception:
                    # without a data table faery reads past the last packet and fails at the end of the
                    # file: that is the end, once every complete packet the scan found has come out
                    if seen < n_packets or end == header.data_table_position:
                        raise
        finally:
            _remove(scratch)

    return header_size, packets()


def _remove(scratch) -> None:
    if scratch is not None:
        with contextlib.suppress(OSError):
            os.unlink(scratch.name)


def write(path, events: np.ndarray, sensor_size: tuple[int, int], library: str = "faery") -> None:
    """library='faery' (fast, LZ4) or 'dv' (dv-processing's MonoCameraWriter, event by event)."""
    if library == "faery":
        import faery

        faery.events_stream_from_array(to_faery(events), dimensions=tuple(sensor_size)).to_file(
            os.fspath(path), file_type="aedat", zero_t0=False)
    elif library == "dv":
        import dv_processing as dv

        if not os.fspath(path).endswith(".aedat4"):
            # dv-processing 2.0.4 aborts the interpreter (std::terminate) on any other file name
            raise ValueError(f"{os.fspath(path)}: dv-processing writes only files named *.aedat4; "
                             "rename it or pass library='faery'")
        config = dv.io.MonoCameraWriter.EventOnlyConfig("neurodeploy", tuple(sensor_size))
        writer = dv.io.MonoCameraWriter(os.fspath(path), config)
        if len(events):
            writer.writeEvents(to_dv(events))
        del writer  # the file is finalised when the writer is destroyed
    else:
        raise ValueError(f"library must be 'faery' or 'dv', got {library!r}")
