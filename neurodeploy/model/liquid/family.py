"""Mamba-Liquid-Spiking as a `ModelFamily`: detection, loading and capabilities per config."""
from __future__ import annotations

import json
from typing import Any, Mapping

from neurodeploy.model.family import Capability, LoadedModel, ModelFamily, RawCheckpoint
from neurodeploy.model.liquid.checkpoint import claims as _claims
from neurodeploy.model.liquid.checkpoint import FORMAT_NAME, META_CONFIG, META_FORMAT, load_state_dict
from neurodeploy.model.liquid.config import LiquidConfig
from neurodeploy.model.liquid.model import STREAM_REFUSAL

NAME = "liquid"


def claims(raw: RawCheckpoint) -> bool:
    return _claims(raw.state_dict)


def load(raw: RawCheckpoint, config: Any = None) -> LoadedModel:
    own = raw.metadata.get(META_FORMAT) == FORMAT_NAME
    if config is None and own:
        config = json.loads(raw.metadata[META_CONFIG])
    model, cfg, notes = load_state_dict(raw.path, raw.state_dict, config)
    if own:
        source = "neurodeploy safetensors"
    else:
        source = "state_dict + ModelConfig JSON" if config is not None else "state_dict (config inferred from the weights)"
    return LoadedModel(FAMILY, model, cfg, source, notes)


def capabilities(config: LiquidConfig) -> Mapping[str, Capability]:
    causal = config.integration_mode == "sequential"
    refusal = Capability.no(STREAM_REFUSAL.format(mode=config.integration_mode))
    return {
        "nir": Capability.yes("the spike encoder of every block (Affine -> LIF -> Affine -> LIF)"),
        "netx": Capability.no("the encoders' snnTorch Leaky resets by subtraction one step late; Lava's LIF resets "
                              "to zero in the spiking step"),
        "onnx_full": Capability.yes("per block: everything but the spike encoder, run interleaved with the NIR encoders"),
        "onnx_step": Capability.yes("block_{i}_step.onnx: one token, CfC h and Mamba conv/ssm states in and out")
        if causal else refusal,
        "stream": Capability.yes("token by token with explicit state: LIF membranes, CfC h, Mamba conv/ssm states")
        if causal else Capability.yes(
            "with a fixed delay of 24 tokens per block (DelayedStream; torch): the temporal adapter is a centred "
            "kernel; below 50 tokens its taps depend on the length, so a stream that ends before 50 tokens gets its "
            "logits at the end"),
        "generate": Capability.no("token generation is not implemented for this family; `step` gives the logits of "
                                  "each next token"),
        "report": Capability.yes("encoders on a neuromorphic target, the rest on the host"),
    }


FAMILY = ModelFamily(
    name=NAME,
    summary="Mamba-Liquid-Spiking LM: spike encoder (snnTorch Leaky) -> CfC liquid cell -> Mamba with LayerNorm "
            "before the gate, per block; sequential / parallel / bidirectional",
    claims=claims,
    load=load,
    capabilities=capabilities,
    config_from_dict=LiquidConfig.from_dict,
)
