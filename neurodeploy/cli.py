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
from neurodeploy.cli_output import echo_artifacts, echo_json
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


def _sensor_size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r}; expected WIDTHxHEIGHT, e.g. 34x34") from None
    return width, height


def _stderr_console(quiet: bool = False):
    """Progress and notes on stderr; silent under --json (`quiet`) and, by rich, when not a terminal."""
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


# -- event input, on every command that reads events: how to read the file, how to fit the sensor --
_reading_options = [
    click.option("--sensor-size", default=None, metavar="WxH",
                 help="Sensor size, for sources without a header (UDP, CSV) or to override the header."),
    click.option("--format", "event_format", default=None, help="Event file format, when detection cannot tell."),
    click.option("--truncated", type=click.Choice(["error", "count"]), default=None,
                 help="A partial record at the end: refuse (files' default) or count and go on "
                      "(followed files' and stdin's default)."),
    click.option("--out-of-bounds", type=click.Choice(["error", "drop"]), default="error", show_default=True,
                 help="Events outside the sensor: refuse, or drop and count them."),
    click.option("--non-monotonic", type=click.Choice(["error", "keep", "sort"]), default="error", show_default=True,
                 help="Timestamps going backwards: refuse, keep or sort (counted)."),
    click.option("--layout", type=click.Choice(["dvs128", "davis"]), default=None,
                 help="AEDAT 2.0 address layout, when the file's header names no known chip."),
    click.option("--event-stream", default=None,
                 help="AEDAT4: the name of the event stream to read (default: events)."),
]
_transform_options = [
    click.option("--crop", default=None, metavar="X,Y,W,H", help="Keep this box of the sensor (tonic crop)."),
    click.option("--center-crop", default=None, metavar="WxH", help="Keep the centred WxH window (tonic CenterCrop)."),
    click.option("--downsample", default=None, metavar="F|WxH",
                 help="Scale coordinates by F or to WxH (tonic Downsample: x' = floor(x*f); events of merged "
                      "pixels add up)."),
    click.option("--flip-x", is_flag=True, help="Mirror left-right."),
    click.option("--flip-y", is_flag=True, help="Mirror up-down."),
    click.option("--merge-polarity", is_flag=True, help="Make every event OFF (tonic MergePolarities)."),
    click.option("--denoise-us", type=int, default=None, metavar="US",
                 help="Drop events without a neighbour event within US microseconds (tonic Denoise)."),
]
TRANSFORM_FLAGS = ("crop", "center_crop", "downsample", "flip_x", "flip_y", "merge_polarity", "denoise_us")
READING_FLAGS = ("sensor_size", "event_format", "truncated", "out_of_bounds", "non_monotonic", "layout", "event_stream")


def with_event_input(fn, *, transforms: bool = True):
    """Add the reading options (and the transform options) to a command; they arrive as keyword
    arguments that `transforms_from_cli` and `reading_from_cli` take apart (the `eval` command uses these too)."""
    for option in reversed(_reading_options + (_transform_options if transforms else [])):
        fn = option(fn)
    return fn


def with_transforms(fn):
    """Add only the transform options (export records them in the bundle)."""
    for option in reversed(_transform_options):
        fn = option(fn)
    return fn


def transforms_from_cli(params: dict):
    """The `events.transforms.Transforms` chain the transform flags of a command ask for."""
    from neurodeploy.events.transforms import from_flags

    return from_flags(**{k: params[k] for k in TRANSFORM_FLAGS if k in params})


def reading_from_cli(params: dict) -> dict:
    """The reading keywords of `open_source` / `events.load` from the reading flags."""
    return {"sensor_size": _sensor_size(params.get("sensor_size")), "format": params.get("event_format"),
            "truncated": params.get("truncated"), "out_of_bounds": params.get("out_of_bounds", "error"),
            "non_monotonic": params.get("non_monotonic", "error"), "layout": params.get("layout"),
            "event_stream": params.get("event_stream")}


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
@click.option("--family", default=None, help="Model family, when detection cannot tell (e.g. spikemamba-lm).")
def info(checkpoint: str, config_path: str | None, as_json: bool, family: str | None) -> None:
    """Load CHECKPOINT (own, reference v1/v2 or bare state_dict) and describe the model."""
    from neurodeploy import cli_lm
    from neurodeploy.model.mamba_spike.checkpoint import load_checkpoint
    from neurodeploy.model.mamba_spike.provenance import checkpoint_facts

    if cli_lm.is_other_family(checkpoint, family):  # the registry's other families (SpikeMamba LM...)
        return cli_lm.info_other(checkpoint, config_path, family, as_json)
    model, config = load_checkpoint(checkpoint, config=config_path)
    facts = checkpoint_facts(checkpoint)
    n_params = sum(p.numel() for p in model.parameters())
    payload = {"checkpoint": checkpoint, **facts, "config": dataclasses.asdict(config), "parameters": n_params}
    if as_json:
        echo_json(payload)
    else:
        accuracy = facts["recorded_accuracy"]
        click.echo(f"{checkpoint}: {facts['kind']}, {n_params:,} parameters")
        click.echo(f"  dt_us: {facts['dt_us'] if facts['dt_us'] else 'unknown'} ({facts['dt_source']})")
        click.echo(f"  recorded accuracy: {f'{accuracy:.1%}' if accuracy is not None else 'not recorded'}")
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
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Event file (labelled, or cut in --calibration-window-us windows) the parity figures and the "
                   "--pool-rewrite effect are measured on (read through the transform flags). Default: synthetic "
                   "samples, and the export says so.")
@click.option("--calibration-window-us", type=int, default=None, help="Cut --calibration into windows of this length.")
@click.option("--calibration-samples", type=int, default=8, show_default=True)
@click.option("--force", is_flag=True, help="Replace a non-empty output folder.")
@with_transforms
@json_option("Print the manifest as JSON.")
@click.option("--sign", "sign_key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="ed25519 private key (PEM): sign the manifest (manifest.json.sig), for `run --trust`.")
@click.option("--family", default=None, help="Model family, when detection cannot tell (e.g. spikemamba-lm).")
def export(checkpoint: str, out_dir: str, config_path: str | None, dt_us: int | None, pool_rewrite: str | None,
           artifacts: str, netx_weight_scale: float | None, calibration: str | None,
           calibration_window_us: int | None, calibration_samples: int, force: bool, as_json: bool,
           sign_key: str | None, family: str | None, **transform_flags: Any) -> None:
    """Export CHECKPOINT to a deployment bundle folder.

    \b
    Examples:
      neurodeploy export model.safetensors -o bundle/
      neurodeploy export outputs/nmnist_x/checkpoint_best.pth -o bundle/ --pool-rewrite sum --dt-us 1000
      neurodeploy export weights.pt --config config.json -o bundle/ --artifacts nir,onnx
      neurodeploy export model.safetensors -o bundle/ --downsample 34x34   # record the input transform

    Transform flags (--crop, --downsample, ...) record the input transform the model was trained
    with in the bundle; `run`, `verify` and `report` then apply it unless given others.
    """
    from neurodeploy import bundle as bundle_mod
    from neurodeploy import cli_families, cli_lm
    from neurodeploy.model.mamba_spike.provenance import checkpoint_facts

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise bundle_mod.BundleError(f"{out_dir}: exists and is not empty; pass --force to replace it, or choose "
                                     "another --output folder")
    if other := cli_families.checkpoint_family(checkpoint, family):  # liquid, vision-mamba: their own bundles
        return cli_families.export_checkpoint(checkpoint, config_path, other, out_dir, as_json)
    if cli_lm.is_other_family(checkpoint, family):  # token models: model.safetensors + full/step ONNX graphs
        return cli_lm.export_other(checkpoint, config_path, family, out_dir, artifacts, as_json)
    if dt_us is None:
        dt_us = checkpoint_facts(checkpoint)["dt_us"] or 1000
    transforms = transforms_from_cli(transform_flags)
    if not transforms:
        from neurodeploy.events.transforms import Transforms
        from neurodeploy.model.mamba_spike.checkpoint import checkpoint_metadata

        trained_with = (checkpoint_metadata(checkpoint).get("transforms")
                        if checkpoint.endswith(".safetensors") else None)
        if trained_with:
            transforms = Transforms.from_list(json.loads(trained_with))
            if not as_json:
                click.echo(f"input transforms: {transforms.describe()} (the checkpoint was trained with them; "
                           "recorded in the bundle)", err=True)
    options = bundle_mod.ExportOptions(
        dt_us=dt_us, artifacts=tuple(a.strip() for a in artifacts.split(",") if a.strip()),
        pool_rewrite=pool_rewrite, netx_weight_scale=netx_weight_scale, transforms=tuple(transforms.to_list()),
    )
    frames, described = None, None
    if calibration is not None:
        from neurodeploy.model.mamba_spike.checkpoint import load_checkpoint
        from neurodeploy.report.from_events import frames_of_file

        _, model_config = load_checkpoint(checkpoint, config=config_path)
        frames, described = frames_of_file(calibration, (model_config.input_width, model_config.input_height), dt_us,
                                           window_us=calibration_window_us, max_samples=calibration_samples,
                                           transforms=transforms)
        described = f"calibration file {described}"
    # one bar step per phase the export announces (rewrite, NIR with its parity, netx, ONNX with its parity)
    phases = int(pool_rewrite is not None) + len(set(options.artifacts) & {"nir", "netx", "onnx"})
    with _progress_bar(as_json) as bar:
        task = bar.add_task("loading the checkpoint", total=phases)

        def phase(message: str) -> None:
            if bar.tasks[0].description != "loading the checkpoint":
                bar.advance(task)
            bar.update(task, description=message)

        result = bundle_mod.export(checkpoint, out_dir, options, config=config_path, sample_frames=frames,
                                   sample_description=described, progress=phase, force=force)
    if sign_key is not None:
        from neurodeploy.bundle_signing import sign_manifest

        sign_manifest(result.directory / bundle_mod.MANIFEST, sign_key)
    manifest = result.manifest
    if as_json:
        echo_json(manifest)
        return
    click.echo(f"bundle written to {out_dir} (dt {dt_us} us)")
    echo_artifacts(manifest)
    for key, value in manifest["parity"].items():
        click.echo(f"  parity {key}: {value}")
    if manifest.get("pool_rewrite"):
        click.echo(f"  APPROXIMATION: {manifest['pool_rewrite']['summary']}")


_stream_options = [
    click.option("--frontend", type=click.Choice(["native", "torch", "nir", "lava"]), default=None,
                 show_default="native if the bundle has frontend.nir, else torch"),
    click.option("--backbone", type=click.Choice(["native", "onnxruntime", "torch"]), default=None,
                 show_default="native"),
    click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="CSV t_start_us,t_end_us,label delimiting samples (default: SOURCE.labels.csv if present)."),
    click.option("--window-us", type=int, default=None, help="Delimit samples by fixed time windows instead."),
    click.option("--follow", is_flag=True, help="SOURCE is a file still being written."),
    click.option("--realtime", is_flag=True, help="Replay a file at its recorded pace."),
    click.option("--replay-factor", type=float, default=1.0, show_default=True, help="With --realtime: speed-up."),
    click.option("--overflow", type=click.Choice(["block", "drop_oldest"]), default="block", show_default=True,
                 help="Live sources: what to do when the pipeline falls behind."),
    click.option("--queue", "queue_packets", type=int, default=64, show_default=True, help="Live-source queue bound."),
    click.option("--idle-timeout", type=float, default=2.0, show_default=True,
                 help="Followed files / UDP: end after this many seconds without data."),
]


def _with_stream_options(fn):
    for option in reversed(_stream_options):
        fn = option(fn)
    return with_event_input(fn)


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.argument("source")
@_with_stream_options
@json_option("Per-sample results and the summary as JSON.")
@click.option("--trust", "trust_key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="ed25519 public key (PEM): refuse the bundle unless its manifest is signed by it.")
def run(bundle_dir: str, source: str, frontend: str | None, backbone: str | None, labels: str | None,
        window_us: int | None, follow: bool, realtime: bool, replay_factor: float, overflow: str,
        queue_packets: int, idle_timeout: float, as_json: bool, trust_key: str | None, **event_input: Any) -> None:
    """Stream SOURCE through a BUNDLE one time step at a time.

    SOURCE is an event file, `-` (CSV on stdin), tcp://HOST:PORT or unix:///PATH (DV network
    stream), or udp://HOST:PORT (faery datagrams). Ctrl-C stops and still prints the summary.

    \b
    Examples:
      neurodeploy run bundle/ rec.npz                       # labels from rec.npz.labels.csv
      neurodeploy run bundle/ rec.raw --window-us 300000 --frontend torch --backbone torch
      neurodeploy run bundle/ tcp://127.0.0.1:7777 --overflow drop_oldest
      cat events.csv | neurodeploy run bundle/ - --sensor-size 34x34
      neurodeploy run bundle/ davis346.aedat4 --downsample 34x34      # a real camera, scaled to the model
      neurodeploy run bundle/ tcp://127.0.0.1:7777 --crop 156,113,34,34 --denoise-us 10000
    """
    from neurodeploy import cli_families, cli_lm
    from neurodeploy.lm_bundle import is_lm_bundle
    from neurodeploy.stream import stream as open_stream

    if is_lm_bundle(bundle_dir):  # a token model: SOURCE is token ids (file or -), --backbone picks the runtime
        return cli_lm.run_tokens(bundle_dir, source, backbone or "native", as_json)
    if cli_families.bundle_family(bundle_dir):  # liquid: token ids streamed; vision-mamba: images classified
        return cli_families.run_bundle(bundle_dir, source, backbone, labels, as_json)
    bundle = bundle_dir
    if trust_key is not None:
        from neurodeploy.bundle import load_bundle

        bundle = load_bundle(bundle_dir, trusted_key=trust_key)  # refused here unless signed by the key
    console = _stderr_console(quiet=as_json)
    note = None if as_json else (lambda line: click.echo(line, err=True))
    interrupted = False
    with open_stream(bundle, source, frontend=frontend, backbone=backbone, follow=follow,
                     idle_timeout_s=idle_timeout, labels=labels, window_us=window_us, realtime=realtime,
                     replay_factor=replay_factor, overflow=overflow, queue_packets=queue_packets,
                     transforms=transforms_from_cli(event_input), say=note,
                     warn=lambda message: click.echo(f"WARNING: {message}", err=True),
                     **reading_from_cli(event_input)) as stream:
        try:
            for result in stream:
                if not as_json:
                    # times relative to the recording's first event (epoch-stamped cameras print readably)
                    t0 = stream.stats.first_t_us or 0
                    mark = ("" if result.label is None
                            else "  ok" if result.correct else f"  WRONG (label {result.label})")
                    click.echo(f"sample {result.index:3d}  [{(result.t_start_us - t0) / 1e6:8.3f}s, "
                               f"{(result.t_end_us - t0) / 1e6:8.3f}s)  pred {result.prediction:2d}  "
                               f"p={max(result.scores):.2f}  steps {result.n_steps:4d}  "
                               f"spikes {sum(result.spikes_per_layer.values()):8d}{mark}")
                else:
                    console.print(f"sample {result.index} done", end="\r")
        except KeyboardInterrupt:  # Ctrl-C: stop reading, still report what was done
            interrupted = True
    label_path = stream.labels_path
    frontend, backbone = stream.runtimes
    summary = stream.summary()
    summary.update(frontend=frontend, backbone=backbone, labels=str(label_path) if label_path else None,
                   interrupted=interrupted)
    if as_json:
        echo_json({"summary": summary, "samples": [r.to_dict() for r in stream.results]})
        return
    _print_run_summary(summary)


def _print_run_summary(summary: dict) -> None:
    from neurodeploy.realtime import describe

    lat = summary["step_latency_us"]
    acc = summary["accuracy"]
    click.echo(f"{summary['samples']} samples, {summary['steps']} steps of {summary['dt_us']} us"
               + (f", accuracy {acc:.1%}" if acc is not None else ""))
    if lat["p50"] is not None:
        click.echo(f"per-step latency p50 {lat['p50']:.0f} us, p95 {lat['p95']:.0f} us, p99 {lat['p99']:.0f} us; "
                   f"{describe(summary['real_time_factor'])}")
    click.echo(f"events {summary['events_received']:,} in {summary['packets_received']} packets; dropped "
               f"{summary['packets_dropped']} packets ({summary['events_dropped']} events); outside samples "
               f"{summary['events_outside_samples']}")
    source_stats = summary["source"]
    click.echo(f"events lost on the way: {summary['events_lost']:,} (overflow drops {summary['events_dropped']:,}, "
               f"out of bounds {source_stats.get('out_of_bounds', 0):,}); transport: "
               f"{source_stats.get('packets_lost', 0)} packets, {source_stats.get('bytes_lost', 0)} bytes lost"
               + (f"; removed by the input transforms {summary['events_removed_by_transforms']:,}"
                  if summary["events_removed_by_transforms"] else ""))
    if summary["backlog_warnings"]:
        click.echo(f"the pipeline fell behind the live source: up to {summary['max_backlog_packets']} packets "
                   f"queued, {summary['max_lag_s']:.2f} s behind")
    if summary.get("interrupted"):
        click.echo("interrupted (Ctrl-C): the figures above cover the samples finished before it")
    if summary.get("time_jumps"):
        click.echo(f"{summary['time_jumps']} time jumps over the limit (largest {summary['largest_time_jump_us']} us): "
                   "the sample was closed at each")


@main.command()
@click.argument("path", type=click.Path(exists=True))
@with_event_input
@json_option()
def inspect(path: str, as_json: bool, **event_input: Any) -> None:
    """Describe a bundle folder, a NIR file, an ONNX file, a checkpoint or an event file.

    \b
    Examples:
      neurodeploy inspect bundle/
      neurodeploy inspect bundle/backbone_step.onnx
      neurodeploy inspect recording.aedat4
      neurodeploy inspect davis346.aedat4 --downsample 34x34     # what the model would see
    """
    from neurodeploy import cli_families, cli_lm
    from neurodeploy.inspection import describe
    from neurodeploy.lm_bundle import is_lm_bundle

    if is_lm_bundle(path):
        payload = cli_lm.describe_bundle(path)
    elif cli_families.bundle_family(path):  # liquid, vision-mamba: the manifest, after every hash is checked
        payload = cli_families.describe_bundle(path)
    else:
        payload = describe(Path(path), transforms=transforms_from_cli(event_input),
                           reading=reading_from_cli(event_input))
    if as_json:
        echo_json(payload)
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
        echo_json(payload)
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
    if payload.get("loihi_sanafe"):
        _print_calibrated(payload["loihi_sanafe"])


def _progress_bar(quiet: bool):
    """A rich progress bar on stderr; silent under --json (`quiet`) and when stderr is not a terminal."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=_stderr_console(quiet=quiet), transient=True)


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
@with_event_input
@json_option()
def verify(bundle_dir: str, events: str | None, samples: int, steps: int, lava: bool, as_json: bool,
           **event_input: Any) -> None:
    """Run every runtime of BUNDLE on the same events and report parity per layer.

    Exit code 3 when a runtime disagrees with the PyTorch reference beyond its tolerance.

    \b
    Examples:
      neurodeploy verify bundle/
      neurodeploy verify bundle/ recording.aedat4 --steps 100 --lava
    """
    from neurodeploy import cli_lm
    from neurodeploy.bundle import load_bundle
    from neurodeploy.lm_bundle import is_lm_bundle
    from neurodeploy.stream import input_transforms
    from neurodeploy.verification import verify_bundle, verify_work

    from neurodeploy.cli_families import refuse_bundle_command, verify_family_bundle

    refuse_bundle_command(bundle_dir, "verify")
    if (outcome := verify_family_bundle(bundle_dir, events)) is not None:  # liquid: EVENTS is token ids
        echo_json(outcome) if as_json else _print_tree(outcome)
        if not outcome["passed"]:
            sys.exit(EXIT_PARITY)
        return
    if is_lm_bundle(bundle_dir):  # a token model: EVENTS is a token-id file (default: seeded tokens), --steps tokens
        outcome = cli_lm.verify_tokens(bundle_dir, events, steps)
        echo_json(outcome) if as_json else _print_tree(outcome)
        if not outcome["passed"]:
            sys.exit(EXIT_PARITY)
        return
    bundle = load_bundle(bundle_dir)
    transforms = input_transforms(bundle, transforms_from_cli(event_input),
                                  None if as_json else lambda line: click.echo(line, err=True))
    with _progress_bar(as_json) as bar:
        task = bar.add_task("every runtime on the same inputs", total=verify_work(bundle, steps, lava))
        outcome = verify_bundle(bundle, events, samples=samples, steps=steps, include_lava=lava,
                                transforms=transforms, reading=reading_from_cli(event_input),
                                on_step=lambda: bar.advance(task))
    if as_json:
        echo_json(outcome)
    else:
        _print_tree({k: v for k, v in outcome.items() if k != "checked"})
        if not bundle.has("frontend_nir"):
            click.echo("front-end: not verified (no NIR in this bundle)")
        click.echo(f"checked: {', '.join(outcome['checked']) or 'nothing (the bundle holds only the PyTorch model)'}")
    if not outcome["passed"]:
        sys.exit(EXIT_PARITY)


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True, help="Steps timed at batch 1.")
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Batch for the throughput figure.")
@click.option("--frontend", type=click.Choice(["native", "torch", "nir"]), default=None,
              show_default="native if the bundle has frontend.nir, else torch")
@click.option("--backbone", type=click.Choice(["native", "onnxruntime", "torch"]), default="native", show_default=True)
@json_option()
def bench(bundle_dir: str, steps: int, batch: int, frontend: str, backbone: str, as_json: bool) -> None:
    """Latency (batch 1, per step) and throughput (batch offline) of a BUNDLE's runtimes.

    \b
    Example:
      neurodeploy bench bundle/ --steps 1000
    """
    from neurodeploy import cli_lm
    from neurodeploy.bundle import load_bundle
    from neurodeploy.lm_bundle import is_lm_bundle
    from neurodeploy.verification import bench_bundle, bench_work

    from neurodeploy.cli_families import refuse_bundle_command

    refuse_bundle_command(bundle_dir, "bench")
    if is_lm_bundle(bundle_dir):  # a token model: per-token latency at batch 1 over --steps tokens
        outcome = cli_lm.bench_tokens(bundle_dir, steps)
        return echo_json(outcome) if as_json else _print_tree(outcome)
    bundle = load_bundle(bundle_dir)
    frontend = frontend or ("native" if bundle.has("frontend_nir") else "torch")
    with _progress_bar(as_json) as bar:
        task = bar.add_task(f"timing {steps} steps at batch 1, then a batch of {batch}",
                            total=bench_work(bundle, steps, backbone))
        outcome = bench_bundle(bundle, steps=steps, batch=batch, frontend=frontend, backbone=backbone,
                               on_step=lambda: bar.advance(task))
    if as_json:
        echo_json(outcome)
    else:
        _print_tree(outcome)


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=click.Path(exists=True))
@click.argument("events", type=click.Path(exists=True))
@click.option("--target", "targets", multiple=True, default=("loihi",), show_default=True,
              help="Neuromorphic target for the front-end; repeat to compare several.")
@click.option("--compare-all", is_flag=True, help="Compare every neuromorphic target of the device table.")
@click.option("--host", default="cpu", show_default=True, help="Host device that runs the backbone.")
@click.option("--devices", "devices_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Your own device table (JSON, every constant with a source), added to the built-in one.")
@click.option("--frontend", type=click.Choice(["native", "torch", "nir"]), default=None,
              show_default="native if the bundle has frontend.nir, else torch",
              help="Runtime whose spikes are counted (all give the same counts; native is the fastest).")
@click.option("--window-us", type=int, default=None, help="Cut EVENTS into samples of this length.")
@click.option("--max-samples", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--sanafe", "sanafe", is_flag=True, help="Also run the first sample on SANA-FE's calibrated Loihi model "
              "(needs a netx front-end and the `sanafe` extra): energy and on-chip step time beside the per-op estimate.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default="report", show_default=True)
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="dask: the samples are sharded over a Dask cluster's workers (docs/scale_out.md).")
@click.option("--address", default=None, help="Dask scheduler address (tcp://HOST:8786); default: a local cluster.")
@click.option("--workers", type=int, default=2, show_default=True, help="Workers of the local cluster (no --address).")
@with_event_input
@json_option("Print the report as JSON instead of Markdown.")
def report(bundle_dir: str, events: str, targets: tuple[str, ...], compare_all: bool, host: str,
           devices_file: str | None, frontend: str, window_us: int | None, max_samples: int, sanafe: bool,
           out_dir: str, engine: str, address: str | None, workers: int, as_json: bool, **event_input: Any) -> None:
    """Spike counts, synaptic operations and estimated energy per sample on hardware targets.

    Writes JSON, CSV, Markdown and an HTML report with plots to --output. Energies are
    estimates from a cited per-operation table (see the report's sources).

    \b
    Examples:
      neurodeploy report bundle/ rec.npz --target loihi --host cpu
      neurodeploy report bundle/ rec.npz --compare-all --host arm -o out/
      neurodeploy report bundle/ rec.npz --engine dask --address tcp://10.0.0.1:8786
    """
    from neurodeploy import cli_families, cli_lm
    from neurodeploy.bundle import load_bundle
    from neurodeploy.lm_bundle import is_lm_bundle
    from neurodeploy.report import build_report, load_devices, write_report
    from neurodeploy.report.from_events import frames_of_samples, record_frontend_run

    if is_lm_bundle(bundle_dir):  # a token model: EVENTS is token ids; host devices are costed
        explicit = targets if cli_lm.explicit_option("targets") or compare_all else ()
        host_given = host if cli_lm.explicit_option("host") else None  # else every host device
        return cli_lm.report_tokens(bundle_dir, events, explicit, host_given, devices_file, out_dir, as_json)
    other = (cli_families.bundle_family(bundle_dir) if Path(bundle_dir).is_dir()
             else cli_families.checkpoint_family(bundle_dir, None))
    if other:  # liquid: EVENTS is token ids; vision-mamba: an image folder or .npy (a checkpoint works too)
        return cli_families.report_family(bundle_dir, other, events, targets if cli_lm.explicit_option("targets") else (),
                                          compare_all, host if cli_lm.explicit_option("host") else None,
                                          devices_file, out_dir, as_json)
    for path, wrong, what in ((bundle_dir, Path(bundle_dir).is_file(), "a file, not a bundle folder"),
                              (events, Path(events).is_dir(), "a folder, not an event file")):
        if wrong:  # a checkpoint / an image folder is taken only for the liquid and vision-mamba families
            raise NeurodeployError(f"{path}: {what} (a checkpoint or an image folder only for liquid and vision-mamba)")
    bundle = load_bundle(bundle_dir)
    frontend = frontend or ("native" if bundle.has("frontend_nir") else "torch")
    if compare_all:
        table = load_devices(devices_file)
        targets = tuple(sorted(k for k, d in table.devices.items() if d.kind == "neuromorphic"))
    from neurodeploy.stream import input_transforms

    transforms = input_transforms(bundle, transforms_from_cli(event_input))
    frames, description = frames_of_samples(bundle, events, window_us=window_us, max_samples=max_samples,
                                            transforms=transforms, reading=reading_from_cli(event_input))
    with _progress_bar(as_json) as bar:
        if engine == "dask":
            from neurodeploy.report_share import record_on_dask

            task = bar.add_task(f"{frontend} front-end on Dask, samples done", total=frames.shape[0])
            record, _ = record_on_dask(bundle_dir, frames, frontend=frontend, dt_s=bundle.dt_us / 1e6, address=address,
                                       workers=workers, progress=lambda done, _total: bar.update(task, completed=done))
        else:
            task = bar.add_task(f"{frontend} front-end, {frames.shape[0]} samples", total=frames.shape[1])
            record = record_frontend_run(bundle.frontend_runtime(frontend), frames, dt_s=bundle.dt_us / 1e6,
                                         name=frontend, on_step=lambda: bar.advance(task))
    result = build_report(bundle.model(), record, targets=targets, host=host, devices_file=devices_file,
                          dt_s=bundle.dt_us / 1e6)
    from neurodeploy.report.provenance import measured_what

    provenance = measured_what(bundle, events, transforms=transforms, frontend=frontend,
                               command="neurodeploy " + " ".join(sys.argv[1:]))
    paths = write_report(result, out_dir, provenance)
    calibrated = _calibrated_loihi(bundle, frames, result, out_dir, paths) if sanafe else None
    if as_json:
        echo_json({"inputs": description, "report": result.to_dict(), "calibrated_loihi": calibrated,
                    "files": {k: str(v) for k, v in paths.items()}})
        return
    click.echo(f"inputs: {description}")
    click.echo(result.to_markdown())
    if calibrated is not None:
        _print_calibrated(calibrated)
    click.echo("written: " + ", ".join(str(p) for p in paths.values()))


@main.command("eval")
@click.argument("model_path", metavar="BUNDLE_OR_CHECKPOINT", type=click.Path(exists=True))
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option("--dataset-layout", "dataset_layout", default="auto", show_default=True,
              type=click.Choice(["auto", "class_folders", "segments", "labels_csv"]),
              help="Dataset layout (auto: label CSVs beside recordings -> segments, else class folders).")
@click.option("--labels-csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="One CSV of file,label[,t_start_us,t_end_us] rows for any folder of recordings.")
@click.option("--dt-us", type=int, default=None, show_default="the bundle's / checkpoint's dt_us, else 1000",
              help="Fixed-width bins from each sample's start (as `run` bins).")
@click.option("--n-time-bins", type=int, default=None,
              help="Instead: this many bins per sample (tonic, reference training).")
@click.option("--runtime", type=click.Choice(["torch", "onnxruntime", "nir", "lava"]), default="torch",
              show_default=True,
              help="torch: compiled offline path; onnxruntime: ONNX backbone; nir / lava: the bundle's front-end, "
                   "stepped.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (torch runtime).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--fast-math", is_flag=True, help="TF32 on CUDA / channels-last on CPU; reports agreement with exact.")
@click.option("--target", "targets", multiple=True, default=("loihi",), show_default=True,
              help="Neuromorphic target for the energy estimate; repeat for several.")
@click.option("--host", default="cpu", show_default=True, help="Host device that runs the backbone.")
@click.option("--devices", "devices_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Your own device table, added to the built-in one.")
@with_event_input
@click.option("--max-samples", type=int, default=None, help="Evaluate only the first N samples.")
@click.option("--shard", default=None, help="I/N: evaluate every N-th sample starting at I (0-based).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True)
@click.option("--address", default=None, help="Dask scheduler address (tcp://HOST:8786); default: a local cluster.")
@click.option("--workers", type=int, default=2, show_default=True, help="Workers of the local cluster (no --address).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default="eval", show_default=True)
@json_option("Print the summary as JSON.")
def eval_command(model_path: str, dataset: str, dataset_layout: str, labels_csv: str | None, dt_us: int | None,
                 n_time_bins: int | None, runtime: str, device: str, batch_size: int, fast_math: bool,
                 targets: tuple[str, ...], host: str, devices_file: str | None, max_samples: int | None,
                 shard: str | None, engine: str, address: str | None, workers: int, out_dir: str, as_json: bool,
                 **event_input: Any) -> None:
    """Evaluate a bundle or checkpoint on a whole DATASET folder: accuracy, per-class accuracy and
    confusion matrix, spikes and SynOps per sample per layer, energy per sample per target,
    throughput, and the recordings that could not be read (the rest go on).

    \b
    Examples:
      neurodeploy eval bundle/ N-MNIST/Test --n-time-bins 300
      neurodeploy eval bundle/ DvsGesture/ --dt-us 10000 --target loihi --target spinnaker2
      neurodeploy eval model.safetensors recordings/ --labels-csv labels.csv --device cuda
      neurodeploy eval bundle/ CIFAR10-DVS/ --downsample 34x34 --engine dask --address tcp://10.0.0.1:8786

    The reading and transform flags (--crop, --downsample, --denoise-us, ...) apply to every
    recording; without transform flags a bundle's recorded input transforms apply.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from neurodeploy.image_classification import is_image_checkpoint

    if Path(model_path).is_file() and is_image_checkpoint(model_path):  # an image classifier: DATASET/<class>/<image>
        click.get_current_context().invoke(classify, checkpoint=model_path, images=dataset, batch_size=batch_size,
                                           as_json=as_json)
        return
    from neurodeploy.evaluate import evaluate, write_eval
    from neurodeploy.eval_share import Binning, EvalSetup

    shard_pair = None
    if shard is not None:
        try:
            i, n = (int(v) for v in shard.split("/"))
        except ValueError:
            raise click.BadParameter(f"{shard!r}; expected I/N, e.g. 0/4", param_hint="--shard") from None
        shard_pair = (i, n)
    if n_time_bins is None and dt_us is None:
        dt_us = _model_dt_us(model_path)
    transforms = transforms_from_cli(event_input)
    if Path(model_path).is_dir():
        from neurodeploy.bundle import load_bundle
        from neurodeploy.stream import input_transforms

        transforms = input_transforms(load_bundle(model_path), transforms, say=lambda line: click.echo(line, err=True))
    reading = reading_from_cli(event_input)
    setup = EvalSetup(model_path=model_path, binning=Binning(dt_us=dt_us, n_time_bins=n_time_bins), runtime=runtime,
                      device=device, batch_size=batch_size, fast_math=fast_math, targets=tuple(targets), host=host,
                      devices_file=devices_file, sensor_size=reading.pop("sensor_size"),
                      reading=tuple(sorted(reading.items())), transforms=(transforms,) if transforms else ())
    with Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=_stderr_console(), transient=True) as bar:
        task = bar.add_task("eval", total=None)
        result = evaluate(model_path, dataset, setup, layout=dataset_layout, labels_csv=labels_csv,
                          max_samples=max_samples, shard=shard_pair, engine=engine, address=address, workers=workers,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))
    paths = write_eval(result, out_dir)
    summary = result.summary()
    if as_json:
        echo_json({"summary": summary, "failures": [dataclasses.asdict(f) for f in result.failures],
                    "files": {k: str(v) for k, v in paths.items()}})
        return
    from neurodeploy.eval_tables import markdown

    click.echo(markdown(result))
    click.echo("written: " + ", ".join(str(p) for p in paths.values()))


def _model_dt_us(model_path: str) -> int:
    """The bin width the model was deployed / trained with: the bundle's, the checkpoint's metadata, else 1000."""
    from neurodeploy.bundle import load_bundle
    from neurodeploy.model.mamba_spike.checkpoint import checkpoint_metadata

    if Path(model_path).is_dir():
        return load_bundle(model_path).dt_us
    saved = checkpoint_metadata(model_path).get("dt_us") if model_path.endswith(".safetensors") else None
    return int(saved) if saved else 1000


def _calibrated_loihi(bundle, frames, result, out_dir: str, paths: dict) -> dict[str, Any]:
    """The first sample on SANA-FE's Loihi beside the report's per-op estimate (written as JSON too)."""
    from neurodeploy.targets import NO_NETX, sanafe_on_frames

    if not bundle.has("frontend_netx"):
        calibrated = {"ran": False, "reason": NO_NETX}
    else:
        calibrated = sanafe_on_frames(bundle.path("frontend_netx"), frames[0].numpy(), "the first sample of the events")
    if calibrated["ran"] and "loihi" in result.targets:
        estimate = result.frontend_energy[result.targets.index("loihi")]
        calibrated["per_op_estimate_j_per_sample"] = estimate.total_j
    path = Path(out_dir) / "calibrated_loihi.json"
    path.write_text(json.dumps(calibrated, indent=2, default=str))
    paths["calibrated_loihi"] = path
    return calibrated


def _print_calibrated(calibrated: dict[str, Any]) -> None:
    if not calibrated["ran"]:
        click.echo(f"\nLoihi on SANA-FE: not run: {calibrated['reason']}")
        return
    agree = ", ".join(f"{k} {v:.2%}" for k, v in calibrated["spike_agreement_with_loihi_timing_model"].items())
    click.echo(f"\nLoihi on SANA-FE (calibrated simulation) on {calibrated['data']}:")
    line = (f"  front-end energy {calibrated['energy_j_per_sample'] * 1e6:.3g} uJ per sample "
            f"({calibrated['energy_j_per_step'] * 1e6:.3g} uJ per step, +-{calibrated['energy_error']:.0%})")
    if "per_op_estimate_j_per_sample" in calibrated:
        line += f"; the per-op estimate above: {calibrated['per_op_estimate_j_per_sample'] * 1e6:.3g} uJ per sample"
    click.echo(line)
    click.echo(f"  on-chip step time {calibrated['latency_s_per_step'] * 1e6:.3g} us mean, "
               f"{calibrated['peak_step_s'] * 1e6:.3g} us peak (+-{calibrated['latency_error']:.0%})")
    click.echo(f"  spikes vs the Loihi-timing model: {agree}; {calibrated['synapses']:,} synapses on "
               f"{calibrated['cores_used']} cores")


@main.command()
@click.argument("bundle_dir", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.option("--prompt", "prompt_source", required=True,
              help="Token ids: a text file of whitespace-separated ids, or `-` for stdin.")
@click.option("--max-new-tokens", type=click.IntRange(min=0), default=32, show_default=True)
@click.option("--sample", "sampling", is_flag=True, help="Sample from softmax(logits / temperature) instead of greedy.")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="With --sample: keep the k most likely ids.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --sample: the random seed.")
@click.option("--stop-token", type=int, default=None, help="Stop after generating this id.")
@click.option("--runtime", type=click.Choice(["onnxruntime", "torch", "native"]), default="onnxruntime",
              show_default=True, help="The step graph in onnxruntime, the PyTorch model, or native (numba).")
@json_option()
def generate(bundle_dir: str, prompt_source: str, max_new_tokens: int, sampling: bool, temperature: float,
             top_k: int | None, seed: int, stop_token: int | None, runtime: str, as_json: bool) -> None:
    """Generate token ids from a token-model BUNDLE (SpikeMamba LM), the state carried token by token.

    \b
    Examples:
      neurodeploy generate lm_bundle/ --prompt prompt.txt --max-new-tokens 20
      echo "1 5 9" | neurodeploy generate lm_bundle/ --prompt - --sample --top-k 10 --seed 3
    """
    from neurodeploy.cli_lm import generate_tokens

    generate_tokens(bundle_dir, prompt_source, max_new_tokens, sampling, temperature, top_k, seed, stop_token, runtime,
                    as_json)


@main.command()
@click.option("-o", "--output", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the bundle and the report (default: a temporary folder).")
@click.option("--lava", is_flag=True, help="Also run the front-end on Lava (bit-accurate Loihi simulation; slow).")
@click.option("--live", is_flag=True, help="Replay the recording in real time as a live source.")
@click.option("--frontend", type=click.Choice(["native", "torch", "nir", "lava"]), default="native", show_default=True)
@click.option("--backbone", type=click.Choice(["native", "onnxruntime", "torch"]), default="native", show_default=True)
@json_option()
def demo(out_dir: str | None, lava: bool, live: bool, frontend: str, backbone: str, as_json: bool) -> None:
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
        outcome = run_demo(Path(out_dir or holder.name), frontend=frontend, backbone=backbone, live=live,
                           echo=None if as_json else click.echo)
    finally:
        if holder is not None and as_json:
            holder.cleanup()
    if as_json:
        echo_json(outcome)
    elif holder is not None:
        click.echo(f"(temporary folder {holder.name} is removed on exit; pass --out DIR to keep it)")
        holder.cleanup()


@main.command()
@click.option("-o", "--output", "--out", "out_path", type=click.Path(dir_okay=False),
              default="mamba_spike_synthetic.safetensors", show_default=True, help="Checkpoint file to write.")
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--n-train", type=int, default=1200, show_default=True, help="Synthetic training samples.")
@click.option("--n-test", type=int, default=500, show_default=True, help="Synthetic test samples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--dt-us", type=int, default=None, show_default="the --init-from checkpoint's, else 10000",
              help="Bin width in microseconds.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Fine-tune from a checkpoint (reference v1/v2 included): its sizes and dt are kept, max pooling "
                   "becomes sum pooling, the interface causal, the reset Lava's; the changes are printed.")
@click.option("--pooling", type=click.Choice(["sum", "avg"]), default=None, help="With --init-from: the pooling.")
@click.option("--data", "data_path", type=click.Path(exists=True), default=None,
              help="Your labelled recordings instead of the synthetic set: an event file (with --labels or "
                   "FILE.labels.csv) or a folder of event files each with FILE.labels.csv.")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV t_start_us,t_end_us,label for a single --data file.")
@click.option("--test-data", "test_path", type=click.Path(exists=True), default=None,
              help="Held-out labelled recordings (default: 20% of --data, seeded).")
@with_event_input
@json_option("The metrics as JSON (no progress bars).")
def train(out_path: str, epochs: int, n_train: int, n_test: int, seed: int, dt_us: int | None,
          init_from: str | None, pooling: str | None, data_path: str | None, labels_path: str | None,
          test_path: str | None, as_json: bool, **event_input: Any) -> None:
    """Train a deployable Mamba-Spike, or fine-tune a checkpoint, on synthetic N-MNIST-like events or
    your labelled recordings (examples/train_synthetic.py has more options).

    The defaults (1200 synthetic samples, 5 epochs, the small 44 k-parameter model) take about two
    minutes on 2 CPU cores (the shipped model's run: 123 s, 97 s of it training). A full-size
    reference checkpoint (4 Mamba layers, 1 ms bins: 300 steps per sample) is far slower: here, on a
    loaded 2-core machine, 16 samples did not finish one epoch in 10 minutes; start small
    (--epochs 1 --n-train 50) or pass a coarser --dt-us.

    \b
    Examples:
      neurodeploy train -o model.safetensors && neurodeploy export model.safetensors -o bundle/
      neurodeploy train --init-from checkpoint_best.pth --epochs 1 --n-train 200 -o deployable.safetensors
      neurodeploy train --init-from model.safetensors --data recordings/ --downsample 34x34 -o tuned.safetensors
    """
    from neurodeploy.model.mamba_spike.checkpoint import load_checkpoint
    from neurodeploy.model.mamba_spike.provenance import checkpoint_facts
    from neurodeploy.train import (SENSOR_SIZE, TrainConfig, TrainError, conversion_changes, deployable_config,
                                   recordings_dataset, save_trained, split_dataset)
    from neurodeploy.train import train as run_training

    say = (lambda line: None) if as_json else (lambda line: click.echo(line, err=True))
    overrides = {"pooling": pooling} if pooling else None
    model_size = SENSOR_SIZE
    if init_from:
        facts = checkpoint_facts(init_from)
        _, source_config = load_checkpoint(init_from)
        model_size = (source_config.input_width, source_config.input_height)
        if dt_us is None:
            if facts["dt_us"] is None:
                raise TrainError(f"{init_from}: {facts['dt_source']}")
            dt_us = facts["dt_us"]
            say(f"{init_from}: {facts['kind']}, dt {dt_us} us ({facts['dt_source']})"
                + (f", recorded accuracy {facts['recorded_accuracy']:.1%}" if facts["recorded_accuracy"] else ""))
        target = deployable_config(source_config, **(overrides or {}))
        changes = conversion_changes(source_config, target)
        say("fine-tuning with deployable settings; changed: " + ("; ".join(changes) or "nothing")
            + "; sizes kept")
    dt_us = dt_us or 10_000
    train_data = test_data = None
    if data_path:
        transforms = transforms_from_cli(event_input)
        reading = reading_from_cli(event_input)
        data = recordings_dataset(data_path, dt_us, labels_csv=labels_path, transforms=transforms,
                                  model_size=model_size, reading=reading)
        if test_path:
            train_data = data
            test_data = recordings_dataset(test_path, dt_us, transforms=transforms, model_size=model_size,
                                           reading=reading, n_bins=data.n_bins)
        else:
            train_data, test_data = split_dataset(data, 0.2, seed)
        say(f"data: {len(train_data)} labelled samples for training, {len(test_data)} held out, "
            f"{data.n_bins} bins of {dt_us} us" + (f"; input transforms: {transforms.describe()}" if transforms
                                                  else ""))
    config = TrainConfig(epochs=epochs, n_train=n_train, n_test=n_test, seed=seed, init_from=init_from,
                         dt_us=dt_us, model=overrides)
    result = run_training(config, train_data=train_data, test_data=test_data,
                          progress=not as_json and sys.stderr.isatty())
    extra = {"dataset": str(data_path)} if data_path else {}
    if data_path and transforms:  # export records them in the bundle: run applies them by default
        extra["transforms"] = json.dumps(transforms.to_list())
    save_trained(result, out_path, command="neurodeploy train " + " ".join(sys.argv[2:]), extra=extra)
    if as_json:
        echo_json({"checkpoint": out_path, "metrics": result.metrics})
        return
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
        echo_json({**payload, "notes": list(loaded.notes)})
        return
    for note in loaded.notes:
        click.echo(f"note: {note}", err=True)
    for row in payload["images"]:
        label = f"  label {row['label']}" if "label" in row else ""
        click.echo(f"{row['image']}: class {row['prediction']}{label}")
    summary = payload["summary"]
    if "top1" in summary:
        click.echo(f"top-1 {summary['top1']:.1%}, top-5 {summary['top5']:.1%} over {summary['images']} images ({summary['runtime']})")
