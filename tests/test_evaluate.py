"""`neurodeploy eval` on synthetic datasets written in each layout: accuracy and predictions equal
to running `run` (the streaming pipeline, torch runtimes) file by file; corrupt recordings are
listed with their reason and the rest evaluated; shards merge back to the whole."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import neurodeploy
from neurodeploy.bundle import ExportOptions, export
from neurodeploy.cli import main
from neurodeploy.datasets import DatasetError, discover
from neurodeploy.eval_share import Binning, EvalSetup, SharePartial
from neurodeploy.evaluate import evaluate, merge, write_eval
from neurodeploy.events import Recording, save
from neurodeploy.events.synthetic import concatenate_samples, make_nmnist_like

CHECKPOINT = Path(neurodeploy.__file__).parent / "assets" / "mamba_spike_synthetic.safetensors"
DT_US = 10_000  # the shipped model's training bins
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "bundle"
    export(CHECKPOINT, out, ExportOptions(dt_us=DT_US, artifacts=("nir",)))
    return out


@pytest.fixture(scope="module")
def samples():
    return make_nmnist_like(10, seed=1000)  # one per class, the shipped model's test generator


def write_class_folders(root: Path, samples, extension: str, class_names=None) -> None:
    for i, (rec, label) in enumerate(samples):
        folder = root / (class_names[label] if class_names else str(label))
        folder.mkdir(parents=True, exist_ok=True)
        save(rec, folder / f"{i:04d}{extension}", format="aedat3" if extension == ".aedat" else None)


def run_per_file(bundle_dir, path, labels=None):
    """What `neurodeploy run` predicts for a file (torch front-end and backbone)."""
    results = list(neurodeploy.stream(bundle_dir, str(path), frontend="torch", backbone="torch",
                                      labels=tuple(labels) if labels else None))
    return [r.prediction for r in results]


def setup_for(bundle_dir, **kw):
    return EvalSetup(model_path=str(bundle_dir), binning=Binning(dt_us=DT_US), batch_size=4, **kw)


def test_nmnist_layout_matches_run_and_lists_the_corrupt_file(bundle_dir, samples, tmp_path):
    write_class_folders(tmp_path, samples, ".bin")
    (tmp_path / "3" / "9999.bin").write_bytes(b"\x00\x01\x02")  # truncated inside a record
    result = evaluate(bundle_dir, tmp_path, setup_for(bundle_dir))
    assert result.layout == "class_folders" and result.listed == 11
    assert [f.path for f in result.failures] == [str(tmp_path / "3" / "9999.bin")]
    assert "truncated" in result.failures[0].reason
    expected = {str(p): run_per_file(bundle_dir, p)[0] for p in sorted(tmp_path.glob("*/0*.bin"))}
    assert {o.name: o.prediction for o in result.outcomes} == expected
    labels = {o.name: o.label for o in result.outcomes}
    assert result.accuracy == np.mean([expected[n] == labels[n] for n in expected])
    assert result.accuracy >= 0.8  # the shipped model on its own test generator
    summary = result.summary()
    assert sum(map(sum, summary["confusion_matrix"])) == 10
    assert all(v > 0 for v in summary["spikes_per_sample"].values())
    assert all(v > 0 for v in summary["synops_per_sample"].values())
    assert summary["energy_j_per_sample"]["loihi"] > 0


def test_dvs_gesture_layout_segments_match_run(bundle_dir, samples, tmp_path):
    for k, part in enumerate((samples[:3], samples[3:6])):
        recording, segments = concatenate_samples(part, gap_us=20_000)
        path = tmp_path / f"user0{k}_led.aedat4"
        save(recording, path)
        rows = "".join(f"{s.label + 1},{s.t_start_us},{s.t_end_us}\n" for s in segments)  # classes count from 1
        (tmp_path / f"user0{k}_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + rows)
    (tmp_path / "user09_led.aedat4").write_bytes(b"not an aedat4 file at all")
    (tmp_path / "user09_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,0,1000\n2,1000,2000\n")
    save(samples[0][0], tmp_path / "user10_led.aedat4")
    (tmp_path / "user10_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,500,100\n")  # ends first
    result = evaluate(bundle_dir, tmp_path, setup_for(bundle_dir))
    assert result.layout == "segments" and result.listed == 8
    assert [(Path(f.path).name, len(f.samples)) for f in result.failures] == [("user09_led.aedat4", 2),
                                                                             ("user10_led.aedat4", 0)]
    assert "line 2" in result.failures[1].reason and result.summary()["recordings_failed"] == 2
    expected = []
    for k, part in enumerate((samples[:3], samples[3:6])):
        _, segments = concatenate_samples(part, gap_us=20_000)
        expected += run_per_file(bundle_dir, tmp_path / f"user0{k}_led.aedat4", segments)
    assert [o.prediction for o in result.outcomes] == expected
    assert [o.label for o in result.outcomes] == [label for _, label in samples[:6]]


def test_cifar10_dvs_layout_and_labels_csv_layout(bundle_dir, samples, tmp_path):
    cifar = tmp_path / "cifar"
    write_class_folders(cifar, samples, ".aedat", CIFAR_CLASSES)
    result = evaluate(bundle_dir, cifar, setup_for(bundle_dir))
    expected = {str(p): run_per_file(bundle_dir, p)[0] for p in sorted(cifar.glob("*/*.aedat"))}
    assert {o.name: o.prediction for o in result.outcomes} == expected
    assert [o.label for o in result.outcomes] == [CIFAR_CLASSES.index(Path(o.name).parent.name)
                                                  for o in result.outcomes]

    flat = tmp_path / "flat"
    flat.mkdir()
    lines = ["file,label,t_start_us,t_end_us"]
    for i, (rec, label) in enumerate(samples[:4]):
        save(rec, flat / f"r{i}.npz")
        lines.append(f"r{i}.npz,{label},,")
    recording, segments = concatenate_samples(samples[4:6])
    save(recording, flat / "both.npz")
    lines += [f"both.npz,{s.label},{s.t_start_us},{s.t_end_us}" for s in segments]
    (flat / "labels.csv").write_text("\n".join(lines) + "\n")
    result = evaluate(bundle_dir, flat, setup_for(bundle_dir), labels_csv=flat / "labels.csv")
    assert result.layout == "labels_csv" and len(result.outcomes) == 6 and not result.failures
    expected = [run_per_file(bundle_dir, flat / f"r{i}.npz")[0] for i in range(4)]
    expected = run_per_file(bundle_dir, flat / "both.npz", segments) + expected  # 'both.npz' sorts first
    assert [o.prediction for o in result.outcomes] == expected


def test_shards_merge_to_the_whole_and_outputs_are_written(bundle_dir, samples, tmp_path):
    write_class_folders(tmp_path / "data", samples, ".bin")
    setup = setup_for(bundle_dir, targets=("loihi", "spinnaker2"))
    whole = evaluate(bundle_dir, tmp_path / "data", setup)
    shards = [evaluate(bundle_dir, tmp_path / "data", setup, shard=(i, 3)) for i in (2, 0, 1)]
    listed = discover(tmp_path / "data").samples
    outcomes, failures = merge([SharePartial(outcomes=list(s.outcomes)) for s in shards], listed)
    assert outcomes == whole.outcomes and not failures
    assert len(evaluate(bundle_dir, tmp_path / "data", setup, max_samples=3).outcomes) == 3
    paths = write_eval(whole, tmp_path / "out")
    payload = json.loads(paths["json"].read_text())
    assert payload["summary"]["accuracy"] == whole.accuracy
    assert set(payload["summary"]["energy_j_per_sample"]) == {"loihi", "spinnaker2"}
    assert len(paths["csv"].read_text().splitlines()) == 11
    assert "Confusion matrix" in paths["markdown"].read_text() and "<table>" in paths["html"].read_text()


def test_n_time_bins_binning_and_transforms(bundle_dir, samples, tmp_path):
    write_class_folders(tmp_path, samples[:4], ".npz")
    seen = []

    def drop_off_events(recording: Recording) -> Recording:
        seen.append(len(recording.events))
        return Recording(recording.events[recording.events["p"] == 1], recording.sensor_size)

    setup = EvalSetup(model_path=str(bundle_dir), binning=Binning(n_time_bins=30), batch_size=4,
                      transforms=(drop_off_events,))
    result = evaluate(bundle_dir, tmp_path, setup)
    assert len(seen) == 4 and all(o.n_steps == 30 for o in result.outcomes)
    assert sum(o.n_events for o in result.outcomes) == sum(int((r.events["p"] == 1).sum()) for r, _ in samples[:4])


def test_cli_eval_json_and_clear_errors(bundle_dir, samples, tmp_path):
    write_class_folders(tmp_path / "data", samples[:3], ".bin")
    runner = CliRunner()
    out = runner.invoke(main, ["eval", str(bundle_dir), str(tmp_path / "data"), "--json", "-o", str(tmp_path / "o"),
                               "--shard", "0/1"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output[out.output.index("{"):])
    assert payload["summary"]["samples_evaluated"] == 3
    bad = runner.invoke(main, ["eval", str(bundle_dir), str(tmp_path / "data"), "--shard", "3/2"])
    assert bad.exit_code == 1 and "shard 3/2" in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    none = runner.invoke(main, ["eval", str(bundle_dir), str(empty)])
    assert none.exit_code == 1 and "no class folders" in none.output
    with pytest.raises(DatasetError, match="lacks column"):
        (tmp_path / "bad.csv").write_text("name,cls\nx,1\n")
        discover(tmp_path / "data", labels_csv=tmp_path / "bad.csv")


@pytest.mark.slow
def test_runtimes_agree_on_predictions_and_counts(samples, tmp_path):
    """--runtime torch (compiled), onnxruntime (ONNX backbone) and nir (the NIR front-end, stepped)."""
    bundle = tmp_path / "bundle"
    export(CHECKPOINT, bundle, ExportOptions(dt_us=DT_US, artifacts=("nir", "onnx")))
    write_class_folders(tmp_path / "data", samples[:4], ".bin")
    results = {rt: evaluate(bundle, tmp_path / "data", setup_for(bundle, runtime=rt))
               for rt in ("torch", "onnxruntime", "nir")}
    reference = [(o.index, o.prediction, o.spikes_per_layer) for o in results["torch"].outcomes]
    assert len(reference) == 4
    for rt, result in results.items():
        assert [(o.index, o.prediction, o.spikes_per_layer) for o in result.outcomes] == reference, rt


def test_runner_is_built_once_per_process_whatever_the_transforms(bundle_dir):
    from neurodeploy.eval_share import runner_for

    first = runner_for(setup_for(bundle_dir, transforms=(lambda r: r,)))
    again = runner_for(setup_for(bundle_dir, transforms=(lambda r: r,)))  # a new callable: a task's own copy
    assert again is first and again.setup.transforms != ()
    assert runner_for(setup_for(bundle_dir, runtime="torch", targets=("spinnaker2",))) is not first


def test_cli_transform_flags_fit_a_larger_sensor(bundle_dir, samples, tmp_path):
    """Recordings of a 68x68 sensor: --downsample 34x34 (issue 13's transforms) gives the 34x34 results."""
    write_class_folders(tmp_path / "small", samples[:3], ".npz")
    for i, (rec, label) in enumerate(samples[:3]):
        events = rec.events.copy()
        events["x"] *= 2
        events["y"] *= 2
        (tmp_path / "big" / str(label)).mkdir(parents=True, exist_ok=True)
        save(Recording(events, (68, 68)), tmp_path / "big" / str(label) / f"{i:04d}.npz")
    runner = CliRunner()
    small = runner.invoke(main, ["eval", str(bundle_dir), str(tmp_path / "small"), "--json",
                                 "-o", str(tmp_path / "o1")])
    big = runner.invoke(main, ["eval", str(bundle_dir), str(tmp_path / "big"), "--json", "-o", str(tmp_path / "o2"),
                               "--downsample", "34x34"])
    unfit = runner.invoke(main, ["eval", str(bundle_dir), str(tmp_path / "big"), "--json", "-o", str(tmp_path / "o3")])
    assert small.exit_code == big.exit_code == unfit.exit_code == 0, (small.output, big.output, unfit.output)
    rows = [json.loads((tmp_path / o / "eval.json").read_text())["samples"] for o in ("o1", "o2")]
    assert [(r["prediction"], r["n_events"]) for r in rows[0]] == [(r["prediction"], r["n_events"]) for r in rows[1]]
    failures = json.loads((tmp_path / "o3" / "eval.json").read_text())["failures"]
    assert len(failures) == 3 and all("sensor size (68, 68)" in f["reason"] for f in failures)
