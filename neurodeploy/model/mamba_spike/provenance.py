"""What a checkpoint says about itself, without building the model: its kind (the toolkit's own
format, reference v1 de1cf60, reference v2 b77c890, a bare state_dict), the bin width it runs at
and the accuracy it recorded. `info`, `inspect`, `train --init-from` and the report use it.

The reference checkpoints store no bin width: the reference training cuts every recording into
`time_steps` equal bins (tonic `ToFrame(n_time_bins=...)`, docs/mamba_spike_model.md), so the bin width follows
from the recording length. For N-MNIST (34x34) recordings last about 300 ms, which gives
300 ms / time_steps (1000 us at the reference's 300 bins); for the 128x128 datasets the
recordings vary in length and no single dt follows: the caller must name one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

NMNIST_RECORDING_US = 300_000
REFERENCE_TIME_STEPS = 300
V1, V2 = "reference v1 (de1cf60)", "reference v2 (b77c890)"


def checkpoint_facts(path: str | Path) -> dict[str, Any]:
    """{"kind", "dt_us" (None when unknown), "dt_source", "recorded_accuracy" (fraction or None), "epoch"}."""
    from neurodeploy.model.checkpoint_io import read_checkpoint

    raw = read_checkpoint(path)
    meta = dict(raw.metadata or {})
    if "neurodeploy.format" in meta:
        dt = meta.get("neurodeploy.meta.dt_us")
        accuracy = meta.get("neurodeploy.meta.accuracy")
        return {"kind": "neurodeploy safetensors", "dt_us": int(dt) if dt else None,
                "dt_source": "checkpoint metadata" if dt else "not recorded",
                "recorded_accuracy": float(accuracy) if accuracy else None, "epoch": None}
    container = dict(raw.container or {})
    keys = set(raw.state_dict)
    if not any(k.startswith("spiking_frontend.") for k in keys):
        return {"kind": "state_dict", "dt_us": None, "dt_source": "not recorded", "recorded_accuracy": None,
                "epoch": None}
    kind = V2 if any(".recurrent" in k for k in keys) else V1
    from neurodeploy.model.mamba_spike.checkpoint import _reference_hints

    hints = _reference_hints(container)
    accuracy = next((container[k] for k in ("accuracy", "best_acc", "test_acc") if k in container), None)
    if accuracy is not None:
        accuracy = float(accuracy) / (100.0 if float(accuracy) > 1.0 else 1.0)  # the reference stores percent
    steps = int(hints.get("time_steps") or hints.get("n_time_bins") or REFERENCE_TIME_STEPS)
    dt_us, source = None, "not recorded; the 128x128 datasets have recordings of varying length: pass --dt-us"
    if _is_nmnist(raw.state_dict):
        dt_us = NMNIST_RECORDING_US // steps
        source = f"N-MNIST recordings (~{NMNIST_RECORDING_US // 1000} ms) cut into {steps} bins by the reference"
    return {"kind": kind, "dt_us": dt_us, "dt_source": source, "recorded_accuracy": accuracy,
            "epoch": container.get("epoch")}


def _is_nmnist(state_dict) -> bool:
    projection = state_dict.get("input_proj.weight")
    return projection is not None and projection.shape[1] == 64 * 8 * 8  # 34x34 -> 8x8 spike maps
