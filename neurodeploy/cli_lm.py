"""The command-line side of token language-model families (SpikeMamba LM): what `info`, `export`,
`run` and `report` do for them, and the `generate` command.

`neurodeploy.cli` asks the model registry which family a checkpoint is and hands non-Mamba-Spike
checkpoints and LM bundles to the functions here, so the Mamba-Spike paths stay as they were.
A capability the family (or this model's config) lacks is refused with
`UnsupportedCapabilityError`, whose message says why; like every `NeurodeployError` it becomes
exit code 1 in the CLI's one error handler.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import click

from neurodeploy.cli_output import echo_artifacts, echo_json
from neurodeploy.errors import NeurodeployError, UnsupportedCapabilityError


def _config_dict(config) -> dict:
    import dataclasses

    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(config) if isinstance(config, dict) else {"config": repr(config)}


def describe_loaded(loaded, checkpoint: str) -> dict:
    caps = loaded.family.capabilities(loaded.config)
    return {
        "checkpoint": checkpoint, "family": loaded.family.name, "source_format": loaded.source_format,
        "config": _config_dict(loaded.config), "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "notes": list(loaded.notes),
        "capabilities": {name: ("yes" + (f" ({c.reason})" if c.reason else "")) if c.supported else f"no: {c.reason}"
                         for name, c in caps.items()},
    }


def print_info(payload: dict) -> None:
    click.echo(f"{payload['checkpoint']}: {payload['family']} ({payload['source_format']}), "
               f"{payload['parameters']:,} parameters")
    for key, value in payload["config"].items():
        click.echo(f"  {key}: {value}")
    for note in payload["notes"]:
        click.echo(f"  note: {note}")
    click.echo("  capabilities:")
    for name, value in payload["capabilities"].items():
        click.echo(f"    {name}: {value}")


def export_loaded(loaded, checkpoint: str, out_dir: str, artifacts: str, explicit: bool, as_json: bool) -> None:
    from neurodeploy.lm_bundle import export_lm_bundle

    if loaded.family.name != "spikemamba-lm":
        raise UnsupportedCapabilityError(loaded.family.name, "export", "`neurodeploy export` has no bundle writer wired "
                                         "for this family yet; use the family's Python API")
    chosen = tuple(a.strip() for a in artifacts.split(",") if a.strip())
    bundle = export_lm_bundle(loaded, out_dir, artifacts=chosen, explicit=explicit, source=checkpoint)
    manifest = bundle.manifest
    if as_json:
        echo_json(manifest)
        return
    click.echo(f"bundle written to {out_dir} ({manifest['family']}, RMSNorm eps {manifest['rms_norm_eps']!r})")
    echo_artifacts(manifest)
    for key, value in manifest["parity"].items():
        click.echo(f"  parity {key}: logits {value['parity_logits_max_abs']:.2e}, states {value['parity_states_max_abs']:.2e}, "
                   f"spikes {'identical' if value['parity_spikes_identical'] else 'DIFFER'}")
    for note in manifest["notes"]:
        click.echo(f"  note: {note}")


def _require(bundle, capability: str) -> None:
    from neurodeploy.model.registry import get_family

    family = get_family(bundle.manifest["family"])
    cap = family.capabilities(bundle.config)[capability]
    if not cap.supported:
        raise UnsupportedCapabilityError(family.name, capability, cap.reason)


# the options of `run` and `report` that mean something for a token model; any other option
# (event reading, transforms, front-end, windows...) given on the command line is refused by name
TOKEN_OPTIONS = {
    "run": {"bundle_dir", "source", "backbone", "as_json"},
    "report": {"bundle_dir", "events", "targets", "compare_all", "host", "devices_file", "out_dir", "as_json"},
}


def refuse_event_options(command: str) -> None:
    ctx = click.get_current_context()
    given = [param.opts[0] for param in ctx.command.params
             if param.name not in TOKEN_OPTIONS[command] and explicit_option(param.name)]
    if given:
        raise NeurodeployError(f"{', '.join(given)}: option(s) of `{command}` for event-model bundles; a token-model "
                               "bundle reads token ids, has no front-end and no signature. Remove them")


def run_tokens(bundle_dir: str, source: str, runtime: str, as_json: bool) -> None:
    """`neurodeploy run LM_BUNDLE TOKENS`: stream ids one at a time, print each step."""
    from neurodeploy.generation import open_token_source, stream_tokens
    from neurodeploy.lm_bundle import load_lm_bundle

    refuse_event_options("run")
    bundle = load_lm_bundle(bundle_dir)
    _require(bundle, "stream")
    results = []
    for result in stream_tokens(bundle.token_runtime(runtime), open_token_source(source)):
        results.append(result)
        if not as_json:
            per_gate = " ".join(f"{k}={v}" for k, v in result.spikes.items())
            click.echo(f"token {result.index:5d}  id {result.token:6d}  -> next {result.predicted:6d}  "
                       f"spikes {sum(result.spikes.values()):5d}  [{per_gate}]  {result.latency_us:7.0f} us")
    if not results:
        raise NeurodeployError(f"{source}: no token ids read; a token source holds whitespace-separated integer ids")
    latencies = sorted(r.latency_us for r in results)
    spikes = {k: sum(r.spikes[k] for r in results) for k in results[0].spikes}
    d_model = bundle.config.d_model
    summary = {
        "tokens": len(results), "runtime": runtime,
        "latency_us": {"p50": statistics.median(latencies), "max": latencies[-1]},
        "spikes_per_token": {k: v / len(results) for k, v in spikes.items()},
        "firing_rate": {k: v / (len(results) * d_model) for k, v in spikes.items()},
    }
    if as_json:
        echo_json({"summary": summary, "tokens": [r.to_dict() for r in results]})
        return
    click.echo(f"{len(results)} tokens on {runtime}; per-token latency p50 {summary['latency_us']['p50']:.0f} us")
    for name, rate in summary["firing_rate"].items():
        click.echo(f"  {name}: {summary['spikes_per_token'][name]:.2f} spikes/token, firing rate {rate:.4f}")


def report_tokens(bundle_dir: str, source: str, explicit_targets: tuple[str, ...], host: str | None,
                  devices_file: str | None, out_dir: str, as_json: bool) -> None:
    import torch

    from neurodeploy.generation import read_token_ids
    from neurodeploy.lm_bundle import load_lm_bundle
    from neurodeploy.report.devices import load_devices
    from neurodeploy.report.spikemamba import build_lm_report, write_lm_report

    refuse_event_options("report")
    bundle = load_lm_bundle(bundle_dir)
    _require(bundle, "report")
    if explicit_targets:
        raise UnsupportedCapabilityError(
            bundle.manifest["family"], "report --target",
            "the LIF gates sit between analog Mamba ops a neuromorphic chip does not run; the report costs the host "
            "devices (`--devices` adds your own)")
    ids = read_token_ids(source)
    if not ids:
        raise NeurodeployError(f"{source}: no token ids read")
    table = load_devices(devices_file)
    hosts = (host,) if host else tuple(sorted(k for k, d in table.devices.items() if d.kind == "host"))
    report = build_lm_report(bundle.model(), torch.tensor([ids], dtype=torch.int64), hosts=hosts, devices_file=devices_file)
    paths = write_lm_report(report, out_dir)
    if as_json:
        echo_json({"report": report.to_dict(), "files": {k: str(v) for k, v in paths.items()}})
        return
    click.echo(report.to_markdown())
    click.echo("written: " + ", ".join(str(p) for p in paths.values()))


def generate_tokens(bundle_dir: str, prompt_source: str, max_new_tokens: int, sampling: bool, temperature: float,
                    top_k: int | None, seed: int, stop_token: int | None, runtime: str, as_json: bool) -> None:
    """`neurodeploy generate`: prefill the prompt token by token, then greedy or seeded sampling."""
    from neurodeploy.generation import SamplingOptions, generate, read_token_ids
    from neurodeploy.lm_bundle import is_lm_bundle, load_lm_bundle

    if not is_lm_bundle(bundle_dir):
        from neurodeploy.bundle import load_bundle
        from neurodeploy.model.registry import get_family

        event_bundle = load_bundle(bundle_dir)  # not a bundle at all: its own error, naming the manifest
        family = get_family("mamba-spike")
        capability = family.capabilities(event_bundle.config)["generate"]
        if not capability.supported:
            raise UnsupportedCapabilityError(family.name, "generate", capability.reason)
    bundle = load_lm_bundle(bundle_dir)
    _require(bundle, "generate")
    options = SamplingOptions(greedy=not sampling, temperature=temperature, top_k=top_k, seed=seed)
    result = generate(bundle.token_runtime(runtime), read_token_ids(prompt_source), max_new_tokens, options,
                      stop_token=stop_token)
    if as_json:
        echo_json({"runtime": runtime, **result.to_dict()})
        return
    click.echo(" ".join(str(t) for t in result.generated))
    total = sum(sum(s.values()) for s in result.spikes_per_token)
    click.echo(f"({len(result.generated)} tokens on {runtime}; {total / max(len(result.spikes_per_token), 1):.1f} "
               "spikes per token)", err=True)


def checkpoint_family(checkpoint: str, family: str | None):
    """The family of a checkpoint file, from the registry (reads tensors, builds nothing)."""
    from neurodeploy.model.checkpoint_io import read_checkpoint
    from neurodeploy.model.registry import detect_family, get_family

    return get_family(family) if family else detect_family(read_checkpoint(checkpoint))


def is_other_family(path: str | Path, family: str | None) -> bool:
    """True when the CLI should take the registry path (not Mamba-Spike's own)."""
    if family is not None:
        return family != "mamba-spike"
    try:
        return checkpoint_family(str(path), None).name != "mamba-spike"
    except NeurodeployError:
        return False  # Mamba-Spike's loader says what is wrong, as before


def info_other(checkpoint: str, config_path: str | None, family: str | None, as_json: bool) -> None:
    from neurodeploy.model.registry import load_model

    payload = describe_loaded(load_model(checkpoint, config_path, family=family), checkpoint)
    if as_json:
        echo_json(payload)
    else:
        print_info(payload)


def export_other(checkpoint: str, config_path: str | None, family: str | None, out_dir: str, artifacts: str,
                 as_json: bool) -> None:
    from neurodeploy.model.registry import load_model

    if explicit_option("sign_key"):
        raise NeurodeployError("--sign: token-model bundles are not signed yet (the manifest lists every sha256; "
                               "`run --trust` is for event-model bundles). Remove --sign")
    explicit = explicit_option("artifacts")
    export_loaded(load_model(checkpoint, config_path, family=family), checkpoint, out_dir, artifacts, explicit, as_json)


def explicit_option(name: str) -> bool:
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) == ParameterSource.COMMANDLINE


def verify_tokens(bundle_dir: str, source: str | None, steps: int) -> dict:
    from neurodeploy.lm_bundle import load_lm_bundle
    from neurodeploy.lm_verification import verify_lm_bundle

    return verify_lm_bundle(load_lm_bundle(bundle_dir), source, length=steps)


def bench_tokens(bundle_dir: str, steps: int) -> dict:
    from neurodeploy.lm_bundle import load_lm_bundle
    from neurodeploy.lm_verification import bench_lm_bundle

    return bench_lm_bundle(load_lm_bundle(bundle_dir), tokens=steps)


def describe_bundle(bundle_dir: str) -> dict:
    from neurodeploy.lm_bundle import load_lm_bundle

    m = load_lm_bundle(bundle_dir).manifest
    return {"kind": "lm bundle", "path": bundle_dir, "family": m["family"], "format": m["format"],
            "source": m["source_checkpoint"], "config": m["config"], "artifacts": m["artifacts"],
            "skipped": m["skipped"], "parity": m["parity"], "notes": m["notes"]}
