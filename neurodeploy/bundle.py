"""The deployment bundle: one folder with a manifest, the artifacts and their hashes.

    manifest.json         config, dt, conventions, package versions, sha256 of every artifact,
                          the parity figures measured at export, artifacts not made and why
    model.safetensors     the PyTorch model (the `torch` runtimes; as deployed, i.e. after a
                          requested pooling rewrite)
    frontend.nir          the spiking front-end as NIR (when it maps)
    frontend.net          lava-dl netx HDF5 (when the front-end maps to Loihi)
    backbone.onnx         full-sequence graph; backbone_chunk.onnx, backbone_step.onnx: streaming

Loading checks every hash: a changed or missing file is refused with its name. Before that, the
folder is checked as untrusted input (bundle_validation: regular files inside the folder, the
manifest's schema, ONNX/HDF5 artifacts against the config and size budgets), and with
`trusted_key` the manifest's ed25519 signature (bundle_signing).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurodeploy import __version__
from neurodeploy.bundle_validation import (BundleError, sha256_of, check_hdf5, check_manifest_schema, check_onnx,
                                           check_regular_file, read_manifest)
from neurodeploy.model.mamba_spike.checkpoint import load_checkpoint, save_checkpoint
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.model import MambaSpike
from neurodeploy.runtimes.contract import BackboneRuntime, FrontendRuntime, step_layers

MANIFEST = "manifest.json"
BUNDLE_FORMAT = "neurodeploy.bundle/1"
FILES = {
    "model": "model.safetensors",
    "frontend_nir": "frontend.nir",
    "frontend_netx": "frontend.net",
    "backbone": "backbone.onnx",
    "backbone_chunk": "backbone_chunk.onnx",
    "backbone_step": "backbone_step.onnx",
}
ARTIFACT_CHOICES = ("nir", "netx", "onnx")
FRONTEND_RUNTIMES = ("torch", "nir", "lava", "native")
BACKBONE_RUNTIMES = ("onnxruntime", "torch", "native")
_PACKAGES = ("torch", "numpy", "nir", "nirtorch", "norse", "onnx", "onnxruntime", "lava-nc", "lava-dl", "h5py")
CONVENTIONS = {
    "events": "structured x, y, t (int64 us), p (0 OFF / 1 ON)",
    "frames": "(T, 2, H, W) event counts per bin, channel 0 OFF, 1 ON",
    "frontend_spikes": "(B, C, H, W) per step, last LIF layer; flattened in (C, H, W) order for the backbone",
    "onnx_state": "input name X, output name X_out (interface_ring, conv_state, ssm_state, feature_sum, count, pushed)",
    "custom_ops": "ai.neurodeploy::SelectiveScan (full/chunk), ai.neurodeploy::SelectiveStateUpdate (step)",
}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass(frozen=True)
class ExportOptions:
    dt_us: int = 1000
    artifacts: tuple[str, ...] = ARTIFACT_CHOICES
    pool_rewrite: str | None = None  # "avg" | "sum": replace max pooling, measured
    netx_weight_bits: int = 8
    netx_weight_scale: float | None = None  # None: chosen per layer from the weights
    parity_samples: int = 2
    parity_steps: int = 20
    seed: int = 0
    # the input transforms the model was trained with (events.transforms.Transforms.to_list()):
    # recorded in the manifest, applied by `run` unless the user names others
    transforms: tuple[dict, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.artifacts) - set(ARTIFACT_CHOICES))
        if unknown:
            raise BundleError(f"unknown artifact(s) {unknown}; choose from {ARTIFACT_CHOICES}")
        if self.dt_us <= 0:
            raise BundleError(f"dt_us = {self.dt_us}; expected a positive bin width in microseconds")
        if "netx" in self.artifacts and "nir" not in self.artifacts:
            raise BundleError("the netx artifact is made from the NIR graph: add 'nir' to the artifacts")


@dataclass(frozen=True)
class Bundle:
    directory: Path
    manifest: dict[str, Any]
    config: MambaSpikeConfig

    @property
    def dt_us(self) -> int:
        return int(self.manifest["dt_us"])

    @property
    def transforms(self):
        """The input transforms recorded at export (`events.transforms.Transforms`; empty if none)."""
        from neurodeploy.events.transforms import Transforms

        return Transforms.from_list(self.manifest.get("transforms"))

    def path(self, key: str) -> Path:
        return self.directory / FILES[key]

    def has(self, key: str) -> bool:
        return FILES[key] in self.manifest["artifacts"]

    def model(self) -> MambaSpike:
        model, _ = load_checkpoint(self.path("model"))
        return model

    def frontend_runtime(self, kind: str = "torch", *, steps_per_sample: int = 300) -> FrontendRuntime:
        """A FrontendRuntime of this bundle: `torch` | `nir` | `lava` (netx, fixed point) | `native`
        (event-driven, compiled; runs frontend.nir).

        `steps_per_sample`: the longest sample in time steps, which the pipelined Lava runtime
        lays out on its clock; the other runtimes take any length.
        """
        if kind == "torch":
            from neurodeploy.runtimes.torch import TorchFrontendRuntime

            return TorchFrontendRuntime(self.model())
        if kind == "nir":
            self._require("frontend_nir", kind)
            from neurodeploy.runtimes.nir import NIRFrontendRuntime

            return NIRFrontendRuntime(self.path("frontend_nir"))
        if kind == "lava":
            self._require("frontend_netx", kind)
            from neurodeploy.runtimes.lava import LavaFrontendRuntime

            # the bit-accurate Loihi path; close() (or interpreter exit) stops the Lava processes
            return LavaFrontendRuntime.fixed_point(self.path("frontend_netx"), steps_per_sample=steps_per_sample)
        if kind == "native":
            self._require("frontend_nir", kind)
            from neurodeploy.runtimes.native import NativeFrontendRuntime

            return NativeFrontendRuntime(self.path("frontend_nir"))
        raise BundleError(f"unknown front-end runtime {kind!r}; choose from {FRONTEND_RUNTIMES}")

    def backbone_runtime(self, kind: str = "onnxruntime", **options: Any) -> BackboneRuntime:
        """A BackboneRuntime of this bundle: `onnxruntime` | `torch` | `native` (fused compiled step)."""
        if kind == "native":
            from neurodeploy.runtimes.native import NativeBackboneRuntime

            return NativeBackboneRuntime(self.model())
        if kind == "torch":
            from neurodeploy.runtimes.torch import TorchBackboneRuntime

            return TorchBackboneRuntime(self.model())
        if kind == "onnxruntime":
            self._require("backbone_step", kind)
            from neurodeploy.runtimes.onnxruntime import OnnxBackboneRuntime

            graphs = {k: self.path(f"backbone_{k}" if k != "full" else "backbone")
                      for k in ("full", "chunk", "step") if self.has(f"backbone_{k}" if k != "full" else "backbone")}
            return OnnxBackboneRuntime(**graphs, **options)
        raise BundleError(f"unknown backbone runtime {kind!r}; choose from {BACKBONE_RUNTIMES}")

    def _require(self, key: str, runtime: str) -> None:
        if not self.has(key):
            reason = self.manifest.get("skipped", {}).get(FILES[key], "it was not requested at export")
            raise BundleError(f"{self.directory}: the {runtime!r} runtime needs {FILES[key]}, which this bundle "
                              f"does not have: {reason}")


def load_bundle(directory: str | Path, *, trusted_key: str | Path | None = None) -> Bundle:
    """Open a bundle folder, checking its files, the manifest and the sha256 of every artifact;
    with `trusted_key` (an ed25519 public key PEM), also the manifest's signature."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file() and not manifest_path.is_symlink():
        raise BundleError(f"{manifest_path}: missing; {directory} is not a bundle (make one with `neurodeploy export`)")
    raw, manifest = read_manifest(directory, MANIFEST)
    if trusted_key is not None:
        from neurodeploy.bundle_signing import verify_manifest

        verify_manifest(raw, manifest_path, trusted_key)
    check_manifest_schema(manifest, manifest_path, set(FILES.values()), FILES["model"], BUNDLE_FORMAT)
    artifacts = manifest["artifacts"]
    for name, entry in artifacts.items():
        path = check_regular_file(directory, name)
        actual = sha256_of(path)
        if actual != entry.get("sha256"):
            raise BundleError(
                f"{path}: sha256 {actual[:16]}... does not match the manifest ({str(entry.get('sha256'))[:16]}...): "
                "the file was changed after export; re-export the bundle"
            )
    try:
        config = MambaSpikeConfig.from_dict(manifest["config"])
    except Exception as err:  # noqa: BLE001
        raise BundleError(f"{manifest_path}: field 'config' is not a valid model config: {err}") from None
    _check_artifacts(directory, artifacts, config)
    return Bundle(directory, manifest, config)


def _check_artifacts(directory: Path, artifacts: dict[str, Any], config: MambaSpikeConfig) -> None:
    """Every graph against the config and the size budgets, before any runtime session is created."""
    c = config
    spikes = (c.spiking_channels, c.feature_height, c.feature_width)
    state = {"interface_ring": (None, None, c.spike_features),
             "conv_state": (c.n_layers, None, c.d_inner, c.d_conv),
             "ssm_state": (c.n_layers, None, c.d_inner, c.d_state),
             "feature_sum": (None, c.d_model)}
    expected = {
        FILES["backbone"]: {"spikes": (None, None, *spikes)},
        FILES["backbone_chunk"]: {"spikes": (None, None, *spikes), **state},
        FILES["backbone_step"]: {"spikes_t": (None, *spikes), **state},
    }
    for name in artifacts:
        path = directory / name
        if name in expected:
            check_onnx(path, directory, expected[name])
        elif name in (FILES["frontend_nir"], FILES["frontend_netx"]):
            check_hdf5(path)


def export(
    checkpoint: str | Path | MambaSpike,
    out_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    *,
    config: Any = None,
    sample_frames: torch.Tensor | None = None,
    sample_description: str | None = None,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> Bundle:
    """Write a bundle for a checkpoint (any format `load_checkpoint` reads) or a model.

    Artifacts that cannot be made (a front-end that does not map to NIR or Lava) are listed
    under `skipped` with the reason; the rest of the bundle is still written. `sample_frames`
    `(N, T, 2, H, W)` is used for the parity figures (and the pooling-rewrite report), named by
    `sample_description`; by default a seeded synthetic sample.

    The bundle is written into a hidden folder beside `out_dir` and moved into place only when
    complete, so a failed export leaves nothing behind. An existing bundle at `out_dir` is
    replaced; any other non-empty folder only with `force=True`. Files are 0644, folders 0755.
    """
    final_dir = Path(out_dir)
    if final_dir.exists() and not final_dir.is_dir():
        raise BundleError(f"{final_dir}: is a file; choose a folder for the bundle")
    if final_dir.is_dir() and any(final_dir.iterdir()) and not (final_dir / MANIFEST).is_file() and not force:
        raise BundleError(f"{final_dir}: not empty and not a bundle; choose another folder (or --force to replace it)")
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.partial-", dir=final_dir.parent))
    try:
        _write_bundle(checkpoint, work_dir, options, config=config, sample_frames=sample_frames,
                      sample_description=sample_description, progress=progress)
        for path in work_dir.iterdir():
            path.chmod(0o644)
        work_dir.chmod(0o755)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(work_dir, final_dir)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    return load_bundle(final_dir)


def _write_bundle(checkpoint, out_dir: Path, options: ExportOptions, *, config, sample_frames, sample_description,
                  progress) -> None:
    say = progress or (lambda message: None)
    if isinstance(checkpoint, MambaSpike):
        model, source = checkpoint.eval(), "<in-memory model>"
    else:
        model, _ = load_checkpoint(checkpoint, config=config)
        source = str(checkpoint)
    dt_s = options.dt_us / 1e6
    frames = sample_frames if sample_frames is not None else _synthetic_frames(model.config, options)
    skipped: dict[str, str] = {}
    parity: dict[str, Any] = {}
    timings: dict[str, float] = {}
    rewrite_report = None
    started = time.perf_counter()

    if options.pool_rewrite is not None:
        from neurodeploy.exporters.nir import rewrite_max_pooling

        say(f"rewriting max pooling as {options.pool_rewrite}")
        # without named data, the rewrite's own (larger) synthetic sample, not the small parity one
        model, report = rewrite_max_pooling(model, options.pool_rewrite,
                                            sample=frames if sample_description is not None else None,
                                            sample_description=sample_description)
        rewrite_report = {**json.loads(report.to_json()), "summary": report.summary()}

    graph = None
    if "nir" in options.artifacts:
        say("exporting the front-end to NIR")
        graph = _export_nir(model, dt_s, out_dir, frames, skipped, parity, timings)
    if "netx" in options.artifacts:
        if graph is None:
            skipped[FILES["frontend_netx"]] = f"needs {FILES['frontend_nir']}, which was not made"
        else:
            say("exporting the front-end to lava-dl netx")
            _export_netx(graph, out_dir, options, frames, skipped, parity, timings)
    if "onnx" in options.artifacts:
        say("exporting the backbone to ONNX")
        _export_onnx(model, dt_s, out_dir, frames, parity, timings)

    if "onnx" not in options.artifacts and len(skipped) == len(options.artifacts):
        reasons = "; ".join(f"{name} not made: {reason}" for name, reason in skipped.items())
        raise BundleError(f"{out_dir}: none of the requested artifacts ({', '.join(options.artifacts)}) can be made. "
                          f"{reasons}")
    save_checkpoint(model, out_dir / FILES["model"])
    made = [name for name in FILES.values() if (out_dir / name).is_file() and name not in skipped]
    manifest = {
        "format": BUNDLE_FORMAT,
        "neurodeploy_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source_checkpoint": source,
        "config": model.config.to_dict(),
        "dt_us": options.dt_us,
        "dt_s": dt_s,
        "conventions": CONVENTIONS,
        "packages": package_versions(),
        "export_options": dataclasses.asdict(options),
        "artifacts": {name: {"sha256": sha256_of(out_dir / name), "bytes": (out_dir / name).stat().st_size} for name in made},
        "skipped": skipped,
        "parity": parity,
        "pool_rewrite": rewrite_report,
        "transforms": [dict(t) for t in options.transforms],
        "export_seconds": {**timings, "total": time.perf_counter() - started},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def _synthetic_frames(config: MambaSpikeConfig, options: ExportOptions) -> torch.Tensor:
    generator = torch.Generator().manual_seed(options.seed)
    shape = (options.parity_samples, options.parity_steps, config.input_channels, config.input_height, config.input_width)
    return torch.poisson(torch.full(shape, 0.1), generator=generator)


def _spike_mismatch(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float((reference[name] != other[name]).float().mean()) for name in reference}


def _export_nir(model, dt_s, out_dir, frames, skipped, parity, timings):
    from neurodeploy.exporters.nir import UnsupportedLayerError, export_frontend
    from neurodeploy.formats.nir_frontend import write_frontend
    from neurodeploy.runtimes.nir import NIRFrontendRuntime
    from neurodeploy.runtimes.torch import TorchFrontendRuntime

    t = time.perf_counter()
    try:
        graph = export_frontend(model, dt_s)
    except UnsupportedLayerError as err:
        skipped[FILES["frontend_nir"]] = str(err)
        return None
    write_frontend(graph, out_dir / FILES["frontend_nir"])
    timings["nir"] = time.perf_counter() - t
    reference = TorchFrontendRuntime(model).run_layers(frames)
    runtime = NIRFrontendRuntime(out_dir / FILES["frontend_nir"])
    nir_spikes = step_layers(runtime, frames)
    parity["nir_vs_torch_spike_mismatch"] = _spike_mismatch(reference, nir_spikes)
    parity["nir_sample"] = list(frames.shape[:2])
    return graph


def _export_netx(graph, out_dir, options, frames, skipped, parity, timings):
    from neurodeploy.exporters import netx

    t = time.perf_counter()
    try:
        result = netx.export_netx(graph, out_dir / FILES["frontend_netx"], weight_bits=options.netx_weight_bits,
                                  weight_scale=options.netx_weight_scale, calibration=frames)
    except netx.LavaMappingError as err:
        skipped[FILES["frontend_netx"]] = str(err)
        return
    timings["netx"] = time.perf_counter() - t
    parity["netx_quantization"] = {
        "summary": result.summary(),
        # scalars only: the quantized arrays themselves are in frontend.net
        "layers": [{k: v for k, v in dataclasses.asdict(q).items() if not hasattr(v, "shape")} for q in result.layers],
    }


def _export_onnx(model, dt_s, out_dir, frames, parity, timings):
    from neurodeploy.exporters.onnx import export_backbone, export_backbone_chunk, export_backbone_step

    with torch.no_grad():
        spikes, _ = model.spiking_frontend(frames)
    sample = spikes[-1]
    for key, fn in (("backbone", export_backbone), ("backbone_chunk", export_backbone_chunk),
                    ("backbone_step", export_backbone_step)):
        t = time.perf_counter()
        result = fn(model, out_dir / FILES[key], dt=dt_s, sample=sample)
        timings[key] = time.perf_counter() - t
        parity[f"{key}_max_abs_logit_diff"] = result.parity_max_abs
        parity[f"{key}_tolerance"] = result.tolerance


__all__: Sequence[str] = ("Bundle", "BundleError", "ExportOptions", "export", "load_bundle", "FILES")
