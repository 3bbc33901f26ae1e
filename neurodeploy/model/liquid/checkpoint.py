"""Loading a Mamba-Liquid-Spiking checkpoint: a bare state_dict plus upstream's ModelConfig JSON.

Upstream has no save function for this network, so the artifact is `torch.save(state_dict)`
taken after a forward call, beside the JSON of `save_config(ModelConfig)` (FAMILIES.md §2.3).
The file is read by `neurodeploy.model.checkpoint_io` (never unpickling code); this module
checks the tensors, infers what they tell, reconciles the JSON with them and builds the model:

- non-finite tensors are refused, naming `A_log` when it is one (upstream bug 1);
- the lazily created `input_proj` / `residual_proj` are built from the config and refused with
  the way out when the state_dict lacks them (bug 3);
- dead modules (`hidden_to_liquid`, `mamba_to_spike`, `bidirectional_exchange`, and
  `spike_to_mamba` in sequential mode), snnTorch's `mem` buffers and, for `cfc` / `ltc`, the
  cell weights upstream never runs (bug 2) are dropped, each with a note;
- the Linear+LSTM placeholder blocks of a failed upstream import are refused (bug 6).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.model.liquid.config import LiquidConfig, LiquidConfigError, ignored_field_notes
from neurodeploy.model.liquid.model import MambaLiquidSpiking

FORMAT_NAME = "neurodeploy.liquid"
META_FORMAT = "neurodeploy.format"
META_CONFIG = "neurodeploy.config"
_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_DEAD = ("hidden_to_liquid.", "mamba_to_spike.", "bidirectional_exchange.")
_CFC_LAYER = re.compile(r"^blocks\.0\.liquid_cell\.cell\.rnn_cell\.layer_(\d+)\.")
FIX_A_LOG = ("upstream initialises A_log = log(randn), NaN wherever randn < 0, and training spreads the NaN; "
             "retrain with the S4D-real init A_log = log(arange(1, d_state + 1)) repeated over d_inner "
             "(FAMILIES.md §2.6, bug 1)")


class LiquidCheckpointError(NeurodeployError, ValueError):
    """A checkpoint that is not a loadable Mamba-Liquid-Spiking state_dict; the message says why."""


def claims(state_dict: Mapping[str, torch.Tensor]) -> bool:
    keys = state_dict.keys()
    return "embedding.weight" in keys and "output_head.weight" in keys and (
        "blocks.0.liquid_to_hidden.projection.weight" in keys or "blocks.0.spike_encoder.weight" in keys)


def as_config_dict(config: Any, origin: Path) -> dict[str, Any] | None:
    """The user's config as a dict: a LiquidConfig, a mapping or a JSON file path; None if absent."""
    if config is None:
        return None
    if isinstance(config, LiquidConfig):
        return config.to_dict()
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise LiquidCheckpointError(f"{path}: cannot read the config JSON ({err}); pass the file upstream's "
                                    f"save_config wrote for {origin.name} (`--config CONFIG.json`)") from None
    if not isinstance(data, dict):
        raise LiquidCheckpointError(f"{path}: the config JSON holds a {type(data).__name__}, expected an object")
    return data


def check_finite(path: Path, state_dict: Mapping[str, torch.Tensor]) -> None:
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if not bad:
        return
    a_log = [k for k in bad if k.endswith("A_log")]
    if a_log:
        count = int((~torch.isfinite(state_dict[a_log[0]])).sum())
        raise LiquidCheckpointError(
            f"{path}: {a_log[0]} holds {count} NaN/inf entries ({len(bad)} non-finite tensors in all, e.g. "
            f"{', '.join(bad[:3])}); every output would be NaN. {FIX_A_LOG}")
    raise LiquidCheckpointError(f"{path}: non-finite values in {', '.join(bad[:5])}"
                                f"{' and more' if len(bad) > 5 else ''}; the weights are corrupt, re-save them")


def _shape(sd: Mapping[str, torch.Tensor], key: str, path: Path) -> tuple[int, ...]:
    if key not in sd:
        raise LiquidCheckpointError(f"{path}: key {key!r} is missing; not a complete MambaLiquidSpikingNetwork "
                                    "state_dict (save model.state_dict() after one forward call)")
    return tuple(sd[key].shape)


def infer_config(path: Path, sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, Any], str | None]:
    """What the tensors tell: sizes, depth, mode, and the backbone (None when no cell keys are present)."""
    vocab, f0 = _shape(sd, "embedding.weight", path)
    out, hidden = _shape(sd, "output_head.weight", path)
    n_layers = 1 + max(int(m.group(1)) for m in map(_BLOCK.match, sd) if m)
    units = _shape(sd, "blocks.0.spike_encoder.fc2.weight", path)[0]
    liquid = _shape(sd, "blocks.0.liquid_to_hidden.projection.weight", path)[1]
    d_inner = _shape(sd, "blocks.0.mamba.norm.weight", path)[0]
    d_state = _shape(sd, "blocks.0.mamba.ssm.A_log", path)[1]
    d_conv = _shape(sd, "blocks.0.mamba.conv1d.weight", path)[2]
    if any(k.startswith("blocks.0.gate.") for k in sd):
        mode = "parallel"
    elif any(k.startswith("blocks.0.cross_attention.") for k in sd):
        mode = "bidirectional"
    else:
        mode = "sequential"
    layers = {int(m.group(1)) for m in map(_CFC_LAYER.match, sd) if m}
    if any(k.startswith("blocks.0.liquid_cell.cell.rnn_cell.gleak") for k in sd):
        backbone = "ltc"
    elif layers == {0}:
        backbone = "ncp"
    elif len(layers) == 3:
        backbone = "cfc"
    else:
        backbone = None
    if d_inner % hidden:
        raise LiquidCheckpointError(f"{path}: mamba.norm has {d_inner} channels, not a multiple of hidden_dim {hidden}")
    inferred = dict(vocab_size=vocab, input_dim=f0, hidden_dim=hidden, output_dim=out, spiking_units=units,
                    liquid_units=liquid, num_layers=n_layers, integration_mode=mode, mamba_d_state=d_state,
                    mamba_d_conv=d_conv, mamba_expand=d_inner // hidden)
    return inferred, backbone


def _reconcile(path: Path, inferred: dict[str, Any], backbone: str | None, user: dict[str, Any] | None,
               notes: list[str]) -> LiquidConfig:
    fields = dict(inferred)
    if backbone is not None:
        fields["liquid_backbone"] = backbone
    if user is None:
        if backbone is None:
            raise LiquidCheckpointError(f"{path}: no liquid cell weights tell the backbone; pass the ModelConfig "
                                        "JSON (`--config CONFIG.json`) naming liquid_backbone")
        notes.append("no config given: num_spike_steps (how often a length-1 input is repeated) is not in the "
                     "weights and is taken as 1; pass upstream's ModelConfig JSON (`--config`) to set it")
        fields["num_spike_steps"] = 1
    else:
        for name, value in inferred.items():
            given = user.get(name)
            if given is not None and given != value:
                raise LiquidCheckpointError(
                    f"{path}: the config says {name}={given!r} but the weights say {value!r}; the state_dict is the "
                    "truth (ModelConfig.__post_init__ may adjust sizes): pass the JSON saved with these weights")
        given_backbone = user.get("liquid_backbone")
        if backbone is not None and given_backbone not in (None, backbone):
            raise LiquidCheckpointError(f"{path}: the config says liquid_backbone={given_backbone!r} but the cell "
                                        f"weights are those of {backbone!r}")
        if backbone is None:
            if given_backbone not in ("cfc", "ltc"):
                raise LiquidCheckpointError(f"{path}: the state_dict has no liquid cell weights, which only a 'cfc' "
                                            f"or 'ltc' backbone could do without; config says {given_backbone!r}")
            fields["liquid_backbone"] = given_backbone
        steps = user.get("num_spike_steps")
        if steps is None and user.get("sequence_length") is not None:
            steps = max(1, int(user["sequence_length"]) // 4)  # ModelConfig.__post_init__
        fields["num_spike_steps"] = steps if steps is not None else 1
        notes.extend(ignored_field_notes(user, inferred["integration_mode"]))
        if user.get("task_type", "llm") != "llm":
            fields["task_type"] = user["task_type"]
    try:
        return LiquidConfig.from_dict(fields)
    except LiquidConfigError as err:
        raise LiquidCheckpointError(f"{path}: {err}") from None


def _drop(config: LiquidConfig, sd: Mapping[str, torch.Tensor], notes: list[str]) -> dict[str, torch.Tensor]:
    kept: dict[str, torch.Tensor] = {}
    dead: set[str] = set()
    dropped_cell = False
    for key, value in sd.items():
        rest = _BLOCK.sub("", key)
        if rest.startswith(_DEAD) or (config.integration_mode == "sequential" and rest.startswith("spike_to_mamba.")):
            dead.add(rest.split(".")[0])
        elif re.match(r"^spike_encoder\.lif[12]\.mem$", rest):
            pass  # snnTorch's last membrane, a state: every call starts from zero
        elif config.liquid_backbone != "ncp" and rest.startswith("liquid_cell.cell."):
            dropped_cell = True
        else:
            kept[key] = value
    if dead:
        notes.append(f"modules upstream creates but never uses are ignored: {', '.join(sorted(dead))}")
    if dropped_cell or config.liquid_backbone != "ncp":
        notes.append(
            f"liquid_backbone {config.liquid_backbone!r}: upstream never runs its {config.liquid_backbone.upper()} "
            "(an AutoNCP cell of U+4 neurons given a U-wide state raises, and the exception is swallowed), so the "
            "liquid output is the Linear `liquid_cell.fallback`(spikes), as here; the cell weights are ignored")
    return kept


def _lif_notes(model: MambaLiquidSpiking, config_beta: Any, notes: list[str]) -> None:
    for i, block in enumerate(model.blocks):
        for name in ("lif1", "lif2"):
            leaky = getattr(block.spike_encoder, name)
            beta = float(leaky.beta)
            where = f"blocks.{i}.spike_encoder.{name}"
            if not 0.0 <= beta <= 1.0:
                notes.append(f"{where}.beta = {beta} is clamped to [0, 1] as snnTorch does (used: "
                             f"{min(max(beta, 0.0), 1.0)})")
            if int(leaky.reset_mechanism_val) != 0:
                notes.append(f"{where}.reset_mechanism_val = {int(leaky.reset_mechanism_val)}, but snnTorch binds the "
                             "reset at construction (subtract): computed with the subtractive reset")
            if config_beta is not None and abs(float(config_beta) - beta) > 1e-6 and i == 0 and name == "lif1":
                notes.append(f"config beta={config_beta} differs from the trained buffers (e.g. {where}.beta = {beta}); "
                             "the buffers are used")


def _refuse_lazy_missing(path: Path, missing: list[str]) -> None:
    lazy = [k for k in missing if re.match(r"^blocks\.\d+\.(input_proj|residual_proj)\.", k)]
    if lazy:
        raise LiquidCheckpointError(
            f"{path}: {', '.join(lazy)} missing. Upstream creates input_proj / residual_proj inside the first "
            "forward call (FAMILIES.md §2.6, bug 3), so this state_dict was saved before any forward call and the "
            "trained model had fresh random projections. Save model.state_dict() after one forward call")
    raise LiquidCheckpointError(f"{path}: missing keys {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}; "
                                "not a complete MambaLiquidSpikingNetwork state_dict for this config")


def save_checkpoint(model: MambaLiquidSpiking, path: str | Path) -> Path:
    """The model as one safetensors file, its LiquidConfig in the metadata (what a bundle ships)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={META_FORMAT: FORMAT_NAME, META_CONFIG: model.config.to_json()})
    return path


def load_state_dict(path: str | Path, state_dict: Mapping[str, torch.Tensor], config: Any = None
                    ) -> tuple[MambaLiquidSpiking, LiquidConfig, tuple[str, ...]]:
    """Build the model (eval mode) from tensors and the user's config; returns (model, config, notes)."""
    path = Path(path)
    if "blocks.0.spike_encoder.weight" in state_dict or "blocks.0.liquid_cell.weight_ih_l0" in state_dict:
        raise LiquidCheckpointError(
            f"{path}: blocks hold a Linear spike encoder and an LSTM (`spike_encoder.weight`, "
            "`liquid_cell.weight_ih_l0`): upstream silently built placeholder blocks because `src.core.main` "
            "failed to import (bug 6). That is another architecture; retrain with the real SpikingEncoder/LiquidCell")
    check_finite(path, state_dict)
    user = as_config_dict(config, path)
    notes: list[str] = []
    inferred, backbone = infer_config(path, state_dict)
    cfg = _reconcile(path, inferred, backbone, user, notes)
    weights = _drop(cfg, state_dict, notes)
    model = MambaLiquidSpiking(cfg)
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    if missing:
        _refuse_lazy_missing(path, missing)
    unexpected = [k for k in weights if k not in expected]
    if unexpected:
        raise LiquidCheckpointError(f"{path}: unexpected keys {', '.join(unexpected[:6])} for a {cfg.num_layers}-block "
                                    f"{cfg.integration_mode} model with a {cfg.liquid_backbone} backbone")
    for key, tensor in expected.items():
        if tuple(weights[key].shape) != tuple(tensor.shape):
            raise LiquidCheckpointError(f"{path}: {key} has shape {tuple(weights[key].shape)}, expected "
                                        f"{tuple(tensor.shape)} from the other tensors and the config")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in weights.items()}, strict=True)
    _lif_notes(model, None if user is None else user.get("beta"), notes)
    if cfg.liquid_backbone == "ncp":
        notes.append("liquid_backbone 'ncp': the CfC runs at every batch size; upstream computes something else at "
                     "batch 1 (it passes a 1-D zero state, ncps raises, and the exception falls back to the Linear "
                     "`liquid_cell.fallback`)")
    return model.eval(), cfg, tuple(notes)
