"""The SpikeMamba LM family (The-Swarm-Corporation/SpikeMamba): model, LIF gates, checkpoints."""
from neurodeploy.model.spikemamba_lm.config import SpikeMambaConfigError, SpikeMambaLMConfig
from neurodeploy.model.spikemamba_lm.model import LayerState, LMOutput, LMState, SpikeMambaLM
from neurodeploy.model.spikemamba_lm.neuron import GateParameters, GateState, gate_step

__all__ = ["GateParameters", "GateState", "LMOutput", "LMState", "LayerState", "SpikeMambaConfigError",
           "SpikeMambaLM", "SpikeMambaLMConfig", "gate_step"]
