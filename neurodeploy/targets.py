"""`neurodeploy targets`: which chips a bundle's spiking front-end fits, and Speck in software.

The workflow behind the command and the `targets` section of `inspect`: read the front-end NIR
graph (of a bundle, or a `.nir` file), check every target of `neurodeploy/hardware/limits.json`
(`neurodeploy.hardware.fit`), and for IAF front-ends run the Speck 8-bit software model on
event-count frames with per-layer spike agreement (`neurodeploy.hardware.speck`).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import torch

from neurodeploy.bundle import load_bundle
from neurodeploy.errors import NeurodeployError
from neurodeploy.exporters.nir import synthetic_event_sample
from neurodeploy.formats.nir_frontend import read_frontend
from neurodeploy.hardware.fit import check_targets, load_limits
from neurodeploy.hardware.layers import spiking_layers
from neurodeploy.hardware.speck import SpeckModelError, run_speck_model
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.runtimes.nir import NIRFrontendRuntime


class TargetsInputError(NeurodeployError, ValueError):
    """A path that holds no spiking front-end to check."""


def _front_end(path: Path):
    if path.is_dir():
        bundle = load_bundle(path)
        if not bundle.has("frontend_nir"):
            raise TargetsInputError(
                f"{path}: the bundle has no NIR front-end ({bundle.manifest.get('skipped', {}).get('frontend.nir', 'not exported')}); "
                "re-export it with deployable pooling (`neurodeploy export CKPT --pool-rewrite sum`)")
        return read_frontend(bundle.path("frontend_nir")), bundle.config
    if path.suffix == ".nir":
        graph = read_frontend(path)
        raw = graph.metadata.get("model_config")
        return graph, (MambaSpikeConfig.from_dict(json.loads(raw)) if raw else None)
    raise TargetsInputError(f"{path}: expected a bundle folder or a .nir front-end file")


def targets_report(path: str | Path, targets: Sequence[str] = (), *, limits_file: str | Path | None = None,
                   speck_frames: torch.Tensor | None = None, speck_samples: int = 4, speck_steps: int = 30) -> dict[str, Any]:
    """Verdicts for every target; `speck` holds the software run (or why it was not made)."""
    graph, config = _front_end(Path(path))
    layers = spiking_layers(graph)
    limits = load_limits(limits_file)
    verdicts = check_targets(layers, targets, limits)
    payload: dict[str, Any] = {
        "source": str(path), "limits_version": limits["version"],
        "layers": [{"name": l.name, "input_shape": l.input_shape, "output_shape": l.output_shape, "kernel": l.kernel,
                    "pool": l.pool, "neuron": l.neuron, "beta": l.beta, "reset": l.reset,
                    "reset_timing": l.reset_timing, "neurons": l.neurons} for l in layers],
        "targets": [v.to_dict() for v in verdicts],
    }
    if not targets or "speck" in targets:
        payload["speck_software"] = _speck_run(graph, layers, config, speck_frames, speck_samples, speck_steps)
    return payload


def _speck_run(graph, layers, config, frames, samples: int, steps: int) -> dict[str, Any]:
    if frames is None:
        if config is None:
            return {"ran": False, "reason": "the graph records no model config to make sample frames from; pass frames"}
        frames = synthetic_event_sample(config, n_samples=samples, n_steps=steps)
        data = f"{samples} synthetic Poisson samples x {steps} steps (no recording given)"
    else:
        data = f"{frames.shape[0]} given samples x {frames.shape[1]} steps"
    try:
        with NIRFrontendRuntime(graph) as reference:
            spikes = reference.run_layers(frames)
        agreements = run_speck_model(layers, frames, spikes)
    except SpeckModelError as err:
        return {"ran": False, "reason": str(err)}
    return {"ran": True, "data": data, "layers": [asdict(a) for a in agreements],
            "silent_layers": [a.layer for a in agreements if a.silent]}
