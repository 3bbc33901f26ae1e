"""`neurodeploy verify` and `neurodeploy bench`: every runtime of a bundle on the same inputs.

verify: the PyTorch model is the reference. Front-end runtimes are compared spike for spike
at every step and layer (NIR: exact; Lava fixed point: the fraction of agreeing neuron-steps,
at least `LAVA_MIN_AGREEMENT`); backbone runtimes by the max |logit| difference of the
streamed anytime logits and the final logits (at most `BACKBONE_TOLERANCE`).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from neurodeploy.bundle import Bundle
from neurodeploy.runtimes.contract import step_backbone, step_layers, step_pipeline

BACKBONE_TOLERANCE = 1e-4
LAVA_MIN_AGREEMENT = 0.99


def sample_frames(bundle: Bundle, events: str | None, samples: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, str]:
    """(N, T, 2, H, W) frames: consecutive windows of `steps` bins of an event file, or synthetic counts."""
    c = bundle.config
    if events is None:
        generator = torch.Generator().manual_seed(seed)
        shape = (samples, steps, c.input_channels, c.input_height, c.input_width)
        return torch.poisson(torch.full(shape, 0.1), generator=generator), f"synthetic Poisson counts, seed {seed}"
    from neurodeploy.events import load
    from neurodeploy.events.binning import to_frames_dt
    from neurodeploy.stream import StreamError, check_sensor_size

    recording = load(events)
    check_sensor_size(bundle, recording.sensor_size, events)
    frames = to_frames_dt(recording.events, recording.sensor_size, bundle.dt_us, dtype=np.float32)
    usable = (frames.shape[0] // steps) * steps
    if usable == 0:
        raise StreamError(f"{events}: {frames.shape[0]} bins of {bundle.dt_us} us, fewer than --steps {steps}")
    windows = torch.from_numpy(frames[:usable]).reshape(-1, steps, *frames.shape[1:])[:samples]
    return windows, f"{events}: {windows.shape[0]} windows of {steps} bins"


def verify_bundle(bundle: Bundle, events: str | None = None, *, samples: int = 2, steps: int = 20,
                  include_lava: bool = False) -> dict[str, Any]:
    frames, description = sample_frames(bundle, events, samples, steps)
    model = bundle.model()
    reference = step_layers(bundle.frontend_runtime("torch"), frames)
    outcome: dict[str, Any] = {"inputs": description, "frontend": {}, "backbone": {}}
    passed = True
    kinds = [k for k, key in (("nir", "frontend_nir"), ("lava", "frontend_netx")) if bundle.has(key)]
    if not include_lava and "lava" in kinds:
        kinds.remove("lava")
    for kind in kinds:
        with bundle.frontend_runtime(kind, steps_per_sample=steps) as runtime:
            spikes = step_layers(runtime, frames)
        agreement = {name: float((spikes[name] == reference[name]).float().mean()) for name in reference if name in spikes}
        required = 1.0 if kind == "nir" else LAVA_MIN_AGREEMENT
        ok = all(a >= required for a in agreement.values()) and set(agreement) == set(reference)
        passed &= ok
        outcome["frontend"][kind] = {"agreement_per_layer": agreement, "required": required, "passed": ok}
    for name, reason in bundle.manifest["skipped"].items():
        outcome["frontend"].setdefault("not_in_bundle", {})[name] = reason

    spikes = reference[list(reference)[-1]]
    with torch.no_grad():
        offline = model.backbone_forward(spikes)
    want_anytime, _ = step_backbone(bundle.backbone_runtime("torch"), spikes)
    for kind in ("onnxruntime",) if bundle.has("backbone_step") else ():
        runtime = bundle.backbone_runtime(kind)
        got_anytime, got_final = step_backbone(runtime, spikes)
        worst_anytime = float((got_anytime - want_anytime).abs().max())
        final = float((got_final - offline).abs().max())
        full = float((torch.as_tensor(runtime.run(spikes)) - offline).abs().max()) if bundle.has("backbone") else None
        ok = max(worst_anytime, final, full or 0.0) <= BACKBONE_TOLERANCE
        passed &= ok
        outcome["backbone"][kind] = {"max_abs_anytime_logit_diff": worst_anytime, "max_abs_final_logit_diff": final,
                                     "max_abs_full_graph_logit_diff": full, "tolerance": BACKBONE_TOLERANCE,
                                     "passed": ok}
    outcome["passed"] = bool(passed)
    return outcome


def _percentiles_us(times_s: list[float]) -> dict[str, float]:
    values = np.asarray(times_s) * 1e6
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_us": float(p50), "p99_us": float(p99), "mean_us": float(values.mean())}


def _pipeline_step_seconds(bundle: Bundle, frontend: str, backbone: str, frames: torch.Tensor) -> list[float]:
    """Seconds per time step of a front-end runtime followed by a backbone runtime, batch 1."""
    seconds: list[float] = []
    with bundle.frontend_runtime(frontend, steps_per_sample=frames.shape[1]) as fe:
        step_pipeline(fe, bundle.backbone_runtime(backbone), frames, step_seconds=seconds)
    return seconds


@torch.no_grad()
def bench_bundle(bundle: Bundle, *, steps: int = 300, batch: int = 32, frontend: str = "torch") -> dict[str, Any]:
    """Per-step latency at batch 1 (bundle runtimes vs PyTorch eager `step`) and offline throughput."""
    c = bundle.config
    frames = torch.poisson(torch.full((1, steps, c.input_channels, c.input_height, c.input_width), 0.1))
    model = bundle.model()
    out: dict[str, Any] = {"steps": steps,
                           "eager_torch_step": _percentiles_us(_pipeline_step_seconds(bundle, "torch", "torch", frames))}
    if bundle.has("backbone_step"):
        pipeline = _pipeline_step_seconds(bundle, frontend, "onnxruntime", frames)
        out[f"{frontend}_frontend+onnxruntime_step"] = _percentiles_us(pipeline)
        out["speedup_p50_vs_eager"] = out["eager_torch_step"]["p50_us"] / out[f"{frontend}_frontend+onnxruntime_step"]["p50_us"]
    big = torch.poisson(torch.full((batch, min(steps, 300), c.input_channels, c.input_height, c.input_width), 0.1))
    start = time.perf_counter()
    model(big)
    offline = time.perf_counter() - start
    out["offline_torch_samples_per_s"] = batch / offline
    timed = out.get(f"{frontend}_frontend+onnxruntime_step", out["eager_torch_step"])
    # simulated time per step over compute time per step: > 1 is faster than real time
    out["real_time_factor_batch1"] = bundle.dt_us / timed["p50_us"]
    return out
