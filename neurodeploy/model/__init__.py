"""The Mamba-Spike model family in PyTorch, and checkpoint loading."""
from neurodeploy.model.config import ConfigError, MambaSpikeConfig
from neurodeploy.model.frontend import FrontendState, SpikingFrontend
from neurodeploy.model.lif import LIFParameters, LIFState, lif_step
from neurodeploy.model.mamba import Mamba, MambaState, selective_scan, selective_state_update
from neurodeploy.model.mamba_spike import BackboneState, MambaSpike, MambaSpikeOutput, MambaSpikeState
from neurodeploy.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "BackboneState", "CheckpointError", "ConfigError", "FrontendState", "LIFParameters", "LIFState", "Mamba", "MambaSpike",
    "MambaSpikeConfig", "MambaSpikeOutput", "MambaSpikeState", "MambaState", "SpikingFrontend", "lif_step",
    "load_checkpoint", "save_checkpoint", "selective_scan", "selective_state_update",
]
