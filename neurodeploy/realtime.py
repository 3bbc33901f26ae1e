"""The real-time factor, defined once for every command, benchmark and report.

    real-time factor = recorded time / wall time spent processing it

Above 1 the pipeline is faster than real time (it keeps up with the sensor with room to spare);
below 1 it falls behind. `run`, `demo`, `bench`, `report` and the benchmarks all compute it
here, so the same timings give the same number everywhere. Imports nothing from the project,
so every layer may use it.
"""
from __future__ import annotations

from collections.abc import Sequence


def real_time_factor(recorded_s: float, wall_s: float) -> float | None:
    """Recorded seconds per second of processing; None when nothing was timed."""
    if wall_s <= 0 or recorded_s < 0:
        return None
    return recorded_s / wall_s


def real_time_factor_of_steps(step_wall_s: Sequence[float], dt_s: float) -> float | None:
    """For a run of time steps of `dt_s` each, timed one by one: len(steps) * dt_s / sum(times)."""
    return real_time_factor(len(step_wall_s) * dt_s, float(sum(step_wall_s)))


def describe(rtf: float | None) -> str:
    if rtf is None:
        return "real-time factor unknown (nothing timed)"
    return f"real-time factor {rtf:.2f} ({'faster' if rtf >= 1 else 'slower'} than real time; recorded / wall time)"
