"""The reference runtimes: the PyTorch model itself, stepped (thin wrappers of MambaSpike)."""
from __future__ import annotations

import torch

from neurodeploy.model.mamba_spike.frontend import LAYER_NAMES, FrontendState, SpikingFrontend
from neurodeploy.model.mamba_spike.model import BackboneState, MambaSpike
from neurodeploy.runtimes.contract import BackboneRuntime, FrontendRuntime


def _frontend_of(model: MambaSpike | SpikingFrontend) -> SpikingFrontend:
    if isinstance(model, MambaSpike):
        return model.spiking_frontend
    if isinstance(model, SpikingFrontend):
        return model
    raise TypeError(f"expected a MambaSpike or SpikingFrontend, not {type(model).__name__}")


class TorchFrontendRuntime(FrontendRuntime):
    """FrontendRuntime over `SpikingFrontend.step` (and its batched `forward` for `run`)."""

    layer_names = LAYER_NAMES

    def __init__(self, model: MambaSpike | SpikingFrontend):
        self.frontend = _frontend_of(model).eval()
        self.output_shape = self.frontend.layer_shapes()[-1]
        self.reset(1)

    def reset(self, batch: int) -> None:
        parameter = next(self.frontend.parameters())
        self.state: FrontendState = self.frontend.initial_state(batch, device=parameter.device, dtype=parameter.dtype)
        self._start_sample(batch)

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        spikes, self.state = self.frontend.step(frame, self.state)
        self._record(spikes)
        return spikes[-1]

    @torch.no_grad()
    def run_layers(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """The offline path: convolutions of many steps batched, LIF stepped."""
        self.reset(frames.shape[0])
        spikes, self.state = self.frontend(frames, self.state)
        self._record(spikes)
        self._layer_spikes = {name: s[:, -1] for name, s in zip(LAYER_NAMES, spikes)}
        return dict(zip(LAYER_NAMES, spikes))

    def _record(self, spikes: list[torch.Tensor]) -> None:
        self._record_spikes(dict(zip(LAYER_NAMES, spikes)))

    def get_state(self) -> FrontendState:
        return self.state

    def set_state(self, state: FrontendState) -> None:
        self.state = state


class TorchBackboneRuntime(BackboneRuntime):
    """BackboneRuntime over `MambaSpike.backbone_step / backbone_flush / backbone_forward`."""

    def __init__(self, model: MambaSpike):
        if not isinstance(model, MambaSpike):
            raise TypeError(f"expected a MambaSpike, not {type(model).__name__}")
        self.model = model.eval()
        self.reset(1)

    def reset(self, batch: int) -> None:
        parameter = next(self.model.parameters())
        self.state: BackboneState = self.model.backbone_initial_state(batch, device=parameter.device, dtype=parameter.dtype)

    @torch.no_grad()
    def step(self, spikes_t: torch.Tensor) -> torch.Tensor:
        logits, self.state = self.model.backbone_step(spikes_t, self.state)
        return logits

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        logits, self.state = self.model.backbone_flush(self.state)
        return logits

    @torch.no_grad()
    def run(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.model.backbone_forward(spikes)

    def get_state(self) -> BackboneState:
        return self.state

    def set_state(self, state: BackboneState) -> None:
        self.state = state
