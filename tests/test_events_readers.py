import numpy as np
import pytest

import neurodeploy.events as E
from neurodeploy.events import synthetic


@pytest.fixture(scope="module")
def sample():
    samples = synthetic.make_gesture_like(2, seed=5, duration_us=200_000, size=128)
    rec, _ = synthetic.concatenate_samples(samples)
    ev = rec.events.copy()
    ev["t"] += 1_000  # nothing at 0, so zero_t0-style shifts would show
    return E.Recording(ev, (128, 128))


WRITERS = [
    ("a.aedat4", {"library": "faery"}, "aedat4"),
    ("b.aedat4", {"library": "dv"}, "aedat4"),
    ("c.raw", {"format": "evt2"}, "evt2"),
    ("d.raw", {"format": "evt3"}, "evt3"),
    ("e.dat", {}, "dat"),
    ("f.aedat", {"format": "aedat3"}, "aedat3"),
    ("g.aedat", {"format": "aedat2", "layout": "dvs128"}, "aedat2"),
    ("h.csv", {}, "csv"),
    ("i.npz", {}, "npz"),
]


@pytest.mark.parametrize("name, kwargs, fmt", WRITERS)
def test_round_trip(tmp_path, sample, name, kwargs, fmt):
    path = tmp_path / name
    E.save(sample, path, **kwargs)
    assert E.detect_format(path) == fmt
    back = E.load(path)
    assert back.sensor_size == sample.sensor_size
    assert np.array_equal(back.events, sample.events)
    packets = list(E.open(path))
    assert np.array_equal(np.concatenate(packets), sample.events)


def test_round_trip_nmnist_bin(tmp_path):
    rec, _ = synthetic.make_nmnist_like(1, seed=2)[0]
    E.save(rec, tmp_path / "x.bin")
    back = E.load(tmp_path / "x.bin")
    assert back == rec and back.sensor_size == (34, 34)


def test_round_trip_npy_needs_size(tmp_path, sample):
    E.save(sample, tmp_path / "x.npy")
    with pytest.raises(E.EventFileError, match="sensor_size"):
        E.load(tmp_path / "x.npy")
    assert E.load(tmp_path / "x.npy", sensor_size=(128, 128)) == sample


def test_sensor_size_override_and_header(tmp_path, sample):
    E.save(sample, tmp_path / "x.raw")
    assert E.load(tmp_path / "x.raw", sensor_size=(200, 150)).sensor_size == (200, 150)
    with pytest.raises(E.EventFileError, match="outside the sensor"):
        E.load(tmp_path / "x.raw", sensor_size=(100, 100))
    dropped = E.load(tmp_path / "x.raw", sensor_size=(100, 100), out_of_bounds="drop")
    assert dropped.stats.out_of_bounds + len(dropped) == len(sample)


def test_evt3_wrap_sparse_and_faery_bug(tmp_path):
    """Sparse events over 50 min: the 24-bit EVT3 time wraps 178 times. Our decoder unrolls and
    counts each wrap; faery 0.7.1's decoder clamps after the first (why load() decodes EVT3 itself)."""
    rng = np.random.default_rng(0)
    n = 20000
    ev = E.make_events(rng.integers(0, 128, n), rng.integers(0, 128, n),
                       np.sort(rng.integers(0, 3_000_000_000, n)), rng.integers(0, 2, n))
    rec = E.Recording(ev, (128, 128))
    E.save(rec, tmp_path / "w.raw", format="evt3")
    back = E.load(tmp_path / "w.raw")
    assert back == rec
    assert back.stats.time_wraps == 3_000_000_000 // (1 << 24) or back.stats.time_wraps > 170
    import faery
    with faery.evt.Decoder(str(tmp_path / "w.raw"), dimensions_fallback=None, version_fallback="evt3") as decoder:
        faery_events = E.from_faery(np.concatenate([p["events"] for p in decoder if p.get("events") is not None]))
    if np.array_equal(faery_events, ev):
        pytest.fail("faery now decodes sparse EVT3 wraps correctly: load() may use it again for EVT3")


def test_aedat3_overflow_counted(tmp_path):
    n = 3000
    t = np.sort(np.random.default_rng(1).integers(0, 6_000_000_000, n))
    ev = E.make_events(np.arange(n) % 128, np.arange(n) % 100, t, np.arange(n) % 2)
    rec = E.Recording(ev, (128, 100))
    E.save(rec, tmp_path / "o.aedat", format="aedat3")
    back = E.load(tmp_path / "o.aedat")
    assert back == rec
    assert back.stats.time_wraps == int(t[-1] >> 31) - int(t[0] >> 31)


def test_aedat2_davis_layout(tmp_path):
    n = 500
    rng = np.random.default_rng(3)
    ev = E.make_events(rng.integers(0, 346, n), rng.integers(0, 260, n), np.sort(rng.integers(0, 10**6, n)),
                       rng.integers(0, 2, n))
    rec = E.Recording(ev, (346, 260))
    E.save(rec, tmp_path / "d.aedat", format="aedat2", layout="davis")
    assert E.load(tmp_path / "d.aedat") == rec
    # an APS sample (bit 31) is skipped and counted, not decoded as an event
    with open(tmp_path / "d.aedat", "ab") as f:
        f.write(np.array([(1 << 31 | 5, 10**6 + 1)], dtype=[("a", ">u4"), ("t", ">u4")]).tobytes())
    back = E.load(tmp_path / "d.aedat")
    assert back == rec and back.stats.skipped_events == 1


def test_truncated_file_error_and_count(tmp_path, sample):
    E.save(sample, tmp_path / "t.aedat", format="aedat2")
    data = (tmp_path / "t.aedat").read_bytes()
    (tmp_path / "t.aedat").write_bytes(data[:-3])
    with pytest.raises(E.EventFileError, match=r"at byte \d+"):
        E.load(tmp_path / "t.aedat")
    back = E.load(tmp_path / "t.aedat", truncated="count")
    assert back.stats.truncated_bytes == 5 and len(back) == len(sample) - 1


def test_backwards_timestamps(tmp_path):
    ev = E.make_events([1, 2, 3], [1, 1, 1], [10, 5, 20], [1, 0, 1])
    E.save(E.Recording(ev, (34, 34)), tmp_path / "b.bin")
    with pytest.raises(E.EventFileError, match="backwards"):
        E.load(tmp_path / "b.bin")
    kept = E.load(tmp_path / "b.bin", non_monotonic="keep")
    assert kept.stats.non_monotonic == 1 and kept.events["t"].tolist() == [10, 5, 20]
    assert E.load(tmp_path / "b.bin", non_monotonic="sort").events["t"].tolist() == [5, 10, 20]


@pytest.mark.parametrize("content, name", [
    (b"#!AER-DAT3.1\r\n#Source 1: DVS128\r\ngarbage", "x.aedat"),          # header never ends
    (b"#!AER-DAT9.0\r\n", "x.aedat"),                                        # unknown version
    (b"% evt 3.0\n% geometry 10x10\n", "y.txtx"),                            # fine, empty
    (b"\x00\x01\x02garbage", "z.unknown"),                                   # no magic, no extension
    (b"#!AER-DAT4.0\r\n\x00\x00\x10\x00garbage", "w.aedat4"),                # AEDAT4 garbage header
    (b"\x93NUMPY\x01\x00garbage", "v.npy"),                                  # corrupt npy
    (b"t,x,y,p\n1,2,3\n", "u.csv"),                                          # short CSV line
])
def test_hostile_files(tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    try:
        rec = E.load(path)
    except E.EventFileError as exc:
        assert str(path) in str(exc)
    else:
        assert len(rec) == 0


def test_csv_header_sizes(tmp_path):
    (tmp_path / "a.csv").write_text("# width=20 height=10\nx,y,t,p\n1,2,3,1\n4,5,6,0")
    rec = E.load(tmp_path / "a.csv")
    assert rec.sensor_size == (20, 10)
    assert rec.events.tolist() == [(1, 2, 3, 1), (4, 5, 6, 0)]
    (tmp_path / "b.csv").write_text("1,2,3,1\n")
    with pytest.raises(E.EventFileError, match="sensor_size"):
        E.load(tmp_path / "b.csv")
