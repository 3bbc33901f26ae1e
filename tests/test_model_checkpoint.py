"""Checkpoints: reference v1/v2 layouts (built here from the reference's key table, docs/mamba_spike_model.md), own format, bad files."""
import argparse
import json
import os

import pytest
import torch

from neurodeploy.model import CheckpointError, MambaSpike, MambaSpikeConfig, load_checkpoint, save_checkpoint
from neurodeploy.model.mamba_spike.checkpoint import checkpoint_metadata
from plain_reference import plain_forward

# the reference implementation's state_dict keys of the N-MNIST model (v1: 64 keys; v2 adds 6 recurrent keys)
FRONTEND_KEYS = {
    "spiking_frontend.conv1.weight": (32, 2, 3, 3), "spiking_frontend.conv1.bias": (32,),
    "spiking_frontend.conv2.weight": (32, 32, 3, 3), "spiking_frontend.conv2.bias": (32,),
    "spiking_frontend.conv3.weight": (64, 32, 3, 3), "spiking_frontend.conv3.bias": (64,),
}
RECURRENT_KEYS = {
    "spiking_frontend.recurrent1.weight": (32, 32, 1, 1), "spiking_frontend.recurrent1.bias": (32,),
    "spiking_frontend.recurrent2.weight": (32, 32, 1, 1), "spiking_frontend.recurrent2.bias": (32,),
    "spiking_frontend.recurrent3.weight": (64, 64, 1, 1), "spiking_frontend.recurrent3.bias": (64,),
}
BLOCK_KEYS = {
    "norm.weight": (128,), "norm.bias": (128,), "mamba.A_log": (256, 16), "mamba.D": (256,),
    "mamba.in_proj.weight": (512, 128), "mamba.conv1d.weight": (256, 1, 4), "mamba.x_proj.weight": (40, 256),
    "mamba.dt_proj.weight": (256, 8), "mamba.dt_proj.bias": (256,), "mamba.out_proj.weight": (128, 256),
}
TOP_KEYS = {
    "input_proj.weight": (128, 4096), "input_proj.bias": (128,), "norm.weight": (128,), "norm.bias": (128,),
    "classifier.weight": (10, 128), "classifier.bias": (10,),
}


def reference_state_dict(version: str, seed: int = 0, beta: float | None = None) -> dict:
    gen = torch.Generator().manual_seed(seed)
    shapes = dict(FRONTEND_KEYS)
    if version == "v2":
        shapes.update(RECURRENT_KEYS)
    for i in range(4):
        shapes.update({f"mamba_blocks.{i}.{k}": s for k, s in BLOCK_KEYS.items()})
    shapes.update(TOP_KEYS)
    sd = {}
    for key, shape in shapes.items():
        if key.endswith("A_log"):
            sd[key] = torch.log(torch.arange(1, 17, dtype=torch.float32)).repeat(256, 1)
        elif key.endswith("norm.weight"):
            sd[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif "conv" in key and "spiking" in key and key.endswith("weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            sd[key] = torch.randn(shape, generator=gen) * (2.5 / fan_in**0.5)
        else:
            fan_in = shape[1] if len(shape) > 1 else 1
            sd[key] = torch.randn(shape, generator=gen) * (0.5 / fan_in**0.5)
    b = beta if beta is not None else (0.9 if version == "v1" else 0.97)
    for k in (1, 2, 3):
        p = f"spiking_frontend.lif{k}."
        sd[p + "threshold"] = torch.tensor(1.0)
        sd[p + "beta"] = torch.tensor(b)
        sd[p + "graded_spikes_factor"] = torch.tensor(1.0)
        sd[p + "reset_mechanism_val"] = torch.tensor(0, dtype=torch.int64)
        sd[p + "mem"] = torch.rand(3, 32 if k < 3 else 64, 17 if k == 1 else 8, 17 if k == 1 else 8, generator=gen)
    return sd


def write_v1(path, sd):
    args = argparse.Namespace(dataset="nmnist", batch_size=32, lr=1e-3, epochs=100, time_steps=300)
    torch.save({"epoch": 7, "model_state_dict": sd, "optimizer_state_dict": {}, "scheduler_state_dict": {},
                "accuracy": 99.1, "args": args}, path)


def write_v2(path, sd):
    torch.save({"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": {}, "scheduler_state_dict": {},
                "test_acc": 98.0, "best_acc": 98.5, "config": {"dataset": "nmnist", "beta": 0.97}}, path)


def test_key_table_matches_reference_counts():
    sd = reference_state_dict("v1")
    weights = [k for k in sd if not k.endswith(".mem")]
    assert len(weights) == 64
    assert len([k for k in reference_state_dict("v2") if not k.endswith(".mem")]) == 70
    model = MambaSpike(MambaSpikeConfig.nmnist_v1())
    assert sum(p.numel() for p in model.parameters()) == 1_020_234


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_reference_checkpoint_matches_plain_implementation(tmp_path, version):
    sd = reference_state_dict(version, seed=1)
    path = tmp_path / "checkpoint_best.pth"
    (write_v1 if version == "v1" else write_v2)(path, sd)
    model, config = load_checkpoint(path)
    expected_cfg = MambaSpikeConfig.nmnist_v1() if version == "v1" else MambaSpikeConfig.nmnist_v2()
    assert config == expected_cfg
    gen = torch.Generator().manual_seed(2)
    frames = torch.poisson(torch.full((2, 12, 2, 34, 34), 0.25), generator=gen)
    with torch.no_grad():
        out = model.run(frames)
        plain = plain_forward(sd, frames, beta=config.beta, thr=1.0, recurrent=(version == "v2"),
                              centered=(version == "v1"))
    rates = [s.mean().item() for s in out.spikes]
    assert all(0.005 < r < 0.95 for r in rates), f"firing rates {rates}: the test would not exercise the LIF"
    torch.testing.assert_close(out.logits, plain, atol=2e-5, rtol=1e-4)


def test_bare_state_dict_needs_config(tmp_path):
    sd = reference_state_dict("v1")
    path = tmp_path / "weights.pt"
    torch.save({k: v for k, v in sd.items() if not k.startswith("spiking_frontend.lif")}, path)
    with pytest.raises(CheckpointError, match="carries no model config.*--config"):
        load_checkpoint(path)
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(MambaSpikeConfig.nmnist_v1().to_json())
    model, cfg = load_checkpoint(path, config=cfg_path)
    assert cfg == MambaSpikeConfig.nmnist_v1()


def test_reference_state_dict_without_container_is_inferred(tmp_path):
    path = tmp_path / "sd.pth"
    torch.save(reference_state_dict("v2"), path)
    _, cfg = load_checkpoint(path)
    assert cfg == MambaSpikeConfig.nmnist_v2()


def test_own_format_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = MambaSpikeConfig.deployable(d_model=32, n_layers=1, recurrent=True)
    model = MambaSpike(cfg).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", metadata={"accuracy": "0.93"})
    loaded, cfg2 = load_checkpoint(path)
    assert cfg2 == cfg
    assert checkpoint_metadata(path) == {"accuracy": "0.93"}
    frames = torch.poisson(torch.full((1, 5, 2, 34, 34), 0.3))
    with torch.no_grad():
        assert torch.equal(model(frames), loaded(frames))


def test_overrides_change_inferred_fields(tmp_path):
    path = tmp_path / "c.pth"
    write_v1(path, reference_state_dict("v1"))
    _, cfg = load_checkpoint(path, overrides={"interface": "causal"})
    assert cfg.interface == "causal"
    with pytest.raises(CheckpointError, match="bad config override.*interface"):
        load_checkpoint(path, overrides={"interface": "sideways"})


# -- bad files --------------------------------------------------------------------------------
class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_pickle_that_runs_code_is_refused(tmp_path, capfd):
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": reference_state_dict("v1"), "payload": RunsCode()}, path)
    with pytest.raises(CheckpointError, match=r"outside the allow-list \(.*system\).*never executes"):
        load_checkpoint(path)
    assert "must never run" not in capfd.readouterr().out


def test_missing_weight_is_named_with_shape(tmp_path):
    sd = reference_state_dict("v1")
    del sd["mamba_blocks.2.mamba.x_proj.weight"]
    path = tmp_path / "c.pth"
    write_v1(path, sd)
    with pytest.raises(CheckpointError, match=r"missing weight 'mamba_blocks.2.mamba.x_proj.weight'.*\(40, 256\)"):
        load_checkpoint(path)


def test_misshaped_weight_is_named(tmp_path):
    sd = reference_state_dict("v1")
    sd["mamba_blocks.1.mamba.D"] = torch.zeros(255)
    path = tmp_path / "c.pth"
    write_v1(path, sd)
    with pytest.raises(CheckpointError, match=r"'mamba_blocks.1.mamba.D' has shape \(255,\), expected \(256,\)"):
        load_checkpoint(path)


def test_unknown_key_is_named(tmp_path):
    sd = reference_state_dict("v1")
    sd["spiking_frontend.conv4.weight"] = torch.zeros(3)
    path = tmp_path / "c.pth"
    write_v1(path, sd)
    with pytest.raises(CheckpointError, match=r"unknown key 'spiking_frontend.conv4.weight'"):
        load_checkpoint(path)


def test_differing_lif_parameters_are_refused(tmp_path):
    sd = reference_state_dict("v1")
    sd["spiking_frontend.lif2.beta"] = torch.tensor(0.5)
    path = tmp_path / "c.pth"
    write_v1(path, sd)
    with pytest.raises(CheckpointError, match=r"lif1..3.beta differ"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint at all", b"PK\x03\x04garbage", b"\x80\x02garbage",
                                     json.dumps({"a": 1}).encode()])
def test_garbage_files_get_one_clear_error(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path).replace("\\", "\\\\")):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "c.pth"
    write_v1(path, reference_state_dict("v1"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(path)


def test_own_format_with_bad_config_metadata(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"neurodeploy.format": "neurodeploy.mamba-spike",
                                                         "neurodeploy.format_version": "1",
                                                         "neurodeploy.config": '{"d_model": -3}'})
    with pytest.raises(CheckpointError, match="not a valid model config.*d_model"):
        load_checkpoint(path)
