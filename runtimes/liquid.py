"""Run a Mamba-Liquid-Spiking deployment: NIR spike encoders and ONNX blocks, interleaved.

    ids -> stem.onnx -> x_p
    for every block i:  spikes_i = encoder_i.nir (NIRFrontendRuntime)(x_p)
                        x_p      = block_i.onnx(x_p, spikes_i)          (the last block: logits)

Whole sequences (`run`) use the full graphs; sequential-mode models also stream token by token
(`reset` / `step`) with the step graphs, every state explicit: the NIR runtime keeps each
encoder's membranes (and last spikes, the delayed reset), and `BlockStreamState` holds the CfC
h and the Mamba conv/ssm states of every block as numpy arrays in and out of the step graphs.

A length-1 input is repeated `num_spike_steps` times before the encoders, as upstream's
encoder does (offline only; `step` streams with full-sequence semantics).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import onnxruntime as ort
import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.formats.liquid import LIF_LAYERS, STATE_NAMES, STEM_FILE, block_file, encoder_file
from neurodeploy.runtimes.nir import NIRFrontendRuntime
from neurodeploy.runtimes.onnxruntime import latency_session_options


class LiquidRuntimeError(NeurodeployError, RuntimeError):
    """The deployment cannot do what was asked (e.g. stream a non-causal mode); the message says why."""


@dataclass(frozen=True)
class LiquidRun:
    """One offline run: logits and, per block, every encoder layer's spikes (g * {0, 1}) and intermediates."""

    logits: torch.Tensor  # (B, T, out)
    spikes: tuple[dict[str, torch.Tensor], ...]  # per block: {"lif1": (B, T, 2S), "lif2": (B, T, S)}
    liquid: tuple[torch.Tensor, ...]  # per block CfC / fallback output (B, T, U)
    mamba: tuple[torch.Tensor, ...]  # per block liquid-Mamba output (B, T, H)


@dataclass
class BlockStreamState:
    liquid_h: np.ndarray  # (B, U)
    conv_state: np.ndarray  # (B, Di, K)
    ssm_state: np.ndarray  # (B, Di, N)


def _gains(graph: nir.NIRGraph) -> dict[str, float]:
    """The graded spike factor after each LIF layer (the Scale node following it, else 1)."""
    gains = {}
    for layer in LIF_LAYERS:
        after = [dst for src, dst in graph.edges if src == layer]
        node = graph.nodes[after[0]] if after else None
        gains[layer] = float(np.asarray(node.scale).flat[0]) if isinstance(node, nir.Scale) else 1.0
    return gains


class LiquidPipeline:
    def __init__(self, directory: str | Path, *, num_blocks: int, num_spike_steps: int, streamable: bool,
                 options: ort.SessionOptions | None = None):
        directory = Path(directory)
        options = options or latency_session_options()
        self.num_spike_steps = num_spike_steps
        self.stem = ort.InferenceSession(str(directory / STEM_FILE), options)
        self.encoders = [NIRFrontendRuntime(directory / encoder_file(i)) for i in range(num_blocks)]
        self.gains = [_gains(encoder.graph) for encoder in self.encoders]
        self.blocks = [ort.InferenceSession(str(directory / block_file(i)), options) for i in range(num_blocks)]
        self.step_blocks = [ort.InferenceSession(str(directory / block_file(i, step=True)), options)
                            for i in range(num_blocks)] if streamable else []
        self._states: list[BlockStreamState] | None = None

    @property
    def streamable(self) -> bool:
        return bool(self.step_blocks)

    def _embed(self, ids: torch.Tensor) -> np.ndarray:
        return self.stem.run(None, {"ids": ids.to(torch.int64).numpy()})[0]

    @torch.no_grad()
    def run(self, ids: torch.Tensor) -> LiquidRun:
        """ids (B, T) -> logits (B, T', out) with every encoder on NIR and every block on ONNX."""
        x = self._embed(ids)
        spikes, liquid, mamba = [], [], []
        for encoder, gains, block in zip(self.encoders, self.gains, self.blocks):
            encoder_in = torch.from_numpy(x)
            if encoder_in.shape[1] == 1:
                encoder_in = encoder_in.repeat(1, self.num_spike_steps, 1)
            layers = {name: s * gains[name] for name, s in encoder.run_layers(encoder_in).items()}
            spikes.append(layers)
            x, q, m, _ = block.run(None, {"x_p": x, "spikes": layers["lif2"].numpy().astype(np.float32)})
            liquid.append(torch.from_numpy(q))
            mamba.append(torch.from_numpy(m))
        return LiquidRun(torch.from_numpy(x), tuple(spikes), tuple(liquid), tuple(mamba))

    # -- streaming -------------------------------------------------------------------------------
    def reset(self, batch: int) -> None:
        if not self.streamable:
            raise LiquidRuntimeError("this deployment has no step graphs: only 'sequential' Mamba-Liquid-Spiking models "
                                     "step token by token (the temporal adapter of parallel/bidirectional modes looks "
                                     "ahead); stream those in torch with a 24-token delay per block "
                                     "(neurodeploy.model.liquid.delayed.DelayedStream)")
        self._states = []
        for encoder, block in zip(self.encoders, self.step_blocks):
            encoder.reset(batch)
            shapes = {i.name: i.shape for i in block.get_inputs()}
            self._states.append(BlockStreamState(*(np.zeros((batch, *shapes[name][1:]), np.float32)
                                                   for name in STATE_NAMES)))

    @property
    def states(self) -> list[BlockStreamState]:
        if self._states is None:
            raise LiquidRuntimeError("call reset(batch) before step()")
        return self._states

    @torch.no_grad()
    def step(self, ids_t: torch.Tensor) -> torch.Tensor:
        """ids_t (B,) -> logits (B, out) of this token; every state advances by one step."""
        states = self.states
        x = self._embed(ids_t.reshape(-1, 1))[:, 0]
        for encoder, block, state in zip(self.encoders, self.step_blocks, states):
            spikes = encoder.step(torch.from_numpy(x)).numpy().astype(np.float32)
            states_in = dict(zip(STATE_NAMES, (state.liquid_h, state.conv_state, state.ssm_state)))
            x, state.liquid_h, state.conv_state, state.ssm_state = block.run(None, {
                "x_p_t": x, "spikes_t": spikes, **states_in})
        return torch.from_numpy(x)

    def spike_counts(self) -> list[dict[str, int]]:
        """Spikes per encoder layer since the last reset (streaming)."""
        return [dict(encoder.spike_counts) for encoder in self.encoders]
