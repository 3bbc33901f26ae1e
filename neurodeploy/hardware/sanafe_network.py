"""A netx front-end as a SANA-FE network on its Loihi architecture: spikes, energy and latency.

SANA-FE (`sanafe`, GPL-3.0; Boyle et al., IEEE TCAD 2025, which reports Loihi energy within
12 % and latency within 25 % of measured applications) is an optional extra, run in a child
process (`neurodeploy.hardware.sanafe_worker`) so this toolkit never imports it. This module
builds the network description the worker runs and reads back what it measured.

Conversion (decisions):
- The source is the bundle's netx file, the front-end as Loihi would hold it: pooling already
  folded into each conv (as the netx export does), 8-bit weight mantissas, threshold and bias
  mantissas, 12-bit decays. Units are Loihi's membrane units / 64, so SANA-FE's
  `leaky_integrate_fire` soma on its `loihi.yaml` architecture computes exactly Loihi's
  `v = trunc64(v * (4096 - vDecay)/4096) + a_in + bias`, spike when v > vThMant, reset to 0
  (SANA-FE truncates the decayed membrane to 1/64 toward zero, as Loihi's `>> 12` on 6
  fractional bits does; iDecay is 4096 in every netx file this toolkit writes, so u = a_in).
- Graded input counts: SANA-FE input neurons spike at most once a step, so a pixel whose count
  reaches m in the data gets m input neurons, the j-th spiking when the count exceeds j, each
  with the pixel's synapses: the integrated input is the count, exactly.
- Every in-bounds kernel tap is a synapse (zero weights included), as a dense conv on chip
  processes them; synaptic energy counts them.
- Mapping policy: neurons fill cores in order (input neurons first, then layer by layer), up to
  the architecture's 1,024 neurons per core; input neurons use the core's input somas.
- Timing: each hop adds a step on SANA-FE (as on Loihi): spikes of layer k at step t + k + 1
  are the toolkit's layer k at step t; `SanafeResult` re-aligns them.
- Memory: SANA-FE holds every synapse as an object; the worker's peak memory is measured per
  synapse on small runs (`BYTES_PER_SYNAPSE`), and a run whose estimate exceeds the budget is
  refused with the estimate, before anything is built.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurodeploy.errors import NeurodeployError
from neurodeploy.runtimes.lava_fixed_point import FixedPointLayer

NEURONS_PER_CORE = 1024  # loihi.yaml: max_neurons_supported
CORES = 128  # loihi.yaml: 32 tiles x 4 cores
BYTES_PER_SYNAPSE = 1000  # measured: (peak RSS difference) / (synapse difference) of two runs, ~0.8 KB
BASE_BYTES = 1900 * 2 ** 20  # measured: the worker with the Loihi architecture loaded and a tiny network
DEFAULT_BUDGET_BYTES = 8 * 2 ** 30
MAX_INPUT_COPIES = 32


class SanafeError(NeurodeployError, RuntimeError):
    """SANA-FE is missing, the run would not fit in memory, or the worker failed."""


@dataclass(frozen=True)
class SanafeResult:
    layer_names: tuple[str, ...]
    spikes: tuple[np.ndarray, ...]  # per layer (T, C, H, W) 0/1, aligned with the input step
    energy_j_per_step: np.ndarray  # (T + layers,) whole chip, every simulated step
    latency_s_per_step: np.ndarray
    synapses: int
    neurons: int
    input_copies: int
    cores_used: int
    peak_rss_bytes: int

    @property
    def energy_j(self) -> float:
        return float(self.energy_j_per_step.sum())

    @property
    def latency_s(self) -> float:
        return float(self.latency_s_per_step.sum())


def _conv_synapses(layer: FixedPointLayer, in_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source index, destination index, weight) of every in-bounds tap, (C, H, W) row-major."""
    c_out, c_in, kh, kw = layer.weight.shape
    _, h_in, w_in = in_shape
    _, h_out, w_out = layer.output_shape
    co, oy, ox, ci, ky, kx = np.meshgrid(np.arange(c_out), np.arange(h_out), np.arange(w_out), np.arange(c_in),
                                         np.arange(kh), np.arange(kw), indexing="ij")
    iy = oy * layer.stride[0] - layer.padding[0] + ky
    ix = ox * layer.stride[1] - layer.padding[1] + kx
    keep = (iy >= 0) & (iy < h_in) & (ix >= 0) & (ix < w_in)
    src = (ci * h_in + iy) * w_in + ix
    dst = (co * h_out + oy) * w_out + ox
    return src[keep].astype(np.int64), dst[keep].astype(np.int64), layer.weight[co[keep], ci[keep], ky[keep], kx[keep]]


def estimate_bytes(layers: tuple[FixedPointLayer, ...], copies: int) -> tuple[int, int]:
    """(synapses, estimated peak bytes of the worker) before anything is built."""
    synapses = 0
    for k, layer in enumerate(layers):
        _, c_in, kh, kw = layer.weight.shape
        taps = int(np.prod(layer.output_shape)) * c_in * kh * kw  # an upper bound (padding taps dropped)
        synapses += taps * (copies if k == 0 else 1)
    return synapses, BASE_BYTES + synapses * BYTES_PER_SYNAPSE


def _spec(layers: tuple[FixedPointLayer, ...], frames: np.ndarray) -> dict[str, np.ndarray]:
    frames = np.asarray(frames, dtype=np.int64)
    steps, in_shape = frames.shape[0], tuple(frames.shape[1:])
    copies = max(int(frames.max()), 1)
    pixels = int(np.prod(in_shape))
    flat = frames.reshape(steps, pixels)
    # copy j of a pixel spikes when the count exceeds j: m binary inputs carry a count of m
    input_spikes = np.concatenate([(flat > j) for j in range(copies)], axis=1).astype(np.uint8)  # (T, copies*P)
    spec: dict[str, np.ndarray] = {"input_spikes": input_spikes, "steps": np.array(steps)}
    shape = in_shape
    for k, layer in enumerate(layers):
        src, dst, w = _conv_synapses(layer, shape)
        if k == 0 and copies > 1:
            src = np.concatenate([src + j * pixels for j in range(copies)])
            dst, w = np.tile(dst, copies), np.tile(w, copies)
        n = int(np.prod(layer.output_shape))
        bias = np.zeros(n) if layer.bias is None else np.repeat(layer.bias.astype(np.float64), n // len(layer.bias))
        spec |= {
            f"l{k}_src": src, f"l{k}_dst": dst, f"l{k}_weight": w.astype(np.float64), f"l{k}_bias": bias,
            f"l{k}_meta": np.array([n, layer.v_threshold, (4096 - layer.v_decay) / 4096, layer.i_decay], dtype=np.float64),
        }
        shape = layer.output_shape
    spec["layers"] = np.array(len(layers))
    return spec


def run_sanafe(layers: tuple[FixedPointLayer, ...], frames: np.ndarray, *, budget_bytes: int = DEFAULT_BUDGET_BYTES,
               timeout_s: float = 600.0) -> SanafeResult:
    """Run `frames (T, C, H, W)` integer counts through the netx `layers` on SANA-FE's Loihi."""
    frames = np.asarray(frames)
    copies = max(int(frames.max()), 1)
    if copies > MAX_INPUT_COPIES:
        raise SanafeError(f"a pixel receives {copies} events in one bin; SANA-FE input neurons spike once a step "
                          f"and the converter splits counts over at most {MAX_INPUT_COPIES} copies: bin finer (`--dt-us`)")
    for layer in layers:
        if layer.i_decay != 4096:
            raise SanafeError(f"{layer.name}: iDecay {layer.i_decay}; the converter maps a current that decays "
                              "fully each step (iDecay 4096), as this toolkit's netx export writes")
    synapses, need = estimate_bytes(layers, copies)
    if need > budget_bytes:
        raise SanafeError(f"SANA-FE would need about {need / 2**30:.1f} GiB for {synapses:,} synapses "
                          f"(budget {budget_bytes / 2**30:.1f} GiB); run it on a machine with the memory, "
                          "or on a smaller crop of the input")
    neurons = copies * int(np.prod(frames.shape[1:])) + sum(int(np.prod(l.output_shape)) for l in layers)
    if neurons > NEURONS_PER_CORE * CORES:
        raise SanafeError(f"{neurons:,} neurons exceed the {CORES} cores x {NEURONS_PER_CORE} of SANA-FE's Loihi")
    with tempfile.TemporaryDirectory(prefix="neurodeploy-sanafe-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.npz", Path(tmp) / "result.json"
        np.savez(spec_path, **_spec(layers, frames))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        try:
            done = subprocess.run([sys.executable, "-m", "neurodeploy.hardware.sanafe_worker", str(spec_path), str(out_path)],
                                  capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise SanafeError(f"SANA-FE ran past {timeout_s:.0f} s; run fewer steps or a smaller front-end") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SanafeError(f"the SANA-FE worker failed (exit {done.returncode}): {tail[0]}")
        result = json.loads(out_path.read_text())
    if "error" in result:
        raise SanafeError(result["error"])
    steps = frames.shape[0]
    spikes = []
    for k, layer in enumerate(layers):
        out = np.zeros((steps, *layer.output_shape), dtype=np.int64)
        flat = out.reshape(steps, -1)
        for t_sim, fired in enumerate(result["spikes"][k]):
            t = t_sim - (k + 1)  # one step per hop
            if 0 <= t < steps:
                flat[t, fired] = 1
        spikes.append(out)
    return SanafeResult(
        layer_names=tuple(l.name for l in layers), spikes=tuple(spikes),
        energy_j_per_step=np.asarray(result["energy_j"]), latency_s_per_step=np.asarray(result["latency_s"]),
        synapses=int(result["synapses"]), neurons=neurons, input_copies=copies,
        cores_used=int(result["cores_used"]), peak_rss_bytes=int(result["peak_rss_bytes"]),
    )
