"""`neurodeploy report --engine dask` on a real local Dask cluster (two worker processes, no mocks):
the shipped model over the shipped recording gives the same report as the local engine - spikes
per layer, synaptic operations, backbone operations and energies on every target - with the
samples split over the workers in shards of unequal size, and a worker killed while it steps its
shard has that shard re-run without counting anything twice."""
import json
import os
import sys
from pathlib import Path

import cloudpickle
import pytest
import torch
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.demo import ASSET_RECORDING, asset_path

pytest.importorskip("distributed")
from dask.distributed import Client, LocalCluster, WorkerPlugin  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module


def _report(bundle, out, *engine):
    result = CliRunner().invoke(main, ["report", str(bundle), str(asset_path(ASSET_RECORDING)), "--target", "loihi",
                                       "--target", "spinnaker2", "--max-samples", "5", "-o", str(out), "--json",
                                       *engine])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["report"]


def _without_timing(report: dict) -> dict:
    """Everything but what a run's clock and engine decide (measured step times, the runtime's name)."""
    return {**report, "run": {k: v for k, v in report["run"].items() if k != "runtime"},
            "latency": {k: v for k, v in report["latency"].items() if k != "measured"}}


def test_report_on_dask_equals_local(shipped_onnx_bundle, tmp_path):
    local = _report(shipped_onnx_bundle, tmp_path / "local")
    on_dask = _report(shipped_onnx_bundle, tmp_path / "dask", "--engine", "dask", "--workers", "2")
    assert "2 Dask worker(s), 2 shard(s) of <= 3 samples" in on_dask["run"]["runtime"]  # 5 samples: 3 + 2
    assert local["run"]["batch"] == on_dask["run"]["batch"] == 5
    spikes = [layer["output_spikes"] for layer in local["frontend"]]
    assert min(spikes) > 0, "every layer of the shipped model must fire for the comparison to mean anything"
    assert _without_timing(on_dask) == _without_timing(local)  # spikes, synaptic ops, energies: all of it, exactly
    measured = on_dask["latency"]["measured"]
    assert len(measured["step_latency_s"]) == on_dask["run"]["steps"] and measured["max_s"] > 0


def test_shards_merge_back_in_sample_order_bit_for_bit(shipped_onnx_bundle):
    """The worker task run here on shards handed back out of order: the merged spikes are the local run's."""
    from neurodeploy.bundle import load_bundle
    from neurodeploy.report.errors import ReportError
    from neurodeploy.report.from_events import frames_of_samples, record_frontend_run
    from neurodeploy.report_share import ReportShard, compact_frames, merge_shards, run_shard

    bundle = load_bundle(shipped_onnx_bundle)
    frames, _ = frames_of_samples(bundle, asset_path(ASSET_RECORDING), max_samples=5)
    local = record_frontend_run(bundle.frontend_runtime("torch"), frames, dt_s=1e-3, name="torch")
    shards = [run_shard("torch", None, str(shipped_onnx_bundle), ReportShard(first, compact_frames(frames[first:end])))
              for first, end in ((3, 5), (0, 3))]
    merged = merge_shards(frames, shards, dt_s=1e-3, runtime="test")
    assert len(merged.spikes) == len(local.spikes)
    for ours, theirs in zip(merged.spikes, local.spikes):
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    with pytest.raises(ReportError, match="not 0..4 once each"):
        merge_shards(frames, shards + shards[:1], dt_s=1e-3, runtime="test")  # a shard counted twice


class KillOnFirstShard(WorkerPlugin):
    """Ends its worker process (os._exit: a real crash, no cleanup) the first time one of the
    worker's report shards starts executing; the marker file makes it happen once per cluster."""

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "neurodeploy-report" in str(key) and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)


def test_worker_killed_mid_report_has_its_shard_rerun(shipped_onnx_bundle, tmp_path):
    from neurodeploy.bundle import load_bundle
    from neurodeploy.report.from_events import frames_of_samples, record_frontend_run
    from neurodeploy.report_share import record_on_dask
    from neurodeploy.scale_out import worker_environment

    bundle = load_bundle(shipped_onnx_bundle)
    frames, _ = frames_of_samples(bundle, asset_path(ASSET_RECORDING), max_samples=5)
    local = record_frontend_run(bundle.frontend_runtime("torch"), frames, dt_s=1e-3, name="torch")
    marker = tmp_path / "killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0,
                      env=worker_environment(1)) as cluster:
        with Client(cluster) as client:
            client.register_plugin(KillOnFirstShard(str(marker)))
        # through --address: the bundle is shipped to the workers, not read from this folder
        merged, _ = record_on_dask(str(shipped_onnx_bundle), frames, frontend="torch", dt_s=1e-3,
                                   address=cluster.scheduler_address)
    assert marker.exists(), "the plugin never killed a worker"
    assert int(marker.read_text()) != os.getpid()
    for ours, theirs in zip(merged.spikes, local.spikes, strict=True):
        assert torch.equal(ours, theirs)
