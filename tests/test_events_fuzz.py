"""Hypothesis fuzzing of every hand-written decoder: random and mutated bytes give EventFileError
or valid events, never another exception; feeding in chunks gives what feeding whole gives."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import neurodeploy.events as E
from neurodeploy.events.readers import incremental_decoder

# derandomize: CI runs the same examples every time, so a red run is reproducible
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                              HealthCheck.too_slow])


def _valid_file(fmt: str) -> bytes:
    import tempfile, os
    rng = np.random.default_rng(0)
    n = 60
    size = (128, 128) if fmt != "nmnist_bin" else (34, 34)
    ev = E.make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n),
                       np.sort(rng.integers(0, 100_000, n)), rng.integers(0, 2, n))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        E.save(E.Recording(ev, size), path, format=fmt)
        with open(path, "rb") as f:
            return f.read()


FORMATS = ["aedat2", "aedat3", "evt2", "evt2.1", "evt3", "dat", "nmnist_bin", "csv"]
VALID = {fmt: _valid_file(fmt) for fmt in FORMATS}


def _decode(fmt: str, data: bytes, chunks: list[int] | None = None):
    dec = incremental_decoder(fmt, "<fuzz>", None if fmt in ("nmnist_bin",) else None)
    out = []
    if chunks:
        pos = 0
        for c in chunks:
            out.append(dec.feed(data[pos:pos + c]))
            pos += c
        out.append(dec.feed(data[pos:]))
    else:
        out.append(dec.feed(data))
    out.append(dec.finish("count"))
    events = np.concatenate(out)
    assert events.dtype == E.EVENT_DTYPE
    return events, dec


def _check(fmt, data, chunks=None):
    try:
        events, dec = _decode(fmt, data, chunks)
    except E.EventFileError as exc:
        assert "<fuzz>" in str(exc)
        return None
    # whatever came out is well-formed; the bounds/ordering policies apply on top of it
    if dec.sensor_size is not None and len(events):
        checker = E.ReadPolicy("drop", "keep", "count")
        from neurodeploy.events.policy import PacketChecker
        kept = PacketChecker("<fuzz>", dec.sensor_size, checker, E.DecodeStats())(events)
        assert len(kept) <= len(events)
    return events


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.binary(max_size=2048))
def test_random_bytes(fmt, data):
    _check(fmt, data)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_mutated_valid_files(fmt, data):
    raw = bytearray(VALID[fmt])
    n_mut = data.draw(st.integers(0, 8))
    for _ in range(n_mut):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _check(fmt, bytes(raw[:cut]))


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_chunking_does_not_matter(fmt, data):
    raw = VALID[fmt]
    chunks = data.draw(st.lists(st.integers(1, 97), max_size=12))
    whole, _ = _decode(fmt, raw)
    parts, _ = _decode(fmt, raw, chunks)
    assert np.array_equal(whole, parts)


@pytest.mark.parametrize("fmt", FORMATS)
def test_valid_files_decode_to_sixty_events(fmt):
    events, _ = _decode(fmt, VALID[fmt])
    assert len(events) == 60


def test_huge_claimed_aedat3_packet_is_an_error_not_an_allocation():
    header = VALID["aedat3"].split(b"#!END-HEADER\r\n")[0] + b"#!END-HEADER\r\n"
    packet = np.array([(1, 1, 8, 4, 0, 2**30, 2**30, 2**30)], dtype=[("a", "<i2"), ("b", "<i2")] +
                      [(c, "<i4") for c in "cdefgh"]).tobytes()
    with pytest.raises(E.EventFileError, match="corrupt packet header"):
        _decode("aedat3", header + packet)
