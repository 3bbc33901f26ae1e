"""The one config that describes a Vision Mamba (bimamba v2) classifier (docs/vision_mamba.md).

Most fields are read from the state_dict by `checkpoint.infer_config`; the ones a state_dict
cannot tell (image size, stride, middle vs first cls token, pooling without a cls token,
norm eps, `divide_out`, what to do with `gamma`) come from the training checkpoint's `args`
or the user's config. Options upstream accepts but this toolkit does not run (rope, layer
pairs on a reversed sequence, random flips, bimamba none / v1) are known names that are refused
with the reason, never silently dropped.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from neurodeploy.errors import NeurodeployError

ClsPosition = Literal["middle", "head", "double", "none"]
FinalPool = Literal["none", "mean", "max"]
NormKind = Literal["rms", "layer"]
GammaMode = Literal["ignore", "apply"]

_CHOICES = {
    "cls_position": ("middle", "head", "double", "none"),
    "final_pool_type": ("none", "mean", "max"),
    "norm": ("rms", "layer"),
    "gamma": ("ignore", "apply"),
}

# Upstream options this toolkit refuses, with the reason (docs/vision_mamba.md, "Checkpoints"). A config or
# `args` that sets one of them to its non-default value is refused; the default passes.
REFUSED_OPTIONS: dict[str, tuple[Any, str]] = {
    "if_rope": (False, "rotary position embedding (if_rope) is not implemented; the checkpoints of the "
                       "registered models use the absolute position embedding"),
    "if_rope_residual": (False, "rope on the residual (if_rope_residual) is not implemented"),
    "if_bidirectional": (False, "if_bidirectional (layer pairs run on a reversed sequence and summed) is not "
                                "implemented; bimamba v2 layers are bidirectional already"),
    "flip_img_sequences_ratio": (-1.0, "flip_img_sequences_ratio > 0 flips the token sequence at random, even in "
                                       "eval: the logits would not be a function of the image"),
    "bimamba_type": ("v2", "only bimamba v2 runs (upstream's CPU path crashes on 'none' and 'v1')"),
    "if_random_cls_token_position": (False, "a random cls position is a training augmentation"),
    "if_random_token_rank": (False, "a random token order is a training augmentation"),
}


class VisionMambaConfigError(NeurodeployError, ValueError):
    """A Vision Mamba config with an unknown field, a bad value or a refused option."""


@dataclass(frozen=True)
class VisionMambaConfig:
    """A point of the Vision Mamba family. Defaults are vim_tiny (patch 16, 224 px)."""

    img_size: int = 224
    patch_size: int = 16
    stride: int = 16
    in_chans: int = 3
    embed_dim: int = 192
    depth: int = 24
    d_state: int = 16
    d_conv: int = 4
    d_inner: int = 384
    dt_rank: int = 12
    num_classes: int = 1000
    cls_position: ClsPosition = "middle"
    final_pool_type: FinalPool = "mean"  # used only without a cls token (upstream ignores it otherwise)
    pos_embed: bool = True
    norm: NormKind = "rms"
    norm_eps: float = 1e-5
    proj_bias: bool = False  # upstream `bias`: in_proj.bias and out_proj.bias together
    conv_bias: bool = True
    divide_out: bool = False  # hustvl/Vim's if_devide_out: out_proj((y_f + y_b) / 2)
    layer_scale: bool = False  # `layers.{i}.mixer.gamma` present
    gamma: GammaMode = "ignore"  # EdgeVisionMamba ignores gamma, hustvl/Vim multiplies by it

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise VisionMambaConfigError(f"config field {name!r} = {getattr(self, name)!r}; expected one of {allowed}")
        for name in ("img_size", "patch_size", "stride", "in_chans", "embed_dim", "depth", "d_state", "d_conv",
                     "d_inner", "dt_rank", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise VisionMambaConfigError(f"config field {name!r} = {value!r}; expected a positive integer")
        for name in ("pos_embed", "proj_bias", "conv_bias", "divide_out", "layer_scale"):
            if not isinstance(getattr(self, name), bool):
                raise VisionMambaConfigError(f"config field {name!r} = {getattr(self, name)!r}; expected true or false")
        if self.img_size < self.patch_size:
            raise VisionMambaConfigError(f"img_size {self.img_size} is smaller than patch_size {self.patch_size}")
        if not (isinstance(self.norm_eps, (int, float)) and 0 < self.norm_eps < 1):
            raise VisionMambaConfigError(f"config field 'norm_eps' = {self.norm_eps!r}; expected a small positive number (1e-5)")
        if self.cls_position != "none" and self.final_pool_type == "max":
            raise VisionMambaConfigError("final_pool_type 'max' with a cls token: upstream applies the head to the cls "
                                         "features and then takes the max over the classes; use 'mean' or 'none'")

    # Derived sizes (docs/vision_mamba.md).
    @property
    def grid_size(self) -> int:
        """Patches per side: (img - p) // s + 1 (s < p overlaps)."""
        return (self.img_size - self.patch_size) // self.stride + 1

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_cls_tokens(self) -> int:
        return {"none": 0, "middle": 1, "head": 1, "double": 2}[self.cls_position]

    @property
    def num_tokens(self) -> int:
        return self.num_patches + self.num_cls_tokens

    @property
    def cls_index(self) -> tuple[int, ...]:
        """Token positions of the cls token(s) in the sequence fed to the layers."""
        m = self.num_patches
        return {"none": (), "middle": (m // 2,), "head": (0,), "double": (0, m + 1)}[self.cls_position]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisionMambaConfig:
        data = dict(data)
        check_refused_options(data, "config")
        for name in REFUSED_OPTIONS:
            data.pop(name, None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VisionMambaConfigError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**data)


def default_dt_rank(embed_dim: int) -> int:
    return math.ceil(embed_dim / 16)


def check_refused_options(options: dict[str, Any], origin: str) -> None:
    """Raise naming the first upstream option in `options` set to something this toolkit refuses."""
    for name, (default, reason) in REFUSED_OPTIONS.items():
        if name not in options or options[name] is None:
            continue
        value = options[name]
        if name == "flip_img_sequences_ratio":
            refused = isinstance(value, (int, float)) and value > 0
        elif name == "bimamba_type":
            refused = value != default
        else:
            refused = bool(value)
        if refused:
            raise VisionMambaConfigError(f"{origin}: {name} = {value!r} is refused: {reason}")
