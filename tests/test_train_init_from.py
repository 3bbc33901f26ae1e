"""`neurodeploy train --init-from` on both reference checkpoint kinds and on the toolkit's own, with
synthetic data and with the user's labelled recordings: sizes and dt kept, changes said, no traceback."""
import json

import pytest
from click.testing import CliRunner

import neurodeploy.events as E
from neurodeploy.cli import main
from neurodeploy.demo import ASSET_CHECKPOINT, ASSET_RECORDING, asset_path
from neurodeploy.model import load_checkpoint
from neurodeploy.model.mamba_spike.checkpoint import checkpoint_metadata
from neurodeploy.model.mamba_spike.provenance import V1, V2, checkpoint_facts
from neurodeploy.events.labels import read_label_file
from test_model_checkpoint import reference_state_dict, write_v1, write_v2


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref")
    write_v1(folder / "v1.pth", reference_state_dict("v1"))
    write_v2(folder / "v2.pth", reference_state_dict("v2"))
    return folder


def test_reference_facts(references):
    v1, v2 = checkpoint_facts(references / "v1.pth"), checkpoint_facts(references / "v2.pth")
    assert (v1["kind"], v1["dt_us"], v1["recorded_accuracy"]) == (V1, 1000, pytest.approx(0.991))
    assert (v2["kind"], v2["dt_us"], v2["recorded_accuracy"]) == (V2, 1000, pytest.approx(0.985))
    own = checkpoint_facts(asset_path(ASSET_CHECKPOINT))
    assert own["dt_us"] == 10_000 and own["recorded_accuracy"] == 1.0
    shown = CliRunner().invoke(main, ["info", str(references / "v2.pth")])
    assert shown.exit_code == 0 and V2 in shown.output and "dt_us: 1000" in shown.output
    assert "recorded accuracy: 98.5%" in shown.output


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_init_from_reference_checkpoint(references, tmp_path, version):
    out = tmp_path / "tuned.safetensors"
    result = CliRunner().invoke(main, ["train", "--init-from", str(references / f"{version}.pth"), "--epochs", "1",
                                       "--n-train", "4", "--n-test", "2", "--dt-us", "30000", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "pooling: max -> sum" in result.output and "reset_timing: delayed -> immediate" in result.output
    assert ("interface: centered -> causal" in result.output) == (version == "v1")  # v2 is causal already
    assert "sizes kept" in result.output
    _, source = load_checkpoint(references / f"{version}.pth")
    _, tuned = load_checkpoint(out)
    assert (tuned.d_model, tuned.n_layers, tuned.spiking_channels, tuned.recurrent) == (
        source.d_model, source.n_layers, source.spiking_channels, source.recurrent)
    assert (tuned.pooling, tuned.interface) == ("sum", "causal")
    assert checkpoint_metadata(out)["dt_us"] == "30000"


def _labelled_files(folder, n_files=2, samples_per_file=3):
    rec = E.load(asset_path(ASSET_RECORDING))
    segments = read_label_file(f"{asset_path(ASSET_RECORDING)}.labels.csv")
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(n_files):
        chosen = segments[i * samples_per_file:(i + 1) * samples_per_file]
        events = rec.events[(rec.events["t"] >= chosen[0].t_start_us) & (rec.events["t"] < chosen[-1].t_end_us)]
        path = folder / f"rec{i}.npz"
        E.save(E.Recording(events, rec.sensor_size), path)
        (folder / f"rec{i}.npz.labels.csv").write_text(
            "t_start_us,t_end_us,label\n" + "".join(f"{s.t_start_us},{s.t_end_us},{s.label}\n" for s in chosen))
        paths.append(path)
    return paths


def test_fine_tune_on_labelled_recordings_keeps_dt(tmp_path):
    _labelled_files(tmp_path / "recs")
    out = tmp_path / "tuned.safetensors"
    result = CliRunner().invoke(main, ["train", "--init-from", str(asset_path(ASSET_CHECKPOINT)), "--data",
                                       str(tmp_path / "recs"), "--epochs", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "dt 10000 us (checkpoint metadata)" in result.output
    assert "data: 5 labelled samples for training, 1 held out" in result.output
    meta = checkpoint_metadata(out)
    assert meta["dt_us"] == "10000" and meta["dataset"] == str(tmp_path / "recs") and meta["n_train"] == "5"


def test_fine_tune_on_a_camera_file_with_labels_csv_and_transforms(tmp_path):
    rec = E.load(asset_path(ASSET_RECORDING))
    segments = read_label_file(f"{asset_path(ASSET_RECORDING)}.labels.csv")[:4]
    events = rec.events[rec.events["t"] < segments[-1].t_end_us].copy()
    events["x"] += 150  # the scene in a DAVIS346 frame
    events["y"] += 100
    camera = tmp_path / "davis.aedat4"
    E.save(E.Recording(events, (346, 260)), camera)
    labels = tmp_path / "labels.csv"
    labels.write_text("t_start_us,t_end_us,label\n" + "".join(f"{s.t_start_us},{s.t_end_us},{s.label}\n"
                                                                for s in segments))
    runner = CliRunner()
    args = ["train", "--init-from", str(asset_path(ASSET_CHECKPOINT)), "--data", str(camera), "--labels",
            str(labels), "--epochs", "1", "-o", str(tmp_path / "t.safetensors"), "--json"]
    refused = runner.invoke(main, args)
    assert refused.exit_code == 1 and "--crop X,Y,34,34" in refused.output and "Traceback" not in refused.output
    done = runner.invoke(main, [*args, "--crop", "150,100,34,34"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["metrics"]["n_train"] == 3
    # the checkpoint remembers the transform it was trained with; export records it in the bundle
    exported = runner.invoke(main, ["export", str(tmp_path / "t.safetensors"), "-o", str(tmp_path / "b"),
                                    "--artifacts", "onnx"])
    assert exported.exit_code == 0, exported.output
    assert "input transforms: crop 34x34 at (150, 100) (the checkpoint was trained with them" in exported.output
    ran = runner.invoke(main, ["run", str(tmp_path / "b"), str(camera), "--labels", str(labels), "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["summary"]["samples"] == 4


def test_labels_beyond_the_classes_are_refused(tmp_path):
    (path,) = _labelled_files(tmp_path / "recs", n_files=1)
    csv = path.with_name(path.name + ".labels.csv")
    rows = csv.read_text().splitlines()
    rows[1] = ",".join(rows[1].split(",")[:2] + ["12"])
    csv.write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(main, ["train", "--init-from", str(asset_path(ASSET_CHECKPOINT)), "--data",
                                       str(path), "--epochs", "1", "-o", str(tmp_path / "t.safetensors")])
    assert result.exit_code == 1 and "10 classes" in result.output and "Traceback" not in result.output


def test_train_help_says_how_long_the_defaults_take():
    text = CliRunner().invoke(main, ["train", "--help"]).output
    assert "two" in text and "minutes on 2 CPU cores" in text and "123 s" in text
