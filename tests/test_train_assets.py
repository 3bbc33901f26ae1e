"""The shipped checkpoint (neurodeploy/assets/) loads, is deployable and small, and classifies the
shipped labelled recording at the accuracy recorded in its metadata."""
from pathlib import Path

import pytest
import torch

import neurodeploy
from neurodeploy.model import load_checkpoint
from neurodeploy.model.mamba_spike.checkpoint import checkpoint_metadata
from neurodeploy.train import bin_labelled_recording, bin_samples, evaluate

ASSETS = Path(neurodeploy.__file__).parent / "assets"
CHECKPOINT = ASSETS / "mamba_spike_synthetic.safetensors"
RECORDING = ASSETS / "synthetic_test_10.npz"


@pytest.fixture(scope="module")
def shipped():
    if not CHECKPOINT.is_file():
        pytest.fail(f"{CHECKPOINT} is missing; regenerate it as neurodeploy/assets/README.md says")
    model, config = load_checkpoint(CHECKPOINT)
    return model, config, checkpoint_metadata(CHECKPOINT)


def test_checkpoint_is_small_deployable_and_documented(shipped):
    model, config, meta = shipped
    assert CHECKPOINT.stat().st_size < 2 * 1024 * 1024
    assert (config.pooling, config.interface, config.reset, config.reset_timing) == ("sum", "causal", "zero",
                                                                                      "immediate")
    assert (config.input_height, config.input_width, config.num_classes) == (34, 34, 10)
    for key in ("accuracy", "seed", "dt_us", "n_bins", "command", "n_train", "n_test", "wall_time_s",
                "recording", "recording_accuracy"):
        assert key in meta, key
    assert float(meta["accuracy"]) >= 0.9
    assert meta["recording"] == RECORDING.name
    assert meta["command"].startswith("python examples/train_synthetic.py")


def test_shipped_recording_is_classified_at_the_recorded_accuracy(shipped):
    model, _, meta = shipped
    data = bin_labelled_recording(RECORDING, int(meta["dt_us"]), int(meta["n_bins"]))
    assert sorted(data.labels.tolist()) == list(range(10))  # one sample per class
    result = evaluate(model, data)
    assert result["accuracy"] == pytest.approx(float(meta["recording_accuracy"]), abs=1e-4)
    assert result["accuracy"] >= 0.9


def test_shipped_recording_is_the_first_ten_test_samples(shipped):
    """The recording can be regenerated: it is make_nmnist_like(10, test_seed), concatenated."""
    from neurodeploy.events.synthetic import make_nmnist_like

    _, _, meta = shipped
    samples = make_nmnist_like(10, seed=int(meta["test_seed"]), duration_us=int(meta["duration_us"]))
    direct = bin_samples(samples, int(meta["dt_us"]), int(meta["n_bins"]))
    from_file = bin_labelled_recording(RECORDING, int(meta["dt_us"]), int(meta["n_bins"]))
    assert torch.equal(direct.frames, from_file.frames) and torch.equal(direct.labels, from_file.labels)
