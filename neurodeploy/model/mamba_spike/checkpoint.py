"""Checkpoints: the toolkit's own safetensors format, the reference v1/v2 formats, bare state_dicts.

Nothing here executes pickled code. Reference `.pth` files are read with
`torch.load(weights_only=True)` and an allow-list of one extra type, `argparse.Namespace`
(v1 stores its command-line `args` that way); any other pickled object is refused.

The own format is one `.safetensors` file whose string metadata carries the model config
as JSON (key `neurodeploy.config`), so weights and config travel together.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.model.checkpoint_io import CheckpointReadError, torch_load_safely
from neurodeploy.model.mamba_spike.config import ConfigError, MambaSpikeConfig
from neurodeploy.model.mamba_spike.model import MambaSpike
from neurodeploy.model.validation import ValidationError, loads_json, safetensors_shapes

FORMAT_NAME = "neurodeploy.mamba-spike"
FORMAT_VERSION = "1"
_META_FORMAT = "neurodeploy.format"
_META_VERSION = "neurodeploy.format_version"
_META_CONFIG = "neurodeploy.config"
_META_PREFIX = "neurodeploy."

_RESET_MECHANISMS = {0: "subtract", 1: "zero", 2: "none"}
# Input sizes of the reference datasets, keyed by the spatial size of the spike maps.
_INPUT_SIZE_FROM_FEATURE_MAP = {8: 34, 32: 128}
_DATASET_INPUT_SIZE = {"nmnist": 34, "n-mnist": 34, "dvsgesture": 128, "dvs_gesture": 128, "dvs128gesture": 128,
                       "cifar10dvs": 128, "cifar10-dvs": 128, "cifar10_dvs": 128}
_LIF_KEY = re.compile(r"^spiking_frontend\.(lif[123])\.(threshold|beta|graded_spikes_factor|reset_mechanism_val|mem)$")


class CheckpointError(NeurodeployError, ValueError):
    """A file that is not a loadable Mamba-Spike checkpoint; the message says why and what to do."""


def save_checkpoint(model: MambaSpike, path: str | Path, *, metadata: Mapping[str, str] | None = None) -> Path:
    """Write `model` as one safetensors file with its config (and optional string metadata).

    The same model and metadata give the same bytes (see `_canonical_header`)."""
    from safetensors.torch import save

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {_META_FORMAT: FORMAT_NAME, _META_VERSION: FORMAT_VERSION, _META_CONFIG: model.config.to_json()}
    for key, value in (metadata or {}).items():
        meta[f"{_META_PREFIX}meta.{key}"] = str(value)
    path.write_bytes(_canonical_header(save(tensors, metadata=meta)))
    return path


def _canonical_header(data: bytes) -> bytes:
    """safetensors (0.4) writes its `__metadata__` from a Rust HashMap, so the key order, and with it
    the file's bytes and sha256, changes from run to run. Rewrite the JSON header with sorted keys,
    padded with spaces to 8 bytes as safetensors pads it; the tensor data is unchanged."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The user metadata saved with `save_checkpoint(..., metadata=...)` (own format only)."""
    meta = _safetensors_metadata(Path(path)) or {}
    prefix = f"{_META_PREFIX}meta."
    return {k[len(prefix):]: v for k, v in meta.items() if k.startswith(prefix)}


def load_checkpoint(
    path: str | Path,
    config: MambaSpikeConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[MambaSpike, MambaSpikeConfig]:
    """Load a checkpoint of any supported format; returns the model (eval mode) and its config.

    `config` (a config, a dict, or a JSON file path) is required for a bare state_dict and
    overrides the inferred config otherwise. `overrides` changes single fields of the
    inferred config (e.g. `{"interface": "causal"}`).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    explicit = _as_config(config, path) if config is not None else None
    with path.open("rb") as f:
        head = f.read(9)
    # a safetensors file starts with its header's length (8 bytes, little-endian) then '{': a
    # length whose low byte is 0x80 must not be taken for a pickle's PROTO opcode
    safetensors = head[8:9] == b"{" and int.from_bytes(head[:8], "little") + 8 <= path.stat().st_size
    if not safetensors and (head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"):
        state_dict, inferred = _read_torch_file(path)
    else:
        state_dict, inferred = _read_safetensors_file(path)
    if explicit is not None:
        cfg = explicit
    elif inferred is not None:
        cfg = inferred
    else:
        raise CheckpointError(
            f"{path}: a bare state_dict carries no model config; pass one (`config=` in Python, "
            "`--config CONFIG.json` on the command line) with the fields of MambaSpikeConfig"
        )
    if overrides:
        try:
            cfg = MambaSpikeConfig.from_dict({**cfg.to_dict(), **dict(overrides)})
        except (ConfigError, TypeError) as err:
            raise CheckpointError(f"{path}: bad config override: {err}") from None
    # the LIF buffers became config fields above; `.mem` is snnTorch's last membrane (state)
    weights = {k: v for k, v in state_dict.items() if not _LIF_KEY.match(k)}
    _check_config_against_weights(path, cfg, weights)
    model = MambaSpike(cfg)
    _check_weights(path, weights, model.state_dict())
    model.load_state_dict(weights, strict=True)
    return model.eval(), cfg


# -- own / safetensors ---------------------------------------------------------------------
def _safetensors_metadata(path: Path) -> dict[str, str] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception:  # noqa: BLE001  (any parse failure means: not a safetensors file)
        return None


def _read_safetensors_file(path: Path) -> tuple[dict[str, torch.Tensor], MambaSpikeConfig | None]:
    from safetensors.torch import load_file

    meta = _safetensors_metadata(path)
    if meta is None:
        raise CheckpointError(
            f"{path}: not a checkpoint (neither a torch .pth/.pt file nor safetensors); expected the "
            "toolkit's .safetensors, a reference Mamba-Spike checkpoint_*.pth, or a state_dict file"
        )
    safetensors_shapes(path)  # header checked against the file and the parameter budget before reading
    state_dict = load_file(str(path))
    if meta.get(_META_FORMAT) == FORMAT_NAME:
        if meta.get(_META_VERSION) != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: format version {meta.get(_META_VERSION)!r}, this neurodeploy reads {FORMAT_VERSION!r}; "
                "upgrade neurodeploy"
            )
        try:
            data = loads_json(meta[_META_CONFIG], f"{path} (metadata {_META_CONFIG!r})")
            if not isinstance(data, dict):
                raise TypeError(f"a JSON {type(data).__name__}, expected an object")
            cfg = MambaSpikeConfig.from_dict(data)
        except (KeyError, ValidationError, ConfigError, TypeError) as err:
            raise CheckpointError(f"{path}: metadata field {_META_CONFIG!r} is not a valid model config: {err}") from None
        return state_dict, cfg
    return state_dict, _infer_reference_config(path, state_dict, container={})


# -- reference .pth --------------------------------------------------------------------------
def _read_torch_file(path: Path) -> tuple[dict[str, torch.Tensor], MambaSpikeConfig | None]:
    try:
        obj = torch_load_safely(path)
    except CheckpointReadError as err:
        raise CheckpointError(str(err)) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a dict (a state_dict or a training checkpoint)")
    if "model_state_dict" in obj:
        state_dict = obj["model_state_dict"]
        container = obj
    else:
        state_dict, container = obj, None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path}: 'model_state_dict' is not a mapping of names to tensors")
    if container is None:
        looks_reference = any(k.startswith("spiking_frontend.lif") for k in state_dict)
        return state_dict, (_infer_reference_config(path, state_dict, container={}) if looks_reference else None)
    return state_dict, _infer_reference_config(path, state_dict, container=container)


def _reference_hints(container: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset name from v1 `args` (a Namespace) or v2 `config` (a dict), when present."""
    args = container.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    cfg = container.get("config")
    return dict(cfg) if isinstance(cfg, dict) else {}


def _infer_reference_config(path: Path, sd: Mapping[str, torch.Tensor], container: Mapping[str, Any]) -> MambaSpikeConfig:
    """Read the variant off the weights and the stored snnTorch LIF buffers (docs/mamba_spike_model.md, "Checkpoints")."""

    def tensor(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"{path}: missing key {key!r}; not a Mamba-Spike reference checkpoint")
        return sd[key]

    def scalar(key: str) -> float:
        value = tensor(key)
        if value.numel() != 1:
            raise CheckpointError(f"{path}: {key!r} has shape {tuple(value.shape)}, expected a scalar ()")
        if value.dtype == torch.float32:
            # shortest decimal that round-trips through float32: the 0.9 snnTorch was given
            return float(str(value.numpy()[()]))
        return value.item()

    conv1, conv3 = tensor("spiking_frontend.conv1.weight"), tensor("spiking_frontend.conv3.weight")
    proj = tensor("input_proj.weight")
    d_model, spike_features = proj.shape
    spiking_channels = conv3.shape[0]
    side = math.isqrt(spike_features // max(spiking_channels, 1))
    if side * side * spiking_channels != spike_features:
        raise CheckpointError(
            f"{path}: input_proj.weight has {spike_features} inputs, not spiking_channels ({spiking_channels}) "
            "times a square spike map; pass the config explicitly"
        )
    hints = _reference_hints(container)
    dataset = str(hints.get("dataset", "")).lower().replace(" ", "")
    input_size = _DATASET_INPUT_SIZE.get(dataset) or _INPUT_SIZE_FROM_FEATURE_MAP.get(side)
    if input_size is None:
        raise CheckpointError(
            f"{path}: cannot tell the input size from a {side}x{side} spike map; pass the config "
            "explicitly (input_height, input_width)"
        )
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"mamba_blocks\.(\d+)\.", k))})
    if not blocks or blocks != list(range(len(blocks))):
        raise CheckpointError(f"{path}: mamba_blocks are numbered {blocks}; expected 0..n-1")
    a_log = tensor("mamba_blocks.0.mamba.A_log")
    d_inner, d_state = a_log.shape
    if d_inner % d_model:
        raise CheckpointError(f"{path}: mamba_blocks.0.mamba.A_log has d_inner {d_inner}, not a multiple of d_model {d_model}")
    d_conv = tensor("mamba_blocks.0.mamba.conv1d.weight").shape[-1]

    lif = {}
    for field in ("beta", "threshold", "graded_spikes_factor", "reset_mechanism_val"):
        values = {scalar(f"spiking_frontend.lif{i}.{field}") for i in (1, 2, 3)}
        if len(values) != 1:
            raise CheckpointError(
                f"{path}: spiking_frontend.lif1..3.{field} differ ({sorted(values)}); the model family "
                "uses one value for all three layers"
            )
        lif[field] = values.pop()
    if lif["graded_spikes_factor"] != 1.0:
        raise CheckpointError(
            f"{path}: spiking_frontend.lif*.graded_spikes_factor = {lif['graded_spikes_factor']}; only 1.0 (binary "
            "spikes) is supported"
        )
    reset_code = int(lif["reset_mechanism_val"])
    if reset_code not in _RESET_MECHANISMS:
        raise CheckpointError(f"{path}: spiking_frontend.lif*.reset_mechanism_val = {reset_code}; expected 0, 1 or 2")
    recurrent = "spiking_frontend.recurrent1.weight" in sd
    try:
        return MambaSpikeConfig(
            input_height=input_size,
            input_width=input_size,
            input_channels=conv1.shape[1],
            conv_channels=conv1.shape[0],
            spiking_channels=spiking_channels,
            pooling="max",
            recurrent=recurrent,
            beta=float(lif["beta"]),
            threshold=float(lif["threshold"]),
            reset=_RESET_MECHANISMS[reset_code],  # type: ignore[arg-type]
            reset_timing="delayed",
            # v1 (de1cf60) smooths centred; v2 (b77c890, the one with recurrence) causally
            interface="causal" if recurrent else "centered",
            interface_window=5,
            d_model=d_model,
            n_layers=len(blocks),
            d_state=d_state,
            d_conv=d_conv,
            expand=d_inner // d_model,
            num_classes=tensor("classifier.weight").shape[0],
        )
    except ConfigError as err:
        raise CheckpointError(f"{path}: inferred config is invalid: {err}") from None


# -- shared ----------------------------------------------------------------------------------
def _as_config(config: MambaSpikeConfig | Mapping[str, Any] | str | Path, path: Path) -> MambaSpikeConfig:
    if isinstance(config, MambaSpikeConfig):
        return config
    try:
        if isinstance(config, (str, Path)):
            data = loads_json(Path(config).read_bytes(), str(config))
            if isinstance(data, dict) and "config" in data and isinstance(data["config"], dict):
                data = data["config"]  # a bundle manifest or an `info --json` dump
            return MambaSpikeConfig.from_dict(data)
        return MambaSpikeConfig.from_dict(dict(config))
    except (OSError, ValidationError, ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: the config given for it is not usable: {err}") from None


def _check_config_against_weights(path: Path, cfg: MambaSpikeConfig, weights: Mapping[str, torch.Tensor]) -> None:
    """Believe the config only where the weights agree, before building the model: every size that
    allocates (d_model, d_inner, d_state, n_layers, channels, the input via spike_features, classes)
    is tied to a tensor of the file, so a forged config cannot build a model larger than its weights."""
    expected = {
        "input_proj.weight": (cfg.d_model, cfg.spike_features),
        "classifier.weight": (cfg.num_classes, cfg.d_model),
        "mamba_blocks.0.mamba.A_log": (cfg.d_inner, cfg.d_state),
        "spiking_frontend.conv1.weight": (cfg.conv_channels, cfg.input_channels),
        "spiking_frontend.conv3.weight": (cfg.spiking_channels,),
        "mamba_blocks.0.mamba.conv1d.weight": (cfg.d_inner,),
    }
    for key, dims in expected.items():
        if key not in weights:
            raise CheckpointError(f"{path}: missing weight {key!r}; the checkpoint does not match the model config")
        shape = tuple(weights[key].shape)
        if shape[:len(dims)] != dims:
            raise CheckpointError(f"{path}: weight {key!r} has shape {shape}, the config implies {dims} in front; "
                                  "the config does not match the weights (pass the right --config)")
    if tuple(weights["mamba_blocks.0.mamba.conv1d.weight"].shape)[-1] != cfg.d_conv:
        raise CheckpointError(f"{path}: mamba_blocks.0.mamba.conv1d.weight does not have d_conv = {cfg.d_conv} taps")
    blocks = {int(m.group(1)) for k in weights if (m := re.match(r"mamba_blocks\.(\d+)\.", k))}
    if blocks != set(range(cfg.n_layers)):
        raise CheckpointError(f"{path}: the weights hold {len(blocks)} mamba_blocks, the config says n_layers = "
                              f"{cfg.n_layers}; the config does not match the weights")


def _check_weights(path: Path, weights: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    missing = [k for k in expected if k not in weights]
    if missing:
        key = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(
            f"{path}: missing weight {key!r}{more}, expected shape {tuple(expected[key].shape)}; the checkpoint "
            "does not match the model config"
        )
    unknown = [k for k in weights if k not in expected]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise CheckpointError(
            f"{path}: unknown key {unknown[0]!r}{more}; not part of a Mamba-Spike model with this config"
        )
    for key, value in weights.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: weight {key!r} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}"
            )
        if not value.is_floating_point():
            raise CheckpointError(f"{path}: weight {key!r} has dtype {value.dtype}, expected a floating-point tensor")
