"""The report: measured counts, energy estimates per target, latency; and its one entry point.

    report = build_report(model, frames, targets=("loihi", "spinnaker2"), host="cpu", dt_s=1e-3)
    paths = write_report(report, "out/")   # report.json, report.csv, report.md, report.html + PNGs
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from neurodeploy.report.backbone import BackboneLayerCounts, count_backbone
from neurodeploy.report.counts import FrontendLayerCounts, count_frontend, module_footprint
from neurodeploy.report.devices import load_devices
from neurodeploy.report.energy import EnergyEstimate, backbone_energy, frontend_energy
from neurodeploy.report.errors import ReportError
from neurodeploy.report.latency import MeasuredLatency, OnChipStepTime, measured_latency, on_chip_step_time
from neurodeploy.report.record import SpikeRecord, record_run

ESTIMATE_NOTE = ("Counts are measured from the run; energies are estimates: per-operation constants x counts, "
                 "ignoring memory traffic and I/O (method and sources: docs/energy_method.md in neurodeploy). "
                 "Calibration: every figure here is a per-operation estimate; a calibrated Loihi figure (SANA-FE) "
                 "comes from `report --sanafe` or `neurodeploy targets BUNDLE --sanafe`.")


@dataclass(frozen=True)
class Report:
    model_config: dict[str, Any]
    parameters: int
    footprint_bytes: int
    batch: int
    steps: int
    dt_s: float | None
    runtime: str
    frontend: tuple[FrontendLayerCounts, ...]
    backbone: tuple[BackboneLayerCounts, ...]
    targets: tuple[str, ...]
    host: str
    frontend_energy: tuple[EnergyEstimate, ...]  # one per target, same order
    backbone_energy: EnergyEstimate
    latency: MeasuredLatency | None
    on_chip: tuple[OnChipStepTime, ...]  # one per target
    table_version: str
    note: str = ESTIMATE_NOTE

    def total_energy_j(self, target: str) -> float:
        """Front-end on `target` plus backbone on the host, per sample (an estimate)."""
        estimate = self.frontend_energy[self.targets.index(target)]
        return estimate.total_j + self.backbone_energy.total_j

    def to_dict(self) -> dict[str, Any]:
        from neurodeploy.report.tables import report_dict
        return report_dict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def to_csv(self, path: str | Path) -> Path:
        from neurodeploy.report.tables import write_csv
        return write_csv(self, Path(path))

    def to_markdown(self) -> str:
        from neurodeploy.report.tables import markdown
        return markdown(self)

    def write_html(self, path: str | Path, preamble_markdown: str = "") -> dict[str, Path]:
        """The HTML report with its plots embedded; the PNGs are also written beside it. Returns all paths."""
        from neurodeploy.report.html import write_html
        return write_html(self, Path(path), preamble_markdown)


def _as_record(model, data, dt_s: float | None) -> SpikeRecord:
    if isinstance(data, SpikeRecord):
        if dt_s is not None and data.dt_s is None:
            return SpikeRecord(data.frames, data.spikes, dt_s, data.step_latency_s, data.runtime)
        return data
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return record_run(model, torch.as_tensor(data), dt_s=dt_s)
    raise ReportError(f"got {type(data).__name__}; pass event-count frames (B, T, 2, H, W) to run the model, or a "
                      "SpikeRecord (SpikeRecord.from_output(frames, model.run(frames)) or from_steps(...))")


def build_report(
    model,
    frames_or_record,
    *,
    targets: str | Sequence[str] = ("loihi",),
    host: str = "cpu",
    latency_s: Sequence[float] | None = None,
    devices_file: str | Path | None = None,
    dt_s: float | None = None,
    runtime: str | None = None,
) -> Report:
    """Measure counts from a real run and cost them on each target (front-end) and the host (backbone).

    `frames_or_record`: event-count frames `(B, T, 2, H, W)` (the PyTorch model is then stepped
    and timed here) or a `SpikeRecord` from any runtime. `latency_s`: per-step wall-clock times
    measured by the runtime that ran (replaces the record's). `dt_s`: bin width, for spikes per
    second and the real-time factor. `devices_file`: your own devices, added to the built-in table.
    """
    table = load_devices(devices_file)
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    if not targets:
        raise ReportError("no target given; name at least one, e.g. targets=('loihi',)")
    target_devices = [table.get(t) for t in targets]
    host_device = table.get(host)
    if host_device.kind != "host":
        hosts = sorted(k for k, d in table.devices.items() if d.kind == "host")
        raise ReportError(f"host {host!r} is a {host_device.kind} device and cannot run the Mamba backbone; "
                          f"choose one of {hosts}")
    model.eval()
    record = _as_record(model, frames_or_record, dt_s)
    frontend = count_frontend(model, record)
    backbone = count_backbone(model, record)
    step_latency = latency_s if latency_s is not None else record.step_latency_s
    params, footprint = module_footprint(model)
    return Report(
        model_config=model.config.to_dict(),
        parameters=params,
        footprint_bytes=footprint,
        batch=record.batch,
        steps=record.steps,
        dt_s=record.dt_s,
        runtime=runtime or record.runtime,
        frontend=frontend,
        backbone=backbone,
        targets=targets,
        host=host,
        frontend_energy=tuple(frontend_energy(d, frontend) for d in target_devices),
        backbone_energy=backbone_energy(host_device, backbone),
        latency=measured_latency(step_latency, runtime or record.runtime, record.dt_s),
        on_chip=tuple(on_chip_step_time(d, frontend) for d in target_devices),
        table_version=table.version,
    )


def write_report(report: Report, out_dir: str | Path, provenance: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write report.json, report.csv, report.md and report.html (+ its PNG plots) into `out_dir`;
    `provenance` (report.provenance.measured_what) heads the Markdown and HTML and goes into the JSON."""
    from neurodeploy.report.provenance import provenance_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "csv": out / "report.csv", "markdown": out / "report.md"}
    data = report.to_dict()
    if provenance:
        data = {"provenance": provenance, **data}
    paths["json"].write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    report.to_csv(paths["csv"])
    preamble = provenance_markdown(provenance) if provenance else ""
    paths["markdown"].write_text(preamble + report.to_markdown(), encoding="utf-8")
    paths.update(report.write_html(out / "report.html", preamble))
    return paths
