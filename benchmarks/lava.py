"""Lava front-end speed: start-up time and wall time per simulated step, floating_pt and fixed_pt.

N-MNIST front-end (2x34x34, deployable semantics), one sample of STEPS Poisson-count frames.
Baseline, measured in the same run: the torch front-end stepped one frame at a time (batch 1,
float32, one thread); Lava figures are printed as ratios to it.

    .venv/bin/python benchmarks/lava.py [--steps 64]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder is sys.path[0] and this file would shadow the `lava` package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import torch

from neurodeploy.exporters.netx import export_netx
from neurodeploy.exporters.nir import export_frontend
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.frontend import SpikingFrontend
from neurodeploy.runtimes.contract import step_layers
from neurodeploy.runtimes.lava import LavaFrontendRuntime
from neurodeploy.runtimes.torch import TorchFrontendRuntime


def torch_step_seconds(frontend: SpikingFrontend, frames: torch.Tensor) -> float:
    runtime = TorchFrontendRuntime(frontend)
    step_layers(runtime, frames[:, :1])  # warm-up
    seconds: list[float] = []
    step_layers(runtime, frames, step_seconds=seconds)
    return sum(seconds) / len(seconds)


def lava_seconds(build, frames: torch.Tensor) -> tuple[float, float]:
    start = time.perf_counter()
    runtime = build()
    try:
        runtime.run(frames[:, :1])  # compiles the run and starts Lava's processes
        startup = time.perf_counter() - start
        start = time.perf_counter()
        runtime.run(frames)
        # run() also drains latency_steps zero frames per sample; count every simulated step
        per_step = (time.perf_counter() - start) / runtime.slot_steps
    finally:
        runtime.close()
    return startup, per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    frontend = SpikingFrontend(MambaSpikeConfig.deployable()).eval()
    frames = torch.poisson(torch.full((1, args.steps, 2, 34, 34), 0.1))
    graph = export_frontend(frontend, 1e-3)
    baseline = torch_step_seconds(frontend, frames)
    print(f"torch front-end step (baseline): {1e3 * baseline:.3f} ms/step")
    with tempfile.TemporaryDirectory() as tmp:
        path = export_netx(graph, Path(tmp) / "frontend.net").path
        for name, build in (("floating_pt", lambda: LavaFrontendRuntime.floating(graph, steps_per_sample=args.steps)),
                            ("fixed_pt", lambda: LavaFrontendRuntime.fixed_point(path, steps_per_sample=args.steps))):
            startup, per_step = lava_seconds(build, frames)
            print(f"lava {name}: start-up {startup:.2f} s, {1e3 * per_step:.2f} ms per simulated step "
                  f"({per_step / baseline:.1f}x torch)")


if __name__ == "__main__":
    main()
