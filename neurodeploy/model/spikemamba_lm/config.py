"""The config of a SpikeMamba language model (FAMILIES.md §1.3).

Field names are upstream's (`SpikingMambaConfig` plus the `MambaConfig` sizes), so a user's
upstream config dict loads as it is; upstream-only fields that do not change the maths (tau_mem,
surrogate_grad, logging, dt init...) are accepted and ignored (`IGNORED_FIELDS`). Two fields are
this toolkit's: `rms_norm_eps` (upstream's depends on the torch version it ran on, §1.1) and
`use_mamba2`, kept only to refuse it with the reason.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from neurodeploy.errors import NeurodeployError

# torch.nn.RMSNorm(eps=None) on torch >= 2.4: torch.finfo(float32).eps = 2**-23
FLOAT32_EPS = 2.0 ** -23
# upstream's fallback RMSNorm on torch < 2.4
LEGACY_RMS_EPS = 1e-5

Integration = Literal["pre", "post", "pre_post", "residual"]
GateMode = Literal["soft", "hard"]
Pooling = Literal["none", "learnable", "adaptive"]
Reset = Literal["subtract", "zero"]

_CHOICES = {
    "spike_integration": ("pre", "post", "pre_post", "residual"),
    "spike_gate_mode": ("soft", "hard"),
    "temporal_pooling": ("none", "learnable", "adaptive"),
    "reset_mode": ("subtract", "zero"),
}
# which LIF gates a layer has, per integration mode, in upstream's order of evaluation
GATES = {"pre": ("pre",), "post": ("post",), "pre_post": ("pre", "post"), "residual": ("residual",)}

IGNORED_FIELDS = frozenset({
    "tau_mem", "surrogate_grad", "spike_regularization", "dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor",
    "use_fast_path", "layer_idx", "device", "dtype", "enable_logging", "log_spike_stats", "log_level",
})
# upstream's `create_spiking_mamba_model` argument names for the same fields
ALIASES = {"spike_mode": "spike_integration", "n_layers": "n_layer"}


class SpikeMambaConfigError(NeurodeployError, ValueError):
    """A config that names an unknown variant, inconsistent sizes, or a variant this toolkit refuses."""


@dataclass(frozen=True)
class SpikeMambaLMConfig:
    """One SpikeMamba LM. Defaults are upstream's (`SpikingMambaConfig`, `MambaConfig`) except
    the sizes, which come from the state_dict."""

    vocab_size: int
    d_model: int
    n_layer: int
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None: ceil(d_model / 16), upstream's "auto"
    conv_bias: bool = True
    bias: bool = False
    spike_integration: Integration = "pre_post"
    spike_gate_mode: GateMode = "soft"
    adaptive_threshold: bool = True
    temporal_pooling: Pooling = "none"
    reset_mode: Reset = "subtract"
    refractory_period: int = 2
    rms_norm_eps: float = FLOAT32_EPS
    # initial values of fresh models only; a checkpoint's parameters replace them
    threshold: float = 1.0
    membrane_decay: float = 0.9
    tau_syn: float = 5.0
    use_mamba2: bool = False

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise SpikeMambaConfigError(f"config field {name!r} = {getattr(self, name)!r}; expected one of {allowed}")
        for name in ("vocab_size", "d_model", "n_layer", "d_state", "d_conv", "expand"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SpikeMambaConfigError(f"config field {name!r} = {value!r}; expected a positive integer")
        if self.dt_rank is None:  # upstream's "auto", resolved so that equal models have equal configs
            object.__setattr__(self, "dt_rank", math.ceil(self.d_model / 16))
        if not isinstance(self.dt_rank, int) or isinstance(self.dt_rank, bool) or self.dt_rank < 1:
            raise SpikeMambaConfigError(f"config field 'dt_rank' = {self.dt_rank!r}; expected a positive integer or null (auto)")
        if not isinstance(self.refractory_period, int) or isinstance(self.refractory_period, bool) or self.refractory_period < 0:
            raise SpikeMambaConfigError(f"config field 'refractory_period' = {self.refractory_period!r}; expected an integer >= 0")
        if not (isinstance(self.rms_norm_eps, float) and 0.0 < self.rms_norm_eps < 1.0):
            raise SpikeMambaConfigError(f"config field 'rms_norm_eps' = {self.rms_norm_eps!r}; expected a float in (0, 1): "
                                        f"{FLOAT32_EPS!r} (torch >= 2.4, upstream's default) or {LEGACY_RMS_EPS!r} (torch < 2.4)")
        if self.use_mamba2:
            raise SpikeMambaConfigError(
                "config field 'use_mamba2' = true: Mamba-2 layers need triton kernels (mamba_ssm's Mamba2) that this toolkit "
                "does not implement on CPU; only Mamba-1 SpikeMamba models are supported")
        if self.spike_integration == "residual" and self.spike_gate_mode == "hard":
            raise SpikeMambaConfigError(
                "spike_integration 'residual' with spike_gate_mode 'hard' cannot run upstream (the residual path reads "
                "`spike_gate`, which only soft mode has: AttributeError); use spike_gate_mode 'soft'")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def resolved_dt_rank(self) -> int:
        return int(self.dt_rank)  # type: ignore[arg-type]  (resolved in __post_init__)

    @property
    def gates(self) -> tuple[str, ...]:
        return GATES[self.spike_integration]

    @property
    def streamable(self) -> bool:
        return self.temporal_pooling != "adaptive"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "config") -> SpikeMambaLMConfig:
        """Upstream field names (and `create_spiking_mamba_model`'s `spike_mode`), a nested
        `mamba_config` dict, unknown fields named; upstream-only fields that change nothing ignored."""
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if key == "mamba_config" and isinstance(value, Mapping):
                flat.update(value)
            else:
                flat[ALIASES.get(key, key)] = value
        if flat.get("dt_rank") == "auto":
            flat["dt_rank"] = None
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(flat) - known - IGNORED_FIELDS)
        if unknown:
            raise SpikeMambaConfigError(f"{origin}: unknown config field(s) {unknown}; known: {sorted(known)}")
        if "rms_norm_eps" in flat and isinstance(flat["rms_norm_eps"], (int, float)) and not isinstance(flat["rms_norm_eps"], bool):
            flat["rms_norm_eps"] = float(flat["rms_norm_eps"])
        try:
            return cls(**{k: v for k, v in flat.items() if k in known})
        except TypeError as err:
            raise SpikeMambaConfigError(f"{origin}: {err}; the sizes (vocab_size, d_model, n_layer) come from the "
                                        "state_dict when loading a checkpoint") from None
