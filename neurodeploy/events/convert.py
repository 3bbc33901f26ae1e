"""Converters between EVENT_DTYPE and the layouts of tonic, faery, aedat and dv-processing."""
from __future__ import annotations

import numpy as np

from .types import EVENT_DTYPE, make_events

# tonic's datasets use plain Python ints for every field (np.dtype(int) == int64).
TONIC_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
# faery and the `aedat` package share this layout: t u64, x u16, y u16, on bool (13 bytes packed).
FAERY_DTYPE = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), (("p", "on"), "?")])
AEDAT_DTYPE = FAERY_DTYPE
# dv-processing's EventStore.numpy() layout.
DV_DTYPE = np.dtype({"names": ["timestamp", "x", "y", "polarity"],
                     "formats": ["<i8", "<i2", "<i2", "i1"], "offsets": [0, 8, 10, 12], "itemsize": 16})

_DV_AS_OURS = np.dtype({"names": ["x", "y", "t", "p"], "formats": ["<i2", "<i2", "<i8", "i1"],
                        "offsets": [8, 10, 0, 12], "itemsize": 16})
_T_MAX = np.iinfo(np.int64).max


def _from_columns(x, y, t, p) -> np.ndarray:
    t = np.asarray(t)
    if t.dtype.kind == "u" and len(t) and int(t.max()) > _T_MAX:
        raise ValueError("timestamps above 2**63-1 us cannot be held in EVENT_DTYPE")
    for name, col in (("x", x), ("y", y)):
        col = np.asarray(col)
        if len(col) and (int(col.min()) < 0 or int(col.max()) > 65535):
            raise ValueError(f"{name} coordinates outside 0..65535 cannot be held in EVENT_DTYPE")
    return make_events(x, y, t, p)


def from_structured(array: np.ndarray) -> np.ndarray:
    """Any structured event array (ours, tonic's, faery/aedat's, dv-processing's) -> EVENT_DTYPE.

    Polarity: p/on/polarity > 0 is ON, so tonic's -1/1 polarity also maps to 0/1.
    """
    names = set(array.dtype.names or ())
    if array.dtype == EVENT_DTYPE:
        return array
    if {"x", "y", "t", "p"} <= names:
        return _from_columns(array["x"], array["y"], array["t"], array["p"])
    if {"x", "y", "t", "on"} <= names:
        return _from_columns(array["x"], array["y"], array["t"], array["on"])
    if {"x", "y", "timestamp", "polarity"} <= names:
        return _from_columns(array["x"], array["y"], array["timestamp"], array["polarity"])
    raise ValueError(f"cannot tell the event fields of dtype {array.dtype}: expected x, y, t and p "
                     "(or on / timestamp, polarity)")


def to_tonic(events: np.ndarray) -> np.ndarray:
    return events.astype(TONIC_DTYPE)


def from_tonic(array: np.ndarray) -> np.ndarray:
    return from_structured(array)


def to_faery(events: np.ndarray) -> np.ndarray:
    if len(events) and int(events["t"].min()) < 0:
        raise ValueError("faery needs non-negative timestamps (u64)")
    out = np.empty(len(events), dtype=FAERY_DTYPE)
    out["t"] = events["t"]
    out["x"] = events["x"]
    out["y"] = events["y"]
    out["on"] = events["p"] > 0
    return out


def from_faery(array: np.ndarray) -> np.ndarray:
    return from_structured(array)


to_aedat = to_faery
from_aedat = from_faery


def from_dv(store) -> np.ndarray:
    """A dv_processing EventStore (or its .numpy() array) -> EVENT_DTYPE."""
    array = store.numpy() if hasattr(store, "numpy") else store
    if len(array) == 0:
        return np.zeros(0, dtype=EVENT_DTYPE)
    if array.dtype == DV_DTYPE:
        # a field-reordered view cast by position: one pass, no per-field copies
        view = array.view(_DV_AS_OURS)
        if int(view["x"].min()) < 0 or int(view["y"].min()) < 0:
            raise ValueError("negative coordinates from dv-processing")
        out = view.astype(EVENT_DTYPE)
        if int(out["p"].max()) > 1:
            out["p"] = out["p"] > 0
        return out
    return from_structured(array)


def to_dv(events: np.ndarray):
    """EVENT_DTYPE -> dv_processing.EventStore.

    dv-processing 2.0's Python binding has no bulk constructor from numpy, so this pushes event by
    event (about 2 M events/s); use faery to write large AEDAT4 files.
    """
    import dv_processing as dv

    if len(events) and (int(events["x"].max()) > 32767 or int(events["y"].max()) > 32767):
        raise ValueError("dv-processing stores x/y as int16: coordinates above 32767 do not fit")
    store = dv.EventStore()
    push = store.push_back
    for t, x, y, p in zip(events["t"].tolist(), events["x"].tolist(), events["y"].tolist(),
                          (events["p"] > 0).tolist()):
        push(t, x, y, p)
    return store
