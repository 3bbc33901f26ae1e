"""The versioned device table: per-operation energy (and, where published, timing) constants.

The built-in table is `devices.json` beside this file (docs/energy_method.md). Users add or override
devices with a file of the same shape; every number in either file must carry its source,
because the report prints no energy number without one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from neurodeploy.report.errors import ReportError

BUILTIN_DEVICES = "devices.json"

# Energy constants a device may give, in picojoules. `synaptic_op_pj` is used for both
# accumulates and multiply-accumulates when a device gives one figure per synaptic op;
# `neuron_update_active_pj` (optional) prices the neuron-steps that fired.
ENERGY_KEYS = ("synaptic_op_pj", "ac_pj", "mac_pj", "neuron_update_pj", "neuron_update_active_pj")
# Timing a device may publish: a whole step, or per-operation times (a serial bound).
TIMING_KEYS = ("step_time_ns", "synaptic_op_ns", "neuron_update_ns")
KINDS = ("neuromorphic", "host")


@dataclass(frozen=True)
class Constant:
    """One published number and where it comes from."""

    value: float
    source: str


@dataclass(frozen=True)
class Device:
    key: str
    name: str
    kind: str
    event_driven: bool
    energy: Mapping[str, Constant]
    timing: Mapping[str, Constant]
    table: str  # "<file> v<version>": which table this entry came from

    def energy_per(self, operation: str) -> Constant | None:
        """Energy constant for 'ac', 'mac', 'neuron_update' or 'neuron_update_active'; None if unpublished."""
        if operation in ("ac", "mac"):
            return self.energy.get(f"{operation}_pj") or self.energy.get("synaptic_op_pj")
        if operation == "neuron_update_active":
            return self.energy.get("neuron_update_active_pj") or self.energy.get("neuron_update_pj")
        return self.energy.get(f"{operation}_pj")


@dataclass(frozen=True)
class DeviceTable:
    devices: Mapping[str, Device]
    versions: tuple[str, ...]  # built-in first, then the user's file

    def get(self, key: str) -> Device:
        if key not in self.devices:
            raise ReportError(
                f"unknown target {key!r}; known targets: {', '.join(sorted(self.devices))}. "
                "Add your own device with a devices file (devices_file=..., same shape as "
                "neurodeploy/report/devices.json)."
            )
        return self.devices[key]

    @property
    def version(self) -> str:
        return " + ".join(self.versions)


def _fail(origin: str, field: str, problem: str) -> ReportError:
    return ReportError(
        f"{origin}: field {field!r} {problem}. A devices file is JSON: "
        '{"version": "...", "devices": {"<key>": {"name": ..., "kind": "neuromorphic"|"host", '
        '"event_driven": true|false, "constants": {"synaptic_op_pj": {"value": <number>, '
        '"source": "<citation>"}, ...}, "timing": {...}}}}; see neurodeploy/report/devices.json.'
    )


def _constants(origin: str, where: str, raw: Any, allowed: tuple[str, ...]) -> dict[str, Constant]:
    if not isinstance(raw, dict):
        raise _fail(origin, where, "must be an object of {value, source} entries")
    out = {}
    for key, entry in raw.items():
        field = f"{where}.{key}"
        if key not in allowed:
            raise _fail(origin, field, f"is not a known constant (known: {', '.join(allowed)})")
        if not isinstance(entry, dict) or set(entry) - {"value", "source", "note"}:
            raise _fail(origin, field, "must be an object {\"value\": <number>, \"source\": \"<citation>\"}")
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise _fail(origin, field, "has no citation: every number needs a non-empty \"source\"")
        value = entry.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise _fail(origin, field, f"has value {value!r}; expected a positive number")
        out[key] = Constant(float(value), source.strip())
    return out


def parse_devices(data: Any, origin: str) -> tuple[str, dict[str, Device]]:
    """Validate a devices document; returns (version, devices). `origin` names the file in errors."""
    if not isinstance(data, dict):
        raise _fail(origin, "<top level>", "must be a JSON object")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise _fail(origin, "version", "is missing or empty: a devices table must say its version")
    devices_raw = data.get("devices")
    if not isinstance(devices_raw, dict) or not devices_raw:
        raise _fail(origin, "devices", "must be a non-empty object keyed by target name")
    table = f"{Path(origin).name} v{version}"
    devices = {}
    for key, raw in devices_raw.items():
        where = f"devices.{key}"
        if not isinstance(raw, dict):
            raise _fail(origin, where, "must be an object")
        unknown = set(raw) - {"name", "kind", "event_driven", "constants", "timing", "note"}
        if unknown:
            raise _fail(origin, f"{where}.{sorted(unknown)[0]}", "is not a known device field")
        name = raw.get("name", key)
        kind = raw.get("kind")
        if kind not in KINDS:
            raise _fail(origin, f"{where}.kind", f"is {kind!r}; expected one of {KINDS}")
        event_driven = raw.get("event_driven")
        if not isinstance(event_driven, bool):
            raise _fail(origin, f"{where}.event_driven", "must be true or false")
        energy = _constants(origin, f"{where}.constants", raw.get("constants"), ENERGY_KEYS)
        if not any(k in energy for k in ("synaptic_op_pj", "ac_pj", "mac_pj")):
            raise _fail(origin, f"{where}.constants", "gives no synaptic op energy (synaptic_op_pj, or ac_pj / mac_pj)")
        timing = _constants(origin, f"{where}.timing", raw.get("timing", {}), TIMING_KEYS)
        devices[key] = Device(key, str(name), kind, event_driven, energy, timing, table)
    return version, devices


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read devices file {str(path)!r}: {exc.strerror or exc}; check the path") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"devices file {str(path)!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix the file or start from a copy of neurodeploy/report/devices.json"
        ) from exc


def load_devices(devices_file: str | Path | None = None) -> DeviceTable:
    """The built-in table, with the devices of `devices_file` added (a device of the same key replaces the built-in)."""
    builtin = resources.files("neurodeploy.report").joinpath(BUILTIN_DEVICES)
    version, devices = parse_devices(json.loads(builtin.read_text(encoding="utf-8")), BUILTIN_DEVICES)
    versions = [f"{BUILTIN_DEVICES} v{version}"]
    if devices_file is not None:
        path = Path(devices_file)
        user_version, user_devices = parse_devices(_read_json(path), str(path))
        devices.update(user_devices)
        versions.append(f"{path.name} v{user_version}")
    return DeviceTable(devices, tuple(versions))
