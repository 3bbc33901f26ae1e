"""The whole Mamba-Spike model: front-end -> interface -> backbone -> head, offline and stepped.

Offline: `model(frames (B, T, 2, H, W)) -> logits (B, classes)`.
Streaming:
    state = model.initial_state(batch)
    for frame_t in frames:  logits_t, state = model.step(frame_t, state)
    logits, state = model.flush(state)       # finishes a sample (centered look-ahead)
`logits_t` is the anytime prediction: the head applied to the running mean of the backbone
outputs so far (the head of a model with no backbone step yet sees a zero mean; `state.backbone.count`
says how many steps the mean holds). After `flush`, the logits equal the offline logits.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.frontend import FrontendState, SpikingFrontend
from neurodeploy.model.mamba_spike.interface import InterfaceState, interface_initial_state, interface_step, moving_average
from neurodeploy.model.mamba import Mamba, MambaState


class BackboneState(NamedTuple):
    """Everything after the front-end: interface ring, per-layer Mamba state, running mean."""

    interface: InterfaceState
    layers: tuple[MambaState, ...]
    feature_sum: torch.Tensor  # (B, d_model), sum of the last block's outputs
    count: int  # backbone steps in feature_sum
    received: int  # spike frames of the sample pushed into the interface
    pushed: int  # frames pushed into the interface, the flush's zero frames included


class MambaSpikeState(NamedTuple):
    frontend: FrontendState
    backbone: BackboneState


class MambaSpikeOutput(NamedTuple):
    logits: torch.Tensor
    spikes: list[torch.Tensor]  # per LIF layer, (B, T, C, H, W)


class ResidualMambaBlock(nn.Module):
    """`x + mamba(norm(x))` (reference key names `mamba_blocks.{i}.norm` / `.mamba`)."""

    def __init__(self, config: MambaSpikeConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.mamba = Mamba(config.d_model, config.d_state, config.d_conv, config.expand)

    def forward(self, x: torch.Tensor, state: MambaState | None = None) -> tuple[torch.Tensor, MambaState]:
        y, state = self.mamba(self.norm(x), state)
        return x + y, state

    def step(self, x: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        y, state = self.mamba.step(self.norm(x), state)
        return x + y, state


class MambaSpike(nn.Module):
    def __init__(self, config: MambaSpikeConfig):
        super().__init__()
        self.config = config
        self.spiking_frontend = SpikingFrontend(config)
        self.input_proj = nn.Linear(config.spike_features, config.d_model)
        self.mamba_blocks = nn.ModuleList(ResidualMambaBlock(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.classifier = nn.Linear(config.d_model, config.num_classes)

    # -- offline -------------------------------------------------------------------------
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.run(frames).logits

    def run(self, frames: torch.Tensor) -> MambaSpikeOutput:
        """frames `(B, T, 2, H, W)` -> logits and every layer's spikes."""
        self._check_frames(frames, sequence=True)
        spikes, _ = self.spiking_frontend(frames)
        return MambaSpikeOutput(self.backbone_forward(spikes[-1]), spikes)

    def backbone_forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """Front-end output spikes `(B, T, C, H, W)` -> logits: interface, backbone, head."""
        smoothed = moving_average(spikes.flatten(2), self.config.interface_window, self.config.interface)
        x = self.input_proj(smoothed)
        for block in self.mamba_blocks:
            x, _ = block(x)
        return self.head(x.mean(dim=1))

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(pooled))

    # -- streaming -----------------------------------------------------------------------
    def initial_state(self, batch: int, *, device=None, dtype=torch.float32) -> MambaSpikeState:
        return MambaSpikeState(
            self.spiking_frontend.initial_state(batch, device=device, dtype=dtype),
            self.backbone_initial_state(batch, device=device, dtype=dtype),
        )

    def backbone_initial_state(self, batch: int, *, device=None, dtype=torch.float32) -> BackboneState:
        c = self.config
        return BackboneState(
            interface=interface_initial_state(batch, c.spike_features, c.interface_window, dtype=dtype, device=device),
            layers=tuple(b.mamba.initial_state(batch, device=device, dtype=dtype) for b in self.mamba_blocks),
            feature_sum=torch.zeros(batch, c.d_model, dtype=dtype, device=device),
            count=0,
            received=0,
            pushed=0,
        )

    def step(self, frame: torch.Tensor, state: MambaSpikeState) -> tuple[torch.Tensor, MambaSpikeState]:
        """frame `(B, 2, H, W)` -> anytime logits `(B, classes)` and the new state."""
        self._check_frames(frame, sequence=False)
        logits, state, _ = self.step_with_spikes(frame, state)
        return logits, state

    def step_with_spikes(
        self, frame: torch.Tensor, state: MambaSpikeState
    ) -> tuple[torch.Tensor, MambaSpikeState, list[torch.Tensor]]:
        spikes, frontend_state = self.spiking_frontend.step(frame, state.frontend)
        logits, backbone_state = self.backbone_step(spikes[-1], state.backbone)
        return logits, MambaSpikeState(frontend_state, backbone_state), spikes

    def backbone_step(self, spikes_t: torch.Tensor, state: BackboneState) -> tuple[torch.Tensor, BackboneState]:
        """Front-end spikes of one step `(B, C, H, W)` -> anytime logits and the new state.

        With a centered interface the first `lookahead` ((k-1)//2) pushes only fill the ring buffer: the output
        for step t is known once step t + lookahead has arrived.
        """
        return self._push(spikes_t.flatten(1), state, real=True)

    def flush(self, state: MambaSpikeState) -> tuple[torch.Tensor, MambaSpikeState]:
        """Finish a sample: feed the centered interface's look-ahead zero frames; final logits."""
        logits, backbone_state = self.backbone_flush(state.backbone)
        return logits, MambaSpikeState(state.frontend, backbone_state)

    def backbone_flush(self, state: BackboneState) -> tuple[torch.Tensor, BackboneState]:
        # the output for step t is known once step t + lookahead was pushed: pad with zeros up to
        # the last real step's window (idempotent: a second flush pushes nothing)
        pending = state.received + self.config.lookahead - state.pushed if state.received else 0
        zeros = state.feature_sum.new_zeros(state.feature_sum.shape[0], self.config.spike_features)
        for _ in range(pending):
            _, state = self._push(zeros, state, real=False)
        return self.anytime_logits(state), state

    def anytime_logits(self, state: BackboneState) -> torch.Tensor:
        return self.head(state.feature_sum / max(state.count, 1))

    def _push(self, flat: torch.Tensor, state: BackboneState, *, real: bool) -> tuple[torch.Tensor, BackboneState]:
        smoothed, interface_state = interface_step(flat, state.interface)
        received = state.received + int(real)
        pushed = state.pushed + 1
        if pushed <= self.config.lookahead:
            state = state._replace(interface=interface_state, received=received, pushed=pushed)
            return self.anytime_logits(state), state
        x = self.input_proj(smoothed)
        layers = []
        for block, layer_state in zip(self.mamba_blocks, state.layers):
            x, layer_state = block.step(x, layer_state)
            layers.append(layer_state)
        state = BackboneState(interface_state, tuple(layers), state.feature_sum + x, state.count + 1, received, pushed)
        return self.anytime_logits(state), state

    # -- checks --------------------------------------------------------------------------
    def _check_frames(self, frames: torch.Tensor, *, sequence: bool) -> None:
        c = self.config
        expected = (c.input_channels, c.input_height, c.input_width)
        lead = "(B, T, " if sequence else "(B, "
        ndim = 5 if sequence else 4
        if frames.ndim != ndim or tuple(frames.shape[-3:]) != expected:
            raise ValueError(
                f"frames of shape {tuple(frames.shape)}; this model expects {lead}{', '.join(map(str, expected))}) "
                f"event-count frames (channel 0 OFF, 1 ON). Bin events with neurodeploy.events at the model's sensor size."
            )
