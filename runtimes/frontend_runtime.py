"""The two interfaces every runtime implements (DESIGN.md "Layout").

A front-end runtime turns event-count frames into spikes, one time step at a time, with its
state kept inside; a backbone runtime turns spikes into logits. Each runtime of one half must
give the reference's numbers (`neurodeploy.runtimes.torch`) to a stated tolerance.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from neurodeploy.model.mamba_spike.model import BackboneState


@runtime_checkable
class FrontendRuntime(Protocol):
    """Event-count frames -> spikes of the last LIF layer.

    `reset(batch)` starts a sample (zero membranes, recurrence inactive for the first step).
    `step(frame (B, 2, H, W)) -> (B, C, H', W')` runs one time step; afterwards
    `layer_spikes` holds that step's spikes of every LIF layer (name -> (B, C, H, W)), for
    parity tests. `run(frames (B, T, 2, H, W)) -> (B, T, C, H', W')` resets to batch B and
    steps through all T. `spike_counts` is, per layer name, the number of spikes (summed
    over batch, neurons and steps) since the last reset.
    """

    layer_names: tuple[str, ...]

    def reset(self, batch: int) -> None: ...

    def step(self, frame: torch.Tensor) -> torch.Tensor: ...

    def run(self, frames: torch.Tensor) -> torch.Tensor: ...

    @property
    def layer_spikes(self) -> dict[str, torch.Tensor]: ...

    @property
    def spike_counts(self) -> dict[str, int]: ...


@runtime_checkable
class BackboneRuntime(Protocol):
    """Front-end spikes -> logits.

    `reset(batch)` starts a sample. `step(spikes_t (B, C, H, W)) -> logits_t (B, classes)`:
    the anytime prediction after this step. `flush() -> logits`: finishes the sample (the
    centred interface's look-ahead) and returns the final logits, equal to the offline ones.
    `run(spikes (B, T, C, H, W)) -> logits`: one whole sample offline, from a fresh state; it
    leaves the streaming state alone. `get_state()` returns the streaming state as the
    model's `BackboneState` (h_last out); `set_state(state)` continues from one (h0 in), so
    a stream can move between runtimes or be cut into chunks.
    """

    def reset(self, batch: int) -> None: ...

    def step(self, spikes_t: torch.Tensor) -> torch.Tensor: ...

    def run(self, spikes: torch.Tensor) -> torch.Tensor: ...

    def flush(self) -> torch.Tensor: ...

    def get_state(self) -> BackboneState: ...

    def set_state(self, state: BackboneState) -> None: ...


class SpikeCounting:
    """The `layer_spikes` / `spike_counts` bookkeeping that every FrontendRuntime shares.

    Subclasses set `layer_names`, call `_clear_spikes()` on reset and `_record_spikes(...)`
    with each step's spikes per layer (a runtime with its own recording, such as Lava's
    pipelined one, updates `_layer_spikes` and `_counts` itself).
    """

    layer_names: tuple[str, ...]

    def _clear_spikes(self) -> None:
        self._layer_spikes: dict[str, torch.Tensor] = {}
        self._counts = dict.fromkeys(self.layer_names, 0)

    def _record_spikes(self, layer_spikes: dict[str, torch.Tensor]) -> None:
        self._layer_spikes = layer_spikes
        for name, s in layer_spikes.items():
            self._counts[name] += int(s.sum().item())

    @property
    def layer_spikes(self) -> dict[str, torch.Tensor]:
        return dict(self._layer_spikes)

    @property
    def spike_counts(self) -> dict[str, int]:
        return dict(self._counts)
