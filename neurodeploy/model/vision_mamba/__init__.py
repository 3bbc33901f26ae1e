"""The Vision Mamba family (EdgeVisionMamba / hustvl Vim, bimamba v2): docs/vision_mamba.md."""
from neurodeploy.model.vision_mamba.checkpoint import VisionMambaCheckpointError
from neurodeploy.model.vision_mamba.config import VisionMambaConfig, VisionMambaConfigError
from neurodeploy.model.vision_mamba.model import VisionMamba

__all__ = ["VisionMamba", "VisionMambaCheckpointError", "VisionMambaConfig", "VisionMambaConfigError"]
