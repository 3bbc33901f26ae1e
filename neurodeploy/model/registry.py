"""The registry of model families: which family a checkpoint is, and loading it.

The CLI, the exporters and the runtimes ask this module; a family never imports it (imports
flow registry -> family modules -> shared maths). Families are listed in `_FAMILY_MODULES`;
each module exposes `FAMILY`, a `neurodeploy.model.family.ModelFamily`.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from neurodeploy.errors import NeurodeployError
from neurodeploy.model.checkpoint_io import read_checkpoint
from neurodeploy.model.family import LoadedModel, ModelFamily, RawCheckpoint

# Order matters only for error messages; `claims` of two families never overlap.
_FAMILY_MODULES = (
    "neurodeploy.model.mamba_spike.family",
    "neurodeploy.model.spikemamba_lm.family",
    "neurodeploy.model.liquid.family",
    "neurodeploy.model.vision_mamba.family",
)


class UnknownFamilyError(NeurodeployError, ValueError):
    """No registered family claims a checkpoint, or a family name is unknown."""


def families() -> tuple[ModelFamily, ...]:
    return tuple(importlib.import_module(name).FAMILY for name in _FAMILY_MODULES)


def get_family(name: str) -> ModelFamily:
    for family in families():
        if family.name == name:
            return family
    known = ", ".join(f.name for f in families())
    raise UnknownFamilyError(f"unknown model family {name!r}; known: {known} (`--family NAME`)")


def detect_family(raw: RawCheckpoint) -> ModelFamily:
    claimed = [f for f in families() if f.claims(raw)]
    if len(claimed) == 1:
        return claimed[0]
    if not claimed:
        sample = ", ".join(sorted(raw.state_dict)[:6])
        known = ", ".join(f.name for f in families())
        raise UnknownFamilyError(
            f"{raw.path}: no model family recognises these weights (keys like {sample}); known families: "
            f"{known}. If it is one of them, pass `--family NAME` and `--config CONFIG.json`"
        )
    names = ", ".join(f.name for f in claimed)
    raise UnknownFamilyError(f"{raw.path}: the weights fit several families ({names}); pass `--family NAME`")


def load_model(path: str | Path, config: Any = None, *, family: str | None = None) -> LoadedModel:
    """Read `path` safely, find (or take) its family, and build the model in eval mode."""
    raw = read_checkpoint(path)
    fam = get_family(family) if family is not None else detect_family(raw)
    return fam.load(raw, config)
