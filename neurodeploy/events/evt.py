"""Prophesee RAW EVT 2.0 / 2.1 / 3.0 files through faery (reads and writes; unrolls EVT3's 24-bit
time wrap and EVT2's time-high counter)."""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from .convert import from_faery, to_faery
from .errors import EventFileError

VERSIONS = ("evt2", "evt2.1", "evt3")


def open_packets(path: str | os.PathLike, version: str | None,
                 sensor_size: tuple[int, int] | None) -> tuple[tuple[int, int] | None, Iterator[np.ndarray]]:
    import faery

    try:
        decoder = faery.evt.Decoder(os.fspath(path), dimensions_fallback=sensor_size, version_fallback=version)
    except Exception as exc:  # faery raises plain RuntimeError / OSError on a bad header
        raise EventFileError(path, f"faery cannot open it as EVT: {exc}", offset=0,
                             fix="check the '% evt' / '% format' header, or pass --format and --sensor-size "
                                 "(format= and sensor_size= in Python)") from exc
    header_size = tuple(decoder.dimensions) if decoder.dimensions else None

    def packets():
        with decoder:
            try:
                for packet in decoder:
                    events = packet.get("events")
                    if events is not None and len(events):
                        yield from_faery(events)
            except EventFileError:
                raise
            except Exception as exc:
                raise EventFileError(path, f"faery failed while decoding EVT data: {exc}",
                                     fix="the file is corrupt or truncated") from exc

    return header_size, packets()


def write(path: str | os.PathLike, events: np.ndarray, sensor_size: tuple[int, int], version: str = "evt3") -> None:
    import faery

    if version not in VERSIONS:
        raise ValueError(f"EVT version must be one of {VERSIONS}, got {version!r}")
    with faery.evt.Encoder(os.fspath(path), version=version, zero_t0=False, dimensions=tuple(sensor_size),
                           enforce_monotonic=True) as encoder:
        if len(events):
            encoder.write({"events": to_faery(events)})
