"""What a bundle folder must be before anything in it is read or run (issue 21): a bundle may come
from someone else, and its hashes only say the files were not changed since the manifest was
written, not that the manifest is honest.

- the manifest and every artifact are regular files directly inside the folder: no symlink (one
  pointing at /etc/passwd was read as model.safetensors), no `..`, no absolute or nested name,
  and only the artifact names the toolkit writes;
- the manifest is schema-checked (types, ranges, required fields, dt_us) with bounded JSON;
- ONNX graphs: external data only inside the folder, an operator allow-list (what the exporters
  write, function and Scan bodies included: no Loop that could run forever), a node budget,
  shape inputs of allocating operators bounded, and the declared input/state shapes equal to
  what the config implies;
- HDF5 artifacts (NIR, netx): the datasets' total size bounded by the file size and the
  parameter budget before any is read (a compressed dataset can inflate to gigabytes).
The limits are listed in docs/bundle_format.md.
"""
from __future__ import annotations

import hashlib
import math
import os
import stat
from pathlib import Path
from typing import Any

from neurodeploy.errors import NeurodeployError
from neurodeploy.model.validation import ValidationError, loads_json, max_parameters

MAX_MANIFEST_BYTES = 4 << 20
MIN_DT_US, MAX_DT_US = 1, 10_000_000
MAX_ONNX_NODES = 10_000
MAX_ALLOCATION_ELEMENTS = 1 << 28          # one tensor a shape input may ask for (1 GiB of float32)
HDF5_INFLATION = 64                        # datasets may hold at most this many times the file's bytes
# the operators neurodeploy's ONNX exporters write (backbone full/chunk/step): no Loop (its trip
# count and condition are data: it can run forever), no If
ONNX_OPS = {"Add", "AveragePool", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Exp", "Expand",
            "Gather", "Gemm", "Greater", "Identity", "LayerNormalization", "Less", "Log", "MatMul", "Max", "Min", "Mul",
            "Neg", "Pad", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softplus",
            "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze", "Where", "Equal", "Not", "And",
            "Clip", "Abs", "Pow", "Erf", "Softmax", "Range", "Tile", "CumSum", "Floor", "Mod", "GreaterOrEqual",
            "LessOrEqual", "Or", "Scan"}  # Scan runs once per element of its input: bounded
CUSTOM_DOMAIN_OPS = {("ai.neurodeploy", "SelectiveScan"), ("ai.neurodeploy", "SelectiveStateUpdate"),
                     ("ai.neurodeploy", "SelectiveScanUngated"), ("ai.neurodeploy", "SelectiveStateUpdateUngated")}
# operators whose output size comes from an input tensor: (op, index of that input)
_SHAPE_INPUTS = {"ConstantOfShape": 0, "Expand": 1, "Reshape": 1, "Tile": 1}


class BundleError(NeurodeployError, ValueError):
    """A bundle that cannot be written or loaded; the message names the file and the way out.
    (Defined here, where loading checks a bundle; neurodeploy.bundle re-exports it.)"""





def check_regular_file(directory: Path, name: str, what: str = "artifact") -> Path:
    """directory/name, refused unless a plain name of a regular file (not a symlink) inside directory."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or os.path.isabs(name) or "\x00" in name:
        raise BundleError(f"{directory}: {what} name {name!r} is not a plain file name inside the bundle")
    path = directory / name
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise BundleError(f"{path}: listed in the manifest but missing; restore it or re-export the bundle") \
            from None
    if stat.S_ISLNK(info.st_mode):
        raise BundleError(f"{path}: is a symbolic link (to {os.readlink(path)!r}); a bundle holds its "
                                    "files itself: replace the link with the file")
    if not stat.S_ISREG(info.st_mode):
        raise BundleError(f"{path}: not a regular file")
    if path.resolve().parent != directory.resolve():
        raise BundleError(f"{path}: resolves outside the bundle folder {directory}")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_family_manifest(directory: Path, manifest_name: str, fmt: str, what: str) -> dict[str, Any]:
    """The manifest of a model family's bundle (token models, liquid, Vision Mamba): a regular JSON
    file inside the folder whose `format` is `fmt`; `what` names the bundle kind in errors."""
    _, manifest = read_manifest(directory, manifest_name)
    if manifest.get("format") != fmt:
        raise BundleError(f"{directory / manifest_name}: format {manifest.get('format')!r}, expected {fmt!r} ({what}); "
                          "re-export it with this neurodeploy (`neurodeploy export CHECKPOINT -o DIR`)")
    return manifest


def check_hashed_files(directory: Path, digests: dict[str, Any]) -> None:
    """Every listed file is a regular file inside the bundle (no links, no `..`) with the sha256 the
    manifest records for it."""
    for name, digest in digests.items():
        path = check_regular_file(directory, name)
        if sha256_of(path) != digest:
            raise BundleError(f"{path}: sha256 differs from the manifest (the file was changed after export); "
                              "re-export the bundle")


def read_manifest(directory: Path, manifest_name: str) -> tuple[bytes, dict[str, Any]]:
    """The manifest's exact bytes (what a signature covers) and its JSON object."""
    path = check_regular_file(directory, manifest_name, "manifest")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: {size} bytes, more than {MAX_MANIFEST_BYTES}; not a manifest")
    raw = path.read_bytes()
    try:
        manifest = loads_json(raw, str(path), max_bytes=MAX_MANIFEST_BYTES)
    except ValidationError as err:
        raise BundleError(f"{err}; re-export the bundle") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: a JSON {type(manifest).__name__}, expected an object; re-export the bundle")
    return raw, manifest


def _require(manifest: dict, path: Path, field: str, kinds: tuple[type, ...], kind_name: str) -> Any:
    if field not in manifest:
        raise BundleError(f"{path}: required field {field!r} is missing; re-export the bundle")
    value = manifest[field]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise BundleError(f"{path}: field {field!r} is a {type(value).__name__}, expected {kind_name}")
    return value


def check_manifest_schema(manifest: dict[str, Any], path: Path, known_artifacts: set[str], model_artifact: str,
                          bundle_format: str) -> None:
    if manifest.get("format") != bundle_format:
        raise BundleError(f"{path}: field 'format' is not {bundle_format!r}; re-export with this neurodeploy")
    dt_us = _require(manifest, path, "dt_us", (int,), "an integer number of microseconds")
    if not MIN_DT_US <= dt_us <= MAX_DT_US:
        raise BundleError(f"{path}: field 'dt_us' = {dt_us}; expected {MIN_DT_US}..{MAX_DT_US} microseconds")
    _require(manifest, path, "config", (dict,), "an object (the model config)")
    artifacts = _require(manifest, path, "artifacts", (dict,), "an object of file name -> {sha256, bytes}")
    if model_artifact not in artifacts:
        raise BundleError(f"{path}: field 'artifacts' lacks {model_artifact}; re-export the bundle")
    for name, entry in artifacts.items():
        if name not in known_artifacts:
            raise BundleError(f"{path}: artifact {name!r} is not one the toolkit writes "
                                        f"({sorted(known_artifacts)})")
        if not isinstance(entry, dict):
            raise BundleError(f"{path}: artifacts[{name!r}] is not an object")
        digest = entry.get("sha256")
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise BundleError(f"{path}: artifacts[{name!r}].sha256 is not 64 lowercase hex digits")
        size = entry.get("bytes")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise BundleError(f"{path}: artifacts[{name!r}].bytes = {size!r}; expected a byte count")
    skipped = manifest.get("skipped", {})
    if not isinstance(skipped, dict) or not all(isinstance(v, str) for v in skipped.values()):
        raise BundleError(f"{path}: field 'skipped' is not an object of file name -> reason")


# -- ONNX ----------------------------------------------------------------------------------------
def _dims(value_info) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def check_onnx(path: Path, directory: Path, expected_shapes: dict[str, tuple]) -> None:
    """Refuse an ONNX graph that reaches outside the bundle, loops, allocates by a forged shape, is
    too large, or whose inputs differ from what the config implies. expected_shapes: input name ->
    dims (None = any)."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001  (protobuf DecodeError and friends)
        raise BundleError(f"{path}: not a readable ONNX file ({type(err).__name__}: {str(err)[:200]})") \
            from None
    graph = model.graph
    tensors = list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            check_regular_file(directory, location, f"ONNX external data of {path.name}")
    if len(graph.node) > MAX_ONNX_NODES:
        raise BundleError(f"{path}: {len(graph.node)} nodes, more than {MAX_ONNX_NODES}")
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.HasField("t"):
                    constants[node.output[0]] = a.t
    # the custom ops are ONNX functions inside the file, and Scan carries a body graph: all of them
    # are held to the same list
    nodes = _all_nodes(list(graph.node) + [n for function in model.functions for n in function.node])
    if len(nodes) > MAX_ONNX_NODES:
        raise BundleError(f"{path}: {len(nodes)} nodes with the function bodies, more than {MAX_ONNX_NODES}")
    for node in nodes:
        allowed = node.op_type in ONNX_OPS if node.domain in ("", "ai.onnx") else \
            (node.domain, node.op_type) in CUSTOM_DOMAIN_OPS
        if not allowed:
            raise BundleError(f"{path}: node {node.name!r} is {node.domain or 'ai.onnx'}::{node.op_type}, "
                              "not an operator neurodeploy's exporters write; re-export the bundle")
        index = _SHAPE_INPUTS.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] in constants:
            try:
                shape = numpy_helper.to_array(constants[node.input[index]])
            except Exception:  # noqa: BLE001  (external or malformed data: the runtime would fail too)
                continue
            elements = math.prod(abs(int(v)) for v in shape.ravel()) if shape.size else 1
            if elements > MAX_ALLOCATION_ELEMENTS:
                raise BundleError(f"{path}: node {node.name!r} ({node.op_type}) asks for a tensor of "
                                            f"{elements:,} elements; refused")
    inputs = {i.name: _dims(i) for i in graph.input if i.name not in constants}
    for name, dims in expected_shapes.items():
        if name not in inputs:
            continue
        declared = inputs[name]
        if len(declared) != len(dims) or any(e is not None and d != e for d, e in zip(declared, dims)):
            raise BundleError(f"{path}: input {name!r} is declared {declared}, the config implies "
                                        f"{['*' if e is None else e for e in dims]}; the graph does not belong to "
                                        "this model: re-export the bundle")


def _all_nodes(nodes: list) -> list:
    """The nodes and, depth first, those of every subgraph attribute (a Scan body), iteratively."""
    import onnx

    out, todo = [], list(nodes)
    while todo:
        node = todo.pop()
        out.append(node)
        if len(out) > MAX_ONNX_NODES:
            break
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                todo.extend(attribute.g.node)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                todo.extend(n for g in attribute.graphs for n in g.node)
    return out


# -- HDF5 (NIR, netx) ----------------------------------------------------------------------------
def check_hdf5(path: Path) -> None:
    import h5py

    file_size = path.stat().st_size
    budget = min(HDF5_INFLATION * file_size + (1 << 20), 4 * max_parameters())
    total = 0
    try:
        with h5py.File(path, "r") as f:
            datasets = []
            f.visititems(lambda name, obj: datasets.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
            for name, dataset in datasets:
                total += int(dataset.size) * dataset.dtype.itemsize
                if total > budget:
                    raise BundleError(f"{path}: dataset {name!r} brings the data to {total:,} bytes, more "
                                                f"than {budget:,} for a {file_size:,}-byte file; refused")
    except BundleError:
        raise
    except Exception as err:  # noqa: BLE001  (h5py raises OSError, KeyError, ValueError on corrupt files)
        raise BundleError(f"{path}: not a readable HDF5 file ({type(err).__name__}: {str(err)[:200]})") \
            from None
