"""Streaming latency of the whole pipeline at batch 1, one thread, 1 ms bins, in one run.

    .venv/bin/python benchmarks/streaming.py [--steps 2000] [--gesture-steps 200] [--chunk 10] [--soak-steps 0]

Configs (deployable settings: sum pooling, zero reset, immediate, causal interface):
  nmnist    N-MNIST sizes (34x34, 2->32->32->64 front-end, d_model 128, 4 Mamba layers)
  v2        the same sizes with recurrence and beta 0.97 (the reference v2 checkpoint's sizes)
  gesture   128x128 DVS Gesture sizes (spiking_channels 128, d_model 256, 6 layers)
Inputs: 1 ms bins of synthetic N-MNIST-like events (about 13 events per bin; gesture-like
events at 128x128). Weights are seeded random, with the conv weights scaled and the conv
biases zeroed so that the layers fire at a few percent, as the shipped trained model does
(random biases alone drive a randomly initialised front-end to fire at 12-25 % without
input); `--activity dense` keeps the random biases to show the native runtime's cost then.
The measured firing rates are printed.

Timed per bin, in the same run:
  eager            MambaSpike.step (PyTorch eager: front-end and backbone)
  torch+ORT        torch front-end step + onnxruntime step graph, before (`tuned=False`:
                   session.run, default options) and after (I/O binding, tuned options)
  ORT step alone   the step graph on precomputed spikes, before and after
  ORT chunk alone  one chunk-graph call per `--chunk` bins of precomputed spikes (latency per
                   bin: the call's time divided by the bins it carried)
  native           NativeFrontendRuntime + NativeBackboneRuntime, and each half alone
Beside each: the dense FLOPs of a step (2 x the multiply-accumulates a dense evaluation of
the front-end and backbone performs) and the dense-equivalent throughput that latency means.
`--soak-steps N` then runs the native pipeline for N more bins and prints the process RSS
every N/10 steps (a sample boundary every 3000 steps), to show that memory stays flat.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurodeploy.events.binning import to_frames_dt
from neurodeploy.events.synthetic import make_gesture_like, make_nmnist_like
from neurodeploy.exporters.nir import export_frontend
from neurodeploy.exporters.onnx import export_backbone_chunk, export_backbone_step
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.realtime import real_time_factor_of_steps
from neurodeploy.runtimes.native import NativeBackboneRuntime, NativeFrontendRuntime
from neurodeploy.runtimes.onnxruntime import OnnxBackboneRuntime
from neurodeploy.runtimes.torch import TorchFrontendRuntime

CONFIGS = {
    "nmnist": MambaSpikeConfig.deployable(),
    "v2": MambaSpikeConfig.deployable(recurrent=True, beta=0.97),
    "gesture": MambaSpikeConfig.deployable(input_height=128, input_width=128, spiking_channels=128, d_model=256,
                                           n_layers=6, num_classes=11),
}


def percentiles(times: tuple[list[float], list[float]]) -> tuple[float, float, float, float]:
    """(wall p50, wall p99, this thread's CPU-time p50) in us and the real-time factor at 1 ms bins
    (`neurodeploy.realtime`: recorded / total wall time). The CPU time leaves out the time the
    process waited for a core, which on a shared machine is most of the wall-time tail."""
    wall, cpu = times
    p50, p99 = np.percentile(np.asarray(wall) * 1e6, [50, 99])
    return (float(p50), float(p99), float(np.percentile(np.asarray(cpu) * 1e6, 50)),
            real_time_factor_of_steps(wall, 1e-3))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dense_macs(c: MambaSpikeConfig) -> tuple[int, int]:
    """Multiply-accumulates of one dense step: (front-end, backbone)."""
    h1, w1 = c.input_height // 2, c.input_width // 2
    h2, w2 = h1 // 2, w1 // 2
    frontend = (c.input_channels * c.conv_channels * 9 * c.input_height * c.input_width
                + c.conv_channels * c.conv_channels * 9 * h1 * w1 + c.conv_channels * c.spiking_channels * 9 * h2 * w2)
    if c.recurrent:
        frontend += c.conv_channels ** 2 * (h1 * w1 + h2 * w2) + c.spiking_channels ** 2 * h2 * w2
    layer = (2 * c.d_inner * c.d_model + c.d_inner * c.d_conv + (c.dt_rank + 2 * c.d_state) * c.d_inner
             + c.dt_rank * c.d_inner + 3 * c.d_inner * c.d_state + c.d_model * c.d_inner)
    backbone = c.spike_features * c.d_model + c.n_layers * layer + c.d_model * c.num_classes
    return frontend, backbone


def build(name: str, activity: str) -> MambaSpike:
    torch.manual_seed(0)
    model = MambaSpike(CONFIGS[name]).eval()
    with torch.no_grad():
        for conv in (model.spiking_frontend.conv1, model.spiking_frontend.conv2, model.spiking_frontend.conv3):
            conv.weight.mul_(3.0 if activity == "sparse" else 2.5)
            if activity == "sparse":
                conv.bias.zero_()
    return model


def event_frames(name: str, steps: int) -> torch.Tensor:
    if name == "gesture":
        samples = make_gesture_like(max(1, steps // 500 + 1), seed=0)
    else:
        samples = make_nmnist_like(max(1, steps // 300 + 1), seed=0)
    frames = np.concatenate([to_frames_dt(r.events, r.sensor_size, 1000, dtype=np.float32) for r, _ in samples])
    return torch.from_numpy(frames[:steps]).unsqueeze(1)  # (T, 1, 2, H, W)


def timed(fn, inputs) -> tuple[list[float], list[float]]:
    wall, cpu = [], []
    for x in inputs:
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn(x)
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return wall, cpu


def bench(name: str, steps: int, activity: str, tmp: Path, chunk: int) -> dict[str, tuple[float, float, float, float]]:
    model = build(name, activity)
    c = model.config
    frames = event_frames(name, steps)
    steps = frames.shape[0]
    step_path = tmp / f"{name}_step.onnx"
    export_backbone_step(model, step_path, dt=1e-3)
    chunk_path = tmp / f"{name}_chunk.onnx"
    export_backbone_chunk(model, chunk_path, dt=1e-3)
    ort_chunk = OnnxBackboneRuntime(chunk=chunk_path)
    graph = export_frontend(model, 1e-3)
    ort_before = OnnxBackboneRuntime(step=step_path, tuned=False)
    ort_after = OnnxBackboneRuntime(step=step_path)
    torch_frontend = TorchFrontendRuntime(model)
    native_frontend, native_backbone = NativeFrontendRuntime(graph), NativeBackboneRuntime(model)
    results: dict[str, tuple[float, float, float, float]] = {}
    with torch.inference_mode():
        spikes = torch_frontend.run(frames.transpose(0, 1))[0].unsqueeze(1)  # (T, 1, C, H, W), the reference
        rates = {k: v / steps / int(np.prod(s.shape[1:])) for (k, v), s in
                 zip(torch_frontend.spike_counts.items(), torch_frontend.layer_spikes.values())}
        state = model.initial_state(1)

        def eager(frame):
            nonlocal state
            _, state = model.step(frame, state)

        results["eager"] = percentiles(timed(eager, frames))
        for label, backbone in (("before", ort_before), ("after", ort_after)):
            torch_frontend.reset(1)
            backbone.reset(1)
            results[f"torch+ORT {label}"] = percentiles(timed(lambda f: backbone.step(torch_frontend.step(f)), frames))
        for label, backbone in (("before", ort_before), ("after", ort_after)):
            backbone.reset(1)
            results[f"ORT step alone {label}"] = percentiles(timed(backbone.step, spikes))
        ort_chunk.reset(1)
        packets = [spikes[t0:t0 + chunk].transpose(0, 1) for t0 in range(0, steps - chunk + 1, chunk)]
        wall, cpu = timed(ort_chunk.push, packets)
        results[f"ORT chunk ({chunk}) alone"] = percentiles(([w / chunk for w in wall for _ in range(chunk)],
                                                             [c / chunk for c in cpu for _ in range(chunk)]))
        native_frontend.reset(1)
        native_backbone.reset(1)
        results["native"] = percentiles(timed(lambda f: native_backbone.step(native_frontend.step(f)), frames))
        native_frontend.reset(1)
        results["native front-end alone"] = percentiles(timed(native_frontend.step, frames))
        native_backbone.reset(1)
        results["native backbone alone"] = percentiles(timed(native_backbone.step, spikes))
        # exactness on this run: the native front-end's spikes against the torch reference
        native_frontend.reset(1)
        flips = sum(int((native_frontend.step(frames[t]) != spikes[t]).sum()) for t in range(steps))

    fe_macs, be_macs = dense_macs(c)
    flops = {"eager": fe_macs + be_macs, "torch+ORT before": fe_macs + be_macs, "torch+ORT after": fe_macs + be_macs,
             "ORT step alone before": be_macs, "ORT step alone after": be_macs, f"ORT chunk ({chunk}) alone": be_macs,
             "native": fe_macs + be_macs,
             "native front-end alone": fe_macs, "native backbone alone": be_macs}
    events = float((frames != 0).sum()) / steps
    print(f"\n{name}: {c.input_height}x{c.input_width}, conv {c.conv_channels}, spiking {c.spiking_channels}, d_model "
          f"{c.d_model}, {c.n_layers} layers, recurrent {c.recurrent}; {steps} steps of 1 ms, {events:.1f} active "
          f"pixels per bin; firing {', '.join(f'{k} {100 * r:.1f}%' for k, r in rates.items())} ({activity})")
    print(f"  {'runtime':24s} {'p50 us':>8s} {'p99 us':>8s} {'cpu p50':>8s}  {'RTF':>5s}  {'dense MFLOP':>11s}  "
          f"{'dense-eq GFLOP/s':>16s}")
    for label, (p50, p99, cpu, rtf) in results.items():
        dense = 2 * flops[label] / 1e6
        print(f"  {label:24s} {p50:8.0f} {p99:8.0f} {cpu:8.0f}  {rtf:5.1f}  {dense:11.2f}  {dense / p50 * 1e3:16.1f}")
    native, native_cpu = results["native"][0], results["native"][2]
    print(f"  native vs torch+ORT before: {results['torch+ORT before'][0] / native:.1f}x (cpu "
          f"{results['torch+ORT before'][2] / native_cpu:.1f}x), after: {results['torch+ORT after'][0] / native:.1f}x "
          f"(cpu {results['torch+ORT after'][2] / native_cpu:.1f}x), vs eager {results['eager'][0] / native:.1f}x; "
          f"ORT step graph after/before "
          f"{results['ORT step alone after'][0] / results['ORT step alone before'][0]:.2f}; "
          f"last-layer spike flips vs torch: {flips} of {steps * int(np.prod(spikes.shape[2:]))}")
    return results


def soak(steps: int) -> None:
    model = build("nmnist", "sparse")
    frames = event_frames("nmnist", 3000)
    frontend, backbone = NativeFrontendRuntime(export_frontend(model, 1e-3)), NativeBackboneRuntime(model)
    frontend.reset(1)
    backbone.reset(1)
    marks, every = [], max(1, steps // 10)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(steps):
            backbone.step(frontend.step(frames[i % frames.shape[0]]))
            if (i + 1) % 3000 == 0:  # a sample boundary now and then, as a stream resets
                backbone.flush()
                frontend.reset(1)
                backbone.reset(1)
            if (i + 1) % every == 0:
                marks.append(rss_mib())
    wall = time.perf_counter() - start
    print(f"\nsoak: {steps} steps of the native pipeline (nmnist, frames replayed) in {wall:.1f} s, real-time factor "
          f"{real_time_factor_of_steps([wall], steps * 1e-3):.1f}; RSS in MiB every {every} steps:")
    print("  " + "  ".join(f"{m:.1f}" for m in marks), f"(growth {marks[-1] - marks[0]:+.2f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="bins timed for the N-MNIST-sized configs")
    parser.add_argument("--gesture-steps", type=int, default=200, help="bins timed for the 128x128 config")
    parser.add_argument("--configs", default="nmnist,v2,gesture")
    parser.add_argument("--activity", choices=["sparse", "dense"], default="sparse")
    parser.add_argument("--chunk", type=int, default=10, help="bins per onnxruntime chunk-graph call")
    parser.add_argument("--soak-steps", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (batch 1: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"streaming at batch 1, 1 ms bins, torch threads {args.threads}, onnxruntime 1 thread, numba kernels "
          f"single-threaded; {os.cpu_count()} CPUs, load average at start {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            bench(name, args.gesture_steps if name == "gesture" else args.steps, args.activity, Path(tmp), args.chunk)
    print(f"\nload average at end {os.getloadavg()}")
    print("targets: native p50 <= 100 us, p99 <= 300 us, >= 10x torch+ORT; ORT step graph alone p50 <= 150 us")
    if args.soak_steps:
        soak(args.soak_steps)


if __name__ == "__main__":
    main()
