"""Issue 21: no file, checkpoint, bundle or stream can crash, hang, exhaust or read past the toolkit.

Every hostile input here is made by the project's own writers and mutators (events.mutation),
never copied: the regression corpus is a list of (decoder, seed) pairs that once killed, hung or
escaped the error base in benchmarks/fuzz.py.
"""
from __future__ import annotations

import json
import os
import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import neurodeploy.events as E
from neurodeploy.errors import NeurodeployError
from neurodeploy.events.mutation import mutate, valid_file
from neurodeploy.events.readers import incremental_decoder

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LENIENT = {"out_of_bounds": "drop", "non_monotonic": "keep", "truncated": "count"}


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _events(n: int, size=(128, 128), span=2_000_000, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return E.make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n), np.sort(rng.integers(0, span, n)),
                         rng.integers(0, 2, n))


# -- regression corpus ---------------------------------------------------------------------------
# (kind, seed): mutants that aborted the interpreter before issue 21 (faery on a non-UTF-8 AEDAT4
# description: a pyo3 panic in a destructor), found by benchmarks/fuzz.py
CORPUS = [("aedat4", 679), ("aedat4_dv", 199), ("aedat4_dv", 403), ("aedat4_dv", 411), ("aedat4_dv", 577),
          ("aedat4_dv", 589), ("aedat4_dv", 765)]


@pytest.mark.parametrize("kind,seed", CORPUS)
def test_corpus_mutants_are_refused_cleanly(tmp_path, kind, seed):
    path = _write(tmp_path, "m.aedat4", mutate(valid_file(kind), np.random.default_rng(seed)))
    started = time.perf_counter()
    with pytest.raises(NeurodeployError, match="m.aedat4"):
        E.load(path, **(LENIENT if seed % 2 else {}))
    assert time.perf_counter() - started < 5


def test_aedat4_non_utf8_description_is_refused_before_faery(tmp_path):
    data = bytearray(valid_file("aedat4"))
    at = data.index(b"<dv version")
    data[at + 1] = 0xC3  # a lone UTF-8 lead byte inside the description
    with pytest.raises(E.EventFileError, match="IOHeader.*utf-8|utf-8.*IOHeader"):
        E.load(_write(tmp_path, "d.aedat4", bytes(data)))


def test_aedat4_short_type_identifier_is_refused(tmp_path):
    data = valid_file("aedat4_dv")
    forged = data.replace(b">EVTS<", b">EVT<  ", 1) if b">EVTS<" in data else data.replace(b'"EVTS"', b'"EVT"', 1)
    with pytest.raises(E.EventFileError):
        E.load(_write(tmp_path, "t.aedat4", forged))


@pytest.mark.parametrize("kind", ["aedat4", "aedat4_dv", "evt2", "evt2.1", "evt3", "dat", "npy", "npz"])
@FAST
@given(seed=st.integers(0, 2**32 - 1))
def test_library_and_container_decoders_fuzz(tmp_path_factory, kind, seed):
    """A hypothesis target per decoder that load() uses (the hand-written byte decoders are fuzzed
    chunk by chunk in test_events_fuzz.py): EventFileError or events, nothing else."""
    folder = tmp_path_factory.mktemp("fuzz")
    name = {"aedat4": "f.aedat4", "aedat4_dv": "f.aedat4", "npy": "f.npy", "npz": "f.npz"}.get(kind, "f.raw")
    fmt = {"aedat4_dv": "aedat4"}.get(kind, kind)
    path = _write(folder, name, mutate(valid_file(kind), np.random.default_rng(seed)))
    try:
        recording = E.load(path, format=fmt, sensor_size=(128, 128) if fmt == "npy" else None,
                           **(LENIENT if seed % 2 else {}))
    except E.EventFileError as err:
        assert str(path) in str(err)
    else:
        assert recording.events.dtype == E.EVENT_DTYPE


# -- one answer per recording ----------------------------------------------------------------------
def _going_back(fmt: str) -> bytes:
    """Three events at t = 64+20, 64+10 (back by 10 us: not a counter wrap), 64+30, written by hand."""
    times, x, y = [84, 74, 94], [1, 2, 3], [5, 6, 7]
    if fmt == "dat":
        head = b"% Data file containing CD events.\n% Version 2\n% Width 128\n% Height 128\n\x0c\x08"
        records = np.array([(t, xi | (yi << 14) | (1 << 28)) for t, xi, yi in zip(times, x, y)], "<u4")
        return head + records.tobytes()
    if fmt == "evt2":
        words = [(8 << 28) | 1] + [(1 << 28) | ((t & 63) << 22) | (xi << 11) | yi for t, xi, yi in zip(times, x, y)]
        return b"% evt 2.0\n% format EVT2;height=128;width=128\n% end\n" + np.array(words, "<u4").tobytes()
    words = [(8 << 60) | (1 << 32)] + [(1 << 60) | ((t & 63) << 54) | (xi << 43) | (yi << 32) | 1
                                       for t, xi, yi in zip(times, [0, 32, 64], y)]
    return b"% evt 2.1\n% format EVT21;height=128;width=128\n% end\n" + np.array(words, "<u8").tobytes()


@pytest.mark.parametrize("fmt", ["evt2", "evt2.1", "dat"])
def test_backwards_time_gives_one_answer_loaded_and_followed(tmp_path, fmt):
    """faery 0.7.1 clamped the step back to the previous time and counted nothing; now loading and
    following (the project's decoders both) raise under 'error' and count the same under 'keep'."""
    path = _write(tmp_path, "b.raw", _going_back(fmt))
    with pytest.raises(E.EventFileError, match="backwards"):
        E.load(path, format=fmt)
    with pytest.raises(E.EventFileError, match="backwards"):
        list(E.follow_file(path, format=fmt, idle_timeout_s=0.05))
    loaded = E.load(path, format=fmt, non_monotonic="keep")
    followed = E.follow_file(path, format=fmt, idle_timeout_s=0.05, non_monotonic="keep")
    events = np.concatenate(list(followed))
    assert loaded.stats.non_monotonic == followed.stats.non_monotonic == 1
    assert np.array_equal(loaded.events, events)
    assert loaded.events["t"].tolist() == [84, 74, 94]


@pytest.mark.parametrize("fmt", ["evt2", "evt2.1", "dat"])
def test_partial_last_record_is_an_error_or_counted(tmp_path, fmt):
    path = tmp_path / "p.raw"
    E.save(E.Recording(_events(100), (128, 128)), path, format=fmt)
    path.write_bytes(path.read_bytes() + b"\x01\x02\x03")
    with pytest.raises(E.EventFileError, match="ends inside a record"):
        E.load(path, format=fmt)
    assert E.load(path, format=fmt, truncated="count").stats.truncated_bytes == 3


def test_evt21_roundtrip_both_byte_orders(tmp_path):
    events = _events(4000, (640, 480), span=100_000_000_000)  # 27.8 h: the 34-bit (4.77 h) time wraps 5 times
    events["t"][:64] = events["t"][0]  # one burst in one microsecond: vectors
    recording = E.Recording(events, (640, 480))
    path = tmp_path / "e.raw"
    E.save(recording, path, format="evt2.1")
    assert E.detect_format(path) == "evt2.1"
    back = E.load(path)
    assert back == recording and back.stats.time_wraps == int(events["t"][-1]) >> 34 == 5
    # the IMX636 ("endianness=legacy") layout: the header half first, then the mask
    raw = path.read_bytes()
    body = raw.index(b"% end\n") + len(b"% end\n")
    halves = np.frombuffer(raw[body:], "<u4").reshape(-1, 2)[:, ::-1].copy()
    legacy = raw[:body].replace(b"width=640", b"width=640;endianness=legacy") + halves.tobytes()
    assert E.load(_write(tmp_path, "l.raw", legacy)) == recording
    # chunked decoding gives the same events
    decoder = incremental_decoder("evt2.1", "x")
    parts = [decoder.feed(raw[i:i + 101]) for i in range(0, len(raw), 101)] + [decoder.finish()]
    assert np.array_equal(np.concatenate(parts), events)


def test_header_saying_evt21_on_other_data_is_an_error_not_a_panic(tmp_path):
    path = tmp_path / "x.raw"
    E.save(E.Recording(_events(100), (128, 128)), path, format="evt3")
    forged = path.read_bytes().replace(b"evt 3.0", b"evt 2.1").replace(b"EVT3", b"EVT21")
    try:
        E.load(_write(tmp_path, "y.raw", forged), **LENIENT)
    except E.EventFileError:
        pass


def test_int64_extremes_in_the_monotonicity_check():
    from neurodeploy.events.policy import PacketChecker, ReadPolicy

    checker = PacketChecker("x", (10, 10), ReadPolicy(), E.DecodeStats())
    big = np.iinfo(np.int64).max
    forward = E.make_events([0, 1], [0, 0], [-big, big], [0, 1])  # forward by almost 2**64: was rejected
    assert len(checker(forward)) == 2
    checker = PacketChecker("x", (10, 10), ReadPolicy(), E.DecodeStats())
    backward = E.make_events([0, 1], [0, 0], [big, -big], [0, 1])  # back by almost 2**64: was accepted
    with pytest.raises(E.EventFileError, match="backwards"):
        checker(backward)


# -- .npy / .npz ------------------------------------------------------------------------------------
def test_npy_header_claiming_a_billion_events_is_refused_before_allocation(tmp_path):
    path = tmp_path / "e.npy"
    np.save(path, _events(10))
    forged = path.read_bytes().replace(b"(10,)", b"(1000000000,)")
    tracemalloc.start()
    with pytest.raises(E.EventFileError, match="claims 1000000000 elements"):
        E.load(_write(tmp_path, "f.npy", forged), sensor_size=(128, 128))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 << 20


def test_npz_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    header = b"\x93NUMPY\x01\x00v\x00{'descr': [('x', '<u2'), ('y', '<u2'), ('t', '<i8'), ('p', '|u1')], " \
             b"'fortran_order': False, 'shape': (10000000,), }"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("events.npy", header.ljust(128, b" ") + bytes(130_000_000))
    assert path.stat().st_size < 1 << 20
    started = time.perf_counter()
    with pytest.raises(E.EventFileError, match="inflates"):
        E.load(path)
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("header", [
    b"{'descr': '<i8', (",                                   # tokenize.TokenError
    b"{'descr': [('x', '<u2')], 'fortran_order': False, 'shape': (1e999,), }",  # not a shape
    b"{'descr': 'O', 'fortran_order': False, 'shape': (1,), }",                  # objects
    b"{'descr': [('x', 'V0')], 'fortran_order': False, 'shape': (99999999999999999999,), }",
    b"{'descr': 1 +, 'fortran_order': False, 'shape': (1,), }",                   # SyntaxError
])
def test_npy_header_errors_are_event_file_errors(tmp_path, header):
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + 1) + header + b"\n"
    with pytest.raises(E.EventFileError, match="x.npy"):
        E.load(_write(tmp_path, "x.npy", data + bytes(64)), sensor_size=(4, 4))
