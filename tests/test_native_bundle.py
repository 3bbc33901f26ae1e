"""The native runtimes on the shipped model and recording, and through a bundle: verify, run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodeploy.bundle import ExportOptions, export
from neurodeploy.cli import main
from neurodeploy.demo import ASSET_CHECKPOINT, ASSET_RECORDING, asset_path
from neurodeploy.events import load
from neurodeploy.events.binning import to_frames_dt
from neurodeploy.exporters.nir import export_frontend
from neurodeploy.model.mamba_spike.checkpoint import load_checkpoint
from neurodeploy.model.mamba_spike.frontend import LAYER_NAMES
from neurodeploy.runtimes.native import NativeBackboneRuntime, NativeFrontendRuntime


@pytest.mark.parametrize("dt_us", [10_000, 1_000])
def test_shipped_model_on_shipped_recording_native_equals_torch(dt_us):
    model, _ = load_checkpoint(asset_path(ASSET_CHECKPOINT))
    recording = load(asset_path(ASSET_RECORDING))
    frames = torch.from_numpy(to_frames_dt(recording.events, recording.sensor_size, dt_us, dtype=np.float32))[None]
    with torch.no_grad():
        reference, _ = model.spiking_frontend(frames)  # every layer, (1, T, C, H, W)
    frontend = NativeFrontendRuntime(export_frontend(model, dt_us / 1e6))
    frontend.reset(1)
    for t in range(frames.shape[1]):
        frontend.step(frames[:, t])
        layers = frontend.layer_spikes
        for name, expected in zip(LAYER_NAMES, reference):
            assert torch.equal(layers[name], expected[:, t]), f"step {t}, {name}"
    assert all(n > 0 for n in frontend.spike_counts.values())
    backbone = NativeBackboneRuntime(model)
    backbone.reset(1)
    state = model.backbone_initial_state(1)
    worst = 0.0
    with torch.no_grad():
        for t in range(frames.shape[1]):
            want, state = model.backbone_step(reference[-1][:, t], state)
            worst = max(worst, float((backbone.step(reference[-1][:, t]) - want).abs().max()))
        offline = model.backbone_forward(reference[-1])
    assert worst <= 1e-5
    assert float((backbone.flush() - offline).abs().max()) <= 1e-5


def test_verify_includes_the_native_pair_and_run_streams_natively(tmp_path):
    bundle = export(asset_path(ASSET_CHECKPOINT), tmp_path / "bundle", ExportOptions(dt_us=1000, artifacts=("nir",)))
    runner = CliRunner()
    result = runner.invoke(main, ["verify", str(bundle.directory), str(asset_path(ASSET_RECORDING)), "--steps", "200",
                                  "--samples", "3", "--json"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["frontend"]["native"]["passed"] and outcome["frontend"]["native"]["required"] == 1.0
    assert set(outcome["frontend"]["native"]["agreement_per_layer"]) == set(LAYER_NAMES)
    assert outcome["backbone"]["native"]["passed"] and outcome["backbone"]["native"]["tolerance"] == 1e-5
    result = runner.invoke(main, ["run", str(bundle.directory), str(asset_path(ASSET_RECORDING)),
                                  "--frontend", "native", "--backbone", "native"])
    assert result.exit_code == 0, result.output
    assert "real-time factor" in result.output and "10 samples" in result.output
