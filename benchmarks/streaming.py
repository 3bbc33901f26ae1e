"""Streaming latency of the whole pipeline at batch 1, against PyTorch eager stepping, in one run.

    .venv/bin/python benchmarks/streaming.py [--steps 2000] [--chunk 10] [--soak-steps 0]

N-MNIST config (34x34, 2->32->32->64 front-end, d_model 128, 4 Mamba layers), 1 ms bins of
synthetic events (about 13 events per bin, as in N-MNIST). Timed per bin:
  baseline  PyTorch eager: the torch front-end and backbone runtimes, stepped
  pipeline  torch front-end step + onnxruntime step graph (per step)
  chunked   torch front-end steps + one onnxruntime chunk-graph call per `--chunk` bins
            (latency reported per bin: the call's time divided by the bins it carried)
`--soak-steps N` then runs the per-step pipeline for N more bins and prints the process RSS
after every sample, to show that memory stays flat.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurodeploy.events.binning import to_frames_dt
from neurodeploy.events.synthetic import make_nmnist_like
from neurodeploy.realtime import real_time_factor_of_steps
from neurodeploy.exporters.onnx import export_backbone_chunk, export_backbone_step
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.runtimes.onnxruntime import OnnxBackboneRuntime
from neurodeploy.runtimes.contract import step_layers, step_pipeline
from neurodeploy.runtimes.torch import TorchBackboneRuntime, TorchFrontendRuntime


def percentiles(times_s: list[float]) -> str:
    us = np.asarray(times_s) * 1e6
    p50, p95, p99 = np.percentile(us, [50, 95, 99])
    return f"p50 {p50:7.0f} us  p95 {p95:7.0f} us  p99 {p99:7.0f} us"


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--soak-steps", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (batch 1: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = MambaSpikeConfig.deployable()  # N-MNIST sizes, sum pooling, causal
    model = MambaSpike(config).eval()
    with torch.no_grad():
        for conv in (model.spiking_frontend.conv1, model.spiking_frontend.conv2, model.spiking_frontend.conv3):
            conv.weight.mul_(2.5)

    samples = make_nmnist_like(max(1, args.steps // 300 + 1), seed=0)
    frames = np.concatenate([to_frames_dt(r.events, r.sensor_size, 1000, dtype=np.float32) for r, _ in samples])
    frames = torch.from_numpy(frames[: args.steps]).unsqueeze(1)  # (T, 1, 2, 34, 34)
    steps = frames.shape[0]

    with tempfile.TemporaryDirectory() as tmp:
        step_path, chunk_path = Path(tmp) / "step.onnx", Path(tmp) / "chunk.onnx"
        export_backbone_step(model, step_path, dt=1e-3)
        export_backbone_chunk(model, chunk_path, dt=1e-3)
        backbone = OnnxBackboneRuntime(step=step_path, chunk=chunk_path)
        frontend = TorchFrontendRuntime(model)

        frames = frames.transpose(0, 1)  # (1, T, 2, 34, 34)
        with torch.inference_mode():
            eager: list[float] = []
            step_pipeline(TorchFrontendRuntime(model), TorchBackboneRuntime(model), frames, step_seconds=eager)
            pipeline: list[float] = []
            step_pipeline(frontend, backbone, frames, step_seconds=pipeline)

            frontend_seconds: list[float] = []
            spikes = step_layers(frontend, frames, step_seconds=frontend_seconds)[frontend.layer_names[-1]]
            backbone.reset(1)
            chunked = []
            for t0 in range(0, steps - args.chunk + 1, args.chunk):
                start = time.perf_counter()
                backbone.push(spikes[:, t0:t0 + args.chunk])
                per_bin = (time.perf_counter() - start) / args.chunk
                chunked.extend(f + per_bin for f in frontend_seconds[t0:t0 + args.chunk])

        eager_p50 = float(np.median(eager))
        print(f"streaming at batch 1, N-MNIST config, 1 ms bins, {steps} steps, torch threads {args.threads}")
        print(f"  PyTorch eager (torch runtimes)    : {percentiles(eager)}")
        print(f"  torch front-end + ORT step graph   : {percentiles(pipeline)}   "
              f"{eager_p50 / np.median(pipeline):.2f}x vs eager, "
              f"real-time factor {real_time_factor_of_steps(pipeline, 1e-3):.1f}")
        print(f"  torch front-end + ORT chunk ({args.chunk:2d})    : {percentiles(chunked)}   "
              f"{eager_p50 / np.median(chunked):.2f}x vs eager, "
              f"real-time factor {real_time_factor_of_steps(chunked, 1e-3):.1f}")
        print("  targets: p50 <= 250 us and p99 <= 1000 us per 1 ms step, >= 3x faster than eager")

        if args.soak_steps:
            print(f"soak: {args.soak_steps} steps of the per-step pipeline (frames replayed in samples of {steps} "
                  "steps), RSS in MiB after each sample:")
            marks = []
            with torch.inference_mode():
                for _ in range(max(1, args.soak_steps // steps)):  # every pass is a sample: both states reset
                    step_pipeline(frontend, backbone, frames)
                    marks.append(rss_mib())
            print("  " + "  ".join(f"{m:.1f}" for m in marks), f"(growth {marks[-1] - marks[0]:+.1f} MiB)")


if __name__ == "__main__":
    main()
