"""The command-line side of the Mamba-Liquid-Spiking (`liquid`) and Vision Mamba families.

`neurodeploy.cli` asks here first: a checkpoint the registry detects as one of these families
(or `--family liquid|vision-mamba`), or a bundle whose manifest names one of their formats, is
handled by the functions below; everything else goes on to the SpikeMamba LM and Mamba-Spike
paths as before.

What each command means for them (docs/liquid.md, docs/vision_mamba.md):
- `export`: liquid -> `liquid_bundle.export_liquid` (NIR encoders + ONNX blocks, parity
  measured); vision -> `vision_bundle.export_vision_bundle` (whole-image ONNX + weights).
- `run`: liquid -> token ids streamed one at a time through the bundle's NIR encoders and ONNX
  step graphs (only 'sequential' models have them: the others are refused with the family's
  `onnx_step` reason); vision -> `classify_images` on an image folder or `.npy`.
- `report`: liquid -> `liquid_report` on a token-id file (for a bundle, the spikes are the
  deployed NIR encoders'); vision -> `vision_mamba_report` (per image, from the geometry) for the
  images read.
- `inspect`: the bundle's manifest, once every file's sha256 is checked.
Options that mean nothing for a family (event reading, transforms, windows...) are refused by
name, and commands not listed (verify, bench of these bundles) by
`UnsupportedCapabilityError`.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import click

from neurodeploy.cli_output import echo_json
from neurodeploy.errors import NeurodeployError, UnsupportedCapabilityError

FAMILIES = ("liquid", "vision-mamba")
_BUNDLE_FORMATS = {"neurodeploy.bundle.liquid/1": "liquid", "neurodeploy.bundle.vision-mamba/1": "vision-mamba"}

# per command, the options that mean something for these families; any other given is refused
_OPTIONS = {
    "export": {"checkpoint", "out_dir", "config_path", "force", "as_json", "family"},
    "run": {"bundle_dir", "source", "backbone", "labels", "as_json"},
    "report": {"bundle_dir", "events", "targets", "compare_all", "host", "devices_file", "out_dir", "as_json"},
}


def _explicit(name: str) -> bool:
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE


def _refuse_other_options(command: str, family: str) -> None:
    ctx = click.get_current_context()
    given = [p.opts[0] for p in ctx.command.params if p.name not in _OPTIONS[command] and _explicit(p.name)]
    if given:
        raise NeurodeployError(f"{', '.join(given)}: option(s) of `{command}` that mean nothing for a {family} model "
                               "(no events, front-end, transforms or signature). Remove them")


def checkpoint_family(checkpoint: str, family: str | None) -> str | None:
    """'liquid' or 'vision-mamba' when CHECKPOINT is one of them (by --family or detection), else None."""
    if family is not None:
        return family if family in FAMILIES else None
    from neurodeploy.model.checkpoint_io import read_checkpoint
    from neurodeploy.model.registry import detect_family

    try:
        name = detect_family(read_checkpoint(checkpoint)).name
    except NeurodeployError:
        return None  # the other paths say what is wrong, as before
    return name if name in FAMILIES else None


def bundle_family(path: str | Path) -> str | None:
    """'liquid' or 'vision-mamba' when PATH is a bundle folder of theirs, else None."""
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        return _BUNDLE_FORMATS.get(json.loads(manifest.read_text()).get("format"))
    except (OSError, ValueError, AttributeError):
        return None


def refuse_bundle_command(path: str, command: str) -> None:
    family = bundle_family(path)
    if family == "liquid" and command == "verify":
        return  # verify_family_bundle runs it
    if family is not None:
        raise UnsupportedCapabilityError(family, command, f"`neurodeploy {command}` is not wired for {family} bundles; "
                                         "`run` and `report` are, and `verify` for liquid bundles (the bundle's parity "
                                         "was measured at export and is in its manifest)")


def describe_bundle(path: str) -> dict:
    """What `inspect` shows of a liquid / Vision Mamba bundle (loading it checks every sha256)."""
    m = _load(path, bundle_family(path)).manifest
    return {"kind": f"{m['family']} bundle", "path": path, "format": m["format"], "source": m["source"],
            "config": m["config"], "files": m["files"], "parity": m["parity"], "notes": m["notes"],
            "capabilities": {k: "yes" if c["supported"] else f"no: {c['reason']}" for k, c in m["capabilities"].items()}}


# -- export -------------------------------------------------------------------------------------
def export_checkpoint(checkpoint: str, config_path: str | None, family: str, out_dir: str, as_json: bool) -> None:
    _refuse_other_options("export", family)
    if family == "liquid":
        from neurodeploy.liquid_bundle import export_liquid

        manifest = export_liquid(checkpoint, out_dir, config=config_path).manifest
    else:
        from neurodeploy.vision_bundle import export_vision_bundle

        manifest = export_vision_bundle(checkpoint, out_dir, config=config_path).manifest
    if as_json:
        echo_json(manifest)
        return
    click.echo(f"bundle written to {out_dir} ({manifest['family']}, {manifest['format']})")
    for name, digest in manifest["files"].items():
        click.echo(f"  {name:22s} {(Path(out_dir) / name).stat().st_size:>10,d} bytes  sha256 {digest[:12]}")
    click.echo(f"  parity: {json.dumps({k: v for k, v in manifest['parity'].items() if k != 'encoders'})}")
    for name, cap in manifest["capabilities"].items():
        if not cap["supported"]:
            click.echo(f"  {name}: NOT MADE: {cap['reason']}")
    for note in manifest["notes"]:
        click.echo(f"  note: {note}")


# -- verify -------------------------------------------------------------------------------------
def verify_family_bundle(bundle_dir: str, source: str | None) -> dict | None:
    """`verify` of a liquid bundle (None for other bundles): every encoder layer's spikes NIR vs
    torch, the ONNX pipeline's logits and, for sequential mode, stepped = full, on the token ids
    of `source` (default: seeded ids); `passed` False is exit code 3."""
    if bundle_family(bundle_dir) != "liquid":
        return None
    import torch

    from neurodeploy.generation import read_token_ids
    from neurodeploy.liquid_bundle import verify_liquid_bundle

    bundle = _load(bundle_dir, "liquid")
    ids = None
    if source is not None:
        ids = torch.tensor([_checked_ids(read_token_ids(source), source, bundle.loaded.config.vocab_size)])
        if ids.shape[1] == 0:
            raise NeurodeployError(f"{source}: no token ids read; a token source holds whitespace-separated integer ids")
    report = verify_liquid_bundle(bundle, ids)
    return {"bundle": bundle_dir, "family": "liquid", "passed": report["ok"], **report}


# -- run ----------------------------------------------------------------------------------------
def _checked_ids(ids: list[int], source: str, vocab_size: int) -> list[int]:
    for index, token in enumerate(ids):
        if not 0 <= token < vocab_size:
            raise NeurodeployError(f"{source}: token {index} is id {token}; the model's vocabulary has ids "
                                   f"0..{vocab_size - 1}")
    return ids


def run_bundle(bundle_dir: str, source: str, backbone: str | None, labels: str | None, as_json: bool) -> None:
    family = bundle_family(bundle_dir)
    _refuse_other_options("run", family)
    if family == "liquid":
        return _run_liquid(bundle_dir, source, backbone, as_json)
    return _run_vision(bundle_dir, source, backbone, labels, as_json)


def _run_liquid(bundle_dir: str, source: str, backbone: str | None, as_json: bool) -> None:
    import torch

    from neurodeploy.generation import read_token_ids
    from neurodeploy.liquid_bundle import load_liquid_bundle

    if backbone not in (None, "onnxruntime"):
        raise NeurodeployError(f"--backbone {backbone}: a liquid bundle runs its NIR encoders and ONNX step graphs "
                               "(onnxruntime); leave --backbone out")
    if _explicit("labels"):
        raise NeurodeployError("--labels: a liquid bundle reads token ids; remove --labels")
    bundle = load_liquid_bundle(bundle_dir)
    config = bundle.loaded.config
    step = bundle.loaded.family.capabilities(config)["onnx_step"]
    if not step.supported:
        raise UnsupportedCapabilityError("liquid", "run", step.reason)
    ids = _checked_ids(read_token_ids(source), source, config.vocab_size)
    if not ids:
        raise NeurodeployError(f"{source}: no token ids read; a token source holds whitespace-separated integer ids")
    pipeline = bundle.pipeline()
    pipeline.reset(1)
    rows, before = [], [dict.fromkeys(c, 0) for c in pipeline.spike_counts()]
    for index, token in enumerate(ids):
        start = time.perf_counter()
        logits = pipeline.step(torch.tensor([token], dtype=torch.int64))[0]
        latency = (time.perf_counter() - start) * 1e6
        counts = pipeline.spike_counts()
        spikes = {f"blocks.{b}.{layer}": counts[b][layer] - before[b][layer] for b in range(len(counts))
                  for layer in counts[b]}
        before = counts
        rows.append({"index": index, "token": token, "predicted": int(logits.argmax()),
                     "logits": [float(v) for v in logits], "spikes": spikes, "latency_us": latency})
        if not as_json:
            click.echo(f"token {index:5d}  id {token:6d}  -> next {rows[-1]['predicted']:6d}  "
                       f"spikes {sum(spikes.values()):5d}  {latency:7.0f} us")
    latencies = sorted(r["latency_us"] for r in rows)
    summary = {"tokens": len(rows), "runtime": "nir+onnxruntime",
               "latency_us": {"p50": statistics.median(latencies), "max": latencies[-1]},
               "spikes_per_token": {k: sum(r["spikes"][k] for r in rows) / len(rows) for k in rows[0]["spikes"]}}
    if as_json:
        echo_json({"summary": summary, "tokens": rows})
        return
    click.echo(f"{len(rows)} tokens on NIR encoders + ONNX step graphs; per-token latency p50 "
               f"{summary['latency_us']['p50']:.0f} us")
    for name, rate in summary["spikes_per_token"].items():
        click.echo(f"  {name}: {rate:.2f} spikes/token")


def _run_vision(bundle_dir: str, source: str, backbone: str | None, labels: str | None, as_json: bool) -> None:
    from neurodeploy.image_classification import classify_images
    from neurodeploy.vision_bundle import load_vision_bundle

    if backbone == "native":
        raise NeurodeployError("--backbone native: a Vision Mamba bundle runs model.onnx (onnxruntime, the default) "
                               "or the PyTorch weights (--backbone torch)")
    bundle = load_vision_bundle(bundle_dir)
    runtime = "torch" if backbone == "torch" else "onnx"
    result = classify_images(bundle.loaded, source, runtime=runtime, onnx_path=bundle.onnx_path, labels=labels)
    payload = result.to_dict()
    if as_json:
        echo_json(payload)
        return
    for row in payload["images"]:
        label = f"  label {row['label']}" if "label" in row else ""
        click.echo(f"{row['image']}: class {row['prediction']}{label}")
    summary = payload["summary"]
    click.echo(f"{summary['images']} images on {summary['runtime']}"
               + (f"; top-1 {summary['top1']:.1%}, top-5 {summary['top5']:.1%}" if "top1" in summary else ""))


# -- report -------------------------------------------------------------------------------------
def report_family(path: str, family: str, source: str, explicit_targets: tuple[str, ...], compare_all: bool,
                  host: str | None, devices_file: str | None, out_dir: str, as_json: bool) -> None:
    _refuse_other_options("report", family)
    if family == "liquid":
        payload, markdown = _report_liquid(path, source, explicit_targets, compare_all, host, devices_file)
    else:
        if explicit_targets or compare_all:
            raise UnsupportedCapabilityError(family, "report --target", "nothing in Vision Mamba spikes: the report "
                                             "costs host devices (--host picks one; `--devices` adds your own)")
        payload, markdown = _report_vision(path, source, host, devices_file)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json", "markdown": out / "report.md"}
    files["json"].write_text(json.dumps(payload, indent=2, default=str))
    files["markdown"].write_text(markdown)
    if as_json:
        echo_json({"report": payload, "files": {k: str(v) for k, v in files.items()}})
        return
    click.echo(markdown)
    click.echo("written: " + ", ".join(str(p) for p in files.values()))


def _load(path: str, family: str):
    if Path(path).is_dir():
        if family == "liquid":
            from neurodeploy.liquid_bundle import load_liquid_bundle

            return load_liquid_bundle(path)
        from neurodeploy.vision_bundle import load_vision_bundle

        return load_vision_bundle(path)
    from neurodeploy.model.registry import load_model

    return load_model(path, family=family)


def _report_liquid(path: str, source: str, explicit_targets: tuple[str, ...], compare_all: bool, host: str | None,
                   devices_file: str | None) -> tuple[dict, str]:
    import torch

    from neurodeploy.generation import read_token_ids
    from neurodeploy.report.devices import load_devices
    from neurodeploy.report.liquid import liquid_report

    target = _load(path, "liquid")
    loaded = getattr(target, "loaded", target)
    ids = _checked_ids(read_token_ids(source), source, loaded.config.vocab_size)
    if not ids:
        raise NeurodeployError(f"{source}: no token ids read; a token source holds whitespace-separated integer ids")
    ids_t = torch.tensor([ids], dtype=torch.int64)
    targets = explicit_targets or ("loihi",)
    if compare_all:
        table = load_devices(devices_file)
        targets = tuple(sorted(k for k, d in table.devices.items() if d.kind == "neuromorphic"))
    # a bundle's encoder spikes are the deployed NIR encoders' (equal to torch's: checked at export)
    spikes = target.pipeline().run(ids_t).spikes if target is not loaded else None
    report = liquid_report(loaded.model, ids_t, targets=targets, host=host or "cpu", devices_file=devices_file,
                           spikes=spikes)
    payload = {"family": "liquid", "source": source, "spikes_from": "NIR encoders" if spikes else "torch model",
               **report.to_dict()}
    return payload, f"# liquid: {report.tokens_per_sample} tokens from {source}\n\n{report.markdown()}\n"


def _report_vision(path: str, source: str, host: str | None, devices_file: str | None) -> tuple[dict, str]:
    from neurodeploy.image_classification import classify_images
    from neurodeploy.report.vision_mamba import vision_mamba_report

    target = _load(path, "vision-mamba")
    loaded = getattr(target, "loaded", target)
    images = len(classify_images(loaded, source).names)  # reads (and checks) every image at the model's size
    report = vision_mamba_report(loaded, devices_file=devices_file, hosts=(host,) if host else None)
    payload = {**report.to_dict(), "source": source, "images": images,
               "energy_all_images_j": {e.device: e.total_j * images for e in report.energy}}
    return payload, report.to_markdown() + f"\n{images} images read from {source}; the cost per image does not " \
                                           "depend on the pixels (nothing is skipped).\n"
