"""The runtime contract: what every front-end and backbone runtime offers, and the one stepping loop.

A front-end runtime turns event-count frames into spikes, one time step at a time, with its
state kept inside; a backbone runtime turns those spikes into logits. Each runtime of one half
must give the reference's numbers (`neurodeploy.runtimes.torch`) to a stated tolerance.

Decisions:
- Base classes, not Protocols: the defaults (`run`, `run_layers`, `flush`, `close`, the context
  manager, `latency_steps = 0`, the spike bookkeeping) live here once, so a caller never probes
  a runtime with `hasattr` / `getattr` and a new runtime writes only what differs.
- A pipelined runtime (Lava: one step of delay per layer) says so with `latency_steps > 0`:
  `step` returns None while its pipeline fills and `flush` returns the steps still inside it.
  It re-aligns its own per-layer outputs in `run_layers`, which it must then override.
- `step_layers` is the one loop that steps a front-end over a batch of frames and collects
  every layer's spikes (verify, bench, the export parity check, the report and the benchmarks
  all use it); `step_backbone` is its backbone twin. No other copy of either loop exists.
- Operations a runtime cannot do (hand over its state, batch > 1 on Lava) raise
  `RuntimeOperationError` naming the runtime and the way out, never AttributeError.

docs/architecture.md ("The runtime contract") describes it for contributors.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from abc import ABC, abstractmethod
from typing import Any

import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.model.mamba_spike.model import BackboneState


class RuntimeOperationError(NeurodeployError, RuntimeError):
    """A runtime was asked for something it cannot do (the message names the runtime and the way out)."""


class _Closing:
    """`close()` (idempotent; a no-op unless the runtime holds processes or files) and `with`."""

    def close(self) -> None:
        """Release what the runtime holds (Lava stops its processes); safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FrontendRuntime(_Closing, ABC):
    """Event-count frames `(B, 2, H, W)` -> spikes of the last LIF layer `(B, C, H', W')`.

    Subclasses set `layer_names` (LIF layers in the order a step reaches them) and
    `output_shape` (C, H', W') of the last one, implement `reset` and `step`, call
    `_start_sample(batch)` in `reset` and `_record_spikes({name: spikes})` after each step.

    - `reset(batch)` starts a sample: zero membranes, recurrence inactive for the first step,
      spike counts zeroed.
    - `step(frame)` runs one time step and returns the last layer's spikes of step
      t - `latency_steps` (None while a pipelined runtime fills); afterwards `layer_spikes`
      holds that same step's spikes of every LIF layer (name -> (B, C, H, W)).
    - `flush()` finishes the sample: the last layer's spikes of the steps still in the
      pipeline, `(B, n, C, H', W')` with n = 0 for an unpipelined runtime.
    - `run(frames (B, T, 2, H, W)) -> (B, T, C, H', W')` and `run_layers(frames)` (every layer)
      process whole samples from rest, step t aligned with input step t.
    - `spike_counts`: per layer, spikes summed over batch, neurons and steps since `reset`.
    - `get_state()` / `set_state(state)`: the runtime's own state object, to pause and resume a
      stream; runtimes that cannot hand their state over raise RuntimeOperationError.
    """

    layer_names: tuple[str, ...]
    output_shape: tuple[int, int, int]
    latency_steps: int = 0

    @abstractmethod
    def reset(self, batch: int) -> None: ...

    @abstractmethod
    def step(self, frame: torch.Tensor) -> torch.Tensor | None: ...

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        return self.run_layers(frames)[self.layer_names[-1]]

    def run_layers(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's spikes `(B, T, C, H, W)` of `frames`, each sample from rest."""
        if self.latency_steps:
            raise RuntimeOperationError(f"{type(self).__name__} is pipelined (latency_steps = {self.latency_steps}) "
                                        "and must re-align its outputs in its own run_layers()")
        return _stepped_layers(self, frames, None)

    def flush(self) -> torch.Tensor:
        return torch.zeros((self._batch, 0, *self.output_shape))

    def get_state(self) -> Any:
        raise RuntimeOperationError(f"{type(self).__name__} cannot hand over its state; run the stream on one "
                                    "runtime, or use the torch or nir front-end to pause and resume it")

    def set_state(self, state: Any) -> None:
        self.get_state()  # the same refusal

    # -- spike bookkeeping ----------------------------------------------------------------
    def _start_sample(self, batch: int) -> None:
        self._batch = batch
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


class BackboneRuntime(_Closing, ABC):
    """Front-end spikes -> logits.

    - `reset(batch)` starts a sample.
    - `step(spikes_t (B, C, H, W)) -> logits_t (B, classes)`: the anytime prediction after
      this step.
    - `push(spikes (B, T, C, H, W))`: a packet of steps; the anytime logits after its last.
    - `flush() -> logits`: finishes the sample (the centred interface's look-ahead) and returns
      the final logits, equal to the offline ones.
    - `run(spikes (B, T, C, H, W)) -> logits`: one whole sample offline, from a fresh state; it
      leaves the streaming state alone.
    - `get_state()` returns the streaming state as the model's `BackboneState` (h_last out);
      `set_state(state)` continues from one (h0 in), so a stream can move between runtimes or
      be cut into chunks.
    """

    latency_steps: int = 0

    @abstractmethod
    def reset(self, batch: int) -> None: ...

    @abstractmethod
    def step(self, spikes_t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def flush(self) -> torch.Tensor: ...

    @abstractmethod
    def run(self, spikes: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def get_state(self) -> BackboneState: ...

    @abstractmethod
    def set_state(self, state: BackboneState) -> None: ...

    def push(self, spikes: torch.Tensor) -> torch.Tensor:
        logits = None
        for t in range(spikes.shape[1]):
            logits = self.step(spikes[:, t])
        if logits is None:
            raise RuntimeOperationError("a packet of 0 time steps; send at least one bin")
        return logits


# -- the one stepping loop ----------------------------------------------------------------
@torch.no_grad()
def _stepped_layers(runtime: FrontendRuntime, frames: torch.Tensor,
                    step_seconds: list[float] | None,
                    on_step: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
    runtime.reset(frames.shape[0])
    per_layer: dict[str, list[torch.Tensor]] = {}
    for t in range(frames.shape[1]):
        start = time.perf_counter()
        runtime.step(frames[:, t])
        if step_seconds is not None:
            step_seconds.append(time.perf_counter() - start)
        if on_step is not None:
            on_step()
        for name, s in runtime.layer_spikes.items():
            per_layer.setdefault(name, []).append(torch.as_tensor(s).float())
    return {name: torch.stack(v, dim=1) for name, v in per_layer.items()}


def step_layers(runtime: FrontendRuntime, frames: torch.Tensor, *,
                step_seconds: list[float] | None = None,
                on_step: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
    """Every layer's spikes `(B, T, C, H, W)` of a FrontendRuntime stepped over `frames (B, T, 2, H, W)`.

    Step t of the result is input step t. `step_seconds`, when given, receives the wall time
    of each step; a pipelined runtime runs its samples through `run_layers`, so each of its
    steps is credited an equal share of that run (it includes draining the pipeline). `on_step()`
    is called after each step (a progress bar).
    """
    if not runtime.latency_steps:
        return _stepped_layers(runtime, frames, step_seconds, on_step)
    start = time.perf_counter()
    layers = runtime.run_layers(frames)
    if step_seconds is not None:
        step_seconds.extend([(time.perf_counter() - start) / max(frames.shape[1], 1)] * frames.shape[1])
    for _ in range(frames.shape[1] if on_step is not None else 0):
        on_step()
    return {name: s.float() for name, s in layers.items()}


@torch.no_grad()
def step_backbone(runtime: BackboneRuntime, spikes: torch.Tensor, *,
                  step_seconds: list[float] | None = None,
                  on_step: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A BackboneRuntime streamed over `spikes (B, T, C, H, W)` from a reset, then flushed.

    Returns the anytime logits of every step `(B, T, classes)` and the final logits `(B, classes)`.
    """
    runtime.reset(spikes.shape[0])
    anytime = []
    for t in range(spikes.shape[1]):
        start = time.perf_counter()
        anytime.append(torch.as_tensor(runtime.step(spikes[:, t])).clone())
        if step_seconds is not None:
            step_seconds.append(time.perf_counter() - start)
        if on_step is not None:
            on_step()
    return torch.stack(anytime, dim=1), torch.as_tensor(runtime.flush()).clone()


def step_pipeline(frontend: FrontendRuntime, backbone: BackboneRuntime, frames: torch.Tensor, *,
                  step_seconds: list[float] | None = None, on_step: Callable[[], None] | None = None
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """A front-end then a backbone runtime over `frames (B, T, 2, H, W)`, stepped.

    Returns (every layer's spikes, anytime logits `(B, T, classes)`, final logits);
    `step_seconds` receives the front-end's plus the backbone's wall time of each step.
    """
    frontend_seconds: list[float] = []
    backbone_seconds: list[float] = []
    layers = step_layers(frontend, frames, step_seconds=frontend_seconds, on_step=on_step)
    anytime, final = step_backbone(backbone, layers[frontend.layer_names[-1]], step_seconds=backbone_seconds,
                                   on_step=on_step)
    if step_seconds is not None:
        step_seconds.extend(f + b for f, b in zip(frontend_seconds, backbone_seconds))
    return layers, anytime, final
