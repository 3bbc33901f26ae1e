"""Spatial transforms against tonic 1.7 (the test oracle), packet by packet against whole recordings."""
import numpy as np
import pytest

tonic = pytest.importorskip("tonic")
import tonic.functional  # noqa: E402
import tonic.transforms as TT  # noqa: E402

import neurodeploy.events as E  # noqa: E402
from neurodeploy.events import transforms as T  # noqa: E402


def _camera(width, height, n=20000, seed=0, t0=50_000):
    rng = np.random.default_rng(seed)
    # clustered activity (an edge moving) plus background noise, the way a camera's events look
    t = np.sort(rng.integers(t0, t0 + 400_000, n))
    cx = (np.linspace(0.2, 0.8, n) * width).astype(np.int64)
    x = np.clip(cx + rng.integers(-3, 4, n), 0, width - 1)
    y = np.clip((height // 2) + rng.integers(-height // 3, height // 3, n), 0, height - 1)
    noise = rng.random(n) < 0.2
    x[noise] = rng.integers(0, width, noise.sum())
    y[noise] = rng.integers(0, height, noise.sum())
    return E.Recording(E.make_events(x, y, t, rng.integers(0, 2, n)), (width, height))


def _same(ours: np.ndarray, theirs: np.ndarray):
    assert len(ours) == len(theirs)
    for f in "xytp":
        assert np.array_equal(ours[f].astype(np.int64), theirs[f].astype(np.int64)), f


SIZES = [(346, 260), (640, 480), (1280, 720)]


@pytest.mark.parametrize("size", SIZES)
def test_downsample_to_target_equals_tonic(size):
    rec = _camera(*size)
    ours = T.Downsample(target=(34, 34))(rec)
    theirs = TT.Downsample(sensor_size=(*size, 2), target_size=(34, 34))(rec.events)
    _same(ours.events, theirs)
    assert ours.sensor_size == (34, 34)
    assert len(ours) == len(rec)  # nothing removed: counts pool when binned


@pytest.mark.parametrize("factor", [0.1, 0.25, 0.5])
def test_downsample_by_factor_equals_tonic(factor):
    rec = _camera(346, 260)
    ours = T.Downsample(factor=factor)(rec)
    _same(ours.events, TT.Downsample(spatial_factor=factor)(rec.events))
    assert ours.sensor_size == (int(345 * factor) + 1, int(259 * factor) + 1)
    assert ours.events["x"].max() < ours.sensor_size[0] and ours.events["y"].max() < ours.sensor_size[1]


@pytest.mark.parametrize("crop", [(34, 34), (100, 50), (400, 300)])
def test_center_crop_equals_tonic(crop):
    rec = _camera(346, 260)
    # tonic pads a crop larger than the sensor by moving events; it needs signed x/y to do so
    wide = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "u1")])
    theirs = TT.CenterCrop(sensor_size=(346, 260, 2), size=list(crop))(rec.events.astype(wide))
    ours = T.CenterCrop(*crop)(rec)
    _same(ours.events, theirs)
    assert ours.sensor_size == crop


def test_crop_box_equals_tonic_crop_with_fixed_start(monkeypatch):
    rec = _camera(640, 480)
    box = (200, 100, 64, 48)
    # tonic's crop_numpy draws the start as int(rand() * (W - w)); fix rand to land on our box
    fractions = iter([(box[0] + 0.5) / (640 - 64), (box[1] + 0.5) / (480 - 48)])
    monkeypatch.setattr(np.random, "rand", lambda: next(fractions))
    theirs = tonic.functional.crop_numpy(rec.events.copy(), (640, 480), (64, 48))
    ours = T.Crop(*box)(rec)
    _same(ours.events, theirs)
    assert ours.sensor_size == (64, 48)


def test_flip_and_merge_equal_tonic():
    rec = _camera(346, 260)
    _same(T.FlipX()(rec).events, TT.RandomFlipLR(sensor_size=(346, 260, 2), p=1.0)(rec.events))
    _same(T.FlipY()(rec).events, TT.RandomFlipUD(sensor_size=(346, 260, 2), p=1.0)(rec.events))
    _same(T.MergePolarity()(rec).events, TT.MergePolarities()(rec.events))


@pytest.mark.parametrize("size", [(34, 34), (346, 260)])
def test_denoise_equals_tonic_and_streams_exactly(size):
    rec = _camera(*size, n=6000, t0=20_000)
    theirs = TT.Denoise(filter_time=10_000)(rec.events)
    whole = T.Transforms((E.Denoise(10_000),))(rec)
    _same(whole.events, theirs)
    _same(E.denoise(rec.events, 10_000), theirs)
    apply = T.Transforms((E.Denoise(10_000),)).streamer(rec.sensor_size)
    parts = [apply(p) for p in np.array_split(rec.events, 37)]
    _same(np.concatenate(parts), theirs)
    assert 0 < len(theirs) < len(rec)


def test_chain_streams_like_whole_recording():
    rec = _camera(1280, 720)
    chain = T.from_flags(denoise_us=5000, crop="100,50,1000,600", flip_x=True, downsample="34x34",
                         merge_polarity=True)
    assert [s.name for s in chain.steps] == ["denoise", "crop", "flip_x", "downsample", "merge_polarity"]
    whole = chain(rec)
    assert whole.sensor_size == (34, 34) == chain.output_size((1280, 720))
    source = T.TransformedSource(np.array_split(rec.events, 11), rec.sensor_size, chain)
    streamed = np.concatenate(list(source))
    _same(streamed, whole.events)
    assert source.events_in == len(rec) and source.events_out == len(whole)
    # a manifest round trip gives the same chain
    assert T.Transforms.from_list(chain.to_list()) == chain


@pytest.mark.parametrize("flags, message", [
    (dict(crop="1,2,3"), "--crop 1,2,3: expected X,Y,WIDTH,HEIGHT"),
    (dict(downsample="abc"), "--downsample abc"),
    (dict(downsample="-0.5"), "--downsample -0.5"),
    (dict(center_crop="34"), "--center-crop 34"),
    (dict(denoise_us=0), "--denoise-us 0"),
])
def test_bad_flags_name_the_flag(flags, message):
    with pytest.raises(T.TransformError, match=message.replace("-", r"\-").replace(".", r"\.")):
        T.from_flags(**flags)


def test_crop_outside_sensor_is_refused_with_the_flag():
    with pytest.raises(T.TransformError, match="--crop 300,0,100,100.*outside the 346x260 sensor"):
        T.from_flags(crop="300,0,100,100").output_size((346, 260))


def test_mismatch_hint_names_flags():
    hint = T.size_mismatch_hint((346, 260), (34, 34))
    assert "--downsample 34x34" in hint and "--center-crop 34x34" in hint and "--crop X,Y,34,34" in hint


@pytest.mark.parametrize("size", SIZES)
def test_aspect_preserving_recipe_of_the_hint_fits_and_equals_tonic(size):
    hint = T.size_mismatch_hint(size, (34, 34))
    factor = float(hint.split("keep the aspect ratio: --downsample ")[1].split()[0])
    chain = T.from_flags(downsample=str(factor), center_crop="34x34")
    assert [s.name for s in chain.steps] == ["downsample", "center_crop"]
    rec = _camera(*size)
    ours = chain(rec)
    scaled = TT.Downsample(spatial_factor=factor)(rec.events)
    scaled_size = T.Downsample(factor=factor).output_size(size)
    wide = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "u1")])
    theirs = TT.CenterCrop(sensor_size=(*scaled_size, 2), size=[34, 34])(scaled.astype(wide))
    assert ours.sensor_size == (34, 34)
    _same(ours.events, theirs)
