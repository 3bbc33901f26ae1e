"""Open an event source from what a user types: a file path, `-`, or a `scheme://` address.

    path/to/file.ext      recorded file (format from magic bytes / header, see events.detect)
    --follow path         a file still being written (tail -f)
    tcp://host:port       DV network stream (AEDAT4 over TCP, dv-processing NetworkWriter)
    unix:///path/socket   the same over a UNIX socket
    udp://host:port       faery t64_x16_y16_on8 datagrams (needs the sensor size)
    -                     CSV t,x,y,p on standard input
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from neurodeploy.errors import MissingFileError, NeurodeployError


class SourceError(NeurodeployError, ValueError):
    """An event source address that cannot be opened as written; the message says the form expected."""


@dataclass(frozen=True)
class OpenedSource:
    packets: Iterable[np.ndarray]
    sensor_size: tuple[int, int]
    live: bool  # read on a thread through a bounded queue
    name: str


def open_source(spec: str, *, sensor_size: tuple[int, int] | None = None, follow: bool = False,
                format: str | None = None, idle_timeout_s: float = 2.0,
                truncated: str | None = None, out_of_bounds: str = "error", non_monotonic: str = "error",
                layout: str | None = None, event_stream: str | None = None) -> OpenedSource:
    """Resolve `spec` to a packet iterator with its sensor size (see the module docstring).

    `truncated`, `out_of_bounds` and `non_monotonic` are the reading policy (`events.ReadPolicy`);
    `truncated=None` keeps each source's default ('error' for files, 'count' for followed files and
    stdin, which may stop anywhere).
    `layout` (AEDAT 2.0 address layout) and `event_stream` (AEDAT4 stream name) apply to files."""
    return _open_raw(spec, sensor_size=sensor_size, follow=follow, format=format, idle_timeout_s=idle_timeout_s,
                     policy={k: v for k, v in dict(truncated=truncated, out_of_bounds=out_of_bounds,
                                                   non_monotonic=non_monotonic).items() if v is not None},
                     layout=layout, event_stream=event_stream)


def _open_raw(spec: str, *, sensor_size, follow, format, idle_timeout_s, policy, layout, event_stream) -> OpenedSource:
    from neurodeploy.events import live, readers

    reading = {k: v for k, v in policy.items() if k != "truncated"}

    if spec == "-":
        source = live.csv_stdin_source(sensor_size=sensor_size, **policy)
        return OpenedSource(source, source.sensor_size, True, "<stdin>")
    if "://" in spec:
        url = urlparse(spec)
        if url.scheme == "tcp":
            if not url.hostname or not url.port:
                raise SourceError(f"{spec}: expected tcp://HOST:PORT")
            source = live.dv_network_source(url.hostname, url.port, sensor_size=sensor_size, **reading)
        elif url.scheme == "unix":
            path = url.path or url.netloc
            source = live.dv_network_source(socket_path=path, sensor_size=sensor_size, **reading)
        elif url.scheme == "udp":
            if not url.hostname or not url.port:
                raise SourceError(f"{spec}: expected udp://HOST:PORT")
            if sensor_size is None:
                raise SourceError(f"{spec}: UDP datagrams carry no sensor size; pass --sensor-size WIDTHxHEIGHT")
            source = live.udp_source(url.hostname, url.port, sensor_size, idle_timeout_s=idle_timeout_s,
                                     out_of_bounds=policy.get("out_of_bounds", "error"))
        else:
            raise SourceError(f"{spec}: unknown scheme {url.scheme!r}; use tcp://, unix://, udp://, a file path or -")
        return OpenedSource(source, tuple(source.sensor_size), True, spec)
    if not Path(spec).exists() and not follow:
        raise MissingFileError(f"{spec}: no such event file")
    if follow:
        source = live.follow_file(spec, sensor_size, format=format, idle_timeout_s=idle_timeout_s, layout=layout,
                                  **policy)
        return OpenedSource(source, tuple(source.sensor_size), True, spec)
    source = readers.open(spec, sensor_size, format=format, layout=layout, stream=event_stream or "events", **policy)
    return OpenedSource(source, tuple(source.sensor_size), False, spec)


def load_fitted(path: str | Path, transforms, model_size: tuple[int, int] | None, *,
                sensor_size: tuple[int, int] | None = None, format: str | None = None, truncated: str | None = None,
                out_of_bounds: str = "error", non_monotonic: str = "error", layout: str | None = None,
                event_stream: str | None = None):
    """A whole event file as a `Recording`, through `transforms` (checked against `model_size` when
    given, as `stream.stream` does for streams): what verify, report and inspect read."""
    from neurodeploy.events import load
    from neurodeploy.events.transforms import Transforms, check_fits

    recording = load(path, sensor_size, format=format, truncated=truncated or "error", out_of_bounds=out_of_bounds,
                     non_monotonic=non_monotonic, layout=layout, stream=event_stream or "events")
    transforms = transforms or Transforms()
    if model_size is not None:
        check_fits(str(path), recording.sensor_size, transforms, model_size)
    return transforms(recording) if transforms else recording
