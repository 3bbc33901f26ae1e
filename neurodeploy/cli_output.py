"""How the command line prints what every command family shares: `--json` payloads and a bundle's
artifact list. One home, used by `cli`, `cli_lm` and `cli_families`, so the formats stay one."""
from __future__ import annotations

import json
from typing import Any, Mapping

import click


def echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


def echo_artifacts(manifest: Mapping[str, Any]) -> None:
    """Each artifact with size and hash prefix, then each artifact not made with its reason."""
    for name, entry in manifest["artifacts"].items():
        click.echo(f"  {name:22s} {entry['bytes']:>10,d} bytes  sha256 {entry['sha256'][:12]}")
    for name, reason in manifest["skipped"].items():
        click.echo(f"  {name:22s} NOT MADE: {reason}")
