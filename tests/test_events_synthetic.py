import numpy as np

import neurodeploy.events as E
from neurodeploy.events import synthetic


def test_nmnist_like_deterministic_balanced_and_sized():
    a = synthetic.make_nmnist_like(20, seed=3)
    b = synthetic.make_nmnist_like(20, seed=3)
    assert all(x[0] == y[0] and x[1] == y[1] for x, y in zip(a, b))
    assert sorted(lab for _, lab in a) == sorted(list(range(10)) * 2)
    counts = [len(r) for r, _ in a]
    assert 2500 < np.mean(counts) < 6000
    for rec, _ in a:
        assert rec.sensor_size == (34, 34)
        assert np.all(np.diff(rec.events["t"]) >= 0) and rec.events["t"][-1] <= 300_000
    c = synthetic.make_nmnist_like(25, seed=3)
    assert all(x[0] == y[0] and x[1] == y[1] for x, y in zip(a, c))   # prefix stable in n_samples
    assert synthetic.make_nmnist_like(1, seed=4)[0][0] != a[0][0]


def test_dataset_class_matches_list():
    ds = synthetic.NmnistLike(5, seed=1)
    lst = synthetic.make_nmnist_like(5, seed=1)
    assert all(ds[i][0] == lst[i][0] and ds[i][1] == lst[i][1] for i in (4, 0, 2))


def test_gesture_like():
    samples = synthetic.make_gesture_like(11, seed=0, duration_us=200_000)
    assert sorted(lab for _, lab in samples) == list(range(11))
    assert all(r.sensor_size == (128, 128) and len(r) > 500 for r, _ in samples)


def test_pixel_model_polarity_and_refractory():
    frames = np.linspace(0.1, 1.0, 51, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    model = synthetic.PixelModel(threshold=0.2, threshold_spread=0.0, refractory_us=0, noise_rate_hz=0)
    ev = synthetic.simulate(frames, 1000, model, np.random.default_rng(0))
    assert np.all(ev["p"] == 1) and len(ev) == 4 * int(np.log(1.05 / 0.15) / 0.2)
    slow = synthetic.simulate(frames, 1000, synthetic.PixelModel(0.2, 0.0, 20_000, 0), np.random.default_rng(0))
    assert len(slow) < len(ev)


def test_concatenate_and_labelled_file(tmp_path):
    samples = synthetic.make_nmnist_like(3, seed=9)
    rec, segs = synthetic.write_labelled_recording(tmp_path / "s.raw", samples, gap_us=1000)
    assert [s.label for s in segs] == [lab for _, lab in samples]
    assert segs[1].t_start_us == segs[0].t_end_us + 1000
    assert E.read_labels(tmp_path / "s.raw") == segs
    assert E.load(tmp_path / "s.raw") == rec
    for (sample, _), seg in zip(samples, segs):
        inside = (rec.events["t"] >= seg.t_start_us) & (rec.events["t"] < seg.t_end_us)
        assert inside.sum() == len(sample)
