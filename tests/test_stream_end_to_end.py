"""Streaming through a bundle equals the offline model, for every file format, runtime pair and source kind."""
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import neurodeploy
from neurodeploy.bundle import BundleError, ExportOptions, export, load_bundle
from neurodeploy.cli import main
from neurodeploy.events import Recording, save
from neurodeploy.events.synthetic import make_nmnist_like, write_labelled_recording
from neurodeploy.model import MambaSpike, MambaSpikeConfig, save_checkpoint
from neurodeploy.runtimes.torch import TorchBackboneRuntime, TorchFrontendRuntime
from neurodeploy.stream import StreamOptions, StreamRun, offline_frames

DT_US = 10_000


def seeded_model(**overrides) -> MambaSpike:
    torch.manual_seed(0)
    fields = dict(conv_channels=8, spiking_channels=8, d_model=16, n_layers=1)
    fields.update(overrides)
    model = MambaSpike(MambaSpikeConfig.deployable(**fields)).eval()
    with torch.no_grad():  # fire in every layer on sparse synthetic events
        for conv in (model.spiking_frontend.conv1, model.spiking_frontend.conv2, model.spiking_frontend.conv3):
            conv.weight.mul_(3.0)
    return model


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def bundle_dir(workdir):
    model = seeded_model()
    checkpoint = save_checkpoint(model, workdir / "model.safetensors")
    out = workdir / "bundle"
    result = CliRunner().invoke(main, ["export", str(checkpoint), "-o", str(out), "--dt-us", str(DT_US),
                                       "--artifacts", "nir,onnx"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def recording(workdir):
    rec, segments = write_labelled_recording(workdir / "rec.npz", make_nmnist_like(3, seed=5), gap_us=20_000)
    return rec, segments


def offline_predictions(bundle_dir, rec, segments):
    model = load_bundle(bundle_dir).model()
    out = []
    for seg in segments:
        frames = torch.from_numpy(offline_frames(rec.events, rec.sensor_size, DT_US, seg.t_start_us, seg.t_end_us))
        with torch.no_grad():
            out.append(torch.softmax(model(frames[None])[0], -1))
    return out


def check_matches_offline(payload, expected, tolerance=1e-4):
    samples = payload["samples"]
    assert len(samples) == len(expected)
    for sample, probs in zip(samples, expected):
        assert sample["prediction"] == int(probs.argmax())
        np.testing.assert_allclose(sample["scores"], probs.numpy(), atol=tolerance)


# AEDAT 2.0 is left out: its jAER address layouts exist only for real sensors (DVS128, DAVIS240/346),
# not for a 34x34 one; its reader is round-tripped at 128x128 in tests/test_events_readers.py.
FORMATS = {"npz": "rec.npz", "aedat4": "rec.aedat4", "evt2": "rec_evt2.raw", "evt3": "rec_evt3.raw", "dat": "rec.dat",
           "csv": "rec.csv", "aedat3": "rec3.aedat", "nmnist_bin": "rec.bin"}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_run_every_format_matches_offline(bundle_dir, recording, workdir, fmt):
    rec, segments = recording
    path = workdir / FORMATS[fmt]
    save(rec, path, format=fmt)
    labels = workdir / "rec.npz.labels.csv"
    result = CliRunner().invoke(main, ["run", str(bundle_dir), str(path), "--labels", str(labels), "--json"]
                                + (["--format", fmt] if fmt in ("evt2", "aedat3", "nmnist_bin") else []))
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    check_matches_offline(payload, offline_predictions(bundle_dir, rec, segments))
    assert payload["summary"]["events_received"] == len(rec.events)
    assert payload["summary"]["events_outside_samples"] == 0  # gaps hold no events
    assert all(sum(s["spikes_per_layer"].values()) > 0 for s in payload["samples"])


@pytest.mark.parametrize("frontend,backbone", [("torch", "torch"), ("torch", "onnxruntime"), ("nir", "torch"),
                                               ("nir", "onnxruntime")])
def test_runtime_pairs_match_offline(bundle_dir, recording, workdir, frontend, backbone):
    rec, segments = recording
    run = neurodeploy.stream(str(bundle_dir), str(workdir / "rec.npz"), frontend=frontend, backbone=backbone)
    results = list(run)
    payload = {"samples": [r.to_dict() for r in results]}
    check_matches_offline(payload, offline_predictions(bundle_dir, rec, segments))
    summary = run.summary()
    assert summary["steps"] == sum(r.n_steps for r in results)
    assert summary["step_latency_us"]["p50"] > 0 and summary["real_time_factor"] > 0


def test_window_and_end_of_stream_samples(bundle_dir, recording):
    rec, _ = recording
    bundle = load_bundle(bundle_dir)
    model = bundle.model()
    t0 = int(rec.events["t"][0])
    window = 250_000
    run = neurodeploy.stream(bundle, [rec.events], sensor_size=rec.sensor_size, window_us=window, frontend="torch",
                             backbone="torch")
    results = list(run)
    last_t = int(rec.events["t"][-1])
    assert len(results) == (last_t - t0) // window + 1
    for r in results:
        assert r.t_start_us == t0 + r.index * window
        frames = offline_frames(rec.events, rec.sensor_size, DT_US, r.t_start_us, r.t_end_us)
        assert r.n_steps == frames.shape[0]
        with torch.no_grad():
            assert r.prediction == int(model(torch.from_numpy(frames)[None]).argmax())
    whole = list(neurodeploy.stream(bundle, iter(np.array_split(rec.events, 9)), sensor_size=rec.sensor_size,
                                    frontend="torch", backbone="torch"))
    assert len(whole) == 1 and whole[0].n_events == len(rec.events)
    assert whole[0].n_steps == (last_t - t0) // DT_US + 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DV_SERVER = r"""
import os, sys, time
import numpy as np
import dv_processing as dv
from neurodeploy.events.convert import to_dv
events = np.load(sys.argv[1])
stream = dv.io.Stream.EventStream(0, "events", "neurodeploy-test", (34, 34))
writer = dv.io.NetworkWriter("127.0.0.1", int(sys.argv[2]), stream)
print("listening", flush=True)
deadline = time.time() + 30
while writer.getClientCount() < 1 and time.time() < deadline:
    time.sleep(0.005)
for part in np.array_split(events, 20):
    writer.writeEvents(to_dv(part))
    time.sleep(0.01)
while writer.getQueuedPacketCount() > 0 and time.time() < deadline:
    time.sleep(0.005)
time.sleep(0.2)
os._exit(0)  # dv-processing 2.0.4's NetworkWriter destructor can deadlock on the GIL
"""


def test_live_dv_network_stream(bundle_dir, recording, workdir):
    rec, segments = recording
    np.save(workdir / "live.npy", rec.events)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", DV_SERVER, str(workdir / "live.npy"), str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        result = None
        for _ in range(50):
            result = CliRunner().invoke(main, ["run", str(bundle_dir), f"tcp://127.0.0.1:{port}", "--labels",
                                               str(workdir / "rec.npz.labels.csv"), "--json"])
            if result.exit_code == 0:
                break
            time.sleep(0.1)
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout[result.stdout.index("{"):])
        check_matches_offline(payload, offline_predictions(bundle_dir, rec, segments))
        summary = payload["summary"]
        assert summary["events_received"] == len(rec.events) and summary["packets_dropped"] == 0
        assert summary["decision_latency_us"]["p50"] is not None
        assert server.wait(20) == 0
    finally:
        server.kill()
        server.wait()


def test_followed_file_being_written(bundle_dir, recording, workdir):
    rec, segments = recording
    full = workdir / "whole.raw"
    save(rec, full, format="evt3")
    data = full.read_bytes()
    growing = workdir / "growing.raw"
    growing.write_bytes(b"")

    def write_slowly():
        with open(growing, "ab") as f:
            for i in range(0, len(data), 4096):
                f.write(data[i:i + 4096])
                f.flush()
                time.sleep(0.005)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    try:
        result = CliRunner().invoke(main, ["run", str(bundle_dir), str(growing), "--follow", "--idle-timeout", "1.0",
                                           "--labels", str(workdir / "rec.npz.labels.csv"), "--json"])
    finally:
        writer.join()
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    check_matches_offline(payload, offline_predictions(bundle_dir, rec, segments))


class SlowFrontend(TorchFrontendRuntime):
    def step(self, frame):
        time.sleep(0.002)
        return super().step(frame)


def test_burst_source_drop_oldest_counts_what_it_dropped(recording):
    rec, _ = recording
    model = seeded_model()
    packets = np.array_split(rec.events, 200)

    run = StreamRun(SlowFrontend(model), TorchBackboneRuntime(model), iter(packets), rec.sensor_size,
                    StreamOptions(dt_us=DT_US, queue_packets=2, overflow="drop_oldest"), live=True)
    list(run)
    s = run.summary()
    assert s["packets_dropped"] > 0
    assert s["packets_received"] + s["packets_dropped"] == len(packets)
    assert s["events_received"] + s["events_dropped"] == len(rec.events)

    blocking = StreamRun(SlowFrontend(model), TorchBackboneRuntime(model), iter(packets[:20]), rec.sensor_size,
                         StreamOptions(dt_us=DT_US, queue_packets=2, overflow="block"), live=True)
    list(blocking)
    assert blocking.summary()["packets_dropped"] == 0
    assert blocking.summary()["events_received"] == sum(len(p) for p in packets[:20])


def test_tampered_or_missing_bundle_files_are_refused(bundle_dir, workdir):
    import shutil

    copy = workdir / "tampered"
    shutil.copytree(bundle_dir, copy)
    onnx_file = copy / "backbone_step.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"backbone_step.onnx: sha256 .* changed after export"):
        load_bundle(copy)
    result = CliRunner().invoke(main, ["run", str(copy), str(workdir / "rec.npz")])
    assert result.exit_code == 1 and "backbone_step.onnx" in result.output
    missing = workdir / "missing"
    shutil.copytree(bundle_dir, missing)
    (missing / "frontend.nir").unlink()
    with pytest.raises(BundleError, match=r"frontend.nir: listed in the manifest but missing"):
        load_bundle(missing)


def test_max_pooling_checkpoint_exports_backbone_and_says_why_no_nir(workdir, recording):
    torch.manual_seed(1)
    model = MambaSpike(MambaSpikeConfig(d_model=16, n_layers=1, conv_channels=8, spiking_channels=8)).eval()
    bundle = export(model, workdir / "maxpool", ExportOptions(dt_us=DT_US, artifacts=("nir", "onnx")))
    assert "frontend.nir" in bundle.manifest["skipped"]
    assert "max pooling" in bundle.manifest["skipped"]["frontend.nir"].lower()
    assert bundle.has("backbone_step") and not bundle.has("frontend_nir")
    with pytest.raises(BundleError, match="needs frontend.nir"):
        bundle.frontend_runtime("nir")
    rec, _ = recording
    results = list(neurodeploy.stream(bundle, str(workdir / "rec.npz"), frontend="torch"))
    assert len(results) == 3
    rewritten = export(model, workdir / "rewritten", ExportOptions(dt_us=DT_US, artifacts=("nir", "onnx"),
                                                                   pool_rewrite="sum"))
    assert rewritten.has("frontend_nir") and rewritten.manifest["pool_rewrite"]["rewrite"] == "sum"
    assert rewritten.config.pooling == "sum"


def test_verify_and_inspect_commands(bundle_dir, workdir):
    runner = CliRunner()
    result = runner.invoke(main, ["verify", str(bundle_dir), "--json"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["passed"] and outcome["frontend"]["nir"]["agreement_per_layer"]["lif3"] == 1.0
    for target in (bundle_dir, bundle_dir / "backbone.onnx", bundle_dir / "frontend.nir", workdir / "rec.npz"):
        result = runner.invoke(main, ["inspect", str(target), "--json"])
        assert result.exit_code == 0, result.output
    onnx_info = json.loads(runner.invoke(main, ["inspect", str(bundle_dir / "backbone.onnx"), "--json"]).stdout)
    assert onnx_info["custom_nodes"] == {"SelectiveScan": 1}
    bad = workdir / "garbage.aedat4"
    bad.write_bytes(b"#!AER-DAT4.0\r\n" + b"\x00" * 7)
    result = runner.invoke(main, ["inspect", str(bad)])
    assert result.exit_code == 1 and "garbage.aedat4" in result.output


def test_report_command_writes_every_output(bundle_dir, recording, workdir):
    out = workdir / "report"
    result = CliRunner().invoke(main, ["report", str(bundle_dir), str(workdir / "rec.npz"), "--target", "loihi",
                                       "--target", "spinnaker2", "--host", "arm", "--frontend", "nir", "-o", str(out),
                                       "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert "3 sample(s)" in payload["inputs"]
    for key in ("json", "csv", "markdown", "html"):
        assert (out / Path(payload["files"][key]).name).is_file()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "estimate" in html.lower()
    bad = CliRunner().invoke(main, ["report", str(bundle_dir), str(workdir / "rec.npz"), "--target", "loihi9"])
    assert bad.exit_code == 1 and "loihi9" in bad.output


def test_labelled_samples_after_the_last_event_are_still_reported(recording):
    from neurodeploy.events.labels import LabelSegment

    rec, segments = recording
    model = seeded_model()
    extra = LabelSegment(segments[-1].t_end_us + 10_000, segments[-1].t_end_us + 60_000, 7)
    run = StreamRun(TorchFrontendRuntime(model), TorchBackboneRuntime(model), iter(np.array_split(rec.events, 5)),
                    rec.sensor_size, StreamOptions(dt_us=DT_US, labels=(*segments, extra)))
    results = list(run)
    assert [r.label for r in results] == [s.label for s in segments] + [7]
    assert results[-1].n_events == 0 and results[-1].n_steps == 5
