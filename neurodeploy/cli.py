"""The `neurodeploy` command line."""
from __future__ import annotations

import click

from neurodeploy import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neurodeploy")
def main() -> None:
    """Deploy Mamba-Spike models: spiking front-end to NIR / Lava, SSM backbone to ONNX,
    streaming inference on DVS events, and spike / energy reports.

    \b
    Examples:
      neurodeploy --version
      neurodeploy info CHECKPOINT
    """


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="JSON model config, for a bare state_dict file.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(checkpoint: str, config_path: str | None, as_json: bool) -> None:
    """Load CHECKPOINT (own, reference v1/v2 or bare state_dict) and describe the model."""
    import dataclasses
    import json

    from neurodeploy.model.checkpoint import CheckpointError, load_checkpoint

    try:
        model, config = load_checkpoint(checkpoint, config=config_path)
    except CheckpointError as err:
        raise click.ClickException(str(err)) from None
    n_params = sum(p.numel() for p in model.parameters())
    payload = {"checkpoint": checkpoint, "config": dataclasses.asdict(config), "parameters": n_params}
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(f"{checkpoint}: {n_params:,} parameters")
        for key, value in payload["config"].items():
            click.echo(f"  {key}: {value}")
