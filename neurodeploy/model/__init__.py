"""The Mamba-Spike model family in PyTorch, and checkpoint loading."""
from neurodeploy.model.mamba_spike.config import ConfigError, MambaSpikeConfig
from neurodeploy.model.mamba_spike.frontend import FrontendState, SpikingFrontend
from neurodeploy.model.lif import LIFParameters, LIFState, lif_step
from neurodeploy.model.mamba import Mamba, MambaState, selective_scan, selective_state_update
from neurodeploy.model.mamba_spike.model import BackboneState, MambaSpike, MambaSpikeOutput, MambaSpikeState
from neurodeploy.model.mamba_spike.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "BackboneState", "CheckpointError", "ConfigError", "FrontendState", "LIFParameters", "LIFState", "Mamba", "MambaSpike",
    "MambaSpikeConfig", "MambaSpikeOutput", "MambaSpikeState", "MambaState", "SpikingFrontend", "lif_step",
    "load_checkpoint", "save_checkpoint", "selective_scan", "selective_state_update",
]
