"""The Mamba-Spike family: spiking conv front-end -> k-tap interface -> Mamba backbone -> head.

Facts: docs/mamba_spike_model.md; the config covers the reference v1/v2
checkpoints and the deployable variants this toolkit trains.
"""
from neurodeploy.model.mamba_spike.config import ConfigError, MambaSpikeConfig
from neurodeploy.model.mamba_spike.frontend import FrontendState, SpikingFrontend
from neurodeploy.model.mamba_spike.model import BackboneState, MambaSpike, MambaSpikeOutput, MambaSpikeState
from neurodeploy.model.mamba_spike.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "BackboneState", "CheckpointError", "ConfigError", "FrontendState", "MambaSpike", "MambaSpikeConfig",
    "MambaSpikeOutput", "MambaSpikeState", "SpikingFrontend", "load_checkpoint", "save_checkpoint",
]
