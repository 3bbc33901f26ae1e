"""Vision Mamba as a `ModelFamily`: detection, loading and capabilities.

Capabilities are the same for every config: the model is non-causal (bidirectional mixing, a
middle cls token reads tokens on both sides), so only the whole-image ONNX graph exists;
chunk / step graphs and streaming are refused with that reason (docs/vision_mamba.md, "Deployment").
"""
from __future__ import annotations

from typing import Any, Mapping

from neurodeploy.model.family import Capability, LoadedModel, ModelFamily, RawCheckpoint
from neurodeploy.model.vision_mamba.checkpoint import build_model, infer_config, is_vision_mamba_state_dict
from neurodeploy.model.vision_mamba.config import VisionMambaConfig

NAME = "vision-mamba"


def claims(raw: RawCheckpoint) -> bool:
    return is_vision_mamba_state_dict(raw.state_dict.keys())


def load(raw: RawCheckpoint, config: Any = None) -> LoadedModel:
    cfg, notes = infer_config(raw, config)
    model = build_model(raw, cfg)
    if "args" in raw.container:
        source = "Vision Mamba training checkpoint ({model, args})"
    else:
        source = "state_dict + config" if config is not None else "state_dict (config inferred)"
    return LoadedModel(FAMILY, model, cfg, source, tuple(notes))


def _non_causal(config: VisionMambaConfig) -> str:
    where = {"middle": "a middle cls token", "head": "a cls token", "double": "cls tokens at both ends",
             "none": "pooling over all tokens"}[config.cls_position]
    return (f"Vision Mamba mixes every layer in both directions (bimamba v2) and reads {where}: each output needs the "
            "whole image's tokens, so there is no step, chunk or streaming form; export the whole-image graph (onnx_full)")


def capabilities(config: VisionMambaConfig) -> Mapping[str, Capability]:
    non_causal = _non_causal(config)
    return {
        "nir": Capability.no("nothing spiking: Vision Mamba is dense; export ONNX"),
        "netx": Capability.no("nothing spiking: Vision Mamba is dense; export ONNX"),
        "onnx_full": Capability.yes("one graph per image size: images (B, C, H, W) -> logits"),
        "onnx_step": Capability.no(non_causal),
        "stream": Capability.no(non_causal),
        "generate": Capability.no("an image classifier, not a token model"),
        "report": Capability.yes("dense MACs, parameter footprint and energy per image on host devices"),
    }


FAMILY = ModelFamily(
    name=NAME,
    summary="patch embed -> cls + pos embed -> bidirectional (bimamba v2) Mamba layers -> norm -> head",
    claims=claims,
    load=load,
    capabilities=capabilities,
    config_from_dict=VisionMambaConfig.from_dict,
)
