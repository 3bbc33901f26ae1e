"""Reading checkpoint files of any family without executing pickled code or building a model.

`.pth` / `.pt` files go through `torch.load(weights_only=True)` with one extra allowed type,
`argparse.Namespace` (training scripts of Mamba-Spike v1 and Vision Mamba store their `args`
that way); any other pickled object is refused. Safetensors files keep their string metadata.
Which family the tensors belong to is the registry's question, not this module's.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.model.family import RawCheckpoint
from neurodeploy.model.validation import check_parameter_budget, safetensors_shapes

# keys under which training scripts nest the weights, in the order they are tried
STATE_DICT_KEYS = ("model_state_dict", "model", "state_dict")


class CheckpointReadError(NeurodeployError, ValueError):
    """A file that cannot be read as a checkpoint; the message says why and what to do."""


def is_safetensors(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(9)
    # a safetensors file starts with its header's length (8 bytes, little-endian) then '{': a
    # length whose low byte is 0x80 must not be taken for a pickle's PROTO opcode
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") + 8 <= path.stat().st_size


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointReadError(f"{path}: no such file (expected a checkpoint: .safetensors, .pth or .pt)")
    if is_safetensors(path):
        return _read_safetensors(path)
    return _read_torch(path)


def _read_safetensors(path: Path) -> RawCheckpoint:
    from safetensors import safe_open
    from safetensors.torch import load_file

    # the header alone, checked against the file and the parameter budget, before any tensor is read
    safetensors_shapes(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except Exception as err:  # noqa: BLE001  (safetensors raises its own SafetensorError and OSError)
        raise CheckpointReadError(f"{path}: not a readable safetensors file ({type(err).__name__}: {str(err)[:200]})") from None
    return RawCheckpoint(path, tensors, {}, metadata)


def torch_load_safely(path: Path) -> Any:
    """`torch.load(weights_only=True)` with the `argparse.Namespace` allow-list; any pickled object
    outside it, and any unreadable file, is a `CheckpointReadError` naming the file and the way out."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises UnpicklingError, RuntimeError, EOFError...)
        text = str(err)
        if "GLOBAL" in text or "Unsupported" in text or "weights_only" in text.lower():
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointReadError(
                f"{path}: the file contains pickled objects outside the allow-list{what}; neurodeploy "
                "never executes pickled code. Re-save only the weights (torch.save(model.state_dict()) "
                "or safetensors) from a trusted environment."
            ) from None
        raise CheckpointReadError(
            f"{path}: not a readable torch checkpoint ({type(err).__name__}: {text[:200]}); expected a "
            ".safetensors, .pth or .pt file"
        ) from None


def _read_torch(path: Path) -> RawCheckpoint:
    obj = torch_load_safely(path)
    if not isinstance(obj, dict):
        raise CheckpointReadError(f"{path}: holds a {type(obj).__name__}, expected a dict (a state_dict or a training checkpoint)")
    container: dict[str, Any] = {}
    state_dict: Any = obj
    for key in STATE_DICT_KEYS:
        if key in obj and isinstance(obj[key], dict):
            state_dict = obj[key]
            container = {k: v for k, v in obj.items() if k != key}
            break
    if not isinstance(state_dict, dict) or not state_dict or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise CheckpointReadError(f"{path}: no mapping of names to tensors found (tried the file and {', '.join(STATE_DICT_KEYS)})")
    check_parameter_budget(str(path), sum(v.numel() for v in state_dict.values()))
    return RawCheckpoint(path, state_dict, container, {})
