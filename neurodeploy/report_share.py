"""`neurodeploy report --engine dask`: the samples of a report's batch sharded over a Dask cluster.

The engine (cluster, shipping the bundle, re-running the share of a worker that dies) is
`scale_out`'s, as for `eval`; this module is what a report puts on it.

Decisions:
- The client cuts EVENTS into frames, as the local engine does (one file, cheap, and `build_report`
  needs the frames), and sends each worker one contiguous shard of samples. Workers do the
  expensive part, stepping the front-end runtime, and send back every layer's spikes (bit-packed:
  they are 0/1) and the time of each step.
- Counting stays on the client: the shards' spikes are put back in sample order and
  `build_report` counts them exactly as for a local run, so counts, spikes per layer, synaptic
  operations and energies are identical whatever the number of workers and the order in which
  shards finish. (Counts summed per worker would agree only up to float summation order.)
- One shard per worker (a report's batch is small: `--max-samples`, 16 by default), so each
  worker loads the bundle and builds its runtime once; the runtime is also cached per worker
  process (`_RUNTIMES`) for a long-lived cluster that serves several reports.
- Step latency: the shards step side by side, so one step of the whole batch on the cluster takes
  as long as the slowest shard's step; the merged step time is the maximum over shards.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neurodeploy.report.errors import ReportError
from neurodeploy.report.from_events import record_frontend_run
from neurodeploy.report.record import SpikeRecord
from neurodeploy.scale_out import cluster_workers, dask_client, run_pieces, threads_per_worker


@dataclass(frozen=True)
class ReportShard:
    """Samples `first .. first + len(frames) - 1` of the report's batch, as sent to a worker."""

    first: int
    frames: np.ndarray  # (n, T, 2, H, W): uint8 when every count fits exactly, else float32


@dataclass(frozen=True)
class ShardSpikes:
    """What a worker sends back: every layer's spikes of its shard, and the time of each step."""

    first: int
    samples: int
    layer_shapes: tuple[tuple[int, ...], ...]
    layer_bits: tuple[np.ndarray, ...]  # np.packbits of each layer's 0/1 spikes
    step_latency_s: np.ndarray


def compact_frames(frames: torch.Tensor) -> np.ndarray:
    """Event-count frames in the smallest dtype that holds them exactly (uint8 for counts <= 255)."""
    array = frames.detach().cpu().numpy()
    as_bytes = array.astype(np.uint8)
    return as_bytes if np.array_equal(as_bytes, array) else array.astype(np.float32)


_RUNTIMES: dict[tuple[str, str], Any] = {}


def _frontend_of(model_path: str, frontend: str):
    """This worker process's front-end runtime for the bundle, built on first use."""
    key = (model_path, frontend)
    if key not in _RUNTIMES:
        from neurodeploy.bundle import load_bundle

        _RUNTIMES[key] = load_bundle(model_path).frontend_runtime(frontend)
    return _RUNTIMES[key]


def run_shard(frontend: str, threads: int | None, model_path: str, shard: ReportShard) -> ShardSpikes:
    """The task a worker runs: step the bundle's front-end over its shard of samples."""
    if threads:
        torch.set_num_threads(threads)
    frames = torch.from_numpy(shard.frames.astype(np.float32))
    record = record_frontend_run(_frontend_of(model_path, frontend), frames, dt_s=1.0, name=frontend)
    shapes, bits = [], []
    for spikes in record.spikes:
        array = spikes.numpy()
        if not np.isin(array, (0.0, 1.0)).all():
            raise ReportError(f"the {frontend} front-end gave spikes other than 0/1 on samples {shard.first}.."
                              f"{shard.first + len(frames) - 1}; a report counts binary spikes")
        shapes.append(array.shape)
        bits.append(np.packbits(array.astype(bool), axis=None))
    return ShardSpikes(shard.first, len(frames), tuple(shapes), tuple(bits),
                       np.asarray(record.step_latency_s, dtype=np.float64))


def merge_shards(frames: torch.Tensor, shards: list[ShardSpikes], *, dt_s: float, runtime: str) -> SpikeRecord:
    """The shards' spikes in sample order as one SpikeRecord of the whole batch; every sample exactly once."""
    shards = sorted(shards, key=lambda s: s.first)
    covered = [i for s in shards for i in range(s.first, s.first + s.samples)]
    if covered != list(range(frames.shape[0])):
        raise ReportError(f"the shards cover samples {covered}, not 0..{frames.shape[0] - 1} once each")
    layers = []
    for k in range(len(shards[0].layer_shapes)):
        parts = [np.unpackbits(s.layer_bits[k], count=int(np.prod(s.layer_shapes[k]))).reshape(s.layer_shapes[k])
                 for s in shards]
        layers.append(torch.from_numpy(np.concatenate(parts).astype(np.float32)))
    latency = np.max(np.stack([s.step_latency_s for s in shards]), axis=0)
    return SpikeRecord(frames, tuple(layers), dt_s=dt_s, step_latency_s=latency, runtime=runtime)


def record_on_dask(bundle_path: str, frames: torch.Tensor, *, frontend: str, dt_s: float,
                   address: str | None = None, workers: int = 2, ship: bool | None = None,
                   progress: Callable[[int, int], None] | None = None) -> tuple[SpikeRecord, int]:
    """`record_frontend_run` of the bundle's `frontend` over `frames (B, T, 2, H, W)`, sharded over a Dask
    cluster (`address`, or a local cluster of `workers` processes). Returns the record and the workers used.

    `ship` (default: with `address`) broadcasts the bundle's files to the workers instead of
    passing its path; `progress(done, total)` counts the samples of finished shards.
    """
    ship = address is not None if ship is None else ship
    threads = threads_per_worker(max(workers, 1)) if address is None else None
    batch = int(frames.shape[0])
    with dask_client(address, workers, threads or 1) as client:
        n_workers = cluster_workers(client)
        bounds = np.array_split(np.arange(batch), min(max(n_workers, 1), batch))
        pieces = [ReportShard(int(b[0]), compact_frames(frames[b[0]:b[-1] + 1])) for b in bounds]
        shards = run_pieces(client, functools.partial(run_shard, frontend, threads), bundle_path, pieces,
                            [len(b) for b in bounds], ship=ship, name="report", progress=progress, total=batch)
    runtime = (f"{frontend} front-end (stepped on {n_workers} Dask worker(s), {len(pieces)} shard(s) of "
               f"<= {max(len(b) for b in bounds)} samples; step time: the slowest shard's)")
    return merge_shards(frames, shards, dt_s=dt_s, runtime=runtime), n_workers
