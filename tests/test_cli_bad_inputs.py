"""Every CLI command against a matrix of bad inputs: exit code 1, one message naming the thing, no
traceback, in text and under --json (the one handler in neurodeploy.cli)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodeploy.bundle import ExportOptions, export
from neurodeploy.cli import main
from neurodeploy.events import Recording, make_events, save
from neurodeploy.events.labels import LabelSegment, write_label_file
from neurodeploy.model import MambaSpike, MambaSpikeConfig, save_checkpoint

SMALL = dict(input_height=16, input_width=16, conv_channels=4, spiking_channels=4, d_model=8, n_layers=1)
OPTIONS = ExportOptions(dt_us=10_000, artifacts=("nir", "onnx"), parity_samples=1, parity_steps=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_inputs")
    torch.manual_seed(0)
    checkpoint = save_checkpoint(MambaSpike(MambaSpikeConfig.deployable(**SMALL)).eval(), d / "model.safetensors")
    max_pool = save_checkpoint(MambaSpike(MambaSpikeConfig.deployable(**SMALL, pooling="max")).eval(),
                               d / "maxpool.safetensors")
    bundle = export(checkpoint, d / "bundle", OPTIONS).directory
    max_bundle = export(max_pool, d / "bundle_maxpool", OPTIONS).directory  # frontend.nir not made: max pooling
    rng = np.random.default_rng(0)
    n = 2000
    events = make_events(rng.integers(0, 16, n), rng.integers(0, 16, n), np.sort(rng.integers(0, 200_000, n)),
                         rng.integers(0, 2, n))
    save(Recording(events, (16, 16)), d / "rec.npz")
    save(Recording(events, (16, 16)), d / "rec.aedat4")
    whole = (d / "rec.aedat4").read_bytes()
    (d / "truncated.aedat4").write_bytes(whole[: len(whole) * 2 // 3])
    # a good recording whose labels file beside it is malformed (picked up by run and report)
    shutil.copy(d / "rec.npz", d / "mislabelled.npz")
    (d / "mislabelled.npz.labels.csv").write_text("t_start_us,t_end_us,label\n0,abc,1\n")
    write_label_file(d / "rec.npz.labels.csv", [LabelSegment(0, 100_000, 1), LabelSegment(100_000, 200_001, 2)])
    (d / "bad.labels.csv").write_text("t_start_us,t_end_us,label\n100,50,1\n")
    (d / "notes.txt").write_text("hello\n")
    (d / "garbage.onnx").write_bytes(bytes(range(256)) * 2)
    (d / "folder").mkdir()
    tampered = d / "tampered_bundle"
    shutil.copytree(bundle, tampered)
    (tampered / "backbone_step.onnx").write_bytes((bundle / "backbone_step.onnx").read_bytes()[:1000])  # cut short
    broken = d / "broken_bundle"
    shutil.copytree(bundle, broken)
    (broken / "manifest.json").write_text("{not json")
    return {"dir": d, "checkpoint": checkpoint, "max_pool": max_pool, "bundle": bundle, "max_bundle": max_bundle,
            "tampered": tampered, "broken": broken, "events": d / "rec.npz", "truncated": d / "truncated.aedat4",
            "mislabelled": d / "mislabelled.npz", "bad_labels": d / "bad.labels.csv", "text": d / "notes.txt",
            "folder": d / "folder", "garbage_onnx": d / "garbage.onnx", "missing": d / "does_not_exist.npz"}


# (case, command line with {placeholders}, what the message must name)
CASES = [
    # missing path
    ("info/missing", "info {missing}", "{missing}"),
    ("export/missing", "export {missing} -o {dir}/out", "{missing}"),
    ("run/missing bundle", "run {missing} {events}", "{missing}"),
    ("run/missing events", "run {bundle} {missing}", "{missing}"),
    ("inspect/missing", "inspect {missing}", "{missing}"),
    ("verify/missing events", "verify {bundle} {missing}", "{missing}"),
    ("bench/missing bundle", "bench {missing}", "{missing}"),
    ("targets/missing", "targets {missing}", "{missing}"),
    ("report/missing events", "report {bundle} {missing} -o {dir}/r", "{missing}"),
    # a folder where a file is expected, a file where a folder is expected
    ("info/folder", "info {folder}", "{folder}"),
    ("export/folder", "export {folder} -o {dir}/out", "{folder}"),
    ("run/folder as events", "run {bundle} {folder}", "{folder}"),
    ("run/file as bundle", "run {checkpoint} {events}", "{checkpoint}"),
    ("verify/folder as events", "verify {bundle} {folder}", "{folder}"),
    ("report/folder as events", "report {bundle} {folder} -o {dir}/r", "{folder}"),
    ("demo/file as output folder", "demo --out {text}", "{text}"),
    # wrong file type
    ("info/text file", "info {text}", "{text}"),
    ("run/text file as events", "run {bundle} {text}", "{text}"),
    ("inspect/text file", "inspect {text}", "{text}"),
    ("inspect/garbage .onnx", "inspect {garbage_onnx}", "{garbage_onnx}"),
    ("targets/text file", "targets {text}", "{text}"),
    ("targets/events as a graph", "targets {events}", "{events}"),
    ("verify/text file as events", "verify {bundle} {text}", "{text}"),
    # corrupt bundle
    ("run/tampered bundle", "run {tampered} {events}", "backbone_step.onnx"),
    ("run/broken manifest", "run {broken} {events}", "manifest.json"),
    ("verify/tampered bundle", "verify {tampered}", "backbone_step.onnx"),
    ("bench/broken manifest", "bench {broken}", "manifest.json"),
    ("inspect/broken manifest", "inspect {broken}", "manifest.json"),
    ("targets/broken manifest", "targets {broken}", "manifest.json"),
    ("report/tampered bundle", "report {tampered} {events} -o {dir}/r", "backbone_step.onnx"),
    # truncated recording
    ("run/truncated", "run {bundle} {truncated}", "{truncated}"),
    ("inspect/truncated", "inspect {truncated}", "{truncated}"),
    ("verify/truncated", "verify {bundle} {truncated}", "{truncated}"),
    ("report/truncated", "report {bundle} {truncated} -o {dir}/r", "{truncated}"),
    # malformed labels
    ("run/malformed --labels", "run {bundle} {events} --labels {bad_labels}", "{bad_labels}"),
    ("run/malformed labels beside", "run {bundle} {mislabelled}", "mislabelled.npz.labels.csv"),
    ("report/malformed labels beside", "report {bundle} {mislabelled} -o {dir}/r", "mislabelled.npz.labels.csv"),
    # checkpoint given as events, events given as checkpoint
    ("run/checkpoint as events", "run {bundle} {checkpoint}", "{checkpoint}"),
    ("verify/checkpoint as events", "verify {bundle} {checkpoint}", "{checkpoint}"),
    ("report/checkpoint as events", "report {bundle} {checkpoint} -o {dir}/r", "{checkpoint}"),
    ("info/events as checkpoint", "info {events}", "{events}"),
    ("export/events as checkpoint", "export {events} -o {dir}/out", "{events}"),
    # unsupported layer (max pooling has no NIR form)
    ("export/unsupported layer", "export {max_pool} -o {dir}/out_nir --artifacts nir", "MaxPool2d"),
    ("export/pool rewrite of a model without max pooling",
     "export {checkpoint} -o {dir}/out_rw --pool-rewrite sum --artifacts nir", "pool_rewrite"),
    ("run/unsupported layer", "run {max_bundle} {events} --frontend nir", "frontend.nir"),
    ("report/unsupported layer", "report {max_bundle} {events} --frontend nir -o {dir}/r", "frontend.nir"),
]
TRAIN_CASES = [  # train has no --json
    ("train/missing checkpoint", "train --init-from {missing}", "{missing}"),
    ("train/no samples", "train --n-train 0 --out {dir}/t.st", "n_samples"),
    ("train/events as checkpoint", "train --init-from {events} --n-train 2 --n-test 2 --epochs 1 --out {dir}/t.st",
     "{events}"),
]


def _args(line: str, files: dict[str, Path]) -> list[str]:
    return [part.format(**files) for part in line.split()]


def _check_text(result, named: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert named in result.stderr, result.stderr
    assert "this is a bug" not in result.stderr, result.stderr


@pytest.mark.parametrize("case,line,named", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_message_and_exit_1(files, case, line, named):
    named = named.format(**files)
    _check_text(CliRunner().invoke(main, _args(line, files)), named)
    result = CliRunner().invoke(main, _args(line, files) + ["--json"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    payload = json.loads(result.stdout)  # the whole of stdout is the one JSON object
    assert set(payload) == {"error", "type"} and named in payload["error"], payload
    assert payload["type"] != "InternalError", payload


@pytest.mark.parametrize("case,line,named", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_bad_train_input_gives_one_message_and_exit_1(files, case, line, named):
    _check_text(CliRunner().invoke(main, _args(line, files)), named.format(**files))


def test_an_unexpected_error_is_called_a_bug_and_debug_shows_the_traceback(files, monkeypatch):
    import neurodeploy.inspection

    def broken(path, **options):
        raise KeyError("manifest")

    monkeypatch.setattr(neurodeploy.inspection, "describe", broken)
    result = CliRunner().invoke(main, ["inspect", str(files["bundle"])])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "KeyError: 'manifest'" in result.stderr and "this is a bug, please report it" in result.stderr
    payload = json.loads(CliRunner().invoke(main, ["inspect", str(files["bundle"]), "--json"]).stdout)
    assert payload["type"] == "InternalError" and "this is a bug" in payload["error"]
    debug = CliRunner().invoke(main, ["--debug", "inspect", str(files["bundle"])])
    assert isinstance(debug.exception, KeyError)  # re-raised: click prints the traceback when run for real


def test_no_traceback_leaks_from_a_real_process(files):
    """The installed entry point, in its own interpreter: the error reaches the terminal as one line."""
    command = [sys.executable, "-c", "from neurodeploy.cli import main; main()", "run", str(files["bundle"]),
               str(files["truncated"])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        line for line in done.stderr.splitlines() if line.startswith("Error: ") and str(files["truncated"]) in line]
