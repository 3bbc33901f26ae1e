""".npy / .npz event arrays. Never unpickles (allow_pickle=False). An .npz may carry 'sensor_size'
beside 'events'; an .npy carries no sensor size, so it must be passed."""
from __future__ import annotations

import os
import zipfile

import numpy as np

from .convert import from_structured
from .errors import EventFileError


def read(path) -> tuple[np.ndarray, tuple[int, int] | None]:
    try:
        loaded = np.load(os.fspath(path), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise EventFileError(path, f"numpy cannot read it: {exc}", offset=0,
                             fix="the file is truncated, not a .npy/.npz, or holds Python objects (never unpickled)") \
            from exc
    size = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if "events" not in loaded.files:
                raise EventFileError(path, f"no 'events' array (arrays: {loaded.files})", field="events",
                                     fix="save with neurodeploy.events.save() or np.savez(events=..., sensor_size=...)")
            try:
                array = loaded["events"]
                if "sensor_size" in loaded.files:
                    s = np.asarray(loaded["sensor_size"]).ravel()
                    if len(s) < 2:
                        raise EventFileError(path, f"sensor_size {s.tolist()} is not (width, height)",
                                             field="sensor_size", fix="store sensor_size as [width, height]")
                    size = (int(s[0]), int(s[1]))
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise EventFileError(path, f"numpy cannot read an array: {exc}", fix="the file is corrupt") from exc
    else:
        array = loaded
    if array.dtype.names is None:
        raise EventFileError(path, f"array of dtype {array.dtype} has no named fields", field="dtype",
                             fix="store a structured array with fields x, y, t, p")
    try:
        return from_structured(array.ravel()), size
    except ValueError as exc:
        raise EventFileError(path, str(exc), field="dtype", fix="store a structured array with fields x, y, t, p") \
            from exc


def write(path, events: np.ndarray, sensor_size: tuple[int, int] | None) -> None:
    path = os.fspath(path)
    if path.endswith(".npz"):
        if sensor_size is None:
            np.savez(path, events=events)
        else:
            np.savez(path, events=events, sensor_size=np.asarray(sensor_size, np.int64))
    else:
        np.save(path, events, allow_pickle=False)
