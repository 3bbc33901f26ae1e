"""The one config that describes every Mamba-Spike variant (docs/mamba_spike_model.md)."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from neurodeploy.errors import NeurodeployError

Pooling = Literal["max", "avg", "sum"]
Reset = Literal["subtract", "zero", "none"]
ResetTiming = Literal["delayed", "immediate"]
InterfaceMode = Literal["centered", "causal"]

MAX_INTERFACE_WINDOW = 10_000
_CHOICES = {
    "pooling": ("max", "avg", "sum"),
    "reset": ("subtract", "zero", "none"),
    "reset_timing": ("delayed", "immediate"),
    "interface": ("centered", "causal"),
}


class ConfigError(NeurodeployError, ValueError):
    """A model config that names an unknown variant or inconsistent sizes."""


@dataclass(frozen=True)
class MambaSpikeConfig:
    """A point in the Mamba-Spike family. Defaults are the N-MNIST v1 reference model.

    `reset_timing="delayed"` is snnTorch's `Leaky` (the reference): the reset decided by the
    previous step's spike is applied at the next step. `"immediate"` resets in the same step,
    as Lava's LIF does.
    """

    input_height: int = 34
    input_width: int = 34
    input_channels: int = 2
    conv_channels: int = 32
    spiking_channels: int = 64
    pooling: Pooling = "max"
    recurrent: bool = False
    beta: float = 0.9
    threshold: float = 1.0
    reset: Reset = "subtract"
    reset_timing: ResetTiming = "delayed"
    interface: InterfaceMode = "centered"
    interface_window: int = 5
    d_model: int = 128
    n_layers: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    num_classes: int = 10

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"config field {name!r} = {getattr(self, name)!r}; expected one of {allowed}")
        for name in ("input_height", "input_width", "input_channels", "conv_channels", "spiking_channels",
                     "interface_window", "d_model", "n_layers", "d_state", "d_conv", "expand", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"config field {name!r} = {value!r}; expected a positive integer")
        if self.input_height < 4 or self.input_width < 4:
            raise ConfigError(f"input {self.input_height}x{self.input_width} is too small for two 2x2 poolings")
        for name in ("beta", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"config field {name!r} = {value!r}; expected a finite number")
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"config field 'beta' = {self.beta}; expected 0 <= beta <= 1")
        if self.threshold <= 0:
            raise ConfigError(f"config field 'threshold' = {self.threshold}; expected > 0")
        if self.interface_window > MAX_INTERFACE_WINDOW:
            # the only size no weight implies: it allocates a ring of that many steps per stream
            raise ConfigError(f"config field 'interface_window' = {self.interface_window}; expected at most "
                              f"{MAX_INTERFACE_WINDOW} steps")

    # Derived sizes, named as in the official Mamba block.
    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def dt_rank(self) -> int:
        return math.ceil(self.d_model / 16)

    @property
    def feature_height(self) -> int:
        """Height of the spike maps after two floor 2x2 poolings (34 -> 17 -> 8)."""
        return self.input_height // 2 // 2

    @property
    def feature_width(self) -> int:
        return self.input_width // 2 // 2

    @property
    def spike_features(self) -> int:
        """Length of the flattened (C, H, W) spike vector fed to the backbone."""
        return self.spiking_channels * self.feature_height * self.feature_width

    @property
    def lookahead(self) -> int:
        """Steps the interface must wait for before its output at t is known.

        The centered window takes k//2 past and k-1-k//2 = (k-1)//2 future steps (the offline
        padding in `moving_average`); for odd k both are k//2.
        """
        return (self.interface_window - 1) // 2 if self.interface == "centered" else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MambaSpikeConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    @classmethod
    def nmnist_v1(cls) -> MambaSpikeConfig:
        """The reference checkpoint at commit de1cf60."""
        return cls()

    @classmethod
    def nmnist_v2(cls) -> MambaSpikeConfig:
        """The reference checkpoint at commit b77c890 (recurrence, beta 0.97, causal interface)."""
        return cls(recurrent=True, beta=0.97, interface="causal")

    @classmethod
    def deployable(cls, **overrides: Any) -> MambaSpikeConfig:
        """The settings NIR and Lava express natively: sum pooling, Lava's reset, causal interface."""
        base = dict(pooling="sum", reset="zero", reset_timing="immediate", interface="causal")
        base.update(overrides)
        return cls(**base)
