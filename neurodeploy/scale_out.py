"""The `dask` engine of `neurodeploy eval`: chunks of samples as tasks on a Dask distributed cluster.

Why Dask (and not Ray first): `distributed` is pure Python on top of numpy-agnostic msgpack /
tornado / cloudpickle, so it installs beside this project's pins (numpy < 2, torch == 2.13)
with nothing compiled, and a `LocalCluster` is the same scheduler and worker code as a real
cluster (`dask scheduler` / `dask worker tcp://...`), so the tests exercise the real thing.
Ray's wheels pin their own grpcio / protobuf / pyarrow ranges and start a raylet per node;
it may follow behind the same `engine` switch.

How work is placed:
- one task per chunk of samples (`evaluate.chunks`, in dataset order); each worker process
  builds its `ShareRunner` (model, runtimes, device table) once (`eval_share.runner_for`) and
  reuses it for every chunk it gets;
- the model travels by path when the workers share a filesystem; with `ship=True` (the default
  for `--address`) the bundle's files are broadcast once to every worker and written to a
  folder named after their hash, so workers need no shared storage;
- a worker that dies (killed, out of memory) loses its running chunk; the scheduler re-runs it
  on another worker (up to `distributed.scheduler.allowed-failures` times), and the merge keys
  on sample indices, so nothing is counted twice;
- workers are started non-daemonic: Lava starts processes of its own, which a daemonic
  process cannot do.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from neurodeploy.datasets import SampleSpec
from neurodeploy.eval_share import EvalError, EvalSetup, SharePartial, evaluate_share


def model_files(model_path: str) -> dict[str, bytes]:
    """The bytes of a bundle folder's files (or of one checkpoint file), to ship to workers."""
    path = Path(model_path)
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}
    return {path.name: path.read_bytes()}


def materialise(files: dict[str, bytes], was_dir: bool) -> str:
    """Write shipped model files once per worker machine; returns the local model path."""
    digest = hashlib.sha256()
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    folder = Path(tempfile.gettempdir()) / "neurodeploy-models" / digest.hexdigest()[:32]
    if not (folder / ".complete").exists():
        staging = folder.with_name(folder.name + f".{uuid.uuid4().hex}")
        staging.mkdir(parents=True)
        for name, data in files.items():
            (staging / name).write_bytes(data)
        (staging / ".complete").write_bytes(b"")
        try:
            staging.rename(folder)
        except OSError:  # another worker on this machine got there first
            pass
    return str(folder) if was_dir else str(folder / next(iter(files)))


def _run_shipped(setup: EvalSetup, specs: Sequence[SampleSpec], files: dict[str, bytes], was_dir: bool) -> SharePartial:
    local = dataclasses.replace(setup, model_path=materialise(files, was_dir))
    return evaluate_share(local, specs)


def worker_environment(threads: int) -> dict[str, str]:
    """Environment for a worker process that may use `threads` cores (set it on `dask worker` too)."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "NUMBA_NUM_THREADS": n, "OMP_WAIT_POLICY": "PASSIVE"}


def run_on_dask(setup: EvalSetup, pieces: Sequence[Sequence[SampleSpec]], *, address: str | None = None,
                workers: int = 2, ship: bool | None = None, progress: Callable[[int, int], None] | None = None,
                total: int | None = None) -> tuple[list[SharePartial], int]:
    """Run every chunk on a Dask cluster (`address`, or a local cluster of `workers` processes)."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as err:
        raise EvalError(f"--engine dask needs the 'distributed' package ({err}); install the project with its "
                        "dependencies (scripts/setup.sh)") from None
    ship = address is not None if ship is None else ship
    cluster = None
    with dask.config.set({"distributed.worker.daemon": False}):
        if address is None:
            if workers < 1:
                raise EvalError(f"--workers {workers}; expected >= 1")
            if setup.threads is None:  # share this machine's cores between the workers
                setup = dataclasses.replace(setup, threads=max(1, (os.cpu_count() or 1) // workers))
            # memory_limit=0: a share's memory is bounded by the batch size, not by a slice of the machine.
            # env: every parallel runtime of a worker (torch/oneDNN OpenMP, numba) gets its share of the
            # cores and sleeps when idle; measured on a 16-core host, workers left with a pool of all the
            # cores each ran 20-40x slower side by side than alone (benchmarks/scale_out.py)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   memory_limit=0, env=worker_environment(setup.threads))
            client = Client(cluster)
        else:
            try:
                client = Client(address, timeout="20s")
            except OSError as err:
                raise EvalError(f"--address {address}: cannot reach a Dask scheduler ({err}); start one with "
                                "`dask scheduler` and workers with `dask worker ADDRESS`") from None
    try:
        n_workers = len(client.scheduler_info()["workers"])
        run_id = uuid.uuid4().hex[:8]
        if ship:
            shipped = client.scatter(model_files(setup.model_path), broadcast=True)
            was_dir = Path(setup.model_path).is_dir()
            futures = {client.submit(_run_shipped, setup, piece, shipped, was_dir, key=f"neurodeploy-eval-{run_id}-{i}",
                                     pure=False): len(piece) for i, piece in enumerate(pieces)}
        else:
            futures = {client.submit(evaluate_share, setup, piece, key=f"neurodeploy-eval-{run_id}-{i}", pure=False):
                       len(piece) for i, piece in enumerate(pieces)}
        partials, done = [], 0
        for future in as_completed(list(futures)):
            partials.append(future.result())
            done += futures[future]
            if progress is not None:
                progress(done, total if total is not None else sum(futures.values()))
        n_workers = max(n_workers, len(client.scheduler_info()["workers"]))
        return partials, n_workers
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
