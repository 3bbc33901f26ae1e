"""Checks on checkpoints and configs of every model family, made before anything is allocated
(issue 21): a 176 KB safetensors file whose config claims d_model 10^9 must be refused, not built.

- `loads_json`: JSON with a size and nesting bound (json.loads recurses: a deeply nested document
  raises RecursionError, and a huge one is read whole);
- `safetensors_shapes`: the tensor table of a safetensors file, read from its header alone, each
  entry checked against the file (dtype known, offsets inside the data, bytes = elements x size);
- `check_parameter_budget`: one global budget of parameters, `NEURODEPLOY_MAX_PARAMETERS` to raise it;
- `check_number`: a finite number in a range (a NaN threshold gives a model that never spikes).

A family believes its config only where the weights agree (each family checks its own config
fields against `safetensors_shapes` / the tensors before building; model/mamba_spike/checkpoint.py).
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

from neurodeploy.errors import NeurodeployError

MAX_JSON_BYTES = 16 << 20
MAX_JSON_DEPTH = 64
DEFAULT_MAX_PARAMETERS = 2_000_000_000     # 8 GB of float32: far above every family shipped
MAX_SAFETENSORS_HEADER = 100 << 20         # the safetensors format's own limit
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class ValidationError(NeurodeployError, ValueError):
    """A checkpoint or config refused before allocation; the message names the file, the field and the way out."""


def json_depth(text: str) -> int:
    """Deepest nesting of [ and { outside strings, counted without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_json(text: str | bytes, source: str, *, max_depth: int = MAX_JSON_DEPTH,
               max_bytes: int = MAX_JSON_BYTES) -> Any:
    if len(text) > max_bytes:
        raise ValidationError(f"{source}: {len(text)} bytes of JSON, more than {max_bytes}; not a config")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValidationError(f"{source}: not UTF-8 JSON ({err})") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise ValidationError(f"{source}: JSON nested {depth} deep, more than {max_depth}; not a config")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as err:
        raise ValidationError(f"{source}: not valid JSON ({err})") from None


def check_number(source: str, name: str, value: Any, low: float, high: float, *,
                 low_open: bool = False) -> float:
    """value as a float, finite and in [low, high] ((low, high] with low_open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{source}: field {name!r} = {value!r}; expected a number")
    value = float(value)
    below = value <= low if low_open else value < low
    if not math.isfinite(value) or below or value > high:
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValidationError(f"{source}: field {name!r} = {value}; expected a finite number in {interval}")
    return value


def max_parameters() -> int:
    text = os.environ.get("NEURODEPLOY_MAX_PARAMETERS")
    if text is None:
        return DEFAULT_MAX_PARAMETERS
    try:
        return int(text)
    except ValueError:
        raise ValidationError(f"NEURODEPLOY_MAX_PARAMETERS = {text!r}; expected an integer") from None


def check_parameter_budget(source: str, n_parameters: int) -> None:
    budget = max_parameters()
    if n_parameters > budget:
        raise ValidationError(f"{source}: {n_parameters:,} parameters, more than the budget of {budget:,}; "
                              "set NEURODEPLOY_MAX_PARAMETERS to allow it (if the file is trusted)")


def safetensors_shapes(path: str | Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """(name -> (dtype, shape), metadata) from a safetensors header, checked against the file."""
    path = Path(path)
    file_size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValidationError(f"{path}: {len(head)} bytes; not a safetensors file")
        header_size = struct.unpack("<Q", head)[0]
        if header_size > min(MAX_SAFETENSORS_HEADER, file_size - 8):
            raise ValidationError(f"{path}: header of {header_size} bytes in a file of {file_size}; "
                                  "truncated or not a safetensors file")
        header = loads_json(f.read(header_size), f"{path} (safetensors header)", max_bytes=MAX_SAFETENSORS_HEADER)
    if not isinstance(header, dict):
        raise ValidationError(f"{path}: the safetensors header is not a JSON object")
    data_size = file_size - 8 - header_size
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValidationError(f"{path}: field '__metadata__' is not a mapping of strings")
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, entry in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict):
            raise ValidationError(f"{where} is not described by an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise ValidationError(f"{where}: dtype {dtype!r} unknown")
        if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                  for n in shape):
            raise ValidationError(f"{where}: shape {shape!r} is not a list of sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise ValidationError(f"{where}: data_offsets {offsets!r} outside the {data_size} data bytes")
        elements = math.prod(shape)
        if elements * _DTYPE_BYTES[dtype] != offsets[1] - offsets[0]:
            raise ValidationError(f"{where}: shape {shape} of {dtype} needs {elements * _DTYPE_BYTES[dtype]} bytes, "
                                  f"the file gives it {offsets[1] - offsets[0]}")
        shapes[name] = (dtype, tuple(shape))
    check_parameter_budget(str(path), sum(math.prod(s) for _, s in shapes.values()))
    return shapes, metadata
