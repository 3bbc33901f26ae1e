"""Reading Vision Mamba checkpoints: upstream training checkpoints and bare state_dicts.

Formats (docs/vision_mamba.md, "Checkpoints"): `vim/main.py`'s `{model, optimizer, ..., args: Namespace}` (read by
`neurodeploy.model.checkpoint_io` with weights_only and the Namespace allow-list), or a bare
state_dict (`.pth` or safetensors) plus a config. The shapes come from the tensors; what the
tensors cannot tell (image size, stride, first vs middle cls token, pooling without cls, norm
eps, `divide_out`, gamma) comes from the user's config, else from `args` (`input_size`, the
registered model name), else a stated default recorded in the notes. Everything upstream
would compute differently or at random is refused with the reason.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.model.family import RawCheckpoint
from neurodeploy.model.vision_mamba.config import (
    VisionMambaConfig,
    VisionMambaConfigError,
    check_refused_options,
)
from neurodeploy.model.vision_mamba.model import VisionMamba

_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")
_REQUIRED_KEYS = ("patch_embed.proj.weight", "patch_embed.proj.bias", "layers.0.mixer.in_proj.weight", "norm_f.weight",
                  "head.weight", "head.bias")
_SCAN_KEYS = ("A_log", "D", "conv1d.weight", "x_proj.weight", "dt_proj.weight", "dt_proj.bias")
_BACKWARD_KEYS = ("A_b_log", "D_b", "conv1d_b.weight", "x_proj_b.weight", "dt_proj_b.weight", "dt_proj_b.bias")
# What only the config or `args` can tell; every other field is read from the tensors.
USER_FIELDS = ("img_size", "stride", "cls_position", "final_pool_type", "norm_eps", "divide_out", "gamma")


class VisionMambaCheckpointError(NeurodeployError, ValueError):
    """A checkpoint this family cannot load faithfully; the message names the key and the way out."""


def is_vision_mamba_state_dict(keys) -> bool:
    keys = set(keys)
    return "patch_embed.proj.weight" in keys and "layers.0.mixer.in_proj.weight" in keys and "head.weight" in keys


def _user_options(config: Any, path: Path) -> dict[str, Any]:
    """The user's config as a dict: a VisionMambaConfig, a mapping, or a JSON file path."""
    if config is None:
        return {}
    if isinstance(config, VisionMambaConfig):
        return config.to_dict()
    if isinstance(config, (str, Path)):
        config_path = Path(config)
        try:
            data = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise VisionMambaCheckpointError(f"{config_path}: not a readable JSON config ({err}); pass `--config CONFIG.json`") from None
        if not isinstance(data, dict):
            raise VisionMambaCheckpointError(f"{config_path}: expected a JSON object of config fields")
        return data
    if isinstance(config, Mapping):
        return dict(config)
    raise VisionMambaCheckpointError(f"{path}: config of type {type(config).__name__}; expected a VisionMambaConfig, a dict or a JSON path")


def _options_from_args(args: Any, path: Path) -> dict[str, Any]:
    """What the training `args` (and the registered model name in `args.model`) tell."""
    if args is None:
        return {}
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    if not isinstance(args, Mapping):
        return {}
    check_refused_options(dict(args), f"{path}: args")
    options: dict[str, Any] = {}
    if isinstance(args.get("input_size"), int):
        options["img_size"] = args["input_size"]
    name = args.get("model")
    if isinstance(name, str):
        options["stride"] = 8 if "stride8" in name else None  # None: the patch size, filled in later
        if "midclstok" in name or "middle_cls_token" in name:
            options["cls_position"] = "middle"
        if "final_pool_mean" in name:
            options["final_pool_type"] = "mean"
        if "div2" in name:
            options["div2_name"] = name
    return options


def _layer_indices(state_dict: Mapping[str, torch.Tensor], path: Path) -> int:
    indices = {int(m.group(1)) for k in state_dict if (m := _LAYER_KEY.match(k))}
    depth = len(indices)
    if indices != set(range(depth)):
        raise VisionMambaCheckpointError(f"{path}: layer indices {sorted(indices)} are not 0..{depth - 1}; the checkpoint is incomplete")
    return depth


def _norm_kind(state_dict: Mapping[str, torch.Tensor], depth: int, path: Path) -> str:
    names = [f"layers.{i}.norm" for i in range(depth)] + ["norm_f"]
    with_bias = [n for n in names if f"{n}.bias" in state_dict]
    if with_bias and len(with_bias) != len(names):
        without = [n for n in names if n not in with_bias]
        raise VisionMambaCheckpointError(
            f"{path}: mixed norms: {', '.join(with_bias[:3])} have a bias (LayerNorm) but {', '.join(without[:3])} do "
            "not (RMSNorm); one model uses one kind. The checkpoint was probably merged from two models"
        )
    return "layer" if with_bias else "rms"


def infer_config(raw: RawCheckpoint, config: Any = None) -> tuple[VisionMambaConfig, list[str]]:
    """The model's config from the tensors, the user's config and `args`; and the notes to show."""
    sd, path, notes = raw.state_dict, raw.path, []
    if "rope.freqs_cos" in sd or "rope.freqs_sin" in sd:
        raise VisionMambaCheckpointError(f"{path}: keys rope.freqs_cos/sin: a rope model (if_rope); rotary position "
                                         "embedding is not implemented")
    missing = [k for k in _REQUIRED_KEYS if k not in sd]
    if missing:
        raise VisionMambaCheckpointError(f"{path}: {missing[0]} missing; not a Vision Mamba checkpoint (or an incomplete one)")
    depth = _layer_indices(sd, path)
    for i in range(depth):
        prefix = f"layers.{i}.mixer."
        missing = [k for k in _SCAN_KEYS if prefix + k not in sd]
        if missing:
            raise VisionMambaCheckpointError(f"{path}: {prefix}{missing[0]} missing; not a Mamba layer")
        if prefix + "A_b_log" not in sd:
            raise VisionMambaCheckpointError(f"{path}: {prefix}A_b_log missing: a bimamba 'none' (one-direction) model; "
                                             "only bimamba v2 is supported (upstream's CPU path crashes on it too)")
        backward_missing = [k for k in _BACKWARD_KEYS if prefix + k not in sd]
        if backward_missing:
            raise VisionMambaCheckpointError(f"{path}: {prefix}A_b_log without {prefix}{backward_missing[0]}: a bimamba "
                                             "'v1' model (shared conv and projections); only v2 is supported")
    user = _user_options(config, path)
    check_refused_options(user, f"{path}: config")
    from_args = _options_from_args(raw.container.get("args"), path)

    embed = sd["patch_embed.proj.weight"]
    if embed.ndim != 4 or embed.shape[2] != embed.shape[3]:
        raise VisionMambaCheckpointError(f"{path}: patch_embed.proj.weight of shape {tuple(embed.shape)}; expected (D, C, p, p)")
    embed_dim, in_chans, patch = (int(s) for s in embed.shape[:3])
    m0 = "layers.0.mixer."
    d_inner = int(sd[m0 + "in_proj.weight"].shape[0]) // 2
    if sd[m0 + "A_log"].ndim != 2 or sd[m0 + "conv1d.weight"].ndim != 3 or sd[m0 + "dt_proj.weight"].ndim != 2:
        raise VisionMambaCheckpointError(f"{path}: {m0}A_log / conv1d.weight / dt_proj.weight are not (d, n) / (d, 1, K) / "
                                         "(d, R); not a Mamba-1 layer")
    d_state = int(sd[m0 + "A_log"].shape[1])
    inferred: dict[str, Any] = {
        "patch_size": patch, "in_chans": in_chans, "embed_dim": embed_dim, "depth": depth,
        "d_inner": d_inner, "d_state": d_state, "d_conv": int(sd[m0 + "conv1d.weight"].shape[-1]),
        "dt_rank": int(sd[m0 + "dt_proj.weight"].shape[1]), "num_classes": int(sd["head.weight"].shape[0]),
        "pos_embed": "pos_embed" in sd, "norm": _norm_kind(sd, depth, path),
        "proj_bias": m0 + "in_proj.bias" in sd, "conv_bias": m0 + "conv1d.bias" in sd,
        "layer_scale": m0 + "gamma" in sd,
    }
    if "cls_token_head" in sd and "cls_token_tail" in sd:
        inferred["cls_position"] = "double"
    elif "cls_token" not in sd:
        inferred["cls_position"] = "none"
    for name, value in inferred.items():
        if name in user and user[name] != value:
            raise VisionMambaCheckpointError(f"{path}: config field {name!r} = {user[name]!r}, but the weights say {value!r}; "
                                             "drop the field from the config (the weights decide it)")

    merged: dict[str, Any] = {}
    for name in USER_FIELDS:
        if name in user:
            merged[name] = user[name]
        elif from_args.get(name) is not None:
            merged[name] = from_args[name]
    merged.update(inferred)
    merged.setdefault("stride", patch)
    if "cls_position" not in merged:
        merged["cls_position"] = "middle"
        notes.append("one cls_token: taken as the middle cls token of every registered model (a first-position cls "
                     "token has the same key; set cls_position: head in the config for one)")
    tokens = int(sd["pos_embed"].shape[1]) if "pos_embed" in sd else None
    if "img_size" not in merged:
        cls_count = {"none": 0, "middle": 1, "head": 1, "double": 2}.get(merged["cls_position"], 0)
        grid = round((tokens - cls_count) ** 0.5) if tokens is not None and tokens > cls_count else 0
        if grid < 1 or grid * grid + cls_count != tokens:
            raise VisionMambaCheckpointError(f"{path}: the image size cannot be told from the weights; give img_size "
                                             "(and stride) in the config (`--config CONFIG.json`)")
        merged["img_size"] = (grid - 1) * merged["stride"] + patch
        notes.append(f"image size not given: {merged['img_size']} px taken from the {tokens} rows of pos_embed at stride "
                     f"{merged['stride']} (several size/stride pairs give the same grid; set img_size and stride to be sure)")
    if "divide_out" not in user:
        name = from_args.get("div2_name")
        said = (f"args.model {name!r} asks for if_divide_out, which EdgeVisionMamba ignores and hustvl/Vim applies; the "
                "keys are identical, so a `_div2` name is ambiguous. ") if name else ""
        notes.append(f"{said}divide_out = false (EdgeVisionMamba: out_proj(y_f + y_b)); a checkpoint trained with "
                     "hustvl/Vim needs divide_out: true in the config (out_proj((y_f + y_b) / 2); `--config`)")
    if inferred["layer_scale"] and "gamma" not in user:
        notes.append("layers.*.mixer.gamma present (init_layer_scale): EdgeVisionMamba ignores it, hustvl/Vim multiplies "
                     "the mixer output by it; ignored (set gamma: apply in the config for hustvl/Vim maths)")
    try:
        cfg = VisionMambaConfig.from_dict(merged)
    except (VisionMambaConfigError, TypeError) as err:
        raise VisionMambaCheckpointError(f"{path}: {err}") from None
    if tokens is not None and tokens != cfg.num_tokens:
        raise VisionMambaCheckpointError(
            f"{path}: pos_embed has {tokens} rows, but a {cfg.img_size} px image at patch {cfg.patch_size} / stride "
            f"{cfg.stride} gives a {cfg.grid_size}x{cfg.grid_size} grid + {cfg.num_cls_tokens} cls = {cfg.num_tokens} "
            "tokens; set img_size / stride to the training ones (position embeddings are not interpolated)"
        )
    args = raw.container.get("args")
    nb_classes = getattr(args, "nb_classes", None) if args is not None else None
    if isinstance(nb_classes, int) and nb_classes != cfg.num_classes:
        notes.append(f"args.nb_classes = {nb_classes} but the head has {cfg.num_classes} outputs; the head decides")
    return cfg, notes


def build_model(raw: RawCheckpoint, cfg: VisionMambaConfig) -> VisionMamba:
    model = VisionMamba(cfg)
    expected = model.state_dict()
    sd = raw.state_dict
    unexpected = sorted(set(sd) - set(expected))
    missing = sorted(set(expected) - set(sd))
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        raise VisionMambaCheckpointError(f"{raw.path}: keys do not match a Vision Mamba with this config: {'; '.join(parts)}")
    for key, tensor in sd.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise VisionMambaCheckpointError(f"{raw.path}: {key} has shape {tuple(tensor.shape)}, expected "
                                             f"{tuple(expected[key].shape)} for this config")
        if not tensor.is_floating_point():
            raise VisionMambaCheckpointError(f"{raw.path}: {key} holds {tensor.dtype}; expected floating point weights")
        if not torch.isfinite(tensor).all():
            raise VisionMambaCheckpointError(f"{raw.path}: {key} holds NaN or inf; the checkpoint is damaged")
    model.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True)
    return model.eval()
