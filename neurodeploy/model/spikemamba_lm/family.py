"""SpikeMamba LM as a `ModelFamily`: detection, loading and capabilities per config."""
from __future__ import annotations

from typing import Any, Mapping

from neurodeploy.model.family import Capability, LoadedModel, ModelFamily, RawCheckpoint
from neurodeploy.model.spikemamba_lm.checkpoint import build_model, is_own_format, looks_like_spikemamba
from neurodeploy.model.spikemamba_lm.config import SpikeMambaLMConfig
from neurodeploy.model.spikemamba_lm.model import FAMILY_NAME

# What NIR 1.0.8 cannot express (FAMILIES.md §1.5); the NIR exporter's refusal says the same.
NIR_REASON = (
    "NIR 1.0.8 cannot express SpikeMamba's LIF gates: the adaptive threshold (threshold + a*scale with a trace of the "
    "spikes), the refractory counter (input withheld for P steps after a spike), spike x activation gating (NIR edges "
    "add and Scale is constant), and the `>=` compare (NIR's threshold is strict); and the neurons sit between analog "
    "Mamba ops. Use the ONNX graphs (full and step) instead"
)


def claims(raw: RawCheckpoint) -> bool:
    return is_own_format(raw) or (not raw.metadata.get("neurodeploy.format") and looks_like_spikemamba(raw))


def load(raw: RawCheckpoint, config: Any = None) -> LoadedModel:
    model, cfg, notes = build_model(raw, config)
    source = "neurodeploy safetensors" if is_own_format(raw) else "upstream state_dict + config"
    return LoadedModel(FAMILY, model, cfg, source, tuple(notes))


def capabilities(config: SpikeMambaLMConfig) -> Mapping[str, Capability]:
    adaptive = ("temporal_pooling 'adaptive' scales each layer by the membrane after the whole call, averaged over the "
                "batch: not causal, so there is no per-token form")
    causal = Capability.yes() if config.streamable else Capability.no(adaptive)
    return {
        "nir": Capability.no(NIR_REASON),
        "netx": Capability.no("netx (Lava) has no adaptive-threshold, refractory or gating neurons, and no Mamba ops"),
        "onnx_full": Capability.yes("with a warning: adaptive pooling couples the batch" if not config.streamable else ""),
        "onnx_step": causal,
        "stream": causal,
        "generate": causal,
        "report": Capability.yes(),
    }


FAMILY = ModelFamily(
    name=FAMILY_NAME,
    summary="token LM: embedding -> Mamba-1 layers wrapped by LIF gates (pre/post/residual) -> RMSNorm -> tied head",
    claims=claims,
    load=load,
    capabilities=capabilities,
    config_from_dict=SpikeMambaLMConfig.from_dict,
)
