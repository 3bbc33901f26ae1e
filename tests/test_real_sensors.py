"""The shipped 34x34 model on recordings of real sensor sizes, written by independent writers
(dv-processing's MonoCameraWriter and NetworkWriter, faery's EVT2/EVT3/DAT encoders): streamed
with transform flags, every sample's prediction and spike counts equal the offline model's on the
transformed events. The scene is the shipped labelled recording placed (or scaled) into the larger
sensor, with uniform background activity over the whole sensor, as a camera sees noise."""
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import neurodeploy.events as E
from neurodeploy.cli import main
from neurodeploy.demo import ASSET_CHECKPOINT, ASSET_RECORDING, asset_path
from neurodeploy.events import transforms as T
from neurodeploy.events.labels import read_label_file
from neurodeploy.sources import load_fitted
from neurodeploy.stream import offline_frames, stream
from neurodeploy.runtimes.contract import step_layers

N_SAMPLES = 3


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from neurodeploy.bundle import ExportOptions, export
    from neurodeploy.model.mamba_spike.checkpoint import checkpoint_metadata

    dt_us = int(checkpoint_metadata(asset_path(ASSET_CHECKPOINT))["dt_us"])
    return export(asset_path(ASSET_CHECKPOINT), tmp_path_factory.mktemp("b") / "bundle",
                  ExportOptions(dt_us=dt_us, artifacts=("nir", "onnx"), parity_samples=1, parity_steps=5))


@pytest.fixture(scope="module")
def scene():
    recording = E.load(asset_path(ASSET_RECORDING))
    labels = read_label_file(f"{asset_path(ASSET_RECORDING)}.labels.csv")[:N_SAMPLES]
    events = recording.events[recording.events["t"] < labels[-1].t_end_us]
    return events, labels


def _camera(events, size, *, offset=None, seed=0):
    """The 34x34 scene at `offset` (or scaled up to the whole sensor), plus 3 % background events."""
    rng = np.random.default_rng(seed)
    w, h = size
    if offset is not None:
        x = events["x"].astype(np.int64) + offset[0]
        y = events["y"].astype(np.int64) + offset[1]
    else:
        x = np.floor((events["x"] + rng.random(len(events))) * w / 34).astype(np.int64)
        y = np.floor((events["y"] + rng.random(len(events))) * h / 34).astype(np.int64)
    n = len(events) // 30
    t = np.concatenate([events["t"], rng.integers(int(events["t"][0]), int(events["t"][-1]), n)])
    x = np.concatenate([x, rng.integers(0, w, n)])
    y = np.concatenate([y, rng.integers(0, h, n)])
    p = np.concatenate([events["p"], rng.integers(0, 2, n)])
    order = np.argsort(t, kind="stable")
    return E.Recording(E.make_events(x[order], y[order], t[order], p[order]), size)


CASES = {  # file, writer, sensor, placement, flags
    "davis346.aedat4": ("dv", (346, 260), None, dict(downsample="34x34")),
    "gen3.raw": ("evt2", (640, 480), (301, 210), dict(crop="301,210,34,34")),
    "evk4.raw": ("evt3", (1280, 720), None, dict(downsample="34x34", denoise_us=10000)),
    "gen4.dat": ("dat", (640, 480), (303, 223), dict(center_crop="34x34", flip_x=True)),
}


@pytest.fixture(scope="module")
def recordings(scene, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cameras")
    events, _ = scene
    paths = {}
    for i, (name, (writer, size, offset, _)) in enumerate(CASES.items()):
        rec = _camera(events, size, offset=offset, seed=i)
        path = folder / name
        if writer == "dv":
            E.save(rec, path, library="dv")
        else:
            E.save(rec, path, format=writer)
        paths[name] = path
    return paths


def _offline(bundle, path, transforms, labels):
    """Predictions and per-layer spike counts of the PyTorch model on the transformed events."""
    fitted = load_fitted(path, transforms, (34, 34))
    model = bundle.model()
    out = []
    for seg in labels:
        frames = torch.from_numpy(offline_frames(fitted.events, fitted.sensor_size, bundle.dt_us,
                                                 seg.t_start_us, seg.t_end_us))[None]
        spikes = step_layers(bundle.frontend_runtime("torch"), frames)
        with torch.no_grad():
            prediction = int(model(frames).argmax(dim=-1)[0])
        out.append((prediction, {name: int(s.sum()) for name, s in spikes.items()}))
    return out


def _streamed(results):
    return [(r.prediction, dict(r.spikes_per_layer)) for r in results]


@pytest.mark.parametrize("name", list(CASES))
def test_real_sensor_file_streams_like_offline(bundle, recordings, scene, name):
    _, labels = scene
    path = recordings[name]
    raw = E.load(path)
    assert raw.sensor_size == CASES[name][1]  # the writer's header carries the real sensor size
    transforms = T.from_flags(**CASES[name][3])
    run = stream(bundle, str(path), transforms=transforms, labels=labels)
    results = list(run)
    assert len(results) == N_SAMPLES
    assert _streamed(results) == _offline(bundle, path, transforms, labels)
    assert sum(sum(r.spikes_per_layer.values()) for r in results) > 0
    if CASES[name][2] is not None and not CASES[name][3].get("flip_x"):  # cut out unchanged: the trained digits
        assert [r.prediction for r in results] == [s.label for s in labels]


def test_cli_run_with_flags_and_mismatch_message(bundle, recordings, scene, tmp_path):
    _, labels = scene
    path = recordings["davis346.aedat4"]
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("t_start_us,t_end_us,label\n" + "".join(f"{s.t_start_us},{s.t_end_us},{s.label}\n"
                                                                  for s in labels))
    runner = CliRunner()
    refused = runner.invoke(main, ["run", str(bundle.directory), str(path)])
    assert refused.exit_code == 1
    assert "sensor size 346x260, but the model expects 34x34" in refused.output
    assert "--downsample 34x34" in refused.output and "--center-crop 34x34" in refused.output
    ok = runner.invoke(main, ["run", str(bundle.directory), str(path), "--downsample", "34x34",
                              "--labels", str(labels_csv), "--json"])
    assert ok.exit_code == 0, ok.output
    import json

    payload = json.loads(ok.stdout[ok.stdout.index("{"):])
    offline = _offline(bundle, path, T.from_flags(downsample="34x34"), labels)
    assert [(s["prediction"], s["spikes_per_layer"]) for s in payload["samples"]] == offline


def test_bundle_records_its_transform_and_run_applies_it(bundle, recordings, scene, tmp_path):
    _, labels = scene
    runner = CliRunner()
    out = tmp_path / "b_ds"
    made = runner.invoke(main, ["export", str(asset_path(ASSET_CHECKPOINT)), "-o", str(out), "--artifacts", "onnx",
                                "--downsample", "34x34"])
    assert made.exit_code == 0, made.output
    seen = runner.invoke(main, ["inspect", str(out)])
    assert "input_transforms: downsample to 34x34" in seen.output
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("t_start_us,t_end_us,label\n" + "".join(f"{s.t_start_us},{s.t_end_us},{s.label}\n"
                                                                  for s in labels[:1]))
    ran = runner.invoke(main, ["run", str(out), str(recordings["davis346.aedat4"]), "--frontend", "torch",
                               "--labels", str(labels_csv)])
    assert ran.exit_code == 0, ran.output
    assert ("input transforms: downsample to 34x34 (tonic Downsample, counts pooled) "
            "(recorded in the bundle at export") in ran.output
    described = runner.invoke(main, ["inspect", str(recordings["gen3.raw"]), "--crop", "301,210,34,34", "--json"])
    assert described.exit_code == 0, described.output
    assert '"sensor_size": "34x34"' in described.output and '"sensor_size": "640x480"' in described.output


SERVER = r"""
import os, sys, time
import numpy as np
import dv_processing as dv
from neurodeploy.events.convert import to_dv
events = np.load(sys.argv[1])
stream = dv.io.Stream.EventStream(0, "events", "neurodeploy-test", (int(sys.argv[3]), int(sys.argv[4])))
writer = dv.io.NetworkWriter("127.0.0.1", int(sys.argv[2]), stream)
print("listening", flush=True)
deadline = time.time() + 30
while writer.getClientCount() < 1 and time.time() < deadline:
    time.sleep(0.005)
for part in np.array_split(events, 40):
    writer.writeEvents(to_dv(part))
    time.sleep(0.005)
while writer.getQueuedPacketCount() > 0 and time.time() < deadline:
    time.sleep(0.005)
time.sleep(0.2)
os._exit(0)  # dv-processing 2.0.4's NetworkWriter destructor can deadlock on the GIL
"""


def test_live_dv_stream_of_a_real_sensor_with_transforms(bundle, recordings, scene, tmp_path):
    _, labels = scene
    path = recordings["davis346.aedat4"]
    rec = E.load(path)
    np.save(tmp_path / "ev.npy", rec.events)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path / "ev.npy"), str(port), "346", "260"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "listening"
        transforms = T.from_flags(downsample="34x34")
        run = None
        for _ in range(100):
            try:
                run = stream(bundle, f"tcp://127.0.0.1:{port}", transforms=transforms, labels=labels)
                break
            except E.EventFileError:
                time.sleep(0.05)
        assert run is not None and run.live
        results = list(run)
    finally:
        proc.wait(timeout=30)
    assert _streamed(results) == _offline(bundle, path, transforms, labels)
    assert run.summary()["events_received"] == len(rec)  # sizes before the transform: nothing lost


def test_verify_report_and_inspect_take_the_transform_flags(bundle, recordings, tmp_path):
    import json

    runner = CliRunner()
    path = str(recordings["gen3.raw"])
    verified = runner.invoke(main, ["verify", str(bundle.directory), path, "--crop", "301,210,34,34", "--steps", "10",
                                    "--samples", "1", "--json"])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["frontend"]["nir"]["passed"] is True
    reported = runner.invoke(main, ["report", str(bundle.directory), path, "--crop", "301,210,34,34", "--window-us",
                                    "300000", "--max-samples", "2", "-o", str(tmp_path / "r"), "--json"])
    assert reported.exit_code == 0, reported.output
    provenance = json.loads((tmp_path / "r" / "report.json").read_text())["provenance"]
    assert provenance["input_transforms"] == "crop 34x34 at (301, 210)" and provenance["events"] == path
    refused = runner.invoke(main, ["verify", str(bundle.directory), path, "--steps", "10"])
    assert refused.exit_code == 1 and "--crop X,Y,34,34" in refused.output
