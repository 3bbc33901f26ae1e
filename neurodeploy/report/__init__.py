"""Spike-count and energy reports for hardware targets.

One entry point: `build_report(model, frames_or_record, targets=..., host=...) -> Report`,
then `write_report(report, out_dir)` (JSON, CSV, Markdown, HTML with plots). Counts are
measured from a real run; energies are estimates from the versioned device table
(`devices.json`), each with its citation.
"""
from neurodeploy.report.devices import DeviceTable, load_devices
from neurodeploy.report.errors import ReportError
from neurodeploy.report.record import SpikeRecord, record_run
from neurodeploy.report.report import Report, build_report, write_report

__all__ = ["DeviceTable", "Report", "ReportError", "SpikeRecord", "build_report", "load_devices", "record_run",
           "write_report"]
