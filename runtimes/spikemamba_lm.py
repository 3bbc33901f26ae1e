"""SpikeMamba LM token runtimes: PyTorch and the ONNX step graph, one protocol.

A `TokenRuntime` (a base class, like the event runtimes of `runtimes/contract.py`, but for
token models: the state is explicit, not kept inside) holds no hidden state:
`initial_state(batch)` makes one, `step(token, state)` advances it by one token per row and
returns `TokenStep(logits (B, V), spikes, state)`, where `spikes` maps each gate kind to
`(n_layers, B, d_model)` 0/1 arrays. `prefill(tokens, state)` feeds a prompt token by token, so
N single steps and an N-token prefill are one code path in every runtime; the PyTorch model's offline forward and the ONNX full graph are checked equal to
it by the tests. States are carried as the graphs' stacked numpy arrays (names of
`neurodeploy.exporters.onnx_spikemamba.state_names`), so a state can move between runtimes.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from neurodeploy.formats.onnx_spikemamba import feeds_to_state, state_names, state_to_feeds
from neurodeploy.model.spikemamba_lm.model import SpikeMambaLM, check_token_ids

State = dict[str, np.ndarray]


class TokenStep(NamedTuple):
    logits: np.ndarray  # (B, V) float32
    spikes: dict[str, np.ndarray]  # gate kind -> (n_layers, B, d_model)
    state: State


class TokenRuntime(ABC):
    name: str
    vocab_size: int
    gates: tuple[str, ...]

    @abstractmethod
    def initial_state(self, batch: int) -> State:
        """Zero conv / ssm / neuron states for `batch` rows."""

    @abstractmethod
    def step(self, token: np.ndarray, state: State) -> TokenStep:
        """One token per row, `token (B,)` int64."""

    def prefill(self, tokens: np.ndarray, state: State | None = None) -> list[TokenStep]:
        """Feed `tokens (B, N)` one token at a time; returns every step (the last holds the state)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        state = self.initial_state(tokens.shape[0]) if state is None else state
        steps = []
        for t in range(tokens.shape[1]):
            out = self.step(tokens[:, t], state)
            state = out.state
            steps.append(out)
        return steps


def check_ids(tokens: np.ndarray, vocab_size: int) -> None:
    if tokens.size:
        check_token_ids(tokens, vocab_size)


class TorchTokenRuntime(TokenRuntime):
    name = "torch"

    def __init__(self, model: SpikeMambaLM):
        self.model = model.eval()
        self.vocab_size = model.config.vocab_size
        self.gates = model.config.gates
        self.n_layers = model.config.n_layer

    def initial_state(self, batch: int) -> State:
        return state_to_feeds(self.model.initial_state(batch), self.gates)

    @torch.no_grad()
    def step(self, token: np.ndarray, state: State) -> TokenStep:
        token = np.asarray(token, dtype=np.int64)
        check_ids(token, self.vocab_size)
        out = self.model.step(torch.from_numpy(token), feeds_to_state(state, self.gates))
        spikes = {g: torch.stack([out.spikes[f"layers.{i}.{g}"] for i in range(self.n_layers)]).numpy() for g in self.gates}
        return TokenStep(out.logits.numpy(), spikes, state_to_feeds(out.state, self.gates))


class OnnxTokenRuntime(TokenRuntime):
    """The step graph (model_step.onnx) in a plain onnxruntime session, one intra-op thread
    (batch-1 generation is latency-bound: a thread pool only adds wake-ups to tiny kernels)."""

    name = "onnxruntime"

    def __init__(self, step_path: str | Path, *, vocab_size: int, gates: tuple[str, ...], n_layers: int,
                 d_model: int, d_inner: int, d_conv: int, d_state: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(step_path), options, providers=["CPUExecutionProvider"])
        self.vocab_size, self.gates, self.n_layers = vocab_size, tuple(gates), n_layers
        self._sizes = dict(d_model=d_model, d_inner=d_inner, d_conv=d_conv, d_state=d_state)
        self._names = state_names(self.gates)
        self._outputs = [o.name for o in self.session.get_outputs()]

    @classmethod
    def for_model(cls, step_path: str | Path, model: SpikeMambaLM) -> OnnxTokenRuntime:
        c = model.config
        return cls(step_path, vocab_size=c.vocab_size, gates=c.gates, n_layers=c.n_layer, d_model=c.d_model,
                   d_inner=c.d_inner, d_conv=c.d_conv, d_state=c.d_state)

    def initial_state(self, batch: int) -> State:
        s, L = self._sizes, self.n_layers
        state = {"conv_state": np.zeros((L, batch, s["d_inner"], s["d_conv"]), np.float32),
                 "ssm_state": np.zeros((L, batch, s["d_inner"], s["d_state"]), np.float32)}
        state.update({n: np.zeros((L, batch, s["d_model"]), np.float32) for n in self._names[2:]})
        return state

    def step(self, token: np.ndarray, state: State) -> TokenStep:
        token = np.asarray(token, dtype=np.int64)
        check_ids(token, self.vocab_size)
        values = dict(zip(self._outputs, self.session.run(None, {"token": token, **state})))
        return TokenStep(values["logits"], {g: values[f"spikes_{g}"] for g in self.gates},
                         {n: values[f"{n}_out"] for n in self._names})
