"""Mamba-Spike as a `ModelFamily`: detection, loading and capabilities per config."""
from __future__ import annotations

from typing import Any, Mapping

from neurodeploy.model.family import Capability, LoadedModel, ModelFamily, RawCheckpoint
from neurodeploy.model.mamba_spike.checkpoint import FORMAT_NAME, load_checkpoint
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig

NAME = "mamba-spike"


def claims(raw: RawCheckpoint) -> bool:
    if raw.metadata.get("neurodeploy.format") == FORMAT_NAME:
        return True
    keys = raw.state_dict.keys()
    return "spiking_frontend.conv1.weight" in keys and "input_proj.weight" in keys


def load(raw: RawCheckpoint, config: Any = None) -> LoadedModel:
    model, cfg = load_checkpoint(raw.path, config=config)
    if raw.metadata.get("neurodeploy.format") == FORMAT_NAME:
        source = "neurodeploy safetensors"
    elif raw.container:
        source = "reference v2 (b77c890) training checkpoint" if cfg.recurrent else "reference v1 (de1cf60) training checkpoint"
    else:
        source = "state_dict + config" if config is not None else "state_dict (reference keys, config inferred)"
    return LoadedModel(FAMILY, model, cfg, source)


def capabilities(config: MambaSpikeConfig) -> Mapping[str, Capability]:
    if config.pooling == "max":
        nir = Capability.no("NIR 1.0.8 has no max pooling; export with `--pool-rewrite avg|sum` (measured) "
                            "or fine-tune with deployable settings (`neurodeploy train --init-from CKPT`)")
    else:
        nir = Capability.yes()
    netx_blockers = []
    if config.pooling == "max":
        netx_blockers.append("max pooling")
    if config.reset != "zero" or config.reset_timing != "immediate":
        netx_blockers.append(f"{config.reset}/{config.reset_timing} reset (Lava's LIF resets to zero in the same step)")
    if config.recurrent:
        netx_blockers.append("recurrence (netx 0.6 has no convolutional recurrent layer)")
    netx = Capability.no("; ".join(netx_blockers)) if netx_blockers else Capability.yes()
    return {
        "nir": nir,
        "netx": netx,
        "onnx_full": Capability.yes(),
        "onnx_step": Capability.yes(),
        "stream": Capability.yes("centered interface: outputs lag by the look-ahead" if config.interface == "centered" else ""),
        "generate": Capability.no("a classifier of event streams, not a token model"),
        "report": Capability.yes(),
    }


FAMILY = ModelFamily(
    name=NAME,
    summary="spiking conv front-end (LIF) -> moving-average interface -> Mamba backbone -> classifier",
    claims=claims,
    load=load,
    capabilities=capabilities,
    config_from_dict=MambaSpikeConfig.from_dict,
)
