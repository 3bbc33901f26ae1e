"""Offline batch evaluation: the vectorised forward vs plain sequential loops, in one run.

    .venv/bin/python benchmarks/offline.py [--batch 32] [--steps 300] [--repeats 3] [--threads N]

The baseline is tests/plain_reference.py: the reference repository's way of running the model,
one time step at a time for the front-end, a Python loop over time for every scan, written
independently of neurodeploy.model. Both run the same N-MNIST v1 weights on the same frames;
the script checks that their logits agree before timing anything.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from plain_reference import plain_forward  # noqa: E402

from neurodeploy.model import MambaSpike, MambaSpikeConfig  # noqa: E402


def timed(fn, repeats: int, device: str) -> list[float]:
    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fn()  # warm-up: allocator, kernel selection
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # TF32 convolutions (cuDNN's default) round differently enough to flip spikes near threshold
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    config = MambaSpikeConfig.nmnist_v1()
    model = MambaSpike(config).eval().to(args.device)
    with torch.no_grad():
        for conv in (model.spiking_frontend.conv1, model.spiking_frontend.conv2, model.spiking_frontend.conv3):
            conv.weight.mul_(2.5)  # so that the LIF layers actually fire, as a trained model's do
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    frames = torch.poisson(torch.full((args.batch, args.steps, 2, 34, 34), 0.2)).to(args.device)

    with torch.inference_mode():
        check = frames[:2, :20]
        diff = (model(check) - plain_forward(sd, check, beta=config.beta, thr=config.threshold)).abs().max().item()
        assert diff < 1e-4, f"vectorised and plain logits differ by {diff}"
        out = model.run(frames[:, : min(args.steps, 50)])
        rates = [f"{s.mean().item():.3f}" for s in out.spikes]
        vectorised = timed(lambda: model(frames), args.repeats, args.device)
        plain = timed(lambda: plain_forward(sd, frames, beta=config.beta, thr=config.threshold), args.repeats, args.device)

    v, p = statistics.median(vectorised), statistics.median(plain)
    samples = args.batch
    print(f"offline forward, N-MNIST v1 config, batch {args.batch}, T {args.steps}, device {args.device}, {args.threads} threads")
    print(f"  firing rates per LIF layer (first 50 steps): {', '.join(rates)}; max |logit diff| vs plain: {diff:.2e}")
    print(f"  plain sequential loops : {p * 1e3:9.1f} ms  ({samples / p:8.1f} samples/s)  runs {[round(t, 3) for t in plain]}")
    print(f"  neurodeploy vectorised : {v * 1e3:9.1f} ms  ({samples / v:8.1f} samples/s)  runs {[round(t, 3) for t in vectorised]}")
    print(f"  speed-up: {p / v:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
