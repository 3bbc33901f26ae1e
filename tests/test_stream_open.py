"""`neurodeploy.stream()`: the one way into a stream (bundle, source, transforms, sensor size, labels,
runtimes), and the labels-file format of events/labels.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import neurodeploy
from neurodeploy.bundle import ExportOptions, export
from neurodeploy.events import EventFileError, Recording, make_events, save
from neurodeploy.events.labels import LabelSegment, read_label_file, write_label_file
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.stream import StreamError, _steps_per_sample

SMALL = dict(input_height=16, input_width=16, conv_channels=4, spiking_channels=4, d_model=8, n_layers=1)
DT_US = 10_000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    model = MambaSpike(MambaSpikeConfig.deployable(**SMALL)).eval()
    with torch.no_grad():
        for conv in (model.spiking_frontend.conv1, model.spiking_frontend.conv2, model.spiking_frontend.conv3):
            conv.weight.mul_(3.0)
    options = ExportOptions(dt_us=DT_US, artifacts=("nir", "onnx"), parity_samples=1, parity_steps=4)
    return export(model, tmp_path_factory.mktemp("open") / "bundle", options)


def _events(width: int, height: int, n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), np.sort(rng.integers(0, 200_000, n)),
                       rng.integers(0, 2, n))


class CropTopLeft:
    """A geometry-changing transform, as the stream expects one: events -> events plus its output size."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return events[(events["x"] < self.width) & (events["y"] < self.height)]

    def output_sensor_size(self, sensor_size: tuple[int, int]) -> tuple[int, int]:
        return self.width, self.height


def _predictions(run) -> list[tuple[int, tuple[float, ...]]]:
    with run:
        return [(r.prediction, r.scores) for r in run]


def test_the_python_api_checks_the_sensor_size(bundle):
    packets = np.array_split(_events(20, 20), 5)
    with pytest.raises(StreamError, match="sensor size 20x20, but the model expects 16x16"):
        neurodeploy.stream(bundle, packets, sensor_size=(20, 20), frontend="torch", backbone="torch")


def test_transforms_are_applied_to_every_packet_before_the_check(bundle):
    events = _events(20, 20)
    crop = CropTopLeft(16, 16)
    got = _predictions(neurodeploy.stream(bundle, np.array_split(events, 7), sensor_size=(20, 20), frontend="nir",
                                          backbone="onnxruntime", window_us=50_000, transforms=[crop]))
    want = _predictions(neurodeploy.stream(bundle, [crop(events)], sensor_size=(16, 16), frontend="nir",
                                           backbone="onnxruntime", window_us=50_000))
    assert len(got) == len(want) >= 3
    for (p, s), (q, t) in zip(got, want):
        assert p == q
        np.testing.assert_allclose(s, t, atol=1e-5)


def test_labels_beside_a_file_delimit_the_samples_and_name_their_file(bundle, tmp_path):
    path = tmp_path / "rec.npz"
    save(Recording(_events(16, 16), (16, 16)), path)
    segments = [LabelSegment(0, 80_000, 3), LabelSegment(90_000, 200_001, 5)]
    write_label_file(f"{path}.labels.csv", segments)
    with neurodeploy.stream(bundle.directory, str(path), frontend="torch", backbone="torch") as run:
        results = list(run)
    assert run.labels_path == tmp_path / "rec.npz.labels.csv"
    assert [(r.t_start_us, r.t_end_us, r.label) for r in results] == [(0, 80_000, 3), (90_000, 200_001, 5)]
    assert [r.n_steps for r in results] == [8, 12]  # ceil(duration / dt), binned by events.binning.FrameBinner


def test_the_longest_sample_sets_the_lava_sample_length():
    segments = (LabelSegment(0, 95_000, 1), LabelSegment(100_000, 330_001, 2))
    assert _steps_per_sample(DT_US, segments, None) == 24
    assert _steps_per_sample(DT_US, None, 300_000) == 30
    assert _steps_per_sample(DT_US, None, None) is None


@pytest.mark.parametrize("text,problem", [
    ("start,end,label\n0,10,1\n", "line 1"),
    ("t_start_us,t_end_us,label\n0,10\n", "line 2"),
    ("t_start_us,t_end_us,label\n0,10,1\n5,20,2\n", "line 3: the segment starts at 5 us, before the previous"),
    ("t_start_us,t_end_us,label\n10,10,1\n", "line 2: the segment ends"),
    ("", "line 1"),
])
def test_a_malformed_labels_file_is_refused_with_its_line(tmp_path, text, problem):
    path = tmp_path / "x.labels.csv"
    path.write_text(text)
    with pytest.raises(EventFileError, match=problem):
        read_label_file(path)


def test_labels_round_trip(tmp_path):
    segments = (LabelSegment(0, 10, 1), LabelSegment(10, 25, 0), LabelSegment(40, 41, 9))
    assert read_label_file(write_label_file(tmp_path / "a.labels.csv", segments)) == segments
