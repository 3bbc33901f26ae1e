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

import numpy as np
import torch

from neurodeploy.bundle import load_bundle
from neurodeploy.errors import NeurodeployError
from neurodeploy.exporters.nir import synthetic_event_sample
from neurodeploy.formats.nir_frontend import read_frontend
from neurodeploy.hardware.fit import check_targets, load_limits
from neurodeploy.hardware.layers import spiking_layers
from neurodeploy.hardware.sanafe_network import SanafeError, run_sanafe
from neurodeploy.hardware.speck import SpeckModelError, run_speck_model
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.runtimes.lava_fixed_point import FixedPointFrontend, read_netx_layers
from neurodeploy.runtimes.nir import NIRFrontendRuntime

# SANA-FE's published accuracy on measured Loihi applications (Boyle et al., IEEE TCAD 2025)
SANAFE_ENERGY_ERROR, SANAFE_LATENCY_ERROR = 0.12, 0.25


class TargetsInputError(NeurodeployError, ValueError):
    """A path that holds no spiking front-end to check."""


def _front_end(path: Path):
    """(NIR graph, model config or None, netx path or None) of a bundle folder or a .nir file."""
    if path.is_dir():
        bundle = load_bundle(path)
        if not bundle.has("frontend_nir"):
            raise TargetsInputError(
                f"{path}: the bundle has no NIR front-end ({bundle.manifest.get('skipped', {}).get('frontend.nir', 'not exported')}); "
                "re-export it with deployable pooling (`neurodeploy export CKPT --pool-rewrite sum`)")
        netx = bundle.path("frontend_netx") if bundle.has("frontend_netx") else None
        return read_frontend(bundle.path("frontend_nir")), bundle.config, netx
    if path.suffix == ".nir":
        graph = read_frontend(path)
        raw = graph.metadata.get("model_config")
        return graph, (MambaSpikeConfig.from_dict(json.loads(raw)) if raw else None), None
    raise TargetsInputError(f"{path}: expected a bundle folder or a .nir front-end file")


def targets_report(path: str | Path, targets: Sequence[str] = (), *, limits_file: str | Path | None = None,
                   speck_frames: torch.Tensor | None = None, speck_samples: int = 4, speck_steps: int = 30,
                   sanafe: bool = False, sanafe_steps: int = 10) -> dict[str, Any]:
    """Verdicts for every target; `speck_software` holds the Speck software run (or why it was not
    made); with `sanafe`, `loihi_sanafe` holds the calibrated Loihi energy and latency."""
    graph, config, netx = _front_end(Path(path))
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
    if sanafe:
        payload["loihi_sanafe"] = _sanafe_run(netx, config, sanafe_steps)
    return payload


def _sanafe_run(netx: Path | None, config: MambaSpikeConfig | None, steps: int) -> dict[str, Any]:
    """One synthetic sample on SANA-FE's Loihi (see `sanafe_on_frames`)."""
    if netx is None or config is None:
        return {"ran": False, "reason": NO_NETX}
    frames = synthetic_event_sample(config, n_samples=1, n_steps=steps)[0].numpy().astype("int64")
    return sanafe_on_frames(netx, frames, f"1 synthetic Poisson sample x {steps} steps")


NO_NETX = ("needs a bundle with a netx front-end (frontend.net): export with deployable settings "
           "(sum/avg pooling, reset zero, immediate, no recurrence)")


def sanafe_on_frames(netx: Path, frames, data: str) -> dict[str, Any]:
    """Event-count frames `(T, 2, H, W)` of one sample on SANA-FE's Loihi, checked spike for spike
    against the toolkit's Loihi-timing model (`FixedPointFrontend.run_pipelined`) before its
    energy and latency are reported; `ran: False` with the reason when SANA-FE cannot run it."""
    layers, _ = read_netx_layers(netx)
    frames = np.asarray(frames).astype(np.int64)
    try:
        result = run_sanafe(layers, frames)
    except SanafeError as err:
        return {"ran": False, "reason": str(err)}
    reference = FixedPointFrontend(layers).run_pipelined(frames)
    agreement = {name: float((ref == got).mean()) for name, ref, got in zip(result.layer_names, reference, result.spikes)}
    steps = frames.shape[0]
    return {
        "ran": True, "data": f"{data} (plus {len(layers)} pipeline steps)",
        "spike_agreement_with_loihi_timing_model": agreement,
        "energy_j_per_step": result.energy_j / steps, "energy_j_per_sample": result.energy_j,
        "energy_error": SANAFE_ENERGY_ERROR,
        "latency_s_per_step": result.latency_s / steps, "peak_step_s": float(result.latency_s_per_step.max()),
        "latency_error": SANAFE_LATENCY_ERROR,
        "synapses": result.synapses, "neurons": result.neurons, "cores_used": result.cores_used,
        "input_copies": result.input_copies, "peak_rss_bytes": result.peak_rss_bytes,
        "source": "SANA-FE 2.2.9 loihi.yaml (Boyle et al., IEEE TCAD 2025: energy within 12 %, latency within 25 % "
                  "of measured Loihi applications); a calibrated simulation, not a chip measurement",
    }


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
