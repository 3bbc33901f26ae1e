"""One real-time factor everywhere, the best runtime picked and named, a live source that falls behind
said so, Ctrl-C still summarised."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import neurodeploy.events as E
from neurodeploy.bundle import load_bundle
from neurodeploy.cli import main
from neurodeploy.demo import ASSET_RECORDING, asset_path
from neurodeploy.realtime import real_time_factor, real_time_factor_of_steps
from neurodeploy.report.latency import measured_latency
from neurodeploy.stream import StreamOptions, StreamRun, StreamStats


@pytest.fixture(scope="module")
def onnx_bundle(shipped_onnx_bundle):
    return shipped_onnx_bundle


def test_one_real_time_factor_definition():
    steps = [0.002, 0.003, 0.005, 0.010]  # wall seconds per 10 ms step
    dt_s = 0.010
    expected = 4 * dt_s / sum(steps)  # recorded / wall: 2.0, faster than real time
    assert real_time_factor_of_steps(steps, dt_s) == pytest.approx(expected) == pytest.approx(2.0)
    stats = StreamStats(steps=4, compute_s=sum(steps))
    for s in steps:  # latencies live in a bounded histogram (issue 21)
        stats.step_latency_us.add(s * 1e6)
    assert stats.summary(10_000, [])["real_time_factor"] == pytest.approx(expected)  # run, demo
    assert measured_latency(steps, "x", dt_s).real_time_factor == pytest.approx(expected)  # report
    assert real_time_factor(1.0, 0.0) is None


def test_run_picks_the_best_runtime_and_says_which(onnx_bundle, tmp_path):
    result = CliRunner().invoke(main, ["run", str(onnx_bundle), str(asset_path(ASSET_RECORDING)), "--window-us",
                                       "300000"])
    assert result.exit_code == 0, result.output
    assert "runtimes: front-end torch (no NIR in this bundle), backbone native" in result.output
    assert "faster than real time" in result.output or "slower than real time" in result.output
    assert "events lost on the way: 0" in result.output
    # sample times are relative to the recording's start, also for epoch-stamped recordings
    rec = E.load(asset_path(ASSET_RECORDING))
    shifted = rec.events.copy()
    shifted["t"] += 1_700_000_000_000_000  # microseconds since 1970
    E.save(E.Recording(shifted[shifted["t"] < shifted["t"][0] + 600_000], rec.sensor_size), tmp_path / "epoch.npz")
    epoch = CliRunner().invoke(main, ["run", str(onnx_bundle), str(tmp_path / "epoch.npz"), "--window-us", "300000"])
    assert epoch.exit_code == 0, epoch.output
    assert "sample   0  [   0.000s,    0.300s)" in epoch.output


def _packets(n_packets=60, per_packet=50, dt_us=10_000):
    rng = np.random.default_rng(0)
    for k in range(n_packets):
        t = np.sort(rng.integers(k * dt_us, (k + 1) * dt_us, per_packet))
        yield E.make_events(rng.integers(0, 34, per_packet), rng.integers(0, 34, per_packet), t,
                            rng.integers(0, 2, per_packet))


@pytest.mark.parametrize("overflow", ["block", "drop_oldest"])
def test_live_source_that_falls_behind_is_reported(onnx_bundle, overflow):
    bundle = load_bundle(onnx_bundle)
    said = []
    run = StreamRun(bundle.frontend_runtime("torch"), bundle.backbone_runtime("torch"), _packets(), (34, 34),
                    StreamOptions(dt_us=bundle.dt_us, queue_packets=2, overflow=overflow), live=True,
                    warn=said.append)
    list(run)
    summary = run.summary()
    assert said and "falling behind the live source" in said[0] and "packets queued" in said[0]
    assert summary["backlog_warnings"] == len(said) and summary["max_backlog_packets"] >= 1
    if overflow == "block":
        assert "--overflow drop_oldest" in said[0] and summary["events_lost"] == 0
    else:
        assert summary["events_lost"] == summary["events_dropped"] > 0
        assert summary["events_received"] + summary["events_dropped"] == 60 * 50


def test_ctrl_c_prints_the_summary(onnx_bundle, monkeypatch):
    original = StreamRun._close
    calls = []

    def close_then_interrupt(self, sample, arrival):
        result = original(self, sample, arrival)
        calls.append(result)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(StreamRun, "_close", close_then_interrupt)
    result = CliRunner().invoke(main, ["run", str(onnx_bundle), str(asset_path(ASSET_RECORDING)), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    # the second sample finished as Ctrl-C came: both are reported, none after
    assert payload["summary"]["interrupted"] is True and payload["summary"]["samples"] == 2
    assert len(payload["samples"]) == 2
