"""Per-step latency of the NIR runtimes against the torch front-end, batch 1, N-MNIST size.

The front-end is the deployable N-MNIST one (34x34, 32/32/64 channels, sum pooling, reset to
zero immediately; `--recurrent` adds the 1x1 recurrences). Figures are p50 / p99 per step in
microseconds and ratios to the torch front-end's `step` measured in the same run (the machine
is shared and noisy). Run: `python benchmarks/nir_runtime.py [--steps 300] [--recurrent]`.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from neurodeploy.exporters.nir import export_frontend
from neurodeploy.model import MambaSpike, MambaSpikeConfig
from neurodeploy.runtimes.contract import step_layers
from neurodeploy.runtimes.nir import NIRFrontendRuntime, NorseFrontendRuntime
from neurodeploy.runtimes.torch import TorchFrontendRuntime


def per_step_us(runtime, frames: torch.Tensor, warmup: int) -> np.ndarray:
    step_layers(runtime, frames[:, :warmup])
    seconds: list[float] = []
    step_layers(runtime, frames, step_seconds=seconds)
    return np.array(seconds) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--recurrent", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MambaSpike(MambaSpikeConfig.deployable(recurrent=args.recurrent, d_model=16, n_layers=1)).eval()
    frames = torch.poisson(torch.full((1, args.steps, 2, 34, 34), 0.05), generator=torch.Generator().manual_seed(0))
    graph = export_frontend(model, 1e-3)
    runtimes = {"torch step": TorchFrontendRuntime(model), "nir (nirtorch)": NIRFrontendRuntime(graph),
                "nir (norse)": NorseFrontendRuntime(graph)}
    results = {name: per_step_us(rt, frames, args.warmup) for name, rt in runtimes.items()}
    base = np.median(results["torch step"])
    print(f"N-MNIST front-end, batch 1, {args.steps} steps, {args.threads} thread(s), recurrent={args.recurrent}")
    print(f"{'runtime':<16}{'p50 us':>10}{'p99 us':>10}{'p50 / torch':>13}")
    for name, times in results.items():
        print(f"{name:<16}{np.median(times):>10.0f}{np.percentile(times, 99):>10.0f}{np.median(times) / base:>13.2f}")


if __name__ == "__main__":
    main()
