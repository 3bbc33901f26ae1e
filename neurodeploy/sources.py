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

from neurodeploy.events.synthetic import LabelSegment, read_labels


@dataclass(frozen=True)
class OpenedSource:
    packets: Iterable[np.ndarray]
    sensor_size: tuple[int, int]
    live: bool  # read on a thread through a bounded queue
    name: str


def open_source(spec: str, *, sensor_size: tuple[int, int] | None = None, follow: bool = False,
                format: str | None = None, idle_timeout_s: float = 2.0,
                truncated: str | None = None, out_of_bounds: str = "error", non_monotonic: str = "error") -> OpenedSource:
    """Resolve `spec` to a packet iterator with its sensor size (see the module docstring).

    `truncated`, `out_of_bounds` and
    `non_monotonic` are the reading policy (`events.ReadPolicy`); `truncated=None` keeps each
    source's default ('error' for files, 'count' for followed files and stdin, which may stop anywhere)."""
    return _open_raw(spec, sensor_size=sensor_size, follow=follow, format=format, idle_timeout_s=idle_timeout_s,
                     policy={k: v for k, v in dict(truncated=truncated, out_of_bounds=out_of_bounds,
                                                   non_monotonic=non_monotonic).items() if v is not None})


def fit_source(opened: OpenedSource, transforms, model_size: tuple[int, int]) -> OpenedSource:
    """Apply `transforms` (an `events.transforms.Transforms`) to every packet of an opened source,
    file or live alike, after checking that they turn its sensor into the model's input size
    (the error names the flags that would)."""
    from neurodeploy.events.transforms import TransformedSource, check_fits

    check_fits(opened.name, opened.sensor_size, transforms, model_size)
    if not transforms:
        return opened
    source = TransformedSource(opened.packets, opened.sensor_size, transforms)
    return OpenedSource(source, source.sensor_size, opened.live, opened.name)


def _open_raw(spec: str, *, sensor_size, follow, format, idle_timeout_s, policy) -> OpenedSource:
    from neurodeploy.events import live, readers

    reading = {k: v for k, v in policy.items() if k != "truncated"}

    if spec == "-":
        source = live.csv_stdin_source(sensor_size=sensor_size, **policy)
        return OpenedSource(source, source.sensor_size, True, "<stdin>")
    if "://" in spec:
        url = urlparse(spec)
        if url.scheme == "tcp":
            if not url.hostname or not url.port:
                raise ValueError(f"{spec}: expected tcp://HOST:PORT")
            source = live.dv_network_source(url.hostname, url.port, sensor_size=sensor_size, **reading)
        elif url.scheme == "unix":
            path = url.path or url.netloc
            source = live.dv_network_source(socket_path=path, sensor_size=sensor_size, **reading)
        elif url.scheme == "udp":
            if not url.hostname or not url.port:
                raise ValueError(f"{spec}: expected udp://HOST:PORT")
            if sensor_size is None:
                raise ValueError(f"{spec}: UDP datagrams carry no sensor size; pass --sensor-size WIDTHxHEIGHT")
            source = live.udp_source(url.hostname, url.port, sensor_size, idle_timeout_s=idle_timeout_s,
                                     out_of_bounds=policy.get("out_of_bounds", "error"))
        else:
            raise ValueError(f"{spec}: unknown scheme {url.scheme!r}; use tcp://, unix://, udp://, a file path or -")
        return OpenedSource(source, tuple(source.sensor_size), True, spec)
    if not Path(spec).exists() and not follow:
        raise FileNotFoundError(f"{spec}: no such event file")
    if follow:
        source = live.follow_file(spec, sensor_size, format=format, idle_timeout_s=idle_timeout_s, **policy)
        return OpenedSource(source, tuple(source.sensor_size), True, spec)
    source = readers.open(spec, sensor_size, format=format, **policy)
    return OpenedSource(source, tuple(source.sensor_size), False, spec)


def labels_beside(spec: str) -> Path | None:
    """`<file>.labels.csv` next to an event file (as `write_labelled_recording` writes it)."""
    if spec == "-" or "://" in spec:
        return None
    path = Path(f"{spec}.labels.csv")
    return path if path.is_file() else None


def read_label_file(path: str | Path) -> tuple[LabelSegment, ...]:
    """A CSV of `t_start_us,t_end_us,label` rows (header line first)."""
    path = Path(path)
    name = str(path)
    if name.endswith(".labels.csv"):
        segments = read_labels(name[: -len(".labels.csv")])
    else:
        rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
        segments = [LabelSegment(int(a), int(b), int(c)) for a, b, c in rows]
    for i, (a, b) in enumerate(zip(segments, segments[1:])):
        if b.t_start_us < a.t_end_us:
            raise ValueError(f"{path}: segment {i + 1} starts at {b.t_start_us} us, before segment {i} ends "
                             f"({a.t_end_us} us); labelled samples must not overlap")
    for i, s in enumerate(segments):
        if s.t_end_us <= s.t_start_us:
            raise ValueError(f"{path}: segment {i} ends ({s.t_end_us} us) before it starts ({s.t_start_us} us)")
    return tuple(segments)


def load_fitted(path: str | Path, transforms, model_size: tuple[int, int] | None, *,
                sensor_size: tuple[int, int] | None = None, format: str | None = None, truncated: str | None = None,
                out_of_bounds: str = "error", non_monotonic: str = "error"):
    """A whole event file as a `Recording`, through `transforms` (checked against `model_size` when
    given, as `fit_source` does for streams): what verify, report and inspect read."""
    from neurodeploy.events import load
    from neurodeploy.events.transforms import Transforms, check_fits

    recording = load(path, sensor_size, format=format, truncated=truncated or "error", out_of_bounds=out_of_bounds,
                     non_monotonic=non_monotonic)
    transforms = transforms or Transforms()
    if model_size is not None:
        check_fits(str(path), recording.sensor_size, transforms, model_size)
    return transforms(recording) if transforms else recording
