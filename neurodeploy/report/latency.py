"""Latency: the measured wall-clock time of the runtime that ran, and on-chip step time estimates.

An on-chip estimate needs the target's published timing: a whole-step time (`step_time_ns`),
or per-operation times (`synaptic_op_ns`, `neuron_update_ns`), which give a serial bound (one
core doing all the work of a step; a chip spreading the layers over cores is faster). The
built-in table publishes no timing (docs/energy_method.md), so the built-in targets say
"unknown"; a devices file of the user's can add cited timing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurodeploy.report.counts import FrontendLayerCounts
from neurodeploy.report.devices import Device
from neurodeploy.realtime import real_time_factor_of_steps
from neurodeploy.report.errors import ReportError

NS = 1e-9


@dataclass(frozen=True)
class MeasuredLatency:
    runtime: str
    step_latency_s: tuple[float, ...]
    p50_s: float
    p99_s: float
    mean_s: float
    max_s: float
    per_sample_s: float  # sum over the steps of one run (the batch shares it)
    real_time_factor: float | None  # recorded time / wall time (neurodeploy.realtime); > 1 keeps up with the sensor


@dataclass(frozen=True)
class OnChipStepTime:
    device: str
    method: str  # "published step time", "serial bound from per-op times", "unknown"
    mean_step_s: float | None
    peak_step_s: float | None
    sources: tuple[str, ...]


def measured_latency(step_latency_s, runtime: str, dt_s: float | None) -> MeasuredLatency | None:
    if step_latency_s is None:
        return None
    samples = np.asarray(step_latency_s, dtype=np.float64).ravel()
    if samples.size == 0 or not np.all(np.isfinite(samples)) or np.any(samples < 0):
        raise ReportError("latency_s must be a non-empty sequence of finite, non-negative per-step times in seconds")
    total = float(samples.sum())
    rtf = real_time_factor_of_steps(samples, dt_s) if dt_s else None
    return MeasuredLatency(runtime, tuple(samples.tolist()), float(np.percentile(samples, 50)),
                           float(np.percentile(samples, 99)), float(samples.mean()), float(samples.max()), total, rtf)


def on_chip_step_time(device: Device, layers: tuple[FrontendLayerCounts, ...]) -> OnChipStepTime:
    timing = device.timing
    if "step_time_ns" in timing:
        c = timing["step_time_ns"]
        return OnChipStepTime(device.key, "published step time", c.value * NS, c.value * NS, (c.source,))
    if "synaptic_op_ns" in timing and "neuron_update_ns" in timing:
        syn, neu = timing["synaptic_op_ns"], timing["neuron_update_ns"]
        ops = np.sum([layer.synaptic_ops_per_step for layer in layers], axis=0)
        neurons = sum(layer.neurons for layer in layers)
        per_step = (ops * syn.value + neurons * neu.value) * NS
        return OnChipStepTime(device.key, "serial bound from per-op times", float(per_step.mean()),
                              float(per_step.max()), (syn.source, neu.source))
    return OnChipStepTime(device.key, "unknown", None, None, ())
