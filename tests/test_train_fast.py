"""neurodeploy.train on a tiny model: the loss goes down, runs are reproducible, and a reference
v1/v2 checkpoint is rebuilt with deployable settings and fine-tuned. Fast (a few seconds)."""
import argparse

import numpy as np
import pytest
import torch

from neurodeploy.model import MambaSpike, MambaSpikeConfig, load_checkpoint
from neurodeploy.model.mamba_spike.checkpoint import checkpoint_metadata
from neurodeploy.train import (FrameDataset, TrainConfig, build_dataset, deployable_from_checkpoint, evaluate,
                               n_bins_for, save_trained, train)

TINY = dict(conv_channels=4, spiking_channels=8, d_model=16, n_layers=1, d_state=4)
DT_US = 10_000
DURATION_US = 60_000  # 6 bins: a fifth of a sample is enough to see the loss fall


@pytest.fixture(scope="module")
def tiny_data():
    return build_dataset(10, seed=3, dt_us=DT_US, duration_us=DURATION_US)


def tiny_config(**kw):
    base = dict(n_train=10, n_test=10, dt_us=DT_US, duration_us=DURATION_US, epochs=8, batch_size=10, lr=1e-2,
                warmup_steps=0, model=dict(TINY), num_threads=None, eval_every_epoch=False, eval_train=False)
    base.update(kw)
    return TrainConfig(**base)


def test_build_dataset_bins_once_at_dt(tiny_data):
    assert tiny_data.frames.shape == (10, n_bins_for(DURATION_US, DT_US), 2, 34, 34) == (10, 6, 2, 34, 34)
    assert tiny_data.frames.dtype == torch.int16
    assert sorted(tiny_data.labels.tolist()) == list(range(10))  # one block of the generator: every class once
    assert int(tiny_data.frames.sum()) > 0
    again = build_dataset(10, seed=3, dt_us=DT_US, duration_us=DURATION_US)
    assert torch.equal(again.frames, tiny_data.frames) and torch.equal(again.labels, tiny_data.labels)


def test_loss_goes_down_and_training_is_reproducible(tiny_data):
    config = tiny_config()
    first = train(config, train_data=tiny_data, test_data=tiny_data, progress=False)
    assert len(first.losses) == 8
    assert np.mean(first.losses[-2:]) < 0.8 * first.losses[0], first.losses
    assert first.model.config.pooling == "sum" and first.model.config.interface == "causal"
    assert first.model.config.reset == "zero" and first.model.config.reset_timing == "immediate"
    second = train(config, train_data=tiny_data, test_data=tiny_data, progress=False)
    assert first.losses == second.losses
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    other_seed = train(tiny_config(seed=1, epochs=1), train_data=tiny_data, test_data=tiny_data, progress=False)
    assert other_seed.losses[0] != first.losses[0]
    # settings are restored after training
    assert not torch.are_deterministic_algorithms_enabled()


def test_evaluate_and_save_with_metadata(tiny_data, tmp_path):
    result = train(tiny_config(epochs=2), train_data=tiny_data, test_data=tiny_data, progress=False)
    ev = evaluate(result.model, tiny_data, batch_size=4)
    assert ev["accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    path = save_trained(result, tmp_path / "m.safetensors", command="pytest")
    meta = checkpoint_metadata(path)
    assert meta["dt_us"] == str(DT_US) and meta["n_bins"] == "6" and meta["command"] == "pytest"
    assert float(meta["accuracy"]) == pytest.approx(ev["accuracy"], abs=1e-4)
    model, config = load_checkpoint(path)
    assert config == result.model.config
    x = tiny_data.frames[:3].float()
    assert torch.equal(model(x), result.model(x))


def test_dataset_with_other_dt_is_refused(tiny_data):
    with pytest.raises(ValueError, match="dt_us"):
        train(tiny_config(dt_us=20_000), train_data=tiny_data, test_data=tiny_data, progress=False)


def _write_reference(path, version: str) -> MambaSpikeConfig:
    """A tiny checkpoint in the reference layout: v1 (max pool, subtract delayed, centered) or
    v2 (recurrent, beta 0.97, causal), snnTorch's LIF buffers beside the weights."""
    reference = MambaSpikeConfig(**TINY, recurrent=version == "v2", beta=0.9 if version == "v1" else 0.97,
                                 interface="centered" if version == "v1" else "causal")
    torch.manual_seed(5)
    sd = MambaSpike(reference).state_dict()
    for k in (1, 2, 3):
        p = f"spiking_frontend.lif{k}."
        sd[p + "threshold"] = torch.tensor(1.0)
        sd[p + "beta"] = torch.tensor(reference.beta)
        sd[p + "graded_spikes_factor"] = torch.tensor(1.0)
        sd[p + "reset_mechanism_val"] = torch.tensor(0, dtype=torch.int64)
    if version == "v1":
        torch.save({"epoch": 1, "model_state_dict": sd, "accuracy": 50.0,
                    "args": argparse.Namespace(dataset="nmnist")}, path)
    else:
        torch.save({"epoch": 1, "model_state_dict": sd, "config": {"dataset": "nmnist"}}, path)
    return reference


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("pooling", ["sum", "avg"])
def test_fine_tune_from_reference_checkpoint(tmp_path, tiny_data, version, pooling):
    path = tmp_path / f"checkpoint_{version}.pth"
    reference = _write_reference(path, version)
    source, source_config = load_checkpoint(path)
    assert source_config.pooling == "max" and source_config.reset_timing == "delayed"

    model, config = deployable_from_checkpoint(path, pooling=pooling)
    assert (config.pooling, config.interface, config.reset, config.reset_timing) == (pooling, "causal", "zero",
                                                                                      "immediate")
    assert (config.recurrent, config.beta, config.d_model, config.conv_channels) == (
        reference.recurrent, reference.beta, reference.d_model, reference.conv_channels)
    for (name, a), b in zip(source.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name

    result = train(tiny_config(init_from=str(path), model={"pooling": pooling}, epochs=2),
                   train_data=tiny_data, test_data=tiny_data, progress=False)
    assert result.model.config == config
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    changed = [k for k, v in result.model.state_dict().items() if not torch.equal(v, source.state_dict()[k])]
    assert changed  # it trained


def test_conversion_refuses_a_shape_change(tmp_path):
    path = tmp_path / "checkpoint_v1.pth"
    _write_reference(path, "v1")
    with pytest.raises(ValueError, match="changes the weights"):
        deployable_from_checkpoint(path, d_model=32)


def test_frame_dataset_checks_shapes():
    with pytest.raises(ValueError):
        FrameDataset(torch.zeros(3, 2, 2, 34, 34, dtype=torch.int16), torch.zeros(2, dtype=torch.int64), 0, DT_US)


def test_labelled_recording_bins_like_the_samples(tmp_path):
    from neurodeploy.events.synthetic import make_nmnist_like, write_labelled_recording
    from neurodeploy.train import bin_labelled_recording, bin_samples

    samples = make_nmnist_like(4, seed=7, duration_us=DURATION_US)
    path = tmp_path / "rec.npz"
    write_labelled_recording(str(path), samples)
    from_file = bin_labelled_recording(path, DT_US, 6)
    direct = bin_samples(samples, DT_US, 6)
    assert torch.equal(from_file.frames, direct.frames) and torch.equal(from_file.labels, direct.labels)


def test_saved_checkpoint_loads_whatever_its_header_length(tiny_data, tmp_path):
    """Regression: a safetensors header length with low byte 0x80 was taken for a pickle (torch
    2.13's torch.load then read the tensors without the config). Pad the metadata until it happens."""
    result = train(tiny_config(epochs=1), train_data=tiny_data, test_data=tiny_data, progress=False)
    path = tmp_path / "m.safetensors"
    for pad in range(300):
        save_trained(result, path, extra={"pad": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    model, config = load_checkpoint(path)
    assert config == result.model.config
    assert checkpoint_metadata(path)["pad"] == "x" * pad
