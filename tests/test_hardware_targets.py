"""Hardware targets: the chip-neutral layer walk, the per-chip verdicts against the published
limits, the folding of pooling into the synapse, and the Speck 8-bit software model (sinabs)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.exporters.nir import export_frontend
from neurodeploy.formats.nir_frontend import write_frontend
from neurodeploy.hardware.fit import check_targets, fold, folded_bias, folded_weight, quantisation_error
from neurodeploy.hardware.layers import spiking_layers
from neurodeploy.hardware.speck import SpeckModelError, run_speck_model
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.runtimes.nir import NIRFrontendRuntime

DT = 1e-3


def _graph(**overrides):
    torch.manual_seed(0)
    config = MambaSpikeConfig.deployable(d_model=16, n_layers=1, **overrides)
    return export_frontend(MambaSpike(config), DT)


def _verdict(graph, target):
    (verdict,) = check_targets(spiking_layers(graph), [target])
    return verdict


def test_layer_walk_of_the_nmnist_front_end():
    layers = spiking_layers(_graph())
    assert [l.name for l in layers] == ["lif1", "lif2", "lif3"]
    assert [l.output_shape for l in layers] == [(32, 17, 17), (32, 8, 8), (64, 8, 8)]
    assert [l.pool for l in layers] == ["sum", "sum", None]
    assert layers[0].graded_input and not layers[1].graded_input
    assert sum(l.neurons for l in layers) == 9248 + 2048 + 4096


@pytest.mark.parametrize("pool", ["sum", "avg"])
def test_folded_conv_equals_conv_then_pooling(pool):
    layer = spiking_layers(_graph(pooling=pool))[0]
    x = torch.randn(2, 2, 34, 34)
    conv = F.conv2d(x, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias), padding=layer.padding)
    expected = F.avg_pool2d(conv, 2) * (4 if pool == "sum" else 1)
    f = fold(layer)
    got = F.conv2d(x, torch.from_numpy(folded_weight(layer)), torch.from_numpy(folded_bias(layer)),
                   stride=f.stride, padding=layer.padding)[..., :17, :17]
    assert f.kernel == (4, 4) and f.stride == (2, 2)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_speck_memory_fits_the_nmnist_front_end_on_three_cores_but_not_its_leak():
    verdict = _verdict(_graph(), "speck")
    assert not verdict.fits and verdict.memory_fits
    assert verdict.figures["cores_used"] == 3
    assert all("leak" in layer.reasons[0] for layer in verdict.layers)
    # sinabs' maths: kernel c*2^(ceil log2(kh kw) + ceil log2 f), neurons f*2^(ceil log2 h + ceil log2 w)
    assert [l.figures["neuron_memory"] for l in verdict.layers] == [32 * 2 ** 10, 32 * 2 ** 6, 64 * 2 ** 6]
    assert [l.figures["kernel_memory"] for l in verdict.layers] == [2 * 2 ** 9, 32 * 2 ** 9, 32 * 2 ** 10]
    assert any("integrate-and-fire" in change for change in verdict.changes)
    iaf = _verdict(_graph(beta=1.0, reset="subtract"), "speck")
    assert iaf.fits, iaf.to_dict()


def test_speck_refuses_the_128x128_front_end_on_neuron_memory():
    graph = _graph(input_height=128, input_width=128, spiking_channels=128, beta=1.0)
    verdict = _verdict(graph, "speck")
    assert not verdict.memory_fits
    too_big = {l.layer: l.reasons for l in verdict.layers if any("neuron memory" in r for r in l.reasons)}
    assert set(too_big) == {"lif1", "lif3"}
    assert "131,072 > 65,536" in too_big["lif1"][0]


def test_xylo_fits_neither_and_loihi2_fits_both():
    for graph in (_graph(), _graph(input_height=128, input_width=128, spiking_channels=128)):
        xylo = _verdict(graph, "xylo")
        assert not xylo.fits and not xylo.memory_fits
        assert all("convolution" in l.reasons[0] for l in xylo.layers)
        assert _verdict(graph, "loihi2").fits
        loihi = _verdict(graph, "loihi")
        assert not loihi.fits and "binary" in loihi.layers[0].reasons[0]  # graded counts on Loihi 1


def test_reset_and_timing_mismatches_are_named():
    graph = _graph(reset="subtract", reset_timing="delayed")
    reasons = _verdict(graph, "loihi2").layers[0].reasons  # Loihi 2 microcode: any reset
    assert reasons == ()
    loihi = _verdict(graph, "loihi")
    assert any("reset 'subtract'" in r for r in loihi.layers[1].reasons)
    assert any("delayed" in r for r in loihi.layers[1].reasons)


def test_quantisation_error():
    w = np.array([1.0, -1.0, 0.5, 0.25], dtype=np.float32)
    assert quantisation_error(w, 8) < 0.01
    assert quantisation_error(w, 2) > 0.1  # 2 bits: 0.25 and 0.5 round to 0 or 1
    assert quantisation_error(np.zeros(3), 8) == 0.0


def _iaf_graph():
    torch.manual_seed(0)
    config = MambaSpikeConfig.deployable(beta=1.0, reset="subtract", d_model=16, n_layers=1, conv_channels=8,
                                         spiking_channels=16)
    model = MambaSpike(config)
    with torch.no_grad():  # enough drive that every layer fires
        for conv in (model.spiking_frontend.conv1, model.spiking_frontend.conv2, model.spiking_frontend.conv3):
            conv.weight.mul_(2.0)
    return export_frontend(model, DT)


def test_speck_software_model_agrees_per_layer_and_no_layer_falls_silent():
    graph = _iaf_graph()
    layers = spiking_layers(graph)
    frames = torch.poisson(torch.full((2, 12, 2, 34, 34), 0.3), generator=torch.Generator().manual_seed(1))
    reference = NIRFrontendRuntime(graph).run_layers(frames)
    results = run_speck_model(layers, frames, reference)
    for r in results:
        assert r.reference_spikes > 0
        assert r.float_agreement == 1.0  # the float Speck core is the toolkit's front-end, exactly
        assert 0.8 <= r.quantised_agreement < 1.0 or r.quantised_agreement == 1.0
        assert not r.silent and r.quantised_spikes > 0
        assert r.membrane_floor <= -float(layers[0].threshold)


def test_speck_software_model_refuses_a_leaky_front_end():
    graph = _graph()
    with pytest.raises(SpeckModelError, match="leak.*beta = 1"):
        run_speck_model(spiking_layers(graph), torch.zeros(1, 2, 2, 34, 34), {})


def test_targets_command_on_a_nir_file_and_refusals(tmp_path):
    path = write_frontend(_iaf_graph(), tmp_path / "frontend.nir")
    result = CliRunner().invoke(main, ["targets", str(path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert {t["target"] for t in payload["targets"]} == {"loihi", "loihi2", "speck", "xylo", "spinnaker2", "host"}
    assert payload["speck_software"]["ran"] and "synthetic" in payload["speck_software"]["data"]
    text = CliRunner().invoke(main, ["targets", str(path), "--target", "speck"])
    assert text.exit_code == 0 and "Speck software model" in text.output and "fits on 3 of 9 cores" in text.output
    bad = CliRunner().invoke(main, ["targets", str(path), "--target", "truenorth"])
    assert bad.exit_code == 1 and "unknown target" in bad.output and "Traceback" not in bad.output


# -- Loihi on SANA-FE (calibrated simulator, optional extra, run in a child process) -------------
def _netx_layers(tmp_path, **overrides):
    from neurodeploy.exporters.netx import export_netx
    from neurodeploy.runtimes.lava_fixed_point import read_netx_layers

    torch.manual_seed(0)
    config = MambaSpikeConfig.deployable(d_model=16, n_layers=1, conv_channels=4, spiking_channels=8, **overrides)
    model = MambaSpike(config)
    with torch.no_grad():  # biases large enough to matter while the pipeline fills
        for conv in (model.spiking_frontend.conv1, model.spiking_frontend.conv2, model.spiking_frontend.conv3):
            conv.weight.mul_(3.0)
            conv.bias.add_(0.2)
    path = tmp_path / "frontend.net"
    export_netx(export_frontend(model, DT), path)
    return read_netx_layers(path)[0]


def test_loihi_timing_model_equals_the_unpipelined_one_without_biases(tmp_path):
    import dataclasses

    from neurodeploy.runtimes.contract import step_layers
    from neurodeploy.runtimes.lava_fixed_point import FixedPointFrontend

    layers = tuple(dataclasses.replace(l, bias=None) for l in _netx_layers(tmp_path))
    frames = torch.poisson(torch.full((6, 2, 34, 34), 0.3), generator=torch.Generator().manual_seed(2)).numpy().astype(np.int64)
    model = FixedPointFrontend(layers)
    plain_layers = step_layers(model, torch.from_numpy(frames)[None]).values()
    for plain, pipelined in zip(plain_layers, model.run_pipelined(frames)):
        assert plain.sum() > 0
        np.testing.assert_array_equal(plain[0].numpy().astype(np.int64), pipelined)


def test_sanafe_run_is_refused_before_building_when_it_would_not_fit(tmp_path):
    from neurodeploy.hardware.sanafe_network import SanafeError, run_sanafe

    layers = _netx_layers(tmp_path)
    frames = np.ones((2, 2, 34, 34), dtype=np.int64)
    with pytest.raises(SanafeError, match=r"would need about .* GiB for [\d,]+ synapses"):
        run_sanafe(layers, frames, budget_bytes=2 ** 20)
    frames[0, 0, 0, 0] = 1000
    with pytest.raises(SanafeError, match="bin finer"):
        run_sanafe(layers, frames)


@pytest.mark.slow
def test_sanafe_spikes_equal_the_loihi_timing_model_with_energy_and_latency(tmp_path):
    pytest.importorskip("sanafe")
    from neurodeploy.hardware.sanafe_network import run_sanafe
    from neurodeploy.runtimes.lava_fixed_point import FixedPointFrontend

    layers = _netx_layers(tmp_path)
    frames = torch.poisson(torch.full((6, 2, 34, 34), 0.4), generator=torch.Generator().manual_seed(3)).numpy().astype(np.int64)
    assert frames.max() >= 2  # graded counts, split over input-neuron copies
    result = run_sanafe(layers, frames)
    reference = FixedPointFrontend(layers).run_pipelined(frames)
    for name, ref, got in zip(result.layer_names, reference, result.spikes):
        assert ref.sum() > 0, name
        np.testing.assert_array_equal(got, ref, err_msg=name)
    assert result.input_copies == int(frames.max())
    assert len(result.energy_j_per_step) == 6 + len(layers) and (result.energy_j_per_step > 0).all()
    assert (result.latency_s_per_step > 0).all() and result.energy_j > 0


@pytest.mark.slow
def test_report_puts_the_calibrated_loihi_figures_beside_the_per_op_estimate(tmp_path, shipped_onnx_bundle):
    pytest.importorskip("sanafe")
    from neurodeploy.demo import ASSET_CHECKPOINT, ASSET_RECORDING, asset_path

    bundle = tmp_path / "bundle"
    made = CliRunner().invoke(main, ["export", str(asset_path(ASSET_CHECKPOINT)), "-o", str(bundle)])
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(main, ["report", str(bundle), str(asset_path(ASSET_RECORDING)), "--max-samples", "1",
                                       "--sanafe", "-o", str(tmp_path / "report"), "--json"])
    assert result.exit_code == 0, result.output
    calibrated = json.loads(result.output)["calibrated_loihi"]
    assert calibrated["ran"], calibrated
    assert set(calibrated["spike_agreement_with_loihi_timing_model"].values()) == {1.0}
    assert calibrated["energy_j_per_sample"] > 0 and calibrated["per_op_estimate_j_per_sample"] > 0
    assert calibrated["latency_s_per_step"] > 0
    assert (tmp_path / "report" / "calibrated_loihi.json").is_file()
    inspected = json.loads(CliRunner().invoke(main, ["inspect", str(bundle), "--json"]).output)
    assert inspected["targets"]["loihi2"] == "fits" and inspected["targets"]["xylo"].startswith("does not fit")
    # a bundle without a netx front-end says why instead of guessing
    no_netx = CliRunner().invoke(main, ["report", str(shipped_onnx_bundle), str(asset_path(ASSET_RECORDING)),
                                        "--max-samples", "1", "--sanafe", "-o", str(tmp_path / "r2"), "--json"])
    assert no_netx.exit_code == 0, no_netx.output
    assert json.loads(no_netx.output)["calibrated_loihi"]["ran"] is False


def test_inspect_of_a_bundle_without_nir_says_there_is_no_chip_check(shipped_onnx_bundle):
    inspected = json.loads(CliRunner().invoke(main, ["inspect", str(shipped_onnx_bundle), "--json"]).output)
    assert inspected["targets"].startswith("no NIR front-end")
