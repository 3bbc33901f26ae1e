"""`neurodeploy verify` and `neurodeploy bench`: every runtime of a bundle on the same inputs.

verify: the PyTorch model is the reference. Front-end runtimes are compared spike for spike
at every step and layer (NIR and native: exact; Lava fixed point: the fraction of agreeing
neuron-steps, at least `LAVA_MIN_AGREEMENT`); backbone runtimes by the max |logit| difference of the
streamed anytime logits and the final logits (at most `BACKBONE_TOLERANCE`; the native
backbone, which computes in float32 with float64 sums, at most `NATIVE_BACKBONE_TOLERANCE`).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from neurodeploy.bundle import Bundle
from neurodeploy.realtime import real_time_factor_of_steps
from neurodeploy.runtimes.contract import step_backbone, step_layers, step_pipeline

BACKBONE_TOLERANCE = 1e-4
NATIVE_BACKBONE_TOLERANCE = 1e-5
LAVA_MIN_AGREEMENT = 0.99


def sample_frames(bundle: Bundle, events: str | None, samples: int, steps: int, seed: int = 0, *,
                  transforms=None, reading: dict | None = None) -> tuple[torch.Tensor, str]:
    """(N, T, 2, H, W) frames: consecutive windows of `steps` bins of an event file (read with
    `reading`, fitted by `transforms`: see sources.load_fitted), or synthetic counts."""
    c = bundle.config
    if events is None:
        generator = torch.Generator().manual_seed(seed)
        shape = (samples, steps, c.input_channels, c.input_height, c.input_width)
        return torch.poisson(torch.full(shape, 0.1), generator=generator), f"synthetic Poisson counts, seed {seed}"
    from neurodeploy.events.binning import to_frames_dt
    from neurodeploy.sources import load_fitted
    from neurodeploy.stream import StreamError

    recording = load_fitted(events, transforms, (c.input_width, c.input_height), **(reading or {}))
    t = recording.events["t"]
    span_bins = (int(t.max()) - int(t[0])) // bundle.dt_us + 1 if len(t) else 0
    # only the bins the windows use: a recording with a large time gap must not be binned whole
    frames = to_frames_dt(recording.events, recording.sensor_size, bundle.dt_us, dtype=np.float32,
                          n_bins=min(span_bins, samples * steps))
    usable = (frames.shape[0] // steps) * steps
    if usable == 0:
        raise StreamError(f"{events}: {frames.shape[0]} bins of {bundle.dt_us} us, fewer than --steps {steps}")
    windows = torch.from_numpy(frames[:usable]).reshape(-1, steps, *frames.shape[1:])[:samples]
    return windows, f"{events}: {windows.shape[0]} windows of {steps} bins"


def verify_work(bundle: Bundle, steps: int, include_lava: bool) -> int:
    """The `on_step` calls `verify_bundle` makes: every front-end and backbone runtime, `steps` each."""
    frontends = 1 + 2 * bundle.has("frontend_nir") + (include_lava and bundle.has("frontend_netx"))  # nir, native
    return steps * (frontends + 2 + bundle.has("backbone_step"))  # torch and native backbones, onnxruntime


def verify_bundle(bundle: Bundle, events: str | None = None, *, samples: int = 2, steps: int = 20,
                  include_lava: bool = False, transforms=None, reading: dict | None = None,
                  on_step=None) -> dict[str, Any]:
    """`on_step()` after every runtime step (`verify_work` of them: a progress bar)."""
    frames, description = sample_frames(bundle, events, samples, steps, transforms=transforms, reading=reading)
    model = bundle.model()
    reference = step_layers(bundle.frontend_runtime("torch"), frames, on_step=on_step)
    outcome: dict[str, Any] = {"inputs": description, "frontend": {}, "backbone": {}}
    passed = True
    kinds = [k for k, key in (("nir", "frontend_nir"), ("native", "frontend_nir"), ("lava", "frontend_netx"))
             if bundle.has(key)]
    if not include_lava and "lava" in kinds:
        kinds.remove("lava")
    for kind in kinds:
        with bundle.frontend_runtime(kind, steps_per_sample=steps) as runtime:
            spikes = step_layers(runtime, frames, on_step=on_step)
        agreement = {name: float((spikes[name] == reference[name]).float().mean()) for name in reference if name in spikes}
        required = LAVA_MIN_AGREEMENT if kind == "lava" else 1.0
        ok = all(a >= required for a in agreement.values()) and set(agreement) == set(reference)
        passed &= ok
        outcome["frontend"][kind] = {"agreement_per_layer": agreement, "required": required, "passed": ok}
    if not bundle.has("frontend_nir"):
        outcome["frontend"]["nir"] = "not verified (no NIR in this bundle)"
    if not include_lava and bundle.has("frontend_netx"):
        outcome["frontend"]["lava"] = "not verified (pass --lava to include the Lava runtime)"
    elif not bundle.has("frontend_netx"):
        outcome["frontend"]["lava"] = "not verified (no netx front-end in this bundle)"
    for name, reason in bundle.manifest["skipped"].items():
        outcome["frontend"].setdefault("not_in_bundle", {})[name] = reason

    spikes = reference[list(reference)[-1]]
    with torch.no_grad():
        offline = model.backbone_forward(spikes)
    if not bundle.has("backbone_step"):
        outcome["backbone"]["onnxruntime"] = "not verified (no ONNX backbone in this bundle)"
    want_anytime, _ = step_backbone(bundle.backbone_runtime("torch"), spikes, on_step=on_step)
    for kind in ("onnxruntime", "native") if bundle.has("backbone_step") else ("native",):
        runtime = bundle.backbone_runtime(kind)
        got_anytime, got_final = step_backbone(runtime, spikes, on_step=on_step)
        worst_anytime = float((got_anytime - want_anytime).abs().max())
        final = float((got_final - offline).abs().max())
        full = (float((torch.as_tensor(runtime.run(spikes)) - offline).abs().max())
                if bundle.has("backbone") or kind == "native" else None)
        tolerance = NATIVE_BACKBONE_TOLERANCE if kind == "native" else BACKBONE_TOLERANCE
        ok = max(worst_anytime, final, full or 0.0) <= tolerance
        passed &= ok
        outcome["backbone"][kind] = {"max_abs_anytime_logit_diff": worst_anytime, "max_abs_final_logit_diff": final,
                                     "max_abs_full_graph_logit_diff": full, "tolerance": tolerance,
                                     "passed": ok}
    outcome["passed"] = bool(passed)
    outcome["checked"] = [f"frontend {k}" for k in kinds] + [f"backbone {k}" for k, v in outcome["backbone"].items()
                                                             if isinstance(v, dict)]
    if not outcome["checked"]:
        outcome["passed_note"] = "nothing to compare: the bundle holds only the PyTorch model"
    return outcome


def _percentiles_us(times_s: list[float]) -> dict[str, float]:
    values = np.asarray(times_s) * 1e6
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_us": float(p50), "p99_us": float(p99), "mean_us": float(values.mean())}


def _pipeline_step_seconds(bundle: Bundle, frontend: str, backbone: str, frames: torch.Tensor,
                           on_step=None) -> list[float]:
    """Seconds per time step of a front-end runtime followed by a backbone runtime, batch 1."""
    seconds: list[float] = []
    with bundle.frontend_runtime(frontend, steps_per_sample=frames.shape[1]) as fe:
        step_pipeline(fe, bundle.backbone_runtime(backbone), frames, step_seconds=seconds, on_step=on_step)
    return seconds


def bench_work(bundle: Bundle, steps: int, backbone: str = "onnxruntime") -> int:
    """The `on_step` calls `bench_bundle` makes (front-end and backbone steps of each pipeline timed)."""
    return 2 * steps * (2 if bundle.has("backbone_step") or backbone != "onnxruntime" else 1)


@torch.no_grad()
def bench_bundle(bundle: Bundle, *, steps: int = 300, batch: int = 32, frontend: str = "torch",
                 backbone: str = "onnxruntime", on_step=None) -> dict[str, Any]:
    """Per-step latency at batch 1 (bundle runtimes vs PyTorch eager `step`) and offline throughput;
    `on_step()` after every timed front-end or backbone step (`bench_work` of them: a progress bar)."""
    c = bundle.config
    frames = torch.poisson(torch.full((1, steps, c.input_channels, c.input_height, c.input_width), 0.1))
    model = bundle.model()
    eager = _pipeline_step_seconds(bundle, "torch", "torch", frames, on_step)
    out: dict[str, Any] = {"steps": steps, "eager_torch_step": _percentiles_us(eager)}
    pipeline_key = f"{frontend}_frontend+{backbone}_step"
    timed_pipeline = bundle.has("backbone_step") or backbone != "onnxruntime"
    if timed_pipeline:
        pipeline = _pipeline_step_seconds(bundle, frontend, backbone, frames, on_step)
        out[pipeline_key] = _percentiles_us(pipeline)
        out["speedup_p50_vs_eager"] = out["eager_torch_step"]["p50_us"] / out[pipeline_key]["p50_us"]
    big = torch.poisson(torch.full((batch, min(steps, 300), c.input_channels, c.input_height, c.input_width), 0.1))
    start = time.perf_counter()
    model(big)
    offline = time.perf_counter() - start
    out["offline_torch_samples_per_s"] = batch / offline
    timed = pipeline if timed_pipeline else eager
    # recorded time / wall time over all timed steps (neurodeploy.realtime): > 1 is faster than real time
    out["real_time_factor_batch1"] = real_time_factor_of_steps(timed, bundle.dt_us / 1e6)
    return out
