"""The `dask` engine of `neurodeploy eval` and `report`: pieces of work as tasks on a Dask distributed cluster.

`dask_client` + `run_pieces` are the engine (cluster, shipping the model, re-runs, progress);
`run_on_dask` is eval's use of it, `report_share.record_on_dask` is report's.

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
import functools
import hashlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def _run_piece(task: Callable[[str, Any], Any], model_path: str, piece: Any, files: dict[str, bytes] | None,
               was_dir: bool) -> Any:
    """On a worker: `task(model_path, piece)`, with the model path of the shipped copy when files were shipped."""
    return task(model_path if files is None else materialise(files, was_dir), piece)


def _eval_task(setup: EvalSetup, model_path: str, specs: Sequence[SampleSpec]) -> SharePartial:
    return evaluate_share(dataclasses.replace(setup, model_path=model_path), specs)


def worker_environment(threads: int) -> dict[str, str]:
    """Environment for a worker process that may use `threads` cores (set it on `dask worker` too)."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "NUMBA_NUM_THREADS": n, "OMP_WAIT_POLICY": "PASSIVE"}


def threads_per_worker(workers: int) -> int:
    """This machine's cores shared between the `workers` processes of a local cluster."""
    return max(1, (os.cpu_count() or 1) // workers)


@contextmanager
def dask_client(address: str | None, workers: int, threads: int) -> Iterator[Any]:
    """A Client of the cluster at `address`, or of a local cluster of `workers` processes (started
    and closed here) whose parallel runtimes each get `threads` cores."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError as err:
        raise EvalError(f"--engine dask needs the 'distributed' package ({err}); install the project with its "
                        "dependencies (scripts/setup.sh)") from None
    cluster = None
    with dask.config.set({"distributed.worker.daemon": False}):
        if address is None:
            if workers < 1:
                raise EvalError(f"--workers {workers}; expected >= 1")
            # memory_limit=0: a share's memory is bounded by the batch size, not by a slice of the machine.
            # env: every parallel runtime of a worker (torch/oneDNN OpenMP, numba) gets its share of the
            # cores and sleeps when idle; measured on a 16-core host, workers left with a pool of all the
            # cores each ran 20-40x slower side by side than alone (benchmarks/scale_out.py)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   memory_limit=0, env=worker_environment(threads))
            client = Client(cluster)
        else:
            try:
                client = Client(address, timeout="20s")
            except OSError as err:
                raise EvalError(f"--address {address}: cannot reach a Dask scheduler ({err}); start one with "
                                "`dask scheduler` and workers with `dask worker ADDRESS`") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_pieces(client: Any, task: Callable[[str, Any], Any], model_path: str, pieces: Sequence[Any],
               sizes: Sequence[int], *, ship: bool, name: str,
               progress: Callable[[int, int], None] | None = None, total: int | None = None) -> list[Any]:
    """`task(model_path, piece)` for every piece as one task on the cluster, results in order of completion.

    The model goes by path, or (`ship`) its files are broadcast once to every worker. A worker that
    dies loses its running task and the scheduler re-runs it elsewhere; callers merge by sample index,
    so a re-run piece replaces, never adds. `progress(done, total)` counts `sizes` of finished pieces.
    """
    from dask.distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    shipped = client.scatter(model_files(model_path), broadcast=True) if ship else None
    was_dir = Path(model_path).is_dir()
    futures = {client.submit(_run_piece, task, model_path, piece, shipped, was_dir,
                             key=f"neurodeploy-{name}-{run_id}-{i}", pure=False): size for i, (piece, size) in enumerate(zip(pieces, sizes))}
    results, done = [], 0
    for future in as_completed(list(futures)):
        results.append(future.result())
        done += futures[future]
        if progress is not None:
            progress(done, total if total is not None else sum(sizes))
    return results


def cluster_workers(client: Any) -> int:
    """Workers the cluster has now."""
    return len(client.scheduler_info()["workers"])


def run_on_dask(setup: EvalSetup, pieces: Sequence[Sequence[SampleSpec]], *, address: str | None = None,
                workers: int = 2, ship: bool | None = None, progress: Callable[[int, int], None] | None = None,
                total: int | None = None) -> tuple[list[SharePartial], int]:
    """Run every chunk of `eval` on a Dask cluster (`address`, or a local cluster of `workers` processes)."""
    ship = address is not None if ship is None else ship
    if address is None and setup.threads is None:  # share this machine's cores between the workers
        setup = dataclasses.replace(setup, threads=threads_per_worker(max(workers, 1)))
    with dask_client(address, workers, setup.threads or 1) as client:
        n_workers = cluster_workers(client)
        partials = run_pieces(client, functools.partial(_eval_task, setup), setup.model_path, pieces,
                              [len(p) for p in pieces], ship=ship, name="eval", progress=progress, total=total)
        return partials, max(n_workers, cluster_workers(client))
