import numpy as np
import pytest

import neurodeploy.events as E
from neurodeploy.events import binning, slicing, synthetic
from neurodeploy.events.denoise import Denoise, denoise

tonic = pytest.importorskip("tonic")


@pytest.fixture(scope="module")
def rec():
    return synthetic.make_nmnist_like(1, seed=11)[0][0]


def _tonic_frames(events, sensor_size, **kw):
    import tonic.transforms as T
    return T.ToFrame(sensor_size=(*sensor_size, 2), **kw)(E.to_tonic(events))


@pytest.mark.parametrize("n_bins", [1, 7, 300])
@pytest.mark.parametrize("overlap", [0.0, 0.25])
def test_n_time_bins_matches_tonic(rec, n_bins, overlap):
    ours = binning.to_frames_n_bins(rec.events, rec.sensor_size, n_bins, overlap=overlap)
    theirs = _tonic_frames(rec.events, rec.sensor_size, n_time_bins=n_bins, overlap=overlap)
    assert ours.dtype == theirs.dtype == np.int16
    assert ours.shape == theirs.shape == (n_bins, 2, 34, 34)
    assert np.array_equal(ours, theirs)


def test_n_time_bins_edge_cases_match_tonic():
    # duration divisible by n: tonic drops the last event; duration < n: all bins empty
    ev = E.make_events([0, 1, 2], [0, 0, 1], [100, 150, 400], [0, 1, 1])
    for n in (3, 500):
        assert np.array_equal(binning.to_frames_n_bins(ev, (4, 4), n), _tonic_frames(ev, (4, 4), n_time_bins=n))


@pytest.mark.parametrize("dt", [1000, 3333, 10_000])
def test_dt_frames_match_tonic_time_window(rec, dt):
    ev = rec.events
    if (int(ev["t"][-1]) - int(ev["t"][0])) % dt == 0:
        pytest.skip("tonic drops an event that ends exactly on a window edge")
    ours = binning.to_frames_dt(ev, rec.sensor_size, dt)
    theirs = _tonic_frames(ev, rec.sensor_size, time_window=dt, include_incomplete=True)
    assert np.array_equal(ours, theirs)
    assert ours.sum() == len(ev)


def test_frame_binner_streaming_equals_offline(rec):
    binner = binning.FrameBinner(rec.sensor_size, 1000)
    frames = [binner.push(p) for p in np.array_split(rec.events, 17)] + [binner.flush()]
    assert np.array_equal(np.concatenate(frames), binning.to_frames_dt(rec.events, rec.sensor_size, 1000))


def test_int16_overflow_raises():
    ev = E.make_events(np.zeros(40000, int), np.zeros(40000, int), np.zeros(40000, int), np.ones(40000, int))
    with pytest.raises(OverflowError):
        binning.to_frames_dt(ev, (2, 2), 1000)
    assert binning.to_frames_dt(ev, (2, 2), 1000, dtype=np.float32)[0, 1, 0, 0] == 40000


def test_denoise_matches_tonic(rec):
    import tonic.functional as F
    ev = rec.events.copy()
    ev["t"] += 20_000  # also past the start-up quirk
    for events in (rec.events, ev):
        for ft in (1000, 10_000):
            assert np.array_equal(denoise(events, ft), F.denoise_numpy(events, ft))


def test_slicing_time_empty_windows_and_partial():
    ev = E.make_events([1, 2, 3, 4], [0] * 4, [0, 5, 35, 41], [1] * 4)
    windows = slicing.slice_events(ev, delta_t_us=10)
    assert [len(w) for w in windows] == [2, 0, 0, 1, 1]
    assert [w.t_start_us for w in windows] == [0, 10, 20, 30, 40]
    assert [len(w) for w in slicing.slice_events(ev, delta_t_us=10, keep_partial=False)] == [2, 0, 0, 1]
    over = slicing.slice_events(ev, delta_t_us=10, overlap=5, keep_partial=False)
    assert [w.t_start_us for w in over] == [0, 5, 10, 15, 20, 25, 30] and [len(w) for w in over][:2] == [2, 1]


def test_slicing_count_and_mixed():
    ev = E.make_events(np.arange(10), np.zeros(10, int), np.arange(10) * 10, np.ones(10, int))
    assert [len(w) for w in slicing.slice_events(ev, n_events=4)] == [4, 4, 2]
    assert [len(w) for w in slicing.slice_events(ev, n_events=4, keep_partial=False)] == [4, 4]
    assert [len(w) for w in slicing.slice_events(ev, n_events=4, overlap=2)] == [4, 4, 4, 4]
    mixed = slicing.slice_events(ev, delta_t_us=25, n_events=2)
    assert sum(len(w) for w in mixed) == 10 and max(len(w) for w in mixed) <= 2


def test_slicing_streaming_equals_offline(rec):
    offline = slicing.slice_events(rec.events, delta_t_us=5000, overlap=1000)
    streamed = list(slicing.slice_packets(np.array_split(rec.events, 9), delta_t_us=5000, overlap=1000))
    assert len(offline) == len(streamed)
    assert all(np.array_equal(a.events, b.events) for a, b in zip(offline, streamed))


def test_transforms(rec):
    frames = binning.ToFrames(rec.sensor_size, n_time_bins=10)(Denoise(10_000)(rec))
    assert frames.shape == (10, 2, 34, 34)
