"""What a report measured: the bundle, the checkpoint it came from and its detected kind, the
events file, the input transforms, the command line and the toolkit version. Written at the top
of report.md / report.html and under "provenance" in report.json, so a figure can be traced
back to what produced it."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def measured_what(bundle, events_path: str | Path, *, transforms=None, command: str | None = None,
                  frontend: str | None = None) -> dict[str, Any]:
    from neurodeploy import __version__

    manifest = bundle.manifest
    checkpoint = manifest.get("source_checkpoint")
    detected = "unknown (the checkpoint file is not at the path the bundle recorded)"
    if checkpoint and Path(checkpoint).is_file():
        from neurodeploy.model.mamba_spike.provenance import checkpoint_facts

        facts = checkpoint_facts(checkpoint)
        detected = facts["kind"] + (f", recorded accuracy {facts['recorded_accuracy']:.1%}"
                                    if facts["recorded_accuracy"] is not None else "")
    approximation = (manifest.get("pool_rewrite") or {}).get("summary")
    return {
        "bundle": str(bundle.directory),
        "checkpoint": checkpoint,
        "checkpoint_detected": detected,
        "dt_us": bundle.dt_us,
        "events": str(events_path),
        "input_transforms": transforms.describe() if transforms else "none",
        "frontend_runtime": frontend,
        "approximation": approximation or "none",
        "command": command,
        "neurodeploy_version": __version__,
    }


def provenance_markdown(provenance: Mapping[str, Any]) -> str:
    rows = "\n".join(f"| {key} | {str(value).replace('|', '/')} |" for key, value in provenance.items()
                     if value is not None)
    return f"## What was measured\n\n| | |\n|---|---|\n{rows}\n\n"
