"""Mamba-Liquid-Spiking deployment: NIR encoders, ONNX blocks, the interleaved pipeline, bundle, report."""
from __future__ import annotations

import json

import nir
import numpy as np
import onnx
import pytest
import torch

from liquid_checkpoints import write_checkpoint
from neurodeploy.bundle import BundleError
from neurodeploy.formats.nir_frontend import read_frontend
from neurodeploy.exporters.nir_liquid import export_encoder
from neurodeploy.liquid_bundle import export_liquid, load_liquid_bundle, verify_liquid_bundle
from neurodeploy.model.registry import load_model
from neurodeploy.report.liquid import liquid_report
from neurodeploy.runtimes.liquid import LiquidRuntimeError
from neurodeploy.runtimes.nir import NIRFrontendRuntime
from plain_liquid import plain_forward

MODES = ("sequential", "parallel", "bidirectional")


def _ids(batch, steps, seed=0):
    return torch.randint(0, 23, (batch, steps), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("liquid_bundles")
    out = {}
    for mode in MODES:
        ckpt, config = write_checkpoint(root / mode, mode)
        out[mode] = (export_liquid(ckpt, root / mode / "bundle", config=config), ckpt)
    return out


def test_encoder_graph_follows_the_toolkit_lif_convention(tmp_path):
    ckpt, config = write_checkpoint(tmp_path, "sequential")
    model = load_model(ckpt, config).model
    g0 = export_encoder(model.blocks[0].spike_encoder, 1e-3, block=0)
    assert set(g0.nodes) == {"input", "fc1", "lif1", "fc2", "lif2", "output"}
    assert ("input", "fc1") in g0.edges and ("lif2", "output") in g0.edges
    assert isinstance(g0.nodes["fc1"], nir.Affine) and g0.nodes["fc1"].weight.shape == (20, 12)
    lif = g0.nodes["lif1"]
    assert isinstance(lif, nir.LIF)
    assert lif.metadata == {"dt": 1e-3, "beta": pytest.approx(0.9), "reset": "subtract", "reset_timing": "delayed",
                            "compare": "greater"}
    np.testing.assert_allclose(lif.tau, 1e-3 / (1 - 0.9), rtol=1e-6)
    np.testing.assert_allclose(lif.r, lif.tau / 1e-3, rtol=1e-6)
    # block 1: lif2 has beta 1.2 (snnTorch clamps to 1: no leak, nir.IF) and a graded factor 2 (Scale after it)
    g1 = export_encoder(model.blocks[1].spike_encoder, 1e-3, block=1)
    assert isinstance(g1.nodes["lif2"], nir.IF) and g1.nodes["lif2"].metadata["beta"] == 1.0
    assert ("lif2", "scale2") in g1.edges and ("scale2", "output") in g1.edges
    np.testing.assert_array_equal(g1.nodes["scale2"].scale, 2.0)


@pytest.mark.parametrize("mode", MODES)
def test_nir_encoders_and_onnx_blocks_match_plain_reference(bundles, mode):
    bundle, ckpt = bundles[mode]
    sd = torch.load(ckpt)
    pipeline = bundle.pipeline()
    for steps in (1, 13, 57):
        ids = _ids(2, steps, seed=steps)
        run = pipeline.run(ids)
        expected, plain_blocks = plain_forward(sd, ids, mode=mode, backbone="ncp", num_spike_steps=3)
        assert (run.logits - expected).abs().max() <= 1e-4
        for i, plain in enumerate(plain_blocks):
            for layer in ("lif1", "lif2"):
                assert plain[layer].sum() > 0
                assert torch.equal(run.spikes[i][layer], plain[layer]), (steps, i, layer)
            assert (run.liquid[i] - plain["liquid"]).abs().max() <= 1e-5
            assert (run.mamba[i] - plain["mamba"]).abs().max() <= 1e-5


def test_nir_file_runs_standalone(bundles):
    bundle, _ = bundles["parallel"]
    model = bundle.loaded.model
    ids = _ids(2, 9)
    with torch.no_grad():
        _, blocks = model(ids, return_internals=True)
    runtime = NIRFrontendRuntime(read_frontend(bundle.directory / "encoder_1.nir"))
    layers = runtime.run_layers(blocks[1]["x_p"])
    assert torch.equal(layers["lif1"], blocks[1]["lif1"])
    assert torch.equal(layers["lif2"] * 2.0, blocks[1]["lif2"])  # graded factor 2 after lif2


def test_block_graph_uses_the_ungated_scan(bundles):
    bundle, _ = bundles["bidirectional"]
    proto = onnx.load(bundle.directory / "block_0.onnx")
    ops = [(n.domain, n.op_type) for n in proto.graph.node]
    assert ("ai.neurodeploy", "SelectiveScanUngated") in ops and ("", "Scan") in ops  # Mamba scan, CfC scan
    assert sum(op == "LayerNormalization" for _, op in ops) >= 5  # inner norm, LH twice, norm1, norm2
    step = onnx.load(bundles["sequential"][0].directory / "block_0_step.onnx")
    assert ("ai.neurodeploy", "SelectiveStateUpdateUngated") in [(n.domain, n.op_type) for n in step.graph.node]
    assert [i.name for i in step.graph.input] == ["x_p_t", "spikes_t", "liquid_h", "conv_state", "ssm_state"]


def test_sequential_bundle_streams_and_verifies(bundles):
    bundle, _ = bundles["sequential"]
    report = bundle.manifest["parity"]
    assert report["ok"] and report["stepped_logits_max_abs"] <= 1e-4
    assert all(e["mismatches"] == 0 and e["spikes_nir"] > 0 for e in report["encoders"])
    pipeline = bundle.pipeline()
    ids = _ids(3, 12, seed=4)
    with torch.no_grad():
        full = bundle.loaded.model(ids)
    pipeline.reset(3)
    for t in range(12):
        assert (pipeline.step(ids[:, t]) - full[:, t]).abs().max() <= 1e-4
    counts = pipeline.spike_counts()
    assert len(counts) == 2 and all(c["lif1"] > 0 and c["lif2"] > 0 for c in counts)


@pytest.mark.parametrize("mode", ["parallel", "bidirectional"])
def test_non_causal_bundle_has_no_step_graphs(bundles, mode):
    bundle, _ = bundles[mode]
    assert not any("step" in name for name in bundle.manifest["files"])
    assert "centred kernel" in bundle.manifest["capabilities"]["onnx_step"]["reason"]
    assert bundle.manifest["parity"]["ok"] and "stepped_logits_max_abs" not in bundle.manifest["parity"]
    with pytest.raises(LiquidRuntimeError, match="looks ahead"):
        bundle.pipeline().reset(1)


def test_bundle_hashes_checked(bundles, tmp_path):
    bundle, ckpt = bundles["sequential"]
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in bundle.directory.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert load_liquid_bundle(copy).manifest["format"] == "neurodeploy.bundle.liquid/1"
    assert verify_liquid_bundle(load_liquid_bundle(copy), _ids(1, 5))["ok"]
    (copy / "encoder_1.nir").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="encoder_1.nir: sha256 differs"):
        load_liquid_bundle(copy)


def test_report_counts_and_energy(bundles):
    bundle, _ = bundles["bidirectional"]
    model = bundle.loaded.model
    ids = _ids(2, 16, seed=2)
    report = liquid_report(model, ids, targets=("loihi", "spinnaker2"), host="cpu")
    with torch.no_grad():
        _, blocks = model(ids, return_internals=True)
    lif2 = report.encoder_layers[1]
    assert lif2.name == "blocks.0.lif2"
    fanout = (model.blocks[0].spike_encoder.fc2.weight != 0).sum(0).double()
    expected_acs = float(((blocks[0]["lif1"] != 0).double() * fanout).sum()) / 2
    assert lif2.effective_acs == pytest.approx(expected_acs) and lif2.effective_macs == 0
    assert lif2.output_spikes == pytest.approx(float(blocks[0]["lif2"].count_nonzero()) / 2)
    # block 1's lif2 input is lif1 spikes with g = 1, so ACs; fc1 inputs are real-valued, so MACs
    assert report.encoder_layers[0].effective_macs > 0 and report.encoder_layers[0].effective_acs == 0
    data = report.to_dict()
    assert data["synaptic_ops_per_token"] > 0 and data["host_macs_per_token"] > 0
    per_token = data["energy_per_token_j"]
    assert set(per_token["total"]) == {"loihi", "spinnaker2"}
    assert per_token["encoders"]["loihi"] < per_token["encoders"]["spinnaker2"]
    assert per_token["total"]["loihi"] == pytest.approx(per_token["encoders"]["loihi"] + per_token["host"]["cpu"])
    assert "blocks.1.lif2" in report.markdown()
    json.dumps(data)
    # the same report from the deployed encoders' spikes (NIR runtime)
    from_nir = liquid_report(model, ids, spikes=bundle.pipeline().run(ids).spikes)
    assert [l.output_spikes for l in from_nir.encoder_layers] == [l.output_spikes for l in report.encoder_layers]
    assert from_nir.to_dict()["synaptic_ops_per_token"] == data["synaptic_ops_per_token"]
