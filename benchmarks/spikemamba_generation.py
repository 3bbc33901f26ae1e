"""SpikeMamba LM generation speed, batch 1: per-token latency of the runtimes, measured in the same run.

    python benchmarks/spikemamba_generation.py                    # d_model 256, 4 layers, vocab 1024
    python benchmarks/spikemamba_generation.py --tokens 64        # quicker

Prints p50 / p95 per generated token for
  recompute: the PyTorch offline forward over the whole text every token (what upstream's
             generator does, FAMILIES.md §1.6, minus its stale spike states): the baseline;
  torch:     `SpikeMambaLM.step` with the state carried (TorchTokenRuntime);
  onnx step: the step graph in onnxruntime, 1 thread (OnnxTokenRuntime);
  native:    numba's Mamba layer step with numpy LIF gates (NativeTokenRuntime), compiled before timing;
and each one's speed-up over the baseline. Greedy tokens of torch, ONNX and native are checked equal.
Figures are ratios of the same run (the machine is shared); the model is seeded random.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from neurodeploy.exporters.onnx_spikemamba import export_spikemamba
from neurodeploy.generation import generate
from neurodeploy.model.spikemamba_lm.config import SpikeMambaLMConfig
from neurodeploy.model.spikemamba_lm.synthetic import firing_model
from neurodeploy.runtimes.spikemamba_lm import OnnxTokenRuntime, TorchTokenRuntime
from neurodeploy.runtimes.spikemamba_native import NativeTokenRuntime


def _per_token_us(runtime, prompt: list[int], tokens: int) -> list[float]:
    state = runtime.prefill(np.array([prompt]))[-1].state
    token = np.array([prompt[-1]], dtype=np.int64)
    times = []
    for _ in range(tokens):
        start = time.perf_counter()
        out = runtime.step(token, state)
        times.append((time.perf_counter() - start) * 1e6)
        state, token = out.state, np.array([int(np.argmax(out.logits[0]))], dtype=np.int64)
    return times


@torch.no_grad()
def _recompute_us(model, prompt: list[int], tokens: int) -> list[float]:
    text = list(prompt)
    times = []
    for _ in range(tokens):
        start = time.perf_counter()
        logits = model(torch.tensor([text])).logits[0, -1]
        times.append((time.perf_counter() - start) * 1e6)
        text.append(int(logits.argmax()))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = SpikeMambaLMConfig(vocab_size=args.vocab, d_model=args.d_model, n_layer=args.layers)
    model = firing_model(config, seed=0)
    prompt = torch.randint(0, args.vocab, (args.prompt,), generator=torch.Generator().manual_seed(1)).tolist()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_spikemamba(model, Path(tmp) / "step.onnx", "step")
        runtimes = {"torch": TorchTokenRuntime(model), "onnx step": OnnxTokenRuntime.for_model(Path(tmp) / "step.onnx", model),
                    "native": NativeTokenRuntime(model)}
        texts = [generate(rt, prompt, 16).generated for rt in runtimes.values()]  # also compiles the kernels
        same = all(text == texts[0] for text in texts)
        results = {"recompute (baseline)": _recompute_us(model, prompt, args.tokens)}
        results.update({name: _per_token_us(rt, prompt, args.tokens) for name, rt in runtimes.items()})
    print(f"SpikeMamba LM d_model {args.d_model}, {args.layers} layers, vocab {args.vocab}; prompt {args.prompt}, "
          f"{args.tokens} generated tokens, batch 1, 1 thread; load {os.getloadavg()[0]:.2f}")
    base = statistics.median(results["recompute (baseline)"])
    for name, times in results.items():
        p50, p95 = statistics.median(times), float(np.percentile(times, 95))
        print(f"  {name:22s} p50 {p50:9.0f} us  p95 {p95:9.0f} us  speed-up {base / p50:6.1f}x")
    print(f"  greedy tokens torch == onnx step == native: {same}")


if __name__ == "__main__":
    main()
