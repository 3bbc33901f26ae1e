"""Mamba-Liquid-Spiking: offline throughput and streaming latency, against the plain loops.

    python benchmarks/liquid.py [--batch 8] [--steps 128] [--stream-steps 64]

Baseline (measured in the same run): tests/plain_liquid.py, a loop-by-loop implementation as
upstream runs it (one Python step per token, per conv tap). Compared: the PyTorch model
(`MambaLiquidSpiking`), the deployed pipeline (NIR encoders on nirtorch + ONNX blocks on
onnxruntime), and, per token at batch 1, the torch `step` against the pipeline's step graphs.
A seeded random sequential model of moderate size, single-threaded; prints the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from plain_liquid import plain_forward  # noqa: E402

from neurodeploy.liquid_bundle import export_liquid  # noqa: E402
from neurodeploy.model.liquid.checkpoint import save_checkpoint  # noqa: E402
from neurodeploy.model.liquid.config import LiquidConfig  # noqa: E402
from neurodeploy.model.liquid.model import MambaLiquidSpiking  # noqa: E402


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--stream-steps", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = LiquidConfig(vocab_size=256, input_dim=64, hidden_dim=128, output_dim=256, spiking_units=64,
                          liquid_units=64, num_layers=2, liquid_backbone="ncp", integration_mode="sequential")
    model = MambaLiquidSpiking(config).eval()
    with torch.no_grad():
        for block in model.blocks:  # make the encoders fire
            block.spike_encoder.fc1.weight.mul_(8.0)
    ids = torch.randint(0, config.vocab_size, (args.batch, args.steps))
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_checkpoint(model, Path(tmp) / "model.safetensors")
        bundle = export_liquid(checkpoint, Path(tmp) / "bundle")
        pipeline = bundle.pipeline()
        state_dict = {k: v for k, v in model.state_dict().items()}
        with torch.no_grad():
            plain_s = timed(lambda: plain_forward(state_dict, ids, mode="sequential", backbone="ncp"), 1)
            torch_s = timed(lambda: model(ids), 3)
        pipe_s = timed(lambda: pipeline.run(ids), 3)
        tokens = args.batch * args.steps
        print(f"load average {os.getloadavg()[0]:.2f}; batch {args.batch} x {args.steps} tokens, 1 thread")
        print(f"offline  plain loops (baseline) {tokens / plain_s:9.0f} tokens/s  1.00x")
        print(f"offline  torch model            {tokens / torch_s:9.0f} tokens/s  {plain_s / torch_s:.2f}x")
        print(f"offline  NIR + ONNX pipeline    {tokens / pipe_s:9.0f} tokens/s  {plain_s / pipe_s:.2f}x")

        stream_ids = ids[:1, : args.stream_steps]
        latencies_torch, latencies_pipe = [], []
        with torch.no_grad():
            state = model.initial_state(1)
            for t in range(stream_ids.shape[1]):
                start = time.perf_counter()
                _, state = model.step(stream_ids[:, t], state)
                latencies_torch.append(time.perf_counter() - start)
        pipeline.reset(1)
        for t in range(stream_ids.shape[1]):
            start = time.perf_counter()
            pipeline.step(stream_ids[:, t])
            latencies_pipe.append(time.perf_counter() - start)
        base = statistics.median(latencies_torch)
        print(f"stream   torch step (baseline)  p50 {base * 1e6:8.0f} us  1.00x")
        print(f"stream   NIR + ONNX step graphs p50 {statistics.median(latencies_pipe) * 1e6:8.0f} us  "
              f"{base / statistics.median(latencies_pipe):.2f}x")


if __name__ == "__main__":
    main()
