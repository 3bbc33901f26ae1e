"""load(path) -> Recording, open(path) -> packets, save(recording, path): the one entry point per
direction for every file format."""
from __future__ import annotations

import builtins
import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from neurodeploy.errors import MissingFileError

from . import aedat2, aedat3, aedat4, csv_text, dat, evt, numpy_io, nmnist_bin
from .detect import FORMATS, detect_format
from .errors import DecodeStats, EventFileError
from .evt_incremental import Evt2Decoder, Evt3Decoder, Evt21Decoder
from .incremental import IncrementalDecoder
from .policy import PacketChecker, ReadPolicy
from .time_range import check_time_range, rebase
from .truncation import check_tail
from .types import EVENT_DTYPE, Recording, _check_sensor_size

# Only AEDAT4 is read through a library (faery; see aedat4.py for why not dv-processing). EVT 2/2.1/3
# and DAT are decoded by hand (evt_incremental, dat): faery 0.7.1 loses EVT3's 24-bit time wrap
# when events are sparse (tests/test_events_readers.py::test_evt3_wrap_sparse_and_faery_bug),
# clamps EVT2/DAT times that go back without counting them, drops a final partial record silently
# and panics on EVT 2.1, so a recording would give another answer opened than followed.
LIBRARY_FORMATS = ("aedat4",)


def incremental_decoder(fmt: str, source: str, sensor_size=None, stats=None, layout=None) -> IncrementalDecoder:
    """The hand-written incremental decoder of a format (what follow mode and hand formats use)."""
    if fmt == "aedat2":
        return aedat2.Aedat2Decoder(source, sensor_size, stats, layout=layout)
    classes = {"aedat3": aedat3.Aedat3Decoder, "nmnist_bin": nmnist_bin.NmnistBinDecoder, "csv": csv_text.CsvDecoder,
               "evt2": Evt2Decoder, "evt2.1": Evt21Decoder, "evt3": Evt3Decoder, "dat": dat.DatDecoder}
    if fmt not in classes:
        raise EventFileError(source, f"format {fmt!r} cannot be decoded incrementally", field="format",
                             fix="AEDAT4 live data comes through the DV network stream (dv_network_source); "
                                 ".npy/.npz are loaded whole")
    return classes[fmt](source, sensor_size, stats)


def _no_size(path, fmt) -> EventFileError:
    return EventFileError(path, f"the {fmt} file carries no sensor size", field="sensor_size",
                          fix="pass --sensor-size WxH (sensor_size=(width, height) in Python)")


class EventFileSource:
    """Iterator of checked EVENT_DTYPE packets from a file; sensor_size and stats are attributes."""

    def __init__(self, path, sensor_size=None, *, format: str | None = None, policy: ReadPolicy = ReadPolicy(),
                 chunk_bytes: int = 1 << 20, layout: str | None = None, stream: str = "events"):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise MissingFileError(f"{self.path}: no such event file")
        if os.path.isdir(self.path):
            raise EventFileError(self.path, "is a folder, not an event file", fix="give the event file inside it")
        self.format = format or detect_format(self.path)
        if self.format not in FORMATS:
            raise EventFileError(self.path, f"format {self.format!r} is not one of {FORMATS}",
                                 fix="pass one of them as the format")
        self.policy = policy
        self.stats = DecodeStats()
        self._file = None
        override = tuple(sensor_size) if sensor_size is not None else None
        partial = check_tail(self.path, self.format, policy.truncated)  # before any event is decoded
        if self.format in LIBRARY_FORMATS:  # the hand decoders count their own tail at the end
            self.stats.truncated_bytes += partial
        if self.format == "aedat4":
            header, self._raw = aedat4.open_packets(self.path, stream, policy.truncated, self.stats)
        elif self.format in ("npy", "npz"):
            events, header = numpy_io.read(self.path)
            self._raw = iter([events])
        else:
            header, self._raw = self._open_incremental(override, chunk_bytes, layout)
        self.sensor_size = override or header
        if self.sensor_size is None:
            self.close()
            raise _no_size(self.path, self.format)
        try:
            self.sensor_size = _check_sensor_size(self.sensor_size)
        except ValueError as exc:  # a header's size is input like any other byte
            self.close()
            where = "the sensor_size given" if override else "the file's header"
            raise EventFileError(self.path, f"{where}: {exc}", field="sensor_size",
                                 fix="pass --sensor-size WxH (sensor_size= in Python)") from None
        self._check = PacketChecker(self.path, self.sensor_size, policy, self.stats)

    def _open_incremental(self, override, chunk_bytes, layout):
        self._file = builtins.open(self.path, "rb")
        decoder = incremental_decoder(self.format, self.path, override, self.stats, layout)
        first = []
        while not decoder.header_done:  # the sensor size is in the header: read it now
            data = self._file.read(chunk_bytes)
            if not data:
                first.append(decoder.finish(self.policy.truncated))
                break
            first.append(decoder.feed(data))

        def packets():
            yield from first
            while True:
                data = self._file.read(chunk_bytes)
                if not data:
                    yield decoder.finish(self.policy.truncated)
                    return
                yield decoder.feed(data)

        return decoder.sensor_size, packets()

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for packet in self._raw:
                packet = self._check(packet)
                if len(packet):
                    yield packet
        finally:
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open(path: str | os.PathLike, sensor_size: tuple[int, int] | None = None, *, format: str | None = None,
         out_of_bounds: str = "error", non_monotonic: str = "error", truncated: str = "error",
         chunk_bytes: int = 1 << 20, layout: str | None = None, stream: str = "events") -> EventFileSource:
    """Open an event file as an iterator of EVENT_DTYPE packets (see ReadPolicy for the options)."""
    policy = ReadPolicy(out_of_bounds, non_monotonic, truncated)
    return EventFileSource(path, sensor_size, format=format, policy=policy, chunk_bytes=chunk_bytes,
                           layout=layout, stream=stream)


def load(path: str | os.PathLike, sensor_size: tuple[int, int] | None = None, *, format: str | None = None,
         out_of_bounds: str = "error", non_monotonic: str = "error", truncated: str = "error",
         layout: str | None = None, stream: str = "events") -> Recording:
    """Read a whole event file. Sensor size: the explicit override, else the file's header, else an error.
    non_monotonic='sort' sorts the whole recording (stable) and counts the steps that went back."""
    policy = ReadPolicy(out_of_bounds, non_monotonic, truncated)
    stream_policy = dataclasses.replace(policy, non_monotonic="keep") if non_monotonic == "sort" else policy
    source = EventFileSource(path, sensor_size, format=format, policy=stream_policy, layout=layout, stream=stream)
    packets = list(source)
    events = np.concatenate(packets) if packets else np.zeros(0, EVENT_DTYPE)
    if non_monotonic == "sort" and source.stats.non_monotonic:
        events = events[np.argsort(events["t"], kind="stable")]
    return Recording(events, source.sensor_size, source.stats)


EXTENSIONS = {".aedat4": "aedat4", ".raw": "evt3", ".dat": "dat", ".bin": "nmnist_bin", ".csv": "csv",
              ".npy": "npy", ".npz": "npz"}


def save(recording: Recording, path: str | os.PathLike, *, format: str | None = None, library: str = "faery",
         layout: str = "dvs128", rebase_time: bool = False) -> None:
    """Write a Recording. format from the extension (.raw is EVT3 unless format='evt2'; .aedat needs
    format='aedat2' or 'aedat3'). library picks the AEDAT4 writer ('faery' or 'dv'). Timestamps
    the format cannot hold (epoch time into EVT3 / DAT, see events.time_range) are refused with
    the reason, or with `rebase_time=True` moved to start at 0."""
    fmt = format or EXTENSIONS.get(os.path.splitext(os.fspath(path))[1].lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format of {os.fspath(path)!r} from its extension: pass format=")
    events, size = recording.events, recording.sensor_size
    if rebase_time:
        events = rebase(events)
    check_time_range(path, events, fmt)
    if fmt == "aedat4":
        aedat4.write(path, events, size, library=library)
    elif fmt in evt.VERSIONS:
        evt.write(path, events, size, fmt)
    elif fmt == "dat":
        dat.write(path, events, size)
    elif fmt == "aedat3":
        aedat3.write(path, events, size)
    elif fmt == "aedat2":
        aedat2.write(path, events, size, layout=layout)
    elif fmt == "nmnist_bin":
        nmnist_bin.write(path, events)
    elif fmt == "csv":
        csv_text.write(path, events, size)
    elif fmt in ("npy", "npz"):
        numpy_io.write(path, events, size)
    else:
        raise ValueError(f"no writer for format {fmt!r}")
