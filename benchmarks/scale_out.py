"""`neurodeploy eval` on one machine: the local engine vs the dask engine with 1, 2 and 4 workers, in one run.

    .venv/bin/python benchmarks/scale_out.py [--samples 64] [--workers 1,2,4] [--model v1|shipped]

A synthetic N-MNIST-layout dataset (class folders of .bin files, 300 ms recordings, dt 10 ms)
is written to a temporary folder; `--model v1` evaluates a seeded N-MNIST v1-sized model (its
convolutions scaled so that every layer fires), `shipped` the small shipped checkpoint. The
local engine runs in this process with all its threads; each dask worker is one process with
one torch thread, so the worker count is the parallelism. Every engine's merged result is
checked against the local one (predictions and counts per sample). Each cluster is started and
warmed up (every worker loads the model once) before the timed run; that start-up is printed apart.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from dask.distributed import LocalCluster

import neurodeploy
from neurodeploy.eval_share import Binning, EvalSetup
from neurodeploy.evaluate import evaluate
from neurodeploy.events import save
from neurodeploy.events.synthetic import make_nmnist_like
from neurodeploy.model import MambaSpike, MambaSpikeConfig, save_checkpoint
from neurodeploy.scale_out import worker_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--model", choices=["v1", "shipped"], default="v1")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="neurodeploy-scale-out-"))
    t0 = time.perf_counter()
    for i, (rec, label) in enumerate(make_nmnist_like(args.samples, seed=1000)):
        (root / "data" / str(label)).mkdir(parents=True, exist_ok=True)
        save(rec, root / "data" / str(label) / f"{i:05d}.bin")
    if args.model == "v1":
        torch.manual_seed(0)
        model = MambaSpike(MambaSpikeConfig.nmnist_v1()).eval()
        with torch.no_grad():
            for conv in (model.spiking_frontend.conv1, model.spiking_frontend.conv2, model.spiking_frontend.conv3):
                conv.weight.mul_(2.5)
        model_path = str(save_checkpoint(model, root / "v1.safetensors"))
    else:
        model_path = str(Path(neurodeploy.__file__).parent / "assets" / "mamba_spike_synthetic.safetensors")
    print(f"dataset: {args.samples} recordings written in {time.perf_counter() - t0:.1f} s; model {args.model}; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    base = dict(model_path=model_path, binning=Binning(dt_us=10_000), batch_size=args.batch_size)
    chunk = args.batch_size

    local_setup = EvalSetup(**base)
    evaluate(model_path, root / "data", local_setup, max_samples=chunk)  # warm-up: JIT kernels, allocator
    local = evaluate(model_path, root / "data", local_setup, chunk_size=chunk)
    print(f"  local engine ({torch.get_num_threads()} threads): {local.wall_s:7.2f} s wall  "
          f"({len(local.outcomes) / local.wall_s:6.1f} samples/s), accuracy {local.accuracy:.3f}")
    single = None
    for n in (int(w) for w in args.workers.split(",")):
        setup = EvalSetup(**base, threads=1)
        start = time.perf_counter()
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                          memory_limit=0, env=worker_environment(1)) as cluster:
            # warm-up: every worker loads the model once (and compiles the kernels), as in a long run
            evaluate(model_path, root / "data", setup, chunk_size=1, max_samples=2 * n, engine="dask",
                     address=cluster.scheduler_address)
            warm = time.perf_counter() - start
            result = evaluate(model_path, root / "data", setup, chunk_size=chunk, engine="dask",
                              address=cluster.scheduler_address)
        same = [(o.index, o.prediction, o.spikes_per_layer) for o in result.outcomes] == \
               [(o.index, o.prediction, o.spikes_per_layer) for o in local.outcomes]
        single = single or result.wall_s
        print(f"  dask, {n} worker(s) x 1 thread: {result.wall_s:7.2f} s wall  "
              f"({len(result.outcomes) / result.wall_s:6.1f} samples/s)  "
              f"speed-up vs 1 worker {single / result.wall_s:4.2f}x, vs local {local.wall_s / result.wall_s:4.2f}x; "
              f"merged == local: {same}; cluster start + warm-up {warm:.1f} s; "
              f"summed over workers: compute {result.compute_s:.1f} s, reading {result.read_s:.1f} s")


if __name__ == "__main__":
    main()
