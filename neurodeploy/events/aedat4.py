"""AEDAT4 (iniVation DV) files through dv-processing (reads; writes event by event) and faery
(fast bulk writes). Sensor size from the event stream's resolution in the file's XML header."""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from .convert import from_dv, to_dv, to_faery
from .errors import EventFileError


def open_packets(path, stream: str = "events") -> tuple[tuple[int, int] | None, Iterator[np.ndarray]]:
    import dv_processing as dv

    try:
        recording = dv.io.MonoCameraRecording(os.fspath(path))
    except Exception as exc:  # dv-processing raises RuntimeError with its own message
        raise EventFileError(path, f"dv-processing cannot open it as AEDAT4: {exc}", offset=0,
                             fix="the file is truncated or its header is corrupt") from exc
    if not recording.isEventStreamAvailable(stream):
        raise EventFileError(path, f"no event stream named {stream!r} (streams: {recording.getStreamNames()})",
                             field="stream", fix="pass --event-stream with one of those names (stream= in Python)")
    resolution = recording.getEventResolution(stream)
    header_size = (int(resolution[0]), int(resolution[1])) if resolution is not None else None

    def packets():
        while True:
            try:
                batch = recording.getNextEventBatch(stream)
            except Exception as exc:
                raise EventFileError(path, f"dv-processing failed while decoding: {exc}",
                                     fix="the file is corrupt or truncated") from exc
            if batch is None:
                return
            if batch.size():
                yield from_dv(batch)

    return header_size, packets()


def write(path, events: np.ndarray, sensor_size: tuple[int, int], library: str = "faery") -> None:
    """library='faery' (fast, LZ4) or 'dv' (dv-processing's MonoCameraWriter, event by event)."""
    if library == "faery":
        import faery

        faery.events_stream_from_array(to_faery(events), dimensions=tuple(sensor_size)).to_file(
            os.fspath(path), file_type="aedat", zero_t0=False)
    elif library == "dv":
        import dv_processing as dv

        config = dv.io.MonoCameraWriter.EventOnlyConfig("neurodeploy", tuple(sensor_size))
        writer = dv.io.MonoCameraWriter(os.fspath(path), config)
        if len(events):
            writer.writeEvents(to_dv(events))
        del writer  # the file is finalised when the writer is destroyed
    else:
        raise ValueError(f"library must be 'faery' or 'dv', got {library!r}")
