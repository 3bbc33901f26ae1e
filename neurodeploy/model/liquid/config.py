"""The Mamba-Liquid-Spiking config: the fields of upstream's `ModelConfig` that shape the network.

Upstream (iShield-corp/current-liquid-neural-network@7d69eac, FAMILIES.md §2) writes its whole
`ModelConfig` dataclass as JSON (`save_config`); `LiquidConfig.from_dict` reads that file (or
this toolkit's own `to_dict`) and keeps what the network is built from. The state_dict is the
truth for every size it can tell (`ModelConfig.__post_init__` may have adjusted `hidden_dim`),
so the loader checks the JSON against the tensors and names the first disagreement.

Fields upstream writes but never reads are listed in `IGNORED_UPSTREAM_FIELDS` with the value
upstream hard-codes instead; `ignored_field_notes` names every one that differs (bug 7).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from neurodeploy.errors import NeurodeployError

BACKBONES = ("ncp", "cfc", "ltc")
MODES = ("sequential", "parallel", "bidirectional")
GATE_HEADS = 4  # LiquidMambaGate(num_heads=4), hard-coded in the block
XATTN_HEADS = 8  # CrossModalAttention(num_heads=8), hard-coded in the block
TEMPORAL_KERNEL_LENGTH = 50  # SpikeToMambaAdapter._create_temporal_kernel(length=50)
TEMPORAL_TAU = 20.0  # SpikeToMambaAdapter(tau=20.0), hard-coded in the block
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm default; config `layer_norm_eps` is never passed

_ADAPTER_MODES = ("parallel", "bidirectional")
# field -> (the value upstream computes with, why, the modes where the value matters)
IGNORED_UPSTREAM_FIELDS: dict[str, tuple[Any, str, tuple[str, ...]]] = {
    "spike_threshold": (1.0, "snnTorch Leaky's default threshold buffer is used", MODES),
    "spike_to_mamba_method": ("temporal", "the block hard-codes method='temporal'", _ADAPTER_MODES),
    "spike_temporal_tau": (TEMPORAL_TAU, "the block hard-codes tau=20.0", _ADAPTER_MODES),
    "num_gate_heads": (GATE_HEADS, "the block hard-codes 4 gate heads", ("parallel",)),
    "use_adaptive_gating": (True, "parallel blocks always use the gate", ("parallel",)),
    "cross_attn_heads": (XATTN_HEADS, "the block hard-codes 8 attention heads", ("bidirectional",)),
    "use_cross_attention": (True, "bidirectional blocks always use cross-attention", ("bidirectional",)),
    "layer_norm_eps": (LAYER_NORM_EPS, "every LayerNorm uses torch's default eps 1e-5", MODES),
    "dropout": (0.2, "the spike encoder hard-codes Dropout(0.2); no effect at inference", MODES),
}


class LiquidConfigError(NeurodeployError, ValueError):
    """A config that does not describe a loadable Mamba-Liquid-Spiking network."""


@dataclass(frozen=True)
class LiquidConfig:
    vocab_size: int
    input_dim: int  # F0: embedding width, spike-encoder input
    hidden_dim: int  # H
    output_dim: int
    spiking_units: int  # S
    liquid_units: int  # U
    num_layers: int
    liquid_backbone: str = "ncp"
    integration_mode: str = "bidirectional"
    mamba_d_state: int = 16
    mamba_d_conv: int = 4
    mamba_expand: int = 2
    num_spike_steps: int = 1  # a length-1 input is repeated this many times (upstream SpikingEncoder)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "input_dim", "hidden_dim", "output_dim", "spiking_units", "liquid_units",
                     "num_layers", "mamba_d_state", "mamba_d_conv", "mamba_expand", "num_spike_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LiquidConfigError(f"config field {name}={value!r}; expected a positive integer")
        if self.liquid_backbone not in BACKBONES:
            raise LiquidConfigError(f"config field liquid_backbone={self.liquid_backbone!r}; expected one of {BACKBONES}")
        if self.integration_mode not in MODES:
            raise LiquidConfigError(f"config field integration_mode={self.integration_mode!r}; expected one of {MODES}")
        if self.integration_mode == "parallel" and self.hidden_dim % GATE_HEADS:
            raise LiquidConfigError(f"hidden_dim={self.hidden_dim} is not a multiple of the {GATE_HEADS} gate heads; "
                                    "upstream's parallel block cannot run it either")
        if self.integration_mode == "bidirectional" and self.xattn_head_dim < 1:
            raise LiquidConfigError(f"min(liquid_units, hidden_dim) = {min(self.liquid_units, self.hidden_dim)} < "
                                    f"{XATTN_HEADS}: the cross-attention has no head width")

    @property
    def d_inner(self) -> int:
        return self.mamba_expand * self.hidden_dim

    @property
    def dt_rank(self) -> int:
        return math.ceil(self.hidden_dim / 16)

    @property
    def xattn_head_dim(self) -> int:
        return min(self.liquid_units, self.hidden_dim) // XATTN_HEADS

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LiquidConfig:
        """From this toolkit's `to_dict` or upstream's `save_config` JSON (other fields ignored)."""
        data = dict(data)
        task = data.get("task_type", "llm")
        if task not in ("llm", None):
            raise LiquidConfigError(
                f"config task_type={task!r}: upstream's MambaLiquidSpikingNetwork always builds a token embedding "
                "and only runs as a language model (task_type 'llm'); other task types crash upstream (bug 4)")
        if data.get("vocab_size") is None and "output_dim" in data:
            data["vocab_size"] = data["output_dim"]  # ModelConfig.__post_init__ for llm
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and data.get(f.name) is None]
        if missing:
            raise LiquidConfigError(f"config lacks {', '.join(missing)}; pass upstream's saved ModelConfig JSON "
                                    "(save_config) or a dict with the LiquidConfig fields")
        kwargs = {f.name: data[f.name] for f in dataclasses.fields(cls) if data.get(f.name) is not None}
        return cls(**kwargs)


def ignored_field_notes(data: Mapping[str, Any], mode: str) -> list[str]:
    """A note for every field upstream writes but ignores whose value differs from what it uses in `mode`."""
    notes = []
    for name, (used, why, modes) in IGNORED_UPSTREAM_FIELDS.items():
        if mode in modes and name in data and data[name] != used:
            notes.append(f"config {name}={data[name]!r} is ignored upstream ({why}); computed with {used!r}")
    return notes
