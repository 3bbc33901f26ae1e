"""Backbone speed: onnxruntime vs the PyTorch backbone, measured in the same run.

    python benchmarks/backbone.py                 # N-MNIST config (d_model 128, 4 layers)
    python benchmarks/backbone.py --steps 200 --repeats 2   # quicker

Prints
  offline: full graph, batch 32 x 300 steps, onnxruntime (all cores) vs
           `MambaSpike.backbone_forward` (torch, all cores); target onnxruntime >= 2x faster;
  streaming: step graph at batch 1, p50 / p99 over --steps steps, onnxruntime (1 thread,
           sequential) vs eager `MambaSpike.backbone_step` (torch, 1 thread); targets
           p50 <= 150 us and >= 3x faster than eager.
Figures are ratios against the baseline of the same run because the machines are shared;
absolute times move with the load. The model is randomly initialised (seeded): speed does
not depend on the weights, and the spikes are seeded Bernoulli(0.1).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurodeploy.exporters.onnx import export_backbone, export_backbone_step
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.runtimes.contract import step_backbone
from neurodeploy.runtimes.onnxruntime import OnnxBackboneRuntime
from neurodeploy.runtimes.torch import TorchBackboneRuntime


def _spikes(config: MambaSpikeConfig, batch: int, steps: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, steps, config.spiking_channels, config.feature_height, config.feature_width)
    return (torch.rand(shape, generator=gen) < 0.1).to(torch.float32)


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, ORT arena, torch kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _per_step_us(runtime, spikes: torch.Tensor) -> np.ndarray:
    step_backbone(runtime, spikes[:, :20])  # warm-up
    seconds: list[float] = []
    step_backbone(runtime, spikes[:, 20:], step_seconds=seconds)
    return np.asarray(seconds) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--time", type=int, default=300)
    parser.add_argument("--steps", type=int, default=1000, help="steps timed at batch 1")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the offline run (median)")
    parser.add_argument("--interface", choices=("centered", "causal"), default="centered")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    torch.manual_seed(0)
    config = MambaSpikeConfig.nmnist_v1() if args.interface == "centered" else MambaSpikeConfig.nmnist_v2()
    model = MambaSpike(config).eval()
    print(f"N-MNIST backbone: d_model {config.d_model}, {config.n_layers} layers, {config.spike_features} spike "
          f"features, {config.interface} interface; {cores} cores; torch {torch.__version__}")

    with tempfile.TemporaryDirectory() as tmp:
        full = export_backbone(model, Path(tmp, "backbone.onnx"), dt=1e-3)
        step = export_backbone_step(model, Path(tmp, "backbone_step.onnx"), dt=1e-3)
        print(f"export: full {full.export_seconds * 1e3:.0f} ms ({full.nodes} nodes, parity {full.parity_max_abs:.1e}), "
              f"step {step.export_seconds * 1e3:.0f} ms ({step.nodes} nodes, parity {step.parity_max_abs:.1e})")
        runtime = OnnxBackboneRuntime(full=full.path, step=step.path)

        # -- offline, batch 32 x 300 steps --------------------------------------------------
        spikes = _spikes(config, args.batch, args.time)
        torch.set_num_threads(cores)
        with torch.inference_mode():
            reference = model.backbone_forward(spikes)
            torch_s = _median_seconds(lambda: model.backbone_forward(spikes), args.repeats)
        spikes_np = spikes.numpy()
        ort_logits = runtime.run(spikes_np)
        ort_s = _median_seconds(lambda: runtime.run(spikes_np), args.repeats)
        diff = float(np.abs(np.asarray(ort_logits) - reference.numpy()).max())
        print(f"\noffline B={args.batch} T={args.time} (median of {args.repeats}):")
        print(f"  torch backbone_forward   {torch_s * 1e3:8.1f} ms   {args.batch / torch_s:7.1f} samples/s")
        print(f"  onnxruntime full graph   {ort_s * 1e3:8.1f} ms   {args.batch / ort_s:7.1f} samples/s")
        print(f"  speed-up {torch_s / ort_s:.2f}x (target >= 2x); max |logit diff| {diff:.1e}")

        # -- streaming, batch 1 -------------------------------------------------------------
        torch.set_num_threads(1)
        frames = _spikes(config, 1, args.steps + 20, seed=1)
        with torch.inference_mode():
            torch_us = _per_step_us(TorchBackboneRuntime(model), frames)
        ort_us = _per_step_us(runtime, frames)
        print(f"\nstreaming step, batch 1, {args.steps} steps (+20 warm-up):")
        for name, us in (("torch eager backbone_step", torch_us), ("onnxruntime step graph", ort_us)):
            print(f"  {name:26s} p50 {np.percentile(us, 50):8.1f} us   p99 {np.percentile(us, 99):8.1f} us")
        p50 = float(np.percentile(ort_us, 50))
        print(f"  p50 speed-up {np.percentile(torch_us, 50) / p50:.2f}x (target >= 3x); "
              f"onnxruntime p50 {p50:.0f} us (target <= 150 us)")


if __name__ == "__main__":
    main()
