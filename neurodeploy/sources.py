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
                format: str | None = None, idle_timeout_s: float = 2.0) -> OpenedSource:
    """Resolve `spec` to a packet iterator with its sensor size (see the module docstring)."""
    from neurodeploy.events import live, readers

    if spec == "-":
        source = live.csv_stdin_source(sensor_size=sensor_size)
        return OpenedSource(source, source.sensor_size, True, "<stdin>")
    if "://" in spec:
        url = urlparse(spec)
        if url.scheme == "tcp":
            if not url.hostname or not url.port:
                raise SourceError(f"{spec}: expected tcp://HOST:PORT")
            source = live.dv_network_source(url.hostname, url.port, sensor_size=sensor_size)
        elif url.scheme == "unix":
            path = url.path or url.netloc
            source = live.dv_network_source(socket_path=path, sensor_size=sensor_size)
        elif url.scheme == "udp":
            if not url.hostname or not url.port:
                raise SourceError(f"{spec}: expected udp://HOST:PORT")
            if sensor_size is None:
                raise SourceError(f"{spec}: UDP datagrams carry no sensor size; pass --sensor-size WIDTHxHEIGHT")
            source = live.udp_source(url.hostname, url.port, sensor_size, idle_timeout_s=idle_timeout_s)
        else:
            raise SourceError(f"{spec}: unknown scheme {url.scheme!r}; use tcp://, unix://, udp://, a file path or -")
        return OpenedSource(source, tuple(source.sensor_size), True, spec)
    if not Path(spec).exists() and not follow:
        raise MissingFileError(f"{spec}: no such event file")
    if follow:
        source = live.follow_file(spec, sensor_size, format=format, idle_timeout_s=idle_timeout_s)
        return OpenedSource(source, tuple(source.sensor_size), True, spec)
    source = readers.open(spec, sensor_size, format=format)
    return OpenedSource(source, tuple(source.sensor_size), False, spec)
