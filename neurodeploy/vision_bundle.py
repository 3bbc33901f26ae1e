"""The Vision Mamba deployment bundle: the whole-image ONNX graph beside the weights it came from.

    manifest.json        format "neurodeploy.bundle.vision-mamba/1": family, config, notes from
                         loading, files with sha256 (`neurodeploy.bundle.sha256_of`, the one
                         hashing helper every bundle uses), the export's parity figures, versions
    model.safetensors    the PyTorch weights (the reference `run --backbone torch` uses)
    config.json          the full VisionMambaConfig, so loading infers nothing
    model.onnx           images (B, C, H, W) -> logits (neurodeploy.exporters.onnx_vision_mamba),
                         checked against PyTorch at export in a bare onnxruntime session

There is no step or chunk graph: the model is non-causal (the family's capabilities say why).
Loading checks every hash before anything is read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurodeploy.bundle import package_versions, sha256_of
from neurodeploy.bundle_validation import check_hashed_files, read_family_manifest
from neurodeploy.exporters.onnx_vision_mamba import DEFAULT_OPSET, export_vision_mamba
from neurodeploy.model.family import LoadedModel
from neurodeploy.model.registry import load_model

MANIFEST = "manifest.json"
FORMAT = "neurodeploy.bundle.vision-mamba/1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class VisionBundle:
    directory: Path
    manifest: dict[str, Any]
    loaded: LoadedModel

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_FILE


def is_vision_bundle(directory: str | Path) -> bool:
    path = Path(directory) / MANIFEST
    try:
        return path.is_file() and json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def export_vision_bundle(checkpoint: str | Path, out_dir: str | Path, *, config: Any = None,
                         opset: int = DEFAULT_OPSET) -> VisionBundle:
    """Load a Vision Mamba checkpoint and write its bundle; the graph's parity is measured at export."""
    from safetensors.torch import save_file

    loaded = load_model(checkpoint, config, family="vision-mamba")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / MODEL_FILE
    save_file({k: v.detach().contiguous() for k, v in loaded.model.state_dict().items()}, str(weights))
    config_path = out_dir / CONFIG_FILE
    config_path.write_text(loaded.config.to_json())
    result = export_vision_mamba(loaded.model, out_dir / ONNX_FILE, opset=opset)
    manifest = {
        "format": FORMAT,
        "family": loaded.family.name,
        "config": loaded.config.to_dict(),
        "source": {"checkpoint": str(checkpoint), "format": loaded.source_format},
        "notes": list(loaded.notes),
        "opset": opset,
        "capabilities": {name: {"supported": cap.supported, "reason": cap.reason}
                         for name, cap in loaded.family.capabilities(loaded.config).items()},
        "files": {path.name: sha256_of(path) for path in (weights, config_path, result.path)},
        "parity": {"onnx_logits_max_abs": result.parity_max_abs, "tolerance": result.tolerance,
                   "sample_images": result.parity_sample[0]},
        "versions": package_versions(),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return load_vision_bundle(out_dir)


def load_vision_bundle(directory: str | Path) -> VisionBundle:
    directory = Path(directory)
    manifest = read_family_manifest(directory, MANIFEST, FORMAT, "a Vision Mamba bundle")
    check_hashed_files(directory, manifest["files"])
    loaded = load_model(directory / MODEL_FILE, str(directory / CONFIG_FILE), family="vision-mamba")
    return VisionBundle(directory, manifest, loaded)
