"""The dask engine on a real local Dask cluster (two worker processes, no mocks): merged results
equal the local engine's, a corrupt recording is reported once, and a worker killed in the
middle of a recording has its chunk re-run elsewhere without counting anything twice."""
import os
import sys
from pathlib import Path

import cloudpickle
import pytest

import neurodeploy
from neurodeploy.bundle import ExportOptions, export
from neurodeploy.eval_share import Binning, EvalSetup
from neurodeploy.evaluate import evaluate
from neurodeploy.scale_out import worker_environment
from neurodeploy.events import Recording, load, save
from neurodeploy.events.synthetic import make_nmnist_like

pytest.importorskip("distributed")
from dask.distributed import LocalCluster  # noqa: E402

CHECKPOINT = Path(neurodeploy.__file__).parent / "assets" / "mamba_spike_synthetic.safetensors"
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale_out")
    bundle = root / "bundle"
    export(CHECKPOINT, bundle, ExportOptions(dt_us=10_000, artifacts=("nir",)))
    data = root / "data"
    for i, (rec, label) in enumerate(make_nmnist_like(10, seed=1000)):
        (data / str(label)).mkdir(parents=True, exist_ok=True)
        save(rec, data / str(label) / f"{i:04d}.bin")
    (data / "5" / "9999.bin").write_bytes(b"\x07" * 7)  # truncated inside the second 5-byte record
    return bundle, data


class KillOnce:
    """A transform that ends its worker process the first time it sees the victim recording
    (known by its number of events; a real crash: os._exit, no cleanup), then passes everything."""

    def __init__(self, victim_events: int, marker: str):
        self.victim_events, self.marker = victim_events, marker

    def __call__(self, recording: Recording) -> Recording:
        if len(recording.events) == self.victim_events and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return recording


def setup_for(bundle, transforms=()):
    return EvalSetup(model_path=str(bundle), binning=Binning(dt_us=10_000), batch_size=2, transforms=transforms)


def test_dask_merged_equals_local_with_a_corrupt_recording(dataset):
    bundle, data = dataset
    local = evaluate(bundle, data, setup_for(bundle), chunk_size=2)
    seen = []
    on_dask = evaluate(bundle, data, setup_for(bundle), chunk_size=2, engine="dask", workers=2,
                       progress=lambda done, total: seen.append((done, total)))
    assert on_dask.workers == 2 and on_dask.engine == "dask"
    assert on_dask.outcomes == local.outcomes and len(local.outcomes) == 10
    assert on_dask.failures == local.failures and len(local.failures) == 1
    assert on_dask.summary()["accuracy"] == local.summary()["accuracy"]
    assert on_dask.summary()["energy_j_per_sample"] == local.summary()["energy_j_per_sample"]
    assert seen[-1] == (11, 11) and len(seen) == 6  # progress across the cluster, chunk by chunk


@pytest.mark.slow
def test_worker_killed_mid_run_has_its_chunk_rerun(dataset, tmp_path):
    bundle, data = dataset
    local = evaluate(bundle, data, setup_for(bundle), chunk_size=2)
    victim = sorted(data.glob("7/*.bin"))[0]
    kill = KillOnce(len(load(victim).events), str(tmp_path / "killed"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0,
                      env=worker_environment(1)) as cluster:
        # through --address: the bundle is shipped to the workers, not read from this folder
        result = evaluate(bundle, data, setup_for(bundle, transforms=(kill,)), chunk_size=2, engine="dask",
                          address=cluster.scheduler_address)
    assert (tmp_path / "killed").exists(), "the transform never ran the kill"
    assert int((tmp_path / "killed").read_text()) != os.getpid()
    assert result.outcomes == local.outcomes  # every sample exactly once
    assert [f.path for f in result.failures] == [f.path for f in local.failures]
