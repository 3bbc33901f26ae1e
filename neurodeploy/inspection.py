"""`neurodeploy inspect`: what is inside a bundle, a NIR file, an ONNX file, a checkpoint or an event file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from neurodeploy.errors import NeurodeployError


class InspectError(NeurodeployError, ValueError):
    """A file `inspect` cannot read as the kind its name says."""


def describe(path: Path, *, transforms=None, reading: dict | None = None) -> dict[str, Any]:
    """`transforms` and `reading` apply to event files (what a model would see of them)."""
    if path.is_dir():
        return _bundle(path)
    suffix = path.suffix.lower()
    if suffix == ".nir":
        return _nir(path)
    if suffix == ".onnx":
        return _onnx(path)
    if suffix in (".safetensors", ".pth", ".pt", ".ckpt"):
        return _checkpoint(path)
    return _events(path, transforms, reading or {})


def _bundle(path: Path) -> dict[str, Any]:
    from neurodeploy.bundle import load_bundle

    bundle = load_bundle(path)
    m = bundle.manifest
    return {
        "kind": "bundle",
        "path": str(path),
        "hashes": "verified",
        "dt_us": m["dt_us"],
        "created": m["created"],
        "neurodeploy_version": m["neurodeploy_version"],
        "config": m["config"],
        "artifacts": {name: f"{e['bytes']:,} bytes, sha256 {e['sha256'][:16]}" for name, e in m["artifacts"].items()},
        "skipped": m["skipped"] or "none",
        "parity": m["parity"],
        "input_transforms": bundle.transforms.describe(),
        "approximation": (m.get("pool_rewrite") or {}).get("summary") or "none (the front-end is the checkpoint's)",
        "targets": _targets(bundle.path("frontend_nir")) if bundle.has("frontend_nir") else
        "no NIR front-end: no chip check (see `skipped`)",
    }


def _targets(nir_path: Path) -> dict[str, str]:
    """One line per hardware target (the verdicts of `neurodeploy targets`, without the runs)."""
    from neurodeploy.formats.nir_frontend import read_frontend
    from neurodeploy.hardware.fit import check_targets
    from neurodeploy.hardware.layers import spiking_layers

    lines = {}
    for verdict in check_targets(spiking_layers(read_frontend(nir_path))):
        if verdict.fits:
            lines[verdict.target] = "fits"
            continue
        reasons = list(verdict.reasons) + [r for layer in verdict.layers for r in layer.reasons]
        lines[verdict.target] = f"does not fit: {reasons[0]}" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else "")
    return lines


def _nir(path: Path) -> dict[str, Any]:
    from neurodeploy.formats.nir_frontend import read_frontend

    graph = read_frontend(path)
    nodes = []
    for name, node in graph.nodes.items():
        shape_in = {k: list(map(int, v)) for k, v in (node.input_type or {}).items()}
        shape_out = {k: list(map(int, v)) for k, v in (node.output_type or {}).items()}
        nodes.append({"name": name, "type": type(node).__name__, "in": shape_in, "out": shape_out,
                      "metadata": sorted((node.metadata or {}).keys())})
    return {"kind": "nir", "path": str(path), "metadata": {k: v for k, v in graph.metadata.items() if k != "model_config"},
            "nodes": nodes, "edges": [f"{a} -> {b}" for a, b in graph.edges]}


def _onnx(path: Path) -> dict[str, Any]:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except DecodeError as err:
        raise InspectError(f"{path}: not an ONNX model ({err}); export one with `neurodeploy export`") from None

    def shape(value) -> str:
        dims = value.type.tensor_type.shape.dim
        return "(" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + ")"

    custom = [n.op_type for n in model.graph.node if n.domain == "ai.neurodeploy"]
    return {
        "kind": "onnx",
        "path": str(path),
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": {i.name: shape(i) for i in model.graph.input},
        "outputs": {o.name: shape(o) for o in model.graph.output},
        "nodes": len(model.graph.node),
        "custom_nodes": {op: custom.count(op) for op in sorted(set(custom))},
        "functions": [f"{f.domain}::{f.name}" for f in model.functions],
        "metadata": {p.key: (p.value if len(p.value) < 200 else p.value[:200] + "...") for p in model.metadata_props},
    }


def _checkpoint(path: Path) -> dict[str, Any]:
    from neurodeploy.model.mamba_spike.checkpoint import load_checkpoint

    from neurodeploy.model.mamba_spike.provenance import checkpoint_facts

    model, config = load_checkpoint(path)
    facts = checkpoint_facts(path)
    return {"kind": "checkpoint", "path": str(path), "detected": facts["kind"],
            "dt_us": facts["dt_us"], "dt_source": facts["dt_source"],
            "recorded_accuracy": facts["recorded_accuracy"],
            "parameters": sum(p.numel() for p in model.parameters()), "config": config.to_dict()}


def _events(path: Path, transforms, reading: dict[str, Any]) -> dict[str, Any]:
    from neurodeploy.events import detect_format
    from neurodeploy.sources import load_fitted

    fmt = reading.get("format") or detect_format(path)
    raw = load_fitted(path, None, None, **reading)
    payload = _event_summary(path, fmt, raw)
    if transforms:
        after = transforms(raw)
        payload["after_transforms"] = {"transforms": transforms.describe(),
                                       **{k: v for k, v in _event_summary(path, fmt, after).items()
                                          if k not in ("kind", "path", "format", "decode")}}
    return payload


def _event_summary(path: Path, fmt: str, recording) -> dict[str, Any]:
    events = recording.events
    duration = int(events["t"][-1] - events["t"][0]) if len(events) else 0
    return {
        "kind": "events",
        "path": str(path),
        "format": fmt,
        "sensor_size": f"{recording.sensor_size[0]}x{recording.sensor_size[1]}",
        "events": len(events),
        "t_first_us": int(events["t"][0]) if len(events) else None,
        "duration_us": duration,
        "on_fraction": float(events["p"].mean()) if len(events) else None,
        "event_rate_per_s": (len(events) / (duration / 1e6)) if duration else None,
        "decode": {k: v for k, v in recording.stats.as_dict().items() if v} if recording.stats else {},
    }
