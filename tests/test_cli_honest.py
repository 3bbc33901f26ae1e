"""What a CLI user meets: flags for what errors suggest, truncated files refused alike and up front,
measured approximations reported honestly, exports that are atomic, reproducible and 0644."""
import dataclasses
import json
import stat

import pytest
import torch
from click.testing import CliRunner

import neurodeploy.events as E
from neurodeploy import bundle as bundle_mod
from neurodeploy.cli import main
from neurodeploy.demo import ASSET_CHECKPOINT, ASSET_RECORDING, asset_path
from neurodeploy.exporters.nir import PoolRewriteReport
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.model.mamba_spike.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def small_bundle(shipped_onnx_bundle):
    return shipped_onnx_bundle


@pytest.fixture(scope="module")
def recording_34(tmp_path_factory):
    rec = E.load(asset_path(ASSET_RECORDING))
    return E.Recording(rec.events[rec.events["t"] < 600_000], rec.sensor_size)


@pytest.mark.parametrize("fmt, name", [("dat", "cut.dat"), ("evt2", "cut2.raw"), ("evt3", "cut3.raw"),
                                       ("nmnist_bin", "cut.bin"), ("aedat2", "cut2.aedat"), ("aedat3", "cut3.aedat")])
def test_truncated_file_is_refused_before_any_output_in_every_format(small_bundle, recording_34, tmp_path, fmt, name):
    whole = tmp_path / f"whole_{name}"
    if fmt == "aedat2":  # the DAVIS layout: the 34x34 scene on a DAVIS346
        E.save(E.Recording(recording_34.events, (346, 260)), whole, format=fmt, layout="davis")
    else:
        E.save(recording_34, whole, format=fmt)
    cut = tmp_path / name
    cut.write_bytes(whole.read_bytes()[:-3])
    runner = CliRunner()
    fit = ["--crop", "0,0,34,34"] if fmt == "aedat2" else []
    refused = runner.invoke(main, ["run", str(small_bundle), str(cut), "--window-us", "300000", "--frontend", "torch",
                                   "--backbone", "torch", *fit])
    assert refused.exit_code == 1
    assert "ends inside a record" in refused.output and "--truncated count" in refused.output
    assert "sample" not in refused.output  # the error comes before any sample was printed
    assert "Traceback" not in refused.output
    counted = runner.invoke(main, ["run", str(small_bundle), str(cut), "--window-us", "300000", "--frontend", "torch",
                                   "--backbone", "torch", "--truncated", "count", *fit])
    assert counted.exit_code == 0, counted.output
    seen = runner.invoke(main, ["inspect", str(cut), "--truncated", "count", "--json"])
    assert seen.exit_code == 0 and json.loads(seen.output)["decode"]["truncated_bytes"] > 0


def test_messages_name_flags_that_exist(small_bundle, tmp_path):
    csv = tmp_path / "big.csv"
    csv.write_text("# sensor_size: 64x64\nt,x,y,p\n10,40,3,1\n20,5,5,0\n")
    runner = CliRunner()
    refused = runner.invoke(main, ["inspect", str(csv), "--sensor-size", "34x34"])
    assert refused.exit_code == 1 and "--out-of-bounds drop" in refused.output and "--sensor-size" in refused.output
    dropped = runner.invoke(main, ["inspect", str(csv), "--sensor-size", "34x34", "--out-of-bounds", "drop", "--json"])
    assert dropped.exit_code == 0, dropped.output
    assert json.loads(dropped.output)["decode"]["out_of_bounds"] == 1
    for command in ("run", "verify", "report", "inspect"):
        text = runner.invoke(main, [command, "--help"]).output
        for flag in ("--sensor-size", "--format", "--truncated", "--out-of-bounds", "--non-monotonic", "--layout",
                     "--event-stream", "--downsample", "--crop", "--center-crop", "--flip-x", "--merge-polarity",
                     "--denoise-us"):
            assert flag in text, (command, flag)


def test_aedat4_stream_name_flag(tmp_path, recording_34):
    path = tmp_path / "r.aedat4"
    E.save(recording_34, path)
    runner = CliRunner()
    wrong = runner.invoke(main, ["inspect", str(path), "--event-stream", "nope"])
    assert wrong.exit_code == 1 and "--event-stream" in wrong.output
    right = runner.invoke(main, ["inspect", str(path), "--event-stream", "events", "--json"])
    assert right.exit_code == 0 and json.loads(right.output)["events"] == len(recording_34)


def _reference_like(tmp_path, threshold):
    """A v1-layout (max pooling) model, small, saved in the own format."""
    config = dataclasses.replace(MambaSpikeConfig.nmnist_v1(), d_model=16, n_layers=1, conv_channels=8,
                                 spiking_channels=16, threshold=threshold)
    torch.manual_seed(0)
    path = tmp_path / f"ref_{threshold}.safetensors"
    save_checkpoint(MambaSpike(config).eval(), path, metadata={"dt_us": "10000"})
    return path


def test_pool_rewrite_says_synthetic_and_warns_loudly_of_a_silent_layer(tmp_path):
    checkpoint = _reference_like(tmp_path, threshold=2.0)  # avg pooling silences lif2 on this model
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(checkpoint), "-o", str(tmp_path / "b"), "--pool-rewrite", "avg",
                                  "--artifacts", "nir,onnx"])
    assert result.exit_code == 0, result.output
    assert "measured on SYNTHETIC samples" in result.output and "--calibration FILE" in result.output
    assert "lif2 fell SILENT" in result.output
    assert "prediction agreement" in result.output and "logit drift max" in result.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    report = manifest["pool_rewrite"]
    assert report["silent_layers"] == ["lif2"] and report["synthetic"] is True
    assert report["spikes_before"]["lif2"] > 0 and report["spikes_after"]["lif2"] == 0
    assert 0.0 <= report["prediction_agreement"] <= 1.0 and report["logit_drift_max"] >= report["logit_drift_mean"]
    shown = runner.invoke(main, ["inspect", str(tmp_path / "b")])
    assert "approximation: max pooling replaced by avg pooling" in shown.output and "SILENT" in shown.output


def test_pool_rewrite_measures_on_a_named_calibration_file(tmp_path, recording_34):
    checkpoint = _reference_like(tmp_path, threshold=1.0)
    calibration = tmp_path / "calib.npz"
    E.save(recording_34, calibration)
    result = CliRunner().invoke(main, ["export", str(checkpoint), "-o", str(tmp_path / "b"), "--pool-rewrite", "sum",
                                       "--artifacts", "nir", "--calibration", str(calibration),
                                       "--calibration-window-us", "100000", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["pool_rewrite"]
    assert report["synthetic"] is False and f"calibration file" in report["sample"] and "calib.npz" in report["sample"]
    assert report["n_samples"] == 6 and "SYNTHETIC" not in report["summary"]


def test_saturation_is_reported():
    report = PoolRewriteReport("sum", "x", 1, 10, {"lif1": 10}, {"lif1": 90}, (), (), ("lif1",), {"lif1": 100},
                               0.5, 0.1, False)
    assert "lif1 SATURATED" in report.summary()
    assert PoolRewriteReport.from_json(report.to_json()) == report


def test_verify_says_what_it_did_not_check(small_bundle):
    result = CliRunner().invoke(main, ["verify", str(small_bundle), "--steps", "5", "--samples", "1"])
    assert result.exit_code == 0, result.output
    assert "front-end: not verified (no NIR in this bundle)" in result.output
    assert "checked: backbone onnxruntime" in result.output


def test_export_is_atomic_reproducible_and_0644(tmp_path, monkeypatch):
    runner = CliRunner()
    args = ["export", str(asset_path(ASSET_CHECKPOINT)), "--artifacts", "nir,onnx"]
    assert runner.invoke(main, [*args, "-o", str(tmp_path / "a")]).exit_code == 0
    assert runner.invoke(main, [*args, "-o", str(tmp_path / "b")]).exit_code == 0
    a = json.loads((tmp_path / "a" / "manifest.json").read_text())["artifacts"]
    b = json.loads((tmp_path / "b" / "manifest.json").read_text())["artifacts"]
    assert a == b  # same sha256 for every artifact
    for path in (tmp_path / "a").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    again = runner.invoke(main, [*args, "-o", str(tmp_path / "a")])
    assert again.exit_code == 1 and "--force" in again.output
    assert runner.invoke(main, [*args, "-o", str(tmp_path / "a"), "--force"]).exit_code == 0

    def broken(*_, **__):
        raise bundle_mod.BundleError("simulated failure while writing the ONNX backbone")

    monkeypatch.setattr(bundle_mod, "_export_onnx", broken)
    failed = runner.invoke(main, [*args, "-o", str(tmp_path / "c")])
    assert failed.exit_code == 1 and "simulated failure" in failed.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # nothing left behind


@pytest.mark.parametrize("fmt, name", [("evt3", "e.raw"), ("evt2", "e2.raw"), ("dat", "e.dat")])
def test_epoch_timestamps_refused_with_the_reason_or_rebased(tmp_path, fmt, name):
    epoch = 1_700_000_000_000_000  # us since 1970: what a camera host's clock stamps
    rec = E.Recording(E.make_events([1, 2, 3], [1, 2, 3], [epoch, epoch + 10, epoch + 20], [1, 0, 1]), (34, 34))
    with pytest.raises(E.EventFileError, match="rebase_time=True"):
        E.save(rec, tmp_path / name, format=fmt)
    assert not (tmp_path / name).exists() or (tmp_path / name).stat().st_size < 1000
    E.save(rec, tmp_path / name, format=fmt, rebase_time=True)
    assert E.load(tmp_path / name, format=fmt).events["t"].tolist() == [0, 10, 20]
