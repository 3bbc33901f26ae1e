"""Offline batch evaluation: plain sequential loops vs the vectorised forward vs the compiled path, in one run.

    .venv/bin/python benchmarks/offline.py [--batch 32] [--steps 300] [--repeats 3] [--threads N] [--device cuda]

Three ways to run the same N-MNIST v1-sized model on the same frames:
- plain: tests/plain_reference.py, the reference repository's way (one time step at a time for
  the front-end, a Python loop over time in every scan), written independently of neurodeploy.model;
- vectorised: `MambaSpike.run` (whole-T convolutions, LIF and scan stepped in PyTorch);
- compiled: `neurodeploy.model.mamba_spike.offline.offline_run` (numba on CPU, Triton on CUDA).
Before any timing, the compiled path's last-layer spikes are compared with the plain loops'
(must be identical) and its logits (must be within 1e-4), on the whole batch. With
`--fast-math` the compiled path is also timed with TF32 (CUDA) / channels-last everywhere
(CPU) and its prediction agreement printed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from plain_reference import plain_forward, plain_frontend  # noqa: E402

from neurodeploy.model import MambaSpike, MambaSpikeConfig  # noqa: E402
from neurodeploy.model.mamba_spike.offline import offline_run  # noqa: E402


def timed(fn, repeats: int, device: str, warmup=None) -> list[float]:
    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    (warmup or fn)()  # allocator, kernel selection, JIT compilation
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
    parser.add_argument("--plain-repeats", type=int, default=1, help="the plain loops are slow: time them fewer times")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--fast-math", action="store_true")
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
    short = frames[:2, :10]

    def plain():
        return plain_forward(sd, frames, beta=config.beta, thr=config.threshold)

    with torch.inference_mode():
        out = offline_run(model, frames)
        plain_spikes = plain_frontend(sd, frames, config.beta, config.threshold)
        mismatched = int((out.spikes[-1] != plain_spikes).sum().item())
        plain_logits = plain()
        diff = (out.logits - plain_logits).abs().max().item()
        rates = [f"{s.mean().item():.3f}" for s in out.spikes]
        compiled = timed(lambda: offline_run(model, frames), args.repeats, args.device)
        vectorised = timed(lambda: model(frames), args.repeats, args.device, warmup=lambda: model(short))
        plain_times = timed(plain, args.plain_repeats, args.device,
                            warmup=lambda: plain_forward(sd, short, beta=config.beta, thr=config.threshold))
        fast = agreement = None
        if args.fast_math:
            fast_out = offline_run(model, frames, fast_math=True)
            agreement = (fast_out.logits.argmax(-1) == out.logits.argmax(-1)).float().mean().item()
            fast = timed(lambda: offline_run(model, frames, fast_math=True), args.repeats, args.device)

    c, v, p = statistics.median(compiled), statistics.median(vectorised), statistics.median(plain_times)
    n = args.batch
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{args.threads} CPU threads"
    print(f"offline forward, N-MNIST v1 config, batch {n}, T {args.steps}, {args.device} ({device_name}), "
          f"torch {torch.__version__}")
    print(f"  firing rates per LIF layer: {', '.join(rates)}")
    print(f"  compiled vs plain: last-layer spikes differing {mismatched} of {plain_spikes.numel()} "
          f"({'identical' if mismatched == 0 else 'NOT identical'}); max |logit diff| {diff:.2e} "
          f"({'<= 1e-4' if diff <= 1e-4 else 'ABOVE 1e-4'})")
    for name, median, runs in (("plain sequential loops", p, plain_times), ("vectorised (run)", v, vectorised),
                               ("compiled (offline_run)", c, compiled)):
        print(f"  {name:22s} : {median * 1e3:9.1f} ms  ({n / median:9.1f} samples/s)  "
              f"runs {[round(t, 4) for t in runs]}")
    if fast is not None:
        f = statistics.median(fast)
        print(f"  compiled, fast math    : {f * 1e3:9.1f} ms  ({n / f:9.1f} samples/s); prediction agreement "
              f"with exact {agreement:.2%}")
    print(f"  speed-up over plain: vectorised {p / v:.2f}x, compiled {p / c:.2f}x")


if __name__ == "__main__":
    main()
