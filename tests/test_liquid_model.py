"""Mamba-Liquid-Spiking: the model against the plain loop implementation, streaming, loader refusals."""
from __future__ import annotations

import json

import pytest
import torch

from liquid_checkpoints import make_state_dict, upstream_config, write_checkpoint
from neurodeploy.errors import NeurodeployError, UnsupportedCapabilityError
from neurodeploy.model.liquid.delayed import DelayedStream
from neurodeploy.model.registry import detect_family, load_model
from neurodeploy.model.checkpoint_io import read_checkpoint
from plain_liquid import plain_forward

MODES = ("sequential", "parallel", "bidirectional")


def _ids(batch, steps, seed=0):
    return torch.randint(0, 23, (batch, steps), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("liquid")
    return {(mode, backbone): write_checkpoint(root / f"{mode}_{backbone}", mode, backbone)
            for mode in MODES for backbone in ("ncp", "cfc")}


@pytest.mark.parametrize("backbone", ["ncp", "cfc"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("steps", [1, 13, 57])
def test_model_matches_plain_reference(checkpoints, mode, backbone, steps):
    ckpt, config = checkpoints[(mode, backbone)]
    loaded = load_model(ckpt, config)
    assert loaded.family.name == "liquid" and loaded.config.integration_mode == mode
    ids = _ids(3, steps, seed=steps)
    with torch.no_grad():
        logits, blocks = loaded.model(ids, return_internals=True)
    expected, plain_blocks = plain_forward(torch.load(ckpt), ids, mode=mode, backbone=backbone,
                                           num_spike_steps=loaded.config.num_spike_steps)
    # a length-1 input is repeated num_spike_steps (3) times by the encoder, as upstream does
    assert logits.shape == (3, 3 if steps == 1 else steps, 23)
    assert (logits - expected).abs().max() <= 1e-4
    for ours, plain in zip(blocks, plain_blocks):
        for layer in ("lif1", "lif2"):
            assert ours[layer].sum() > 0, "the fixture's encoders must fire"
            assert torch.equal(ours[layer], plain[layer])
        for name in ("liquid", "scan", "mamba", "output"):
            assert (ours[name] - plain[name]).abs().max() <= 1e-5, name


@pytest.mark.parametrize("backbone", ["ncp", "cfc"])
def test_sequential_stepped_equals_full(checkpoints, backbone):
    loaded = load_model(*checkpoints[("sequential", backbone)])
    model, ids = loaded.model, _ids(2, 17, seed=5)
    with torch.no_grad():
        full, blocks = model(ids, return_internals=True)
        state = model.initial_state(2)
        for t in range(ids.shape[1]):
            logits, state, inner = model.step(ids[:, t], state, return_internals=True)
            assert (logits - full[:, t]).abs().max() <= 1e-5
            for b in range(len(blocks)):
                assert torch.equal(inner[b]["lif2"], blocks[b]["lif2"][:, t])
    # every state is explicit: LIF membranes and spikes, CfC h, Mamba conv/ssm
    block_state = state[0]
    assert block_state.encoder.lif1.v.shape == (2, 20) and block_state.encoder.lif2.v.shape == (2, 10)
    assert block_state.liquid_h.shape == (2, 16)
    assert block_state.mamba.conv_state.shape == (2, 32, 3) and block_state.mamba.ssm_state.shape == (2, 32, 4)


@pytest.mark.parametrize("mode", ["parallel", "bidirectional"])
def test_non_causal_modes_refuse_stepping(checkpoints, mode):
    loaded = load_model(*checkpoints[(mode, "ncp")])
    assert not loaded.capability("onnx_step").supported
    with pytest.raises(UnsupportedCapabilityError, match="centred kernel"):
        loaded.require("onnx_step")
    with pytest.raises(UnsupportedCapabilityError, match="not causal.*DelayedStream"):
        loaded.model.step(_ids(1, 1)[:, 0], loaded.model.initial_state(1))
    assert "24 tokens per block" in loaded.capability("stream").reason
    with pytest.raises(ValueError, match="sequential model is causal"):
        DelayedStream(load_model(*checkpoints[("sequential", "ncp")]).model)
    sequential = load_model(*checkpoints[("sequential", "ncp")])
    assert sequential.capability("stream").supported and sequential.capability("onnx_step").supported
    assert not sequential.capability("netx").supported


@pytest.mark.parametrize("mode", ["parallel", "bidirectional"])
@pytest.mark.parametrize("steps", [1, 30, 80])
def test_non_causal_modes_stream_with_fixed_delay(checkpoints, mode, steps):
    model = load_model(*checkpoints[(mode, "cfc" if steps == 30 else "ncp")]).model
    ids = _ids(2, steps, seed=steps)
    with torch.no_grad():
        full = model(ids)
    stream = DelayedStream(model, batch=2)
    assert stream.delay_tokens == 48
    emitted = []
    for t in range(steps):
        emitted += stream.push(ids[:, t])
        # below 50 tokens nothing is final; after that each block lags 24 tokens
        assert len(emitted) == (max(0, t + 1 - 48) if t + 1 - 24 >= 50 else 0)
    emitted += stream.flush()
    assert (torch.stack(emitted, 1) - full).abs().max() <= 1e-4


def test_detected_and_notes(checkpoints):
    ckpt, config = checkpoints[("bidirectional", "ncp")]
    assert detect_family(read_checkpoint(ckpt)).name == "liquid"
    notes = " | ".join(load_model(ckpt, config).notes)
    assert "bidirectional_exchange" in notes and "hidden_to_liquid" in notes and "mamba_to_spike" in notes
    assert "batch 1" in notes  # ncp: CfC at every batch size, upstream differs
    assert "clamped to [0, 1]" in notes  # blocks.1 lif2 beta 1.2
    cfc_notes = " | ".join(load_model(*checkpoints[("sequential", "cfc")]).notes)
    assert "fallback" in cfc_notes and "spike_to_mamba" in cfc_notes


def test_ltc_runs_the_fallback(tmp_path):
    ckpt, config = write_checkpoint(tmp_path, "sequential", "ltc")
    loaded = load_model(ckpt, config)
    assert loaded.config.liquid_backbone == "ltc"
    ids = _ids(2, 6)
    expected, _ = plain_forward(torch.load(ckpt), ids, mode="sequential", backbone="ltc", num_spike_steps=3)
    with torch.no_grad():
        assert (loaded.model(ids) - expected).abs().max() <= 1e-4


def test_ignored_config_fields_are_warned(tmp_path):
    ckpt, config = write_checkpoint(tmp_path, "parallel", spike_threshold=0.5, num_gate_heads=2, cross_attn_heads=4)
    notes = " | ".join(load_model(ckpt, config).notes)
    assert "spike_threshold=0.5" in notes and "num_gate_heads=2" in notes
    assert "cross_attn_heads" not in notes  # only matters in bidirectional mode


def test_config_is_optional_but_must_agree(tmp_path):
    ckpt, config = write_checkpoint(tmp_path, "sequential")
    loaded = load_model(ckpt)
    assert loaded.config.num_spike_steps == 1 and any("num_spike_steps" in n for n in loaded.notes)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(upstream_config("sequential", hidden_dim=32)))
    with pytest.raises(NeurodeployError, match="hidden_dim=32 but the weights say 16"):
        load_model(ckpt, wrong)
    vision = tmp_path / "vision.json"
    vision.write_text(json.dumps(upstream_config("sequential", task_type="vision")))
    with pytest.raises(NeurodeployError, match="task_type"):
        load_model(ckpt, vision)


def test_nan_a_log_refused_with_the_fix(tmp_path):
    sd = make_state_dict("sequential")
    sd["blocks.1.mamba.ssm.A_log"] = torch.log(torch.randn(32, 4, generator=torch.Generator().manual_seed(0)))
    torch.save(sd, tmp_path / "nan.pt")
    with pytest.raises(NeurodeployError, match=r"blocks\.1\.mamba\.ssm\.A_log holds \d+ NaN.*S4D-real"):
        load_model(tmp_path / "nan.pt", upstream_config("sequential"))


def test_missing_lazy_projection_refused(tmp_path):
    sd = make_state_dict("parallel")
    del sd["blocks.1.input_proj.weight"], sd["blocks.1.input_proj.bias"]
    torch.save(sd, tmp_path / "lazy.pt")
    with pytest.raises(NeurodeployError, match=r"blocks\.1\.input_proj\.weight.*after one forward call"):
        load_model(tmp_path / "lazy.pt", upstream_config("parallel"))


def test_placeholder_blocks_refused(tmp_path):
    sd = {"embedding.weight": torch.zeros(23, 12), "output_head.weight": torch.zeros(23, 16),
          "output_head.bias": torch.zeros(23), "blocks.0.spike_encoder.weight": torch.zeros(10, 12),
          "blocks.0.liquid_cell.weight_ih_l0": torch.zeros(64, 10)}
    torch.save(sd, tmp_path / "placeholder.pt")
    with pytest.raises(NeurodeployError, match="placeholder blocks"):
        load_model(tmp_path / "placeholder.pt")
