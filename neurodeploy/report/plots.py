"""Report plots as PNG files (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PLOT_DPI = 100


def _short(name: str) -> str:
    return name.split(" ")[0]


def _legend_outside(ax, **options) -> None:
    """The legend to the right of the axes, never over the data; `_save` keeps it in the image."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **options)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def plot_firing_rates(report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = [_short(l.name) for l in report.frontend]
    ax.bar(names, [l.firing_rate for l in report.frontend], color="tab:blue")
    ax.set_ylabel("spikes / neuron / step")
    ax.set_title("Firing rate per layer (measured)")
    return _save(fig, path)


def plot_spikes_over_time(report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    dt = report.dt_s
    for layer in report.frontend:
        steps = np.arange(len(layer.spikes_per_step))
        ax.plot(steps * dt * 1e3 if dt else steps, layer.spikes_per_step, label=_short(layer.name))
    ax.set_xlabel("time (ms)" if dt else "step")
    ax.set_ylabel("spikes per step (per sample)")
    ax.set_title("Spikes over time (measured)")
    _legend_outside(ax)
    return _save(fig, path)


def plot_synaptic_ops(report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [_short(l.name) for l in report.frontend] + [_short(l.name) for l in report.backbone]
    x = np.arange(len(names))
    n_front = len(report.frontend)
    acs = [l.effective_acs for l in report.frontend] + [0.0] * len(report.backbone)
    macs = [l.effective_macs for l in report.frontend] + [l.effective_macs for l in report.backbone]
    dense = [l.dense_ops for l in report.frontend] + [l.macs_per_sample for l in report.backbone]
    width = 0.27
    ax.bar(x - width, acs, width, label="Effective_ACs")
    ax.bar(x, macs, width, label="Effective_MACs")
    ax.bar(x + width, dense, width, label="Dense")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_yscale("log")  # zero counts (no ACs in the backbone) simply draw no bar
    ax.set_ylim(bottom=1)
    ax.axvline(n_front - 0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("operations per sample")
    ax.set_title("Synaptic operations per layer (front-end | backbone)")
    _legend_outside(ax, fontsize=8)
    return _save(fig, path)


def plot_energy(report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    layers = [l.name for l in report.frontend]
    x = np.arange(len(layers) + 1)
    width = 0.8 / max(len(report.frontend_energy), 1)
    backbone_j = report.backbone_energy.total_j
    for i, estimate in enumerate(report.frontend_energy):
        per_layer = estimate.per_layer_j()
        values = [per_layer.get(name, 0.0) for name in layers] + [backbone_j]
        ax.bar(x + (i - (len(report.frontend_energy) - 1) / 2) * width, values, width, label=estimate.device)
    ax.set_xticks(x, [_short(n) for n in layers] + [f"backbone ({report.host})"], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("J per sample (estimate)")
    ax.set_title(f"Estimated energy per layer and target (table {report.table_version})", fontsize=9)
    _legend_outside(ax, title="front-end target", fontsize=8, title_fontsize=8)
    return _save(fig, path)


def plot_latency_histogram(report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    samples_ms = np.asarray(report.latency.step_latency_s) * 1e3
    ax.hist(samples_ms, bins=min(50, max(5, samples_ms.size // 5)), color="tab:green")
    ax.axvline(report.latency.p50_s * 1e3, color="k", ls="--", label="p50")
    ax.axvline(report.latency.p99_s * 1e3, color="r", ls="--", label="p99")
    ax.set_xlabel("step latency (ms)")
    ax.set_ylabel("steps")
    ax.set_title(f"Measured step latency: {report.latency.runtime}", fontsize=9)
    _legend_outside(ax)
    return _save(fig, path)


def write_plots(report, out_dir: Path, prefix: str = "report_") -> dict[str, Path]:
    """Every plot of the report as `<prefix><name>.png` in `out_dir`; the latency histogram only when measured."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "firing_rate": plot_firing_rates,
        "spikes_over_time": plot_spikes_over_time,
        "synaptic_ops": plot_synaptic_ops,
        "energy": plot_energy,
    }
    if report.latency is not None:
        plots["latency_histogram"] = plot_latency_histogram
    return {name: draw(report, out_dir / f"{prefix}{name}.png") for name, draw in plots.items()}
