"""The `neurodeploy` command line.

Exit codes: 0 success; 1 an error with a message (bad input, a refused bundle, a path that does
not exist or is the wrong kind); 2 wrong usage (click: an unknown option, a malformed value);
3 `verify` found runtimes that disagree beyond their tolerance.

Errors are handled in one place, `_Cli.invoke`: a `NeurodeployError` (every error the toolkit
raises on purpose) becomes exit code 1 and its message on stderr, or the JSON object
`{"error": message, "type": class name}` on stdout under `--json`; anything else is a bug,
reported as its message plus where to report it, exit code 1. `neurodeploy --debug ...` shows
the full traceback instead.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click

from neurodeploy import __version__
from neurodeploy.errors import NeurodeployError

EXIT_PARITY = 3
EXIT_ERROR = 1
REPORT_BUGS_AT = "the neurodeploy issue tracker (include the command, `neurodeploy --version` and this message)"
_JSON = "neurodeploy.json"  # ctx.meta keys, shared by the group's context and the command's
_DEBUG = "neurodeploy.debug"


def _remember_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    # eager: noted before the other parameters are checked, so their errors come out as JSON too
    ctx.meta[_JSON] = bool(value)
    return value


def json_option(help: str = "Machine-readable output.") -> Any:
    """The `--json` flag of a command; the error handler answers in JSON when it is given."""
    return click.option("--json", "as_json", is_flag=True, is_eager=True, expose_value=True,
                        callback=_remember_json, help=help)


class _Cli(click.Group):
    """The group that turns every error of a command into one message and exit code 1 (module docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.BadParameter as err:
            if not isinstance(err.param.type if err.param else None, click.Path):
                raise  # wrong usage: click's own message and exit code 2
            self._exit(ctx, err.format_message(), "PathError")
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except NeurodeployError as err:
            if ctx.meta.get(_DEBUG):
                raise
            self._exit(ctx, str(err), type(err).__name__)
        except Exception as err:  # noqa: BLE001  (a bug: said as such, with the traceback under --debug)
            if ctx.meta.get(_DEBUG):
                raise
            self._exit(ctx, f"{type(err).__name__}: {err}\nthis is a bug, please report it at {REPORT_BUGS_AT} "
                       "(run with `neurodeploy --debug ...` for the traceback)", "InternalError")

    @staticmethod
    def _exit(ctx: click.Context, message: str, kind: str) -> None:
        if ctx.meta.get(_JSON):
            click.echo(json.dumps({"error": message, "type": kind}))
        else:
            click.echo(f"Error: {message}", err=True)
        ctx.exit(EXIT_ERROR)


def _echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


def _sensor_size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r}; expected WIDTHxHEIGHT, e.g. 34x34") from None
    return width, height


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neurodeploy")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Deploy Mamba-Spike models: spiking front-end to NIR / Lava, SSM backbone to ONNX,
    streaming inference on DVS events, and spike / energy reports.

    \b
    Examples:
      neurodeploy export checkpoint_best.pth -o bundle/ --pool-rewrite sum
      neurodeploy run bundle/ recording.aedat4 --frontend nir --backbone onnxruntime
      neurodeploy run bundle/ tcp://127.0.0.1:7777
      neurodeploy verify bundle/ recording.raw
      neurodeploy inspect bundle/
    """
    ctx.meta[_DEBUG] = debug


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="JSON model config, for a bare state_dict file.")
@json_option("Machine-readable output.")
def info(checkpoint: str, config_path: str | None, as_json: bool) -> None:
    """Load CHECKPOINT (own, reference v1/v2 or bare state_dict) and describe the model."""
    from neurodeploy.model.mamba_spike.checkpoint import load_checkpoint

    model, config = load_checkpoint(checkpoint, config=config_path)
    n_params = sum(p.numel() for p in model.parameters())
    payload = {"checkpoint": checkpoint, "config": dataclasses.asdict(config), "parameters": n_params}
    if as_json:
        _echo_json(payload)
    else:
        click.echo(f"{checkpoint}: {n_params:,} parameters")
        for key, value in payload["config"].items():
            click.echo(f"  {key}: {value}")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="JSON model config, for a bare state_dict file.")
@click.option("--dt-us", type=int, default=None, show_default="the checkpoint's dt_us, else 1000",
              help="Time-bin width the model runs at, in microseconds.")
@click.option("--pool-rewrite", type=click.Choice(["avg", "sum"]), default=None,
              help="Replace max pooling (an approximation; its measured effect is reported).")
@click.option("--artifacts", default="nir,netx,onnx", show_default=True,
              help="Comma-separated subset of nir, netx, onnx.")
@click.option("--netx-weight-scale", type=float, default=None, help="Fixed weight scale for netx quantization.")
@json_option("Print the manifest as JSON.")
def export(checkpoint: str, out_dir: str, config_path: str | None, dt_us: int | None, pool_rewrite: str | None,
           artifacts: str, netx_weight_scale: float | None, as_json: bool) -> None:
    """Export CHECKPOINT to a deployment bundle folder.

    \b
    Examples:
      neurodeploy export model.safetensors -o bundle/
      neurodeploy export outputs/nmnist_x/checkpoint_best.pth -o bundle/ --pool-rewrite sum --dt-us 1000
      neurodeploy export weights.pt --config config.json -o bundle/ --artifacts nir,onnx
    """
    from neurodeploy import bundle as bundle_mod
    from neurodeploy.model.mamba_spike.checkpoint import checkpoint_metadata

    if dt_us is None:
        saved = checkpoint_metadata(checkpoint).get("dt_us") if checkpoint.endswith(".safetensors") else None
        dt_us = int(saved) if saved else 1000
    console = _stderr_console()
    options = bundle_mod.ExportOptions(
        dt_us=dt_us, artifacts=tuple(a.strip() for a in artifacts.split(",") if a.strip()),
        pool_rewrite=pool_rewrite, netx_weight_scale=netx_weight_scale,
    )
    with console.status("exporting") as status:
        result = bundle_mod.export(checkpoint, out_dir, options, config=config_path,
                                   progress=lambda message: status.update(message))
    manifest = result.manifest
    if as_json:
        _echo_json(manifest)
        return
    click.echo(f"bundle written to {out_dir} (dt {dt_us} us)")
    for name, entry in manifest["artifacts"].items():
        click.echo(f"  {name:22s} {entry['bytes']:>10,d} bytes  sha256 {entry['sha256'][:12]}")
    for name, reason in manifest["skipped"].items():
        click.echo(f"  {name:22s} NOT MADE: {reason}")
    for key, value in manifest["parity"].items():
        click.echo(f"  parity {key}: {value}")
    if manifest.get("pool_rewrite"):
        click.echo(f"  APPROXIMATION: {manifest['pool_rewrite']['summary']}")


_stream_options = [
    click.option("--frontend", type=click.Choice(["torch", "nir", "lava"]), default="nir", show_default=True),
    click.option("--backbone", type=click.Choice(["onnxruntime", "torch"]), default="onnxruntime", show_default=True),
    click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="CSV t_start_us,t_end_us,label delimiting samples (default: SOURCE.labels.csv if present)."),
    click.option("--window-us", type=int, default=None, help="Delimit samples by fixed time windows instead."),
    click.option("--follow", is_flag=True, help="SOURCE is a file still being written."),
    click.option("--realtime", is_flag=True, help="Replay a file at its recorded pace."),
    click.option("--replay-factor", type=float, default=1.0, show_default=True, help="With --realtime: speed-up."),
    click.option("--overflow", type=click.Choice(["block", "drop_oldest"]), default="block", show_default=True,
                 help="Live sources: what to do when the pipeline falls behind."),
    click.option("--queue", "queue_packets", type=int, default=64, show_default=True, help="Live-source queue bound."),
    click.option("--sensor-size", default=None, help="WIDTHxHEIGHT, for sources without a header (UDP, CSV)."),
    click.option("--format", "event_format", default=None, help="Event file format, when detection cannot tell."),
    click.option("--idle-timeout", type=float, default=2.0, show_default=True,
                 help="Followed files / UDP: end after this many seconds without data."),
]


def _with_stream_options(fn):
    for option in reversed(_stream_options):
        fn = option(fn)
    return fn


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.argument("source")
@_with_stream_options
@json_option("Per-sample results and the summary as JSON.")
def run(bundle_dir: str, source: str, frontend: str, backbone: str, labels: str | None, window_us: int | None,
        follow: bool, realtime: bool, replay_factor: float, overflow: str, queue_packets: int,
        sensor_size: str | None, event_format: str | None, idle_timeout: float, as_json: bool) -> None:
    """Stream SOURCE through a BUNDLE one time step at a time.

    SOURCE is an event file, `-` (CSV on stdin), tcp://HOST:PORT or unix:///PATH (DV network
    stream), or udp://HOST:PORT (faery datagrams).

    \b
    Examples:
      neurodeploy run bundle/ rec.npz                       # labels from rec.npz.labels.csv
      neurodeploy run bundle/ rec.raw --window-us 300000 --frontend torch --backbone torch
      neurodeploy run bundle/ tcp://127.0.0.1:7777 --overflow drop_oldest
      cat events.csv | neurodeploy run bundle/ - --sensor-size 34x34
    """
    from neurodeploy.stream import stream as open_stream

    results = []
    console = _stderr_console()
    with open_stream(bundle_dir, source, frontend=frontend, backbone=backbone, sensor_size=_sensor_size(sensor_size),
                     follow=follow, format=event_format, idle_timeout_s=idle_timeout, labels=labels,
                     window_us=window_us, realtime=realtime, replay_factor=replay_factor, overflow=overflow,
                     queue_packets=queue_packets) as stream:
        for result in stream:
            results.append(result)
            if not as_json:
                mark = "" if result.label is None else ("  ok" if result.correct else f"  WRONG (label {result.label})")
                click.echo(f"sample {result.index:3d}  [{result.t_start_us / 1e6:8.3f}s, {result.t_end_us / 1e6:8.3f}s)  "
                           f"pred {result.prediction:2d}  p={max(result.scores):.2f}  steps {result.n_steps:4d}  "
                           f"spikes {sum(result.spikes_per_layer.values()):8d}{mark}")
            else:
                console.print(f"sample {result.index} done", end="\r")
    label_path = stream.labels_path
    summary = stream.summary()
    summary.update(frontend=frontend, backbone=backbone, labels=str(label_path) if label_path else None)
    if as_json:
        _echo_json({"summary": summary, "samples": [r.to_dict() for r in results]})
        return
    lat = summary["step_latency_us"]
    acc = summary["accuracy"]
    click.echo(f"{summary['samples']} samples, {summary['steps']} steps of {summary['dt_us']} us"
               + (f", accuracy {acc:.1%}" if acc is not None else ""))
    if lat["p50"] is not None:
        click.echo(f"per-step latency p50 {lat['p50']:.0f} us, p95 {lat['p95']:.0f} us, p99 {lat['p99']:.0f} us; "
                   f"real-time factor {summary['real_time_factor']:.1f}x")
    click.echo(f"events {summary['events_received']:,} in {summary['packets_received']} packets; dropped "
               f"{summary['packets_dropped']} packets ({summary['events_dropped']} events); outside samples "
               f"{summary['events_outside_samples']}")


@main.command()
@click.argument("path", type=click.Path(exists=True))
@json_option()
def inspect(path: str, as_json: bool) -> None:
    """Describe a bundle folder, a NIR file, an ONNX file, a checkpoint or an event file.

    \b
    Examples:
      neurodeploy inspect bundle/
      neurodeploy inspect bundle/backbone_step.onnx
      neurodeploy inspect recording.aedat4
    """
    from neurodeploy.inspection import describe

    payload = describe(Path(path))
    if as_json:
        _echo_json(payload)
        return
    _print_tree(payload)


@main.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--target", "targets", multiple=True, help="Check only this target (repeatable): loihi, loihi2, speck, "
              "xylo, spinnaker2, host. Default: all.")
@click.option("--limits", "limits_file", type=click.Path(exists=True, dir_okay=False),
              help="Your own limits file (the format of neurodeploy/hardware/limits.json).")
@click.option("--sanafe", "sanafe", is_flag=True, help="Also run the front-end on SANA-FE's calibrated Loihi model "
              "(optional extra `pip install neurodeploy[sanafe]`, GPL-3.0, run in its own process): energy and latency "
              "per step, spikes checked against the Loihi-timing model.")
@click.option("--sanafe-steps", default=10, show_default=True, help="Time steps of the SANA-FE run.")
@json_option()
def targets(path: str, targets: tuple[str, ...], limits_file: str | None, sanafe: bool, sanafe_steps: int,
            as_json: bool) -> None:
    """Which chips the spiking front-end of PATH (a bundle or a .nir file) fits, layer by layer.

    For each target: fits or not, per layer, with the reason (neuron model, pooling, kernel,
    stride, channels, neuron / synapse / kernel memory against the chip's published limits,
    weight precision, input encoding) and what to change. For integrate-and-fire front-ends
    the Speck 8-bit software model runs (sinabs) and reports spike agreement per layer.

    \b
    Examples:
      neurodeploy targets bundle/
      neurodeploy targets bundle/ --target speck --json
    """
    from neurodeploy.targets import targets_report

    payload = targets_report(path, targets, limits_file=limits_file, sanafe=sanafe, sanafe_steps=sanafe_steps)
    if as_json:
        _echo_json(payload)
        return
    click.echo(f"{path}: limits table {payload['limits_version']}")
    for verdict in payload["targets"]:
        cores = verdict["figures"].get("cores_used")
        where = f" on {cores} of {verdict['figures']['cores']} cores" if cores is not None and "cores" in verdict["figures"] else ""
        word = ("fits" + where) if verdict["fits"] else (
            f"does not fit as is (geometry and memory fit{where}; change what is listed)" if verdict["memory_fits"] else "does not fit")
        click.echo(f"\n{verdict['name']} [{verdict['target']}]: {word}  ({verdict['path']})")
        for reason in verdict["reasons"]:
            click.echo(f"  - {reason}")
        for layer in verdict["layers"]:
            click.echo(f"  {layer['layer']}: {'ok' if layer['fits'] else 'no'}")
            for reason in layer["reasons"]:
                click.echo(f"    - {reason}")
            for note in layer["notes"]:
                click.echo(f"    . {note}")
        for change in verdict["changes"]:
            click.echo(f"  to fit: {change}")
    speck = payload.get("speck_software")
    if speck:
        if not speck["ran"]:
            click.echo(f"\nSpeck software model: not run: {speck['reason']}")
        else:
            click.echo(f"\nSpeck software model (sinabs, 8-bit) on {speck['data']}: spike agreement with the float front-end")
            for a in speck["layers"]:
                loud = "  SILENT" if a["silent"] else ""
                click.echo(f"  {a['layer']}: float {a['float_agreement']:.2%}, 8-bit {a['quantised_agreement']:.2%} "
                           f"(spikes {a['reference_spikes']:,} -> {a['quantised_spikes']:,}, floor {a['membrane_floor']:.3g}){loud}")
    calibrated = payload.get("loihi_sanafe")
    if calibrated:
        if not calibrated["ran"]:
            click.echo(f"\nLoihi on SANA-FE: not run: {calibrated['reason']}")
        else:
            agree = ", ".join(f"{k} {v:.2%}" for k, v in calibrated["spike_agreement_with_loihi_timing_model"].items())
            click.echo(f"\nLoihi on SANA-FE (calibrated simulation) on {calibrated['data']}:")
            click.echo(f"  energy {calibrated['energy_j_per_step'] * 1e6:.3g} uJ per step (+-{calibrated['energy_error']:.0%}), "
                       f"latency {calibrated['latency_s_per_step'] * 1e6:.3g} us per step (+-{calibrated['latency_error']:.0%})")
            click.echo(f"  spikes vs the Loihi-timing model: {agree}; {calibrated['synapses']:,} synapses on "
                       f"{calibrated['cores_used']} cores")


def _print_tree(payload: dict, indent: int = 0) -> None:
    for key, value in payload.items():
        if isinstance(value, dict):
            click.echo(" " * indent + f"{key}:")
            _print_tree(value, indent + 2)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            click.echo(" " * indent + f"{key}:")
            for item in value:
                click.echo(" " * (indent + 2) + ", ".join(f"{k}={v}" for k, v in item.items()))
        else:
            click.echo(" " * indent + f"{key}: {value}")


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.argument("events", required=False)
@click.option("--samples", type=click.IntRange(min=1), default=2, show_default=True,
              help="Synthetic samples when no EVENTS given.")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Time steps per sample checked.")
@click.option("--lava/--no-lava", default=False, show_default=True, help="Include the Lava runtime (slow).")
@json_option()
def verify(bundle_dir: str, events: str | None, samples: int, steps: int, lava: bool, as_json: bool) -> None:
    """Run every runtime of BUNDLE on the same events and report parity per layer.

    Exit code 3 when a runtime disagrees with the PyTorch reference beyond its tolerance.

    \b
    Examples:
      neurodeploy verify bundle/
      neurodeploy verify bundle/ recording.aedat4 --steps 100 --lava
    """
    from neurodeploy.bundle import load_bundle
    from neurodeploy.verification import verify_bundle

    bundle = load_bundle(bundle_dir)
    outcome = verify_bundle(bundle, events, samples=samples, steps=steps, include_lava=lava)
    if as_json:
        _echo_json(outcome)
    else:
        _print_tree(outcome)
    if not outcome["passed"]:
        sys.exit(EXIT_PARITY)


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True, help="Steps timed at batch 1.")
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Batch for the throughput figure.")
@click.option("--frontend", type=click.Choice(["torch", "nir"]), default="torch", show_default=True)
@json_option()
def bench(bundle_dir: str, steps: int, batch: int, frontend: str, as_json: bool) -> None:
    """Latency (batch 1, per step) and throughput (batch offline) of a BUNDLE's runtimes.

    \b
    Example:
      neurodeploy bench bundle/ --steps 1000
    """
    from neurodeploy.bundle import load_bundle
    from neurodeploy.verification import bench_bundle

    outcome = bench_bundle(load_bundle(bundle_dir), steps=steps, batch=batch, frontend=frontend)
    if as_json:
        _echo_json(outcome)
    else:
        _print_tree(outcome)


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.argument("events", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", "targets", multiple=True, default=("loihi",), show_default=True,
              help="Neuromorphic target for the front-end; repeat to compare several.")
@click.option("--compare-all", is_flag=True, help="Compare every neuromorphic target of the device table.")
@click.option("--host", default="cpu", show_default=True, help="Host device that runs the backbone.")
@click.option("--devices", "devices_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Your own device table (JSON, every constant with a source), added to the built-in one.")
@click.option("--frontend", type=click.Choice(["torch", "nir"]), default="torch", show_default=True,
              help="Runtime whose spikes are counted.")
@click.option("--window-us", type=int, default=None, help="Cut EVENTS into samples of this length.")
@click.option("--max-samples", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default="report", show_default=True)
@json_option("Print the report as JSON instead of Markdown.")
def report(bundle_dir: str, events: str, targets: tuple[str, ...], compare_all: bool, host: str,
           devices_file: str | None, frontend: str, window_us: int | None, max_samples: int, out_dir: str,
           as_json: bool) -> None:
    """Spike counts, synaptic operations and estimated energy per sample on hardware targets.

    Writes JSON, CSV, Markdown and an HTML report with plots to --output. Energies are
    estimates from a cited per-operation table (see the report's sources).

    \b
    Examples:
      neurodeploy report bundle/ rec.npz --target loihi --host cpu
      neurodeploy report bundle/ rec.npz --compare-all --host arm -o out/
    """
    from neurodeploy.bundle import load_bundle
    from neurodeploy.report import build_report, load_devices, write_report
    from neurodeploy.report.from_events import frames_of_samples, record_frontend_run

    bundle = load_bundle(bundle_dir)
    if compare_all:
        table = load_devices(devices_file)
        targets = tuple(sorted(k for k, d in table.devices.items() if d.kind == "neuromorphic"))
    frames, description = frames_of_samples(bundle, events, window_us=window_us, max_samples=max_samples)
    record = record_frontend_run(bundle.frontend_runtime(frontend), frames, dt_s=bundle.dt_us / 1e6, name=frontend)
    result = build_report(bundle.model(), record, targets=targets, host=host, devices_file=devices_file,
                          dt_s=bundle.dt_us / 1e6)
    paths = write_report(result, out_dir)
    if as_json:
        _echo_json({"inputs": description, "report": result.to_dict(), "files": {k: str(v) for k, v in paths.items()}})
        return
    click.echo(f"inputs: {description}")
    click.echo(result.to_markdown())
    click.echo("written: " + ", ".join(str(p) for p in paths.values()))


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the bundle and the report (default: a temporary folder).")
@click.option("--lava", is_flag=True, help="Also run the front-end on Lava (bit-accurate Loihi simulation; slow).")
@click.option("--live", is_flag=True, help="Replay the recording in real time as a live source.")
@click.option("--frontend", type=click.Choice(["torch", "nir", "lava"]), default="nir", show_default=True)
@json_option()
def demo(out_dir: str | None, lava: bool, live: bool, frontend: str, as_json: bool) -> None:
    """Export the shipped model, stream the shipped recording through it, and write the energy report.

    Uses neurodeploy/assets: a small deployable Mamba-Spike trained on synthetic N-MNIST-like
    events and a 10-sample labelled recording. Nothing is downloaded.

    \b
    Examples:
      neurodeploy demo
      neurodeploy demo --out demo/ --lava
      neurodeploy demo --live
    """
    import tempfile

    from neurodeploy.demo import run_demo

    if lava:
        frontend = "lava"
    holder = tempfile.TemporaryDirectory(prefix="neurodeploy-demo-") if out_dir is None else None
    try:
        outcome = run_demo(Path(out_dir or holder.name), frontend=frontend, live=live,
                           echo=None if as_json else click.echo)
    finally:
        if holder is not None and as_json:
            holder.cleanup()
    if as_json:
        _echo_json(outcome)
    elif holder is not None:
        click.echo(f"(temporary folder {holder.name} is removed on exit; pass --out DIR to keep it)")
        holder.cleanup()


@main.command()
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default="mamba_spike_synthetic.safetensors",
              show_default=True)
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--n-train", type=int, default=1200, show_default=True)
@click.option("--n-test", type=int, default=500, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Fine-tune from a checkpoint (reference v1/v2 included), rebuilt with deployable settings.")
def train(out_path: str, epochs: int, n_train: int, n_test: int, seed: int, init_from: str | None) -> None:
    """Train a deployable Mamba-Spike on synthetic N-MNIST-like events (examples/train_synthetic.py has more options).

    \b
    Example:
      neurodeploy train --out model.safetensors && neurodeploy export model.safetensors -o bundle/
    """
    from neurodeploy.train import TrainConfig, save_trained
    from neurodeploy.train import train as run_training

    config = TrainConfig(epochs=epochs, n_train=n_train, n_test=n_test, seed=seed, init_from=init_from)
    result = run_training(config)
    save_trained(result, out_path, command="neurodeploy train " + " ".join(sys.argv[2:]))
    click.echo(f"test accuracy {result.metrics['test_accuracy']:.1%}; written {out_path}")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("images", type=click.Path(exists=True))
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON config for what the weights cannot tell (img_size, stride, divide_out, ...).")
@click.option("--family", default=None, help="Model family, when the weights alone do not tell (e.g. vision-mamba).")
@click.option("--onnx", "onnx_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Run this exported graph in onnxruntime instead of the PyTorch model.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Integer labels (.npy) for a .npy batch; class folders label themselves.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@json_option("Per-image results and the summary as JSON.")
def classify(checkpoint: str, images: str, config_path: str | None, family: str | None, onnx_path: str | None,
             labels: str | None, batch_size: int, as_json: bool) -> None:
    """Classify an image folder or a .npy batch with an image model (Vision Mamba); with labels, the accuracy.

    \b
    Examples:
      neurodeploy classify vim_checkpoint.pth val_images/            # val_images/<class>/<image>
      neurodeploy classify vim.pth batch.npy --labels labels.npy --onnx vim.onnx
    """
    from neurodeploy.image_classification import classify_images
    from neurodeploy.model.registry import load_model

    loaded = load_model(checkpoint, config_path, family=family)
    result = classify_images(loaded, images, runtime="onnx" if onnx_path else "torch", onnx_path=onnx_path,
                             labels=labels, batch_size=batch_size)
    payload = result.to_dict()
    if as_json:
        _echo_json({**payload, "notes": list(loaded.notes)})
        return
    for note in loaded.notes:
        click.echo(f"note: {note}", err=True)
    for row in payload["images"]:
        label = f"  label {row['label']}" if "label" in row else ""
        click.echo(f"{row['image']}: class {row['prediction']}{label}")
    summary = payload["summary"]
    if "top1" in summary:
        click.echo(f"top-1 {summary['top1']:.1%}, top-5 {summary['top5']:.1%} over {summary['images']} images ({summary['runtime']})")
