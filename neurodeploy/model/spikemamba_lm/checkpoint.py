"""Loading SpikeMamba LM checkpoints: upstream `torch.save(model.state_dict())` plus a config,
or this toolkit's own safetensors file (config in its metadata). FAMILIES.md §1.2-1.3.

The state_dict tells the sizes (vocab, d_model, layers, d_state, d_conv, expand, dt_rank),
conv_bias / bias, which gates exist (hence `spike_integration`), `adaptive_threshold`
(`threshold_adapt` present), the gate mode (`spike_gate` present <=> soft) and learnable
pooling. It cannot tell `reset_mode`, `refractory_period`, or `none` vs `adaptive` pooling:
for an upstream file those must come from the user's config, never from a guess. RMSNorm's
epsilon is not in the file either; it defaults to float32 eps (upstream on torch >= 2.4) and the
choice is recorded in the notes and the bundle manifest.

Tied weights: `embedding.weight` alone, or with an equal `lm_head.weight` (refused if they
differ). Every missing, unexpected or mis-shaped key is named in one error; non-finite tensors
are refused; Mamba-2 layers (`use_mamba2`) are refused with the reason. Nothing is re-initialised.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.model.family import RawCheckpoint
from neurodeploy.model.spikemamba_lm.config import FLOAT32_EPS, SpikeMambaConfigError, SpikeMambaLMConfig
from neurodeploy.model.spikemamba_lm.model import SpikeMambaLM

FORMAT_NAME = "neurodeploy.spikemamba-lm"
FORMAT_VERSION = "1"
META_FORMAT = "neurodeploy.format"
META_CONFIG = "neurodeploy.config"
TIED_KEY = "lm_head.weight"
# fields the state_dict cannot tell (FAMILIES.md §1.3); `temporal_pooling` only when not learnable
UNTOLD_FIELDS = ("reset_mode", "refractory_period", "temporal_pooling")
_LAYER = re.compile(r"^layers\.(\d+)\.")
_PREFIX = "layers.{i}.spiking_mamba."


class SpikeMambaCheckpointError(NeurodeployError, ValueError):
    """A file that is not a loadable SpikeMamba LM checkpoint; the message says why and what to do."""


def save_checkpoint(model: SpikeMambaLM, path: str | Path) -> Path:
    """The own format: safetensors (the tied head stored once, as `embedding.weight`) + config JSON."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items() if k != TIED_KEY}
    save_file(tensors, str(path), metadata={META_FORMAT: FORMAT_NAME, "neurodeploy.format_version": FORMAT_VERSION,
                                            META_CONFIG: model.config.to_json()})
    return path


def is_own_format(raw: RawCheckpoint) -> bool:
    return raw.metadata.get(META_FORMAT) == FORMAT_NAME


def looks_like_spikemamba(raw: RawCheckpoint) -> bool:
    keys = raw.state_dict.keys()
    return "embedding.weight" in keys and "layers.0.spiking_mamba.mamba.in_proj.weight" in keys


def user_config_dict(config: Any, origin: str = "config") -> dict[str, Any]:
    """The user's config as a dict: a `SpikeMambaLMConfig`, a mapping, or a JSON file path."""
    if config is None:
        return {}
    if isinstance(config, SpikeMambaLMConfig):
        return config.to_dict()
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SpikeMambaCheckpointError(f"{path}: cannot read the config ({err.strerror or err}); pass `--config CONFIG.json`") from None
    except json.JSONDecodeError as err:
        raise SpikeMambaCheckpointError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise SpikeMambaCheckpointError(f"{path}: the config must be a JSON object of SpikeMamba config fields")
    return data


def _shape(sd: Mapping[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in sd:
        raise SpikeMambaCheckpointError(f"{path}: key {key!r} is missing; is this a SpikeMamba LM state_dict?")
    return tuple(sd[key].shape)


def infer_from_state_dict(sd: Mapping[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Every config field the tensors determine (FAMILIES.md §1.3)."""
    p0 = _PREFIX.format(i=0)
    if f"{p0}mamba.dt_bias" in sd or f"{p0}mamba.norm.weight" in sd or (f"{p0}mamba.A_log" in sd and sd[f"{p0}mamba.A_log"].ndim == 1):
        raise SpikeMambaConfigError(
            f"{path}: the layers are Mamba-2 (use_mamba2: keys mamba.dt_bias / 1-D A_log / mamba.norm.weight); Mamba-2 needs "
            "triton kernels this toolkit does not implement on CPU. Only Mamba-1 SpikeMamba models are supported")
    vocab, d_model = _shape(sd, "embedding.weight", path)
    layers = sorted({int(m.group(1)) for k in sd for m in [_LAYER.match(k)] if m})
    if not layers:
        raise SpikeMambaCheckpointError(f"{path}: no `layers.{{i}}.` keys; is this a SpikeMamba LM state_dict?")
    n_layer = layers[-1] + 1
    d_inner, d_state = _shape(sd, f"{p0}mamba.A_log", path)
    d_conv = _shape(sd, f"{p0}mamba.conv1d.weight", path)[-1]
    dt_rank = _shape(sd, f"{p0}mamba.x_proj.weight", path)[0] - 2 * d_state
    if d_inner % d_model:
        raise SpikeMambaCheckpointError(f"{path}: A_log has {d_inner} rows, not a multiple of d_model {d_model}")
    gates = [g for g in ("pre", "post", "residual") if f"{p0}{g}_spiking.learnable_threshold" in sd]
    integration = {("pre",): "pre", ("post",): "post", ("pre", "post"): "pre_post", ("residual",): "residual"}.get(tuple(gates))
    if integration is None:
        raise SpikeMambaCheckpointError(f"{path}: layer 0 has LIF gates {gates or 'none'}; a SpikeMamba layer has pre, post, "
                                        "pre+post or residual (keys layers.0.spiking_mamba.<gate>_spiking.*)")
    told = {
        "vocab_size": vocab, "d_model": d_model, "n_layer": n_layer, "d_state": d_state, "d_conv": d_conv,
        "expand": d_inner // d_model, "dt_rank": dt_rank, "conv_bias": f"{p0}mamba.conv1d.bias" in sd,
        "bias": f"{p0}mamba.in_proj.bias" in sd, "spike_integration": integration,
        "adaptive_threshold": f"{p0}{gates[0]}_spiking.threshold_adapt" in sd,
        "spike_gate_mode": "soft" if f"{p0}spike_gate" in sd else "hard",
    }
    if f"{p0}temporal_pooling_weights" in sd:
        told["temporal_pooling"] = "learnable"
    return told


def resolve_config(raw: RawCheckpoint, config: Any) -> tuple[SpikeMambaLMConfig, list[str]]:
    """The config from the file's tensors (and metadata) and the user's; conflicts are refused."""
    path = raw.path
    notes: list[str] = []
    user = user_config_dict(config, str(config) if isinstance(config, (str, Path)) else "config")
    if is_own_format(raw):
        try:
            saved = json.loads(raw.metadata[META_CONFIG])
        except (KeyError, json.JSONDecodeError):
            raise SpikeMambaCheckpointError(f"{path}: metadata field {META_CONFIG!r} is missing or not JSON; re-save the "
                                            "model with neurodeploy") from None
        merged = {**saved, **user}
    else:
        told = infer_from_state_dict(raw.state_dict, path)
        normalized = SpikeMambaLMConfig.from_dict({**told, **user}, origin=str(path)).to_dict() if user else {}
        conflicts = [f"{k} (file: {told[k]!r}, config: {normalized[k]!r})" for k in told if user and
                     _given(user, k) and normalized[k] != told[k]]
        if conflicts:
            raise SpikeMambaCheckpointError(f"{path}: the config contradicts the weights: {'; '.join(conflicts)}. "
                                            "Remove those fields from the config (the weights decide them)")
        missing = [f for f in UNTOLD_FIELDS if f not in told and not _given(user, f)]
        if missing:
            raise SpikeMambaCheckpointError(
                f"{path}: an upstream SpikeMamba state_dict does not record {', '.join(missing)}; give them in a JSON config "
                f"(`--config CONFIG.json`, e.g. {{\"reset_mode\": \"subtract\", \"refractory_period\": 2, "
                "\"temporal_pooling\": \"none\"}, upstream's defaults) as the model was trained")
        merged = {**told, **user}
        if not _given(user, "rms_norm_eps"):
            notes.append(f"RMSNorm epsilon not recorded in the file: using float32 eps {FLOAT32_EPS!r} (upstream on "
                         "torch >= 2.4); set \"rms_norm_eps\": 1e-05 in the config for a model trained on torch < 2.4")
    cfg = SpikeMambaLMConfig.from_dict(merged, origin=str(path))
    if cfg.temporal_pooling == "adaptive":
        notes.append("temporal_pooling 'adaptive' is not causal (scales by the membrane after the whole call, over the "
                     "batch): offline forward only; streaming and generation are refused")
    return cfg, notes


def _given(user: Mapping[str, Any], field: str) -> bool:
    aliases = {"spike_integration": ("spike_mode",), "n_layer": ("n_layers",)}
    if field in user or any(a in user for a in aliases.get(field, ())):
        return True
    nested = user.get("mamba_config")
    return isinstance(nested, Mapping) and field in nested


def check_tensors(sd: Mapping[str, torch.Tensor], model: SpikeMambaLM, path: Path) -> dict[str, torch.Tensor]:
    """The state_dict to load into `model`, after every check; problems named together."""
    sd = dict(sd)
    if TIED_KEY in sd:
        if "embedding.weight" in sd and (sd[TIED_KEY].shape != sd["embedding.weight"].shape
                                         or not torch.equal(sd[TIED_KEY].float(), sd["embedding.weight"].float())):
            raise SpikeMambaCheckpointError(
                f"{path}: {TIED_KEY!r} differs from 'embedding.weight', but SpikeMamba ties them (one tensor); this file "
                "was not saved from a SpikeMamba LM, or was edited")
        sd.pop(TIED_KEY)
    expected = {k: v for k, v in model.state_dict().items() if k != TIED_KEY}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    misshaped = sorted(f"{k} {tuple(sd[k].shape)} (expected {tuple(expected[k].shape)})"
                       for k in set(sd) & set(expected) if tuple(sd[k].shape) != tuple(expected[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {', '.join(misshaped)}")
    if problems:
        raise SpikeMambaCheckpointError(f"{path}: the weights do not fit the SpikeMamba config ({'; '.join(problems)}). "
                                        "Check the config fields (spike_integration, adaptive_threshold, spike_gate_mode, "
                                        "temporal_pooling) against the model that was trained")
    non_finite = sorted(k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if non_finite:
        raise SpikeMambaCheckpointError(f"{path}: tensors holding NaN or inf: {', '.join(non_finite)}; the checkpoint is "
                                        "damaged (or training diverged)")
    not_float = sorted(k for k, v in sd.items() if not v.is_floating_point())
    if not_float:
        raise SpikeMambaCheckpointError(f"{path}: integer tensors where weights are expected: {', '.join(not_float)}")
    return {k: v.to(torch.float32) for k, v in sd.items()}


def build_model(raw: RawCheckpoint, config: Any = None) -> tuple[SpikeMambaLM, SpikeMambaLMConfig, list[str]]:
    cfg, notes = resolve_config(raw, config)
    model = SpikeMambaLM(cfg)
    tensors = check_tensors(raw.state_dict, model, raw.path)
    if any(v.dtype != torch.float32 for v in raw.state_dict.values() if v.is_floating_point()):
        notes.append("weights stored in a reduced precision were converted to float32")
    model.load_state_dict(tensors, strict=False)  # strict key checks done above; lm_head is tied
    model.lm_head.weight = model.embedding.weight
    return model.eval(), cfg, notes
