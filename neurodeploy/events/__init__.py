"""Event I/O for neurodeploy: one event layout, readers and writers for the DVS file formats, live
sources, slicing and binning, and a synthetic DVS generator.

    rec = neurodeploy.events.load("x.aedat4")            # Recording(events, sensor_size)
    for packet in neurodeploy.events.open("x.raw"): ...  # EVENT_DTYPE packets
    frames = to_frames_n_bins(rec.events, rec.sensor_size, 300)   # (T, 2, H, W), tonic semantics
"""
from .binning import FrameBinner, ToFrames, to_frames_dt, to_frames_n_bins
from .convert import (AEDAT_DTYPE, DV_DTYPE, FAERY_DTYPE, TONIC_DTYPE, from_aedat, from_dv, from_faery,
                      from_structured, from_tonic, to_aedat, to_dv, to_faery, to_tonic)
from .denoise import Denoise, denoise
from .detect import FORMATS, detect_format
from .errors import DecodeStats, EventFileError
from .live import (CsvStreamSource, DvNetworkSource, FollowFile, UdpSource, csv_stdin_source, dv_network_source,
                   follow_file, send_udp, udp_source)
from .policy import ReadPolicy
from .readers import EventFileSource, load, open, save
from .slicing import EventWindow, Slicer, slice_events, slice_packets
from .labels import LabelSegment, labels_beside, read_label_file, read_labels, write_label_file
from .synthetic import NmnistLike, concatenate_samples, make_gesture_like, make_nmnist_like, write_labelled_recording
from .transforms import CenterCrop, Crop, Downsample, FlipX, FlipY, MergePolarity, Transforms
from .types import EVENT_DTYPE, Recording, empty_events, make_events

__all__ = [
    "EVENT_DTYPE", "Recording", "make_events", "empty_events",
    "EventFileError", "DecodeStats", "ReadPolicy",
    "load", "open", "save", "EventFileSource", "detect_format", "FORMATS",
    "TONIC_DTYPE", "FAERY_DTYPE", "AEDAT_DTYPE", "DV_DTYPE",
    "to_tonic", "from_tonic", "to_faery", "from_faery", "to_aedat", "from_aedat", "to_dv", "from_dv",
    "from_structured",
    "to_frames_dt", "to_frames_n_bins", "FrameBinner", "ToFrames", "denoise", "Denoise",
    "EventWindow", "Slicer", "slice_events", "slice_packets",
    "follow_file", "FollowFile", "dv_network_source", "DvNetworkSource", "udp_source", "UdpSource", "send_udp",
    "csv_stdin_source", "CsvStreamSource",
    "make_nmnist_like", "make_gesture_like", "NmnistLike", "concatenate_samples", "LabelSegment",
    "write_labelled_recording", "read_labels", "read_label_file", "write_label_file", "labels_beside",
    "Transforms", "Crop", "CenterCrop", "Downsample", "FlipX", "FlipY", "MergePolarity",
]
