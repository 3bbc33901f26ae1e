"""Event I/O for neurodeploy: one event layout, readers and writers for the DVS file formats, live
sources, slicing and binning, and a synthetic DVS generator."""
from .convert import (AEDAT_DTYPE, DV_DTYPE, FAERY_DTYPE, TONIC_DTYPE, from_aedat, from_dv, from_faery,
                      from_structured, from_tonic, to_aedat, to_dv, to_faery, to_tonic)
from .detect import FORMATS, detect_format
from .errors import DecodeStats, EventFileError
from .policy import ReadPolicy
from .readers import EventFileSource, load, open, save
from .types import EVENT_DTYPE, Recording, empty_events, make_events

__all__ = [
    "EVENT_DTYPE", "Recording", "make_events", "empty_events",
    "EventFileError", "DecodeStats", "ReadPolicy",
    "load", "open", "save", "EventFileSource", "detect_format", "FORMATS",
    "TONIC_DTYPE", "FAERY_DTYPE", "AEDAT_DTYPE", "DV_DTYPE",
    "to_tonic", "from_tonic", "to_faery", "from_faery", "to_aedat", "from_aedat", "to_dv", "from_dv",
    "from_structured",
]
