"""The Mamba-Liquid-Spiking deployment bundle: NIR encoders + ONNX blocks, export and verify.

    manifest.json        format "neurodeploy.bundle.liquid/1": config, notes from loading, files
                         with sha256, parity measured at export, versions, conventions
    model.safetensors    the PyTorch model (the reference `verify` compares against)
    encoder_{i}.nir      block i's spike encoder (neurodeploy.exporters.nir_liquid)
    stem.onnx, block_{i}.onnx, block_{i}_step.onnx (sequential mode)
                         the rest of every block (neurodeploy.exporters.onnx_liquid)

Loading checks every hash. `verify_liquid_bundle` runs the interleaved pipeline
(`neurodeploy.runtimes.liquid`) and the PyTorch model on the same token ids and compares every
encoder layer's spikes (NIR runtime vs torch, exact), the logits and, for sequential models,
the stepped logits (ONNX step graphs) with the full ones.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurodeploy.bundle import BundleError, package_versions, sha256_of
from neurodeploy.bundle_validation import check_hashed_files, read_family_manifest
from neurodeploy.exporters.nir_liquid import DEFAULT_DT_S, export_encoders
from neurodeploy.exporters.onnx_liquid import DEFAULT_OPSET, export_onnx
from neurodeploy.model.family import LoadedModel
from neurodeploy.model.liquid.checkpoint import save_checkpoint
from neurodeploy.model.registry import load_model
from neurodeploy.runtimes.liquid import LiquidPipeline

MANIFEST = "manifest.json"
FORMAT = "neurodeploy.bundle.liquid/1"
MODEL_FILE = "model.safetensors"
TOLERANCE = 1e-4
CONVENTIONS = {
    "tokens": "ids (B, T) int64 -> logits (B, T, output_dim); a length-1 input is repeated num_spike_steps times",
    "pipeline": "stem.onnx, then per block: encoder_i.nir on x_p, block_i.onnx on (x_p, spikes)",
    "encoder_spikes": "g * {0, 1} per LIF layer (g: snnTorch graded_spikes_factor, a NIR Scale node when != 1)",
    "onnx_state": "block_i_step.onnx: liquid_h, conv_state, ssm_state in; X_out out",
    "custom_ops": "ai.neurodeploy::SelectiveScanUngated (full), SelectiveStateUpdateUngated (step); "
                  "LayerNormalization(d_inner) and * silu(z) outside",
}


@dataclass(frozen=True)
class LiquidBundle:
    directory: Path
    manifest: dict[str, Any]
    loaded: LoadedModel

    def pipeline(self) -> LiquidPipeline:
        c = self.loaded.config
        return LiquidPipeline(self.directory, num_blocks=c.num_layers, num_spike_steps=c.num_spike_steps,
                              streamable=self.loaded.model.streamable)


def sample_ids(vocab_size: int, batch: int = 2, steps: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab_size, (batch, steps), generator=torch.Generator().manual_seed(seed))


def export_liquid(checkpoint: str | Path, out_dir: str | Path, *, config: Any = None, dt_s: float = DEFAULT_DT_S,
                  opset: int = DEFAULT_OPSET) -> LiquidBundle:
    """Load a Mamba-Liquid-Spiking checkpoint and write its bundle; parity is measured and recorded."""
    loaded = load_model(checkpoint, config, family="liquid")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [save_checkpoint(loaded.model, out_dir / MODEL_FILE), *export_encoders(loaded.model, out_dir, dt_s)]
    onnx_files = export_onnx(loaded.model, out_dir, opset=opset)
    files += [onnx_files.stem, *onnx_files.blocks, *onnx_files.steps]
    manifest = {
        "format": FORMAT,
        "family": "liquid",
        "config": loaded.config.to_dict(),
        "source": {"checkpoint": str(checkpoint), "format": loaded.source_format},
        "notes": list(loaded.notes),
        "dt_s": dt_s,
        "opset": opset,
        "capabilities": {name: {"supported": cap.supported, "reason": cap.reason}
                         for name, cap in loaded.family.capabilities(loaded.config).items()},
        "files": {path.name: sha256_of(path) for path in files},
        "conventions": CONVENTIONS,
        "versions": package_versions(),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    bundle = LiquidBundle(out_dir, manifest, load_liquid_bundle(out_dir).loaded)
    report = verify_liquid_bundle(bundle)
    manifest["parity"] = report
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if not report["ok"]:
        raise BundleError(f"{out_dir}: the exported bundle does not reproduce the model: {json.dumps(report)}")
    return LiquidBundle(out_dir, manifest, bundle.loaded)


def load_liquid_bundle(directory: str | Path) -> LiquidBundle:
    directory = Path(directory)
    manifest = read_family_manifest(directory, MANIFEST, FORMAT, "a Mamba-Liquid-Spiking bundle")
    check_hashed_files(directory, manifest["files"])
    return LiquidBundle(directory, manifest, load_model(directory / MODEL_FILE, family="liquid"))


@torch.no_grad()
def verify_liquid_bundle(bundle: LiquidBundle, ids: torch.Tensor | None = None, *, tolerance: float = TOLERANCE
                         ) -> dict[str, Any]:
    """Every encoder layer's spikes (NIR vs torch), the logits (ONNX pipeline vs torch), stepped = full."""
    model, config = bundle.loaded.model, bundle.loaded.config
    ids = sample_ids(config.vocab_size) if ids is None else ids
    reference, blocks = model(ids, return_internals=True)
    pipeline = bundle.pipeline()
    run = pipeline.run(ids)
    encoders = []
    for i, (ours, theirs) in enumerate(zip(run.spikes, blocks)):
        for layer, spikes in ours.items():
            encoders.append({"block": i, "layer": layer, "spikes_torch": int((theirs[layer] != 0).sum()),
                             "spikes_nir": int((spikes != 0).sum()),
                             "mismatches": int((spikes != theirs[layer]).sum())})
    report: dict[str, Any] = {
        "sample": {"batch": int(ids.shape[0]), "steps": int(ids.shape[1])},
        "tolerance": tolerance,
        "encoders": encoders,
        "logits_max_abs": float((run.logits - reference).abs().max()),
    }
    ok = all(e["mismatches"] == 0 for e in encoders) and report["logits_max_abs"] <= tolerance
    if pipeline.streamable and ids.shape[1] > 1:
        pipeline.reset(ids.shape[0])
        stepped = torch.stack([pipeline.step(ids[:, t]) for t in range(ids.shape[1])], dim=1)
        report["stepped_logits_max_abs"] = float((stepped - reference).abs().max())
        ok = ok and report["stepped_logits_max_abs"] <= tolerance
    report["ok"] = ok
    return report
