"""Writers: the report as a JSON-ready dict, a long-format CSV, and Markdown tables."""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
ENERGY_SI = ((1.0, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ"))


def fmt_count(value: float | None) -> str:
    if value is None:
        return "n/a"
    for scale, prefix in SI:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}"
    return f"{value:.3g}"


def fmt_energy(value: float | None) -> str:
    if value is None:
        return "not costed"
    for scale, unit in ENERGY_SI:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-15:.3g} fJ"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "unknown"
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} us"


def _energy_dict(estimate, table_version: str) -> dict[str, Any]:
    return {
        "estimate": True,
        "calibration": "per-operation estimate (uncalibrated)",
        "role": estimate.role,
        "device": estimate.device,
        "device_name": estimate.device_name,
        "table": estimate.table,
        "table_version": table_version,
        "event_driven": estimate.event_driven,
        "total_j": estimate.total_j,
        "not_costed": list(estimate.not_costed),
        "per_layer_j": estimate.per_layer_j(),
        "terms": [dataclasses.asdict(t) for t in estimate.terms],
        "sources": list(estimate.sources),
    }


def report_dict(report) -> dict[str, Any]:
    return {
        "note": report.note,
        "table_version": report.table_version,
        "model": {"config": report.model_config, "parameters": report.parameters,
                  "footprint_bytes": report.footprint_bytes},
        "run": {"runtime": report.runtime, "batch": report.batch, "steps": report.steps, "dt_s": report.dt_s},
        "frontend": [dataclasses.asdict(layer) for layer in report.frontend],
        "backbone": [dataclasses.asdict(layer) for layer in report.backbone],
        "energy": {
            "host": report.host,
            "targets": list(report.targets),
            "frontend": [_energy_dict(e, report.table_version) for e in report.frontend_energy],
            "backbone": _energy_dict(report.backbone_energy, report.table_version),
            "total_per_sample_j": {t: report.total_energy_j(t) for t in report.targets},
        },
        "latency": {
            "measured": dataclasses.asdict(report.latency) if report.latency else None,
            "on_chip": [dataclasses.asdict(o) for o in report.on_chip],
        },
    }


CSV_FIELDS = ("section", "layer", "device", "metric", "value", "unit", "source")
_FRONTEND_METRICS = (
    ("neurons", "neurons"), ("input_spikes", "per sample"), ("input_events", "per sample"),
    ("output_spikes", "per sample"), ("spikes_per_second", "1/s"), ("firing_rate", "spikes/neuron/step"),
    ("effective_acs", "per sample"), ("effective_macs", "per sample"), ("dense_ops", "per sample"),
    ("recurrent_acs", "per sample"), ("event_synaptic_ops", "per sample"), ("membrane_updates", "per sample"),
    ("active_neuron_updates", "per sample"), ("activation_sparsity", "fraction"), ("parameters", "count"),
    ("footprint_bytes", "bytes"),
)
_BACKBONE_METRICS = (
    ("macs_per_step", "per step"), ("macs_per_sample", "per sample"), ("effective_macs", "per sample"),
    ("elementwise_per_step", "per step"), ("elementwise_per_sample", "per sample"), ("parameters", "count"),
    ("footprint_bytes", "bytes"),
)


def csv_rows(report) -> list[dict[str, Any]]:
    rows = []
    measured = f"measured ({report.runtime})"
    for layer in report.frontend:
        for metric, unit in _FRONTEND_METRICS:
            rows.append(dict(section="frontend", layer=layer.name, device="", metric=metric,
                             value=getattr(layer, metric), unit=unit, source=measured))
    for layer in report.backbone:
        for metric, unit in _BACKBONE_METRICS:
            rows.append(dict(section="backbone", layer=layer.name, device="", metric=metric,
                             value=getattr(layer, metric), unit=unit, source="model geometry" if metric != "effective_macs"
                             else measured))
    for estimate in (*report.frontend_energy, report.backbone_energy):
        for t in estimate.terms:
            source = (f"estimate: {t.count:.6g} x {t.constant_pj} pJ, {t.source}; table {estimate.table}"
                      if t.energy_j is not None else f"not costed: no published {t.operation} constant for "
                      f"{estimate.device} in table {estimate.table}")
            rows.append(dict(section=f"energy.{estimate.role}", layer=t.layer, device=estimate.device,
                             metric=f"{t.operation}_energy", value=t.energy_j if t.energy_j is not None else "",
                             unit="J per sample", source=source))
    for target in report.targets:
        rows.append(dict(section="energy.total", layer="all", device=f"{target}+{report.host}",
                         metric="energy_per_sample", value=report.total_energy_j(target), unit="J per sample",
                         source=f"estimate; table {report.table_version}"))
    if report.latency:
        for metric in ("p50_s", "p99_s", "mean_s", "max_s", "per_sample_s", "real_time_factor"):
            value = getattr(report.latency, metric)
            rows.append(dict(section="latency.measured", layer="pipeline step", device=report.latency.runtime,
                             metric=metric, value="" if value is None else value, unit="s" if metric != "real_time_factor"
                             else "ratio", source="measured wall clock"))
    for o in report.on_chip:
        rows.append(dict(section="latency.on_chip", layer="frontend step", device=o.device, metric="mean_step_s",
                         value="unknown" if o.mean_step_s is None else o.mean_step_s, unit="s",
                         source=o.method + ("; " + "; ".join(o.sources) if o.sources else
                                            ": no published timing in the device table")))
    return rows


def write_csv(report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(report))
    return path


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report) -> str:
    per_s = "spikes/s" if report.dt_s else "spikes/s (no dt)"
    parts = [
        "# Mamba-Spike energy and spike report",
        "",
        f"**Energies are estimates** (device table {report.table_version}). {report.note}",
        "",
        f"Run: {report.runtime}, {report.batch} sample(s) x {report.steps} steps"
        + (f" of {report.dt_s * 1e3:.3g} ms" if report.dt_s else "") + f". Model: {fmt_count(report.parameters)} "
        f"parameters, footprint {report.footprint_bytes / 1024:.1f} KiB. Counts are per sample.",
        "",
        "## Front-end (measured)",
        "",
        _table(["layer", "neurons", "input spikes", "output spikes", per_s, "firing rate", "Effective_ACs",
                "Effective_MACs", "Dense", "membrane updates", "sparsity", "footprint"],
               [[l.name, fmt_count(l.neurons), fmt_count(l.input_spikes), fmt_count(l.output_spikes),
                 fmt_count(l.spikes_per_second), f"{l.firing_rate:.4f}", fmt_count(l.effective_acs),
                 fmt_count(l.effective_macs), fmt_count(l.dense_ops), fmt_count(l.membrane_updates),
                 f"{l.activation_sparsity:.4f}", f"{l.footprint_bytes / 1024:.1f} KiB"] for l in report.frontend]),
        "",
        "## Backbone (dense on the host; input_proj effective MACs measured)",
        "",
        _table(["stage", "MACs/step", "MACs/sample", "effective MACs/sample", "elementwise/sample", "footprint"],
               [[l.name, fmt_count(l.macs_per_step), fmt_count(l.macs_per_sample), fmt_count(l.effective_macs),
                 fmt_count(l.elementwise_per_sample), f"{l.footprint_bytes / 1024:.1f} KiB"] for l in report.backbone]),
        "",
        f"## Energy per sample (estimate, table {report.table_version})",
        "",
        _table(["front-end target", f"front-end", f"backbone on {report.host}", "total", "not costed"],
               [[e.device, fmt_energy(e.total_j), fmt_energy(report.backbone_energy.total_j),
                 fmt_energy(report.total_energy_j(e.device)),
                 ", ".join((*e.not_costed, *report.backbone_energy.not_costed)) or "-"]
                for e in report.frontend_energy]),
        "",
        "Constants used:",
        "",
    ]
    used = {}
    for e in (*report.frontend_energy, report.backbone_energy):
        for t in e.terms:
            if t.source:
                used[(e.device, t.operation)] = (t.constant_pj, t.source, e.table)
    parts.append(_table(["device", "operation", "pJ", "source", "table"],
                        [[d, op, f"{pj:g}", src, tab] for (d, op), (pj, src, tab) in sorted(used.items())]))
    parts += ["", "## Latency", ""]
    if report.latency:
        lat = report.latency
        rtf = (f", real-time factor {lat.real_time_factor:.3g} (recorded / wall time; > 1 is faster than real time)"
               if lat.real_time_factor is not None else "")
        parts.append(f"Measured ({lat.runtime}): per step p50 {fmt_seconds(lat.p50_s)}, p99 {fmt_seconds(lat.p99_s)}, "
                     f"max {fmt_seconds(lat.max_s)}; per run {fmt_seconds(lat.per_sample_s)}{rtf}.")
    else:
        parts.append("Measured: not measured (no per-step latencies given).")
    parts += ["", _table(["target", "on-chip time per step (mean)", "peak", "method"],
                         [[o.device, fmt_seconds(o.mean_step_s), fmt_seconds(o.peak_step_s),
                           o.method + (" (" + "; ".join(o.sources) + ")" if o.sources else "")] for o in report.on_chip]),
              ""]
    return "\n".join(parts)
