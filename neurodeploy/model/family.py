"""The model-family interface: what every family under `neurodeploy.model` declares.

A family is a folder (`mamba_spike/`, `spikemamba_lm/`, `liquid/`, `vision_mamba/`) holding its
config dataclass, its PyTorch model (offline forward and, where causal, `step` with explicit
state) and its checkpoint reading. It describes itself with one frozen `ModelFamily` value,
which `neurodeploy.model.registry` collects; the CLI, exporters and runtimes ask the registry,
never a family module by name, so a new family is one folder plus one line in the registry.

Capabilities are per config, not per family (a max-pool Mamba-Spike has no NIR front-end, an
adaptive-pooling SpikeMamba cannot stream), so a family answers `capabilities(config)` with
every name of `CAPABILITIES` mapped to a `Capability` that says yes, or no and why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from neurodeploy.errors import UnsupportedCapabilityError

# What a command may ask of a model. `nir`: spiking parts as NIR; `netx`: Lava netx HDF5;
# `onnx_full` / `onnx_step`: whole-sequence / one-step ONNX graphs; `stream`: step-by-step
# runtime with explicit state; `generate`: token generation; `report`: spike / energy report.
CAPABILITIES = ("nir", "netx", "onnx_full", "onnx_step", "stream", "generate", "report")


@dataclass(frozen=True)
class Capability:
    supported: bool
    reason: str = ""

    @classmethod
    def yes(cls, note: str = "") -> Capability:
        return cls(True, note)

    @classmethod
    def no(cls, reason: str) -> Capability:
        return cls(False, reason)


@dataclass(frozen=True)
class RawCheckpoint:
    """A checkpoint file read without building a model (see `neurodeploy.model.checkpoint_io`).

    `state_dict` holds the tensors; `container` the other entries of a training checkpoint
    (`args`, `config`, `epoch`...) or `{}`; `metadata` the safetensors string metadata or `{}`.
    """

    path: Path
    state_dict: Mapping[str, torch.Tensor]
    container: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded by its family: eval mode, with the notes the user must see."""

    family: ModelFamily
    model: torch.nn.Module
    config: Any
    source_format: str  # e.g. "reference v1 (de1cf60)", "neurodeploy safetensors", "state_dict + config"
    notes: tuple[str, ...] = ()  # warnings and decisions, e.g. "upstream computes X differently at batch 1"

    def capability(self, name: str) -> Capability:
        return self.family.capabilities(self.config)[name]

    def require(self, name: str) -> None:
        """Raise `UnsupportedCapabilityError` naming the reason when `name` is not supported."""
        cap = self.capability(name)
        if not cap.supported:
            raise UnsupportedCapabilityError(self.family.name, name, cap.reason)


@dataclass(frozen=True)
class ModelFamily:
    name: str  # CLI spelling: "mamba-spike", "spikemamba-lm", "liquid", "vision-mamba"
    summary: str
    # True when the tensors (and container / metadata) are this family's; must not build a model
    claims: Callable[[RawCheckpoint], bool]
    # build the model from a read checkpoint; `config` is the user's (dataclass, dict or JSON
    # path) or None, and is required only where the state_dict cannot tell
    load: Callable[[RawCheckpoint, Any], LoadedModel]
    capabilities: Callable[[Any], Mapping[str, Capability]]
    config_from_dict: Callable[[Mapping[str, Any]], Any]
