"""The deployment bundle of a token language model (SpikeMamba LM): one folder, hashes checked.

    manifest.json       format "neurodeploy.lm_bundle/1", family, config (RMSNorm eps included),
                        conventions, package versions, sha256 of every artifact, parity figures
                        measured at export, artifacts not made and why
    model.safetensors   the PyTorch model (own format, config in its metadata): the `torch` runtime
    model_full.onnx     whole-sequence graph: logits, spikes per gate, final states (a prefill)
    model_step.onnx     one token with the state in and out: streaming and generation

NIR / netx are never made for this family: `export` records why under `skipped` (or raises
`UnsupportedLayerError` when NIR was asked for explicitly). Loading checks every hash; a
changed or missing file is refused with its name, as for the Mamba-Spike bundle.
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurodeploy import __version__
from neurodeploy.bundle import BundleError, package_versions, sha256_of
from neurodeploy.bundle_validation import check_hashed_files, read_family_manifest
from neurodeploy.model.family import LoadedModel
from neurodeploy.model.spikemamba_lm.checkpoint import save_checkpoint
from neurodeploy.model.spikemamba_lm.config import SpikeMambaLMConfig
from neurodeploy.model.spikemamba_lm.model import FAMILY_NAME, SpikeMambaLM

MANIFEST = "manifest.json"
LM_BUNDLE_FORMAT = "neurodeploy.lm_bundle/1"
FILES = {"model": "model.safetensors", "full": "model_full.onnx", "step": "model_step.onnx"}
RUNTIMES = ("onnxruntime", "torch", "native")
CONVENTIONS = {
    "tokens": "int64 ids; a token source is a text file (or stdin) of whitespace-separated ids",
    "onnx_state": "input name X, output name X_out; conv_state, ssm_state, <gate>_{v,current,adapt,refractory}, "
                  "stacked over layers",
    "spikes": "spikes_<gate> (n_layers, batch[, time], d_model), 0/1 float32",
    "custom_ops": "ai.neurodeploy::SelectiveScan (full), ai.neurodeploy::SelectiveStateUpdate (step); "
                  "LIF gates: ONNX Scan (full), elementwise (step)",
}


def is_lm_bundle(directory: str | Path) -> bool:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == LM_BUNDLE_FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


@dataclass(frozen=True)
class LMBundle:
    directory: Path
    manifest: dict[str, Any]
    config: SpikeMambaLMConfig

    def path(self, key: str) -> Path:
        return self.directory / FILES[key]

    def has(self, key: str) -> bool:
        return FILES[key] in self.manifest["artifacts"]

    def model(self) -> SpikeMambaLM:
        from neurodeploy.model.registry import load_model

        return load_model(self.path("model")).model

    def token_runtime(self, kind: str = "onnxruntime"):
        """A `TokenRuntime`: `onnxruntime` (the step graph), `torch`, or `native` (numba Mamba step)."""
        from neurodeploy.runtimes.spikemamba_lm import OnnxTokenRuntime, TorchTokenRuntime

        if kind not in RUNTIMES:
            raise BundleError(f"runtime {kind!r}; this bundle offers {', '.join(RUNTIMES)}")
        if kind == "torch":
            return TorchTokenRuntime(self.model())
        if kind == "native":
            from neurodeploy.runtimes.spikemamba_native import NativeTokenRuntime

            return NativeTokenRuntime(self.model())
        if not self.has("step"):
            reason = self.manifest["skipped"].get(FILES["step"], "it was not exported")
            raise BundleError(f"{self.path('step')}: not in this bundle ({reason}); use `--backbone torch`")
        c = self.config
        return OnnxTokenRuntime(self.path("step"), vocab_size=c.vocab_size, gates=c.gates, n_layers=c.n_layer,
                                d_model=c.d_model, d_inner=c.d_inner, d_conv=c.d_conv, d_state=c.d_state)


def load_lm_bundle(directory: str | Path) -> LMBundle:
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    manifest = read_family_manifest(directory, MANIFEST, LM_BUNDLE_FORMAT, "a SpikeMamba LM bundle")
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, dict) or FILES["model"] not in artifacts or \
            not all(isinstance(entry, dict) for entry in artifacts.values()):
        raise BundleError(f"{manifest_path}: field 'artifacts' is missing or lacks {FILES['model']}; re-export the bundle")
    check_hashed_files(directory, {name: entry.get("sha256") for name, entry in artifacts.items()})
    try:
        config = SpikeMambaLMConfig.from_dict(manifest["config"])
    except Exception as err:  # noqa: BLE001
        raise BundleError(f"{manifest_path}: field 'config' is not a valid SpikeMamba config: {err}") from None
    return LMBundle(directory, manifest, config)


def export_lm_bundle(loaded: LoadedModel, out_dir: str | Path, *,
                     artifacts: tuple[str, ...] = ("nir", "netx", "onnx"), explicit: bool = False, source: str = "<in-memory model>", opset: int = 20,
                     sample_tokens: torch.Tensor | None = None) -> LMBundle:
    """Write the bundle of a loaded SpikeMamba LM.

    `artifacts` is the CLI's list (nir, netx, onnx). NIR and netx cannot be made for this family:
    with `explicit` (the user named them) the export fails with the reason, otherwise they are
    listed under `skipped`. The step graph is skipped, with the reason, for adaptive pooling.
    """
    from neurodeploy.exporters.nir_spikemamba import export_spikemamba_nir
    from neurodeploy.exporters.onnx_spikemamba import export_spikemamba

    model: SpikeMambaLM = loaded.model
    out_dir = Path(out_dir)
    skipped: dict[str, str] = {}
    started = time.perf_counter()
    for name in ("nir", "netx"):
        if name in artifacts:
            cap = loaded.capability(name)
            if explicit:
                if name == "nir":
                    export_spikemamba_nir(model)  # raises UnsupportedLayerError with what NIR cannot express
                loaded.require(name)
            skipped[name] = cap.reason
    out_dir.mkdir(parents=True, exist_ok=True)
    parity: dict[str, Any] = {}
    if "onnx" in artifacts:
        result = export_spikemamba(model, out_dir / FILES["full"], "full", opset=opset, sample=sample_tokens)
        parity["full"] = result.to_dict()
        step_cap = loaded.capability("onnx_step")
        if step_cap.supported:
            parity["step"] = export_spikemamba(model, out_dir / FILES["step"], "step", opset=opset,
                                               sample=sample_tokens).to_dict()
        else:
            skipped[FILES["step"]] = step_cap.reason
    save_checkpoint(model, out_dir / FILES["model"])
    made = [name for name in FILES.values() if (out_dir / name).is_file() and name not in skipped]
    for key in ("full", "step"):  # a re-export into the same folder must not keep stale graphs
        if FILES[key] not in made or ("onnx" not in artifacts):
            (out_dir / FILES[key]).unlink(missing_ok=True)
    made = [name for name in FILES.values() if (out_dir / name).is_file()]
    manifest = {
        "format": LM_BUNDLE_FORMAT,
        "family": FAMILY_NAME,
        "neurodeploy_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source_checkpoint": source,
        "source_format": loaded.source_format,
        "config": model.config.to_dict(),
        "rms_norm_eps": model.config.rms_norm_eps,
        "notes": list(loaded.notes),
        "conventions": CONVENTIONS,
        "packages": package_versions(),
        "artifacts": {name: {"sha256": sha256_of(out_dir / name), "bytes": (out_dir / name).stat().st_size} for name in made},
        "skipped": skipped,
        "parity": {k: {f: v[f] for f in ("parity_logits_max_abs", "parity_states_max_abs", "parity_spikes_identical",
                                          "parity_sample", "tolerance", "nodes", "custom_nodes", "scan_nodes")}
                   for k, v in parity.items()},
        "export_seconds": time.perf_counter() - started,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return load_lm_bundle(out_dir)
