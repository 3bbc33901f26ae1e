"""The backbone in onnxruntime: the full, chunk and step graphs of neurodeploy.exporters.onnx.

`OnnxBackboneRuntime` is a BackboneRuntime (runtimes/contract.py): `reset(batch)`, `step(spikes_t)`,
`push(spikes)` for a packet of several bins, `flush()`, `run(spikes)` for a whole sequence,
and `get_state()` / `set_state()` for handing the streaming state to or from another runtime
(the state is a `neurodeploy.model.mamba_spike.model.BackboneState`, the PyTorch model's own).

Thread settings: the step and chunk sessions serve one sample as it arrives, where a thread
pool only adds wake-up latency to tiny kernels, so they run one intra-op thread with
sequential execution; the full-graph session serves offline batches and uses every core
this process may run on.

Batch-1 step tuning (`tuned=True`, the default; `tuned=False` is the plain `session.run`,
kept to measure against): the step graph runs through two `IOBinding`s over two
preallocated state sets, ping-pong (step k reads set k % 2 and writes the other), so a step
allocates nothing and copies only the spike frame in; denormal floats are flushed to zero
(`session.set_denormal_as_zero`: decaying SSM states otherwise reach the slow subnormal
range; the change is far below the logit tolerance).

The centered interface's look-ahead is handled by the graphs (the `pushed` state); the
runtime counts the real frames of the sample, which `flush()` needs to know how many zero
frames finish it, and routes a packet that lies wholly inside the warm-up through the step
graph (onnxruntime refuses a zero-length scan). Inputs are numpy arrays or CPU torch
tensors; logits come back as float32 torch tensors (sharing memory with onnxruntime's
output, no copy), as the BackboneRuntime contract in contract.py says.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from neurodeploy.errors import MissingFileError, NeurodeployError
from neurodeploy.formats.onnx_backbone import (
    FILES,
    LOGITS,
    META_GRAPH,
    META_MODEL_CONFIG,
    SEQUENCE_INPUT,
    STATE_NAMES,
    STEP_INPUT,
    GraphKind,
    check_state,
    feeds_to_state,
    flush_steps,
    read_metadata,
    state_to_feeds,
    zero_state,
)
from neurodeploy.model.mamba_spike.config import MambaSpikeConfig
from neurodeploy.model.mamba_spike.model import BackboneState, MambaSpike
from neurodeploy.runtimes.contract import BackboneRuntime, step_backbone
from neurodeploy.runtimes.torch import TorchBackboneRuntime

FULL_FILE, CHUNK_FILE, STEP_FILE = FILES["full"], FILES["chunk"], FILES["step"]


class OnnxRuntimeError(NeurodeployError, ValueError):
    """A backbone graph or input the onnxruntime backbone cannot use; the message says what and the way out."""


def latency_session_options(tuned: bool = True) -> ort.SessionOptions:
    """Batch-1 streaming: one thread, sequential, every graph optimisation (tuned: denormals flushed)."""
    options = ort.SessionOptions()
    if tuned:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def throughput_session_options(threads: int | None = None) -> ort.SessionOptions:
    """Large batches: intra-op parallelism over `threads` (default: every core we may use)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


@dataclass(frozen=True)
class _Graph:
    path: Path
    session: ort.InferenceSession
    metadata: dict[str, str]


def _load(path: str | Path, kind: str, options: ort.SessionOptions) -> _Graph:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such ONNX file; write it with neurodeploy.exporters.onnx.export_backbone"
                                f"{'' if kind == 'full' else '_' + kind}")
    metadata = read_metadata(path)
    if metadata.get(META_GRAPH) != kind:
        raise OnnxRuntimeError(f"{path}: expected a neurodeploy backbone {kind} graph, found "
                               f"{metadata.get(META_GRAPH, 'a file without neurodeploy metadata')!r}; "
                         "re-export it with neurodeploy.exporters.onnx")
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return _Graph(path, session, metadata)


def _as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


class OnnxBackboneRuntime(BackboneRuntime):
    """Runs an exported backbone; any of the three graphs may be absent if unused."""

    def __init__(
        self,
        *,
        full: str | Path | None = None,
        chunk: str | Path | None = None,
        step: str | Path | None = None,
        threads: int | None = None,
        tuned: bool = True,
    ):
        if full is None and chunk is None and step is None:
            raise OnnxRuntimeError("OnnxBackboneRuntime needs at least one of full=, chunk=, step= (paths to exported graphs)")
        self._full = _load(full, "full", throughput_session_options(threads)) if full is not None else None
        self._tuned = tuned
        self._chunk = _load(chunk, "chunk", latency_session_options(tuned)) if chunk is not None else None
        self._step = _load(step, "step", latency_session_options(tuned)) if step is not None else None
        self._binding: _PingPongBinding | None = None
        configs = {g.metadata[META_MODEL_CONFIG] for g in (self._full, self._chunk, self._step) if g is not None}
        if len(configs) != 1:
            paths = [str(g.path) for g in (self._full, self._chunk, self._step) if g is not None]
            raise OnnxRuntimeError(f"the graphs {paths} were exported from different model configs; export them together")
        self.config = MambaSpikeConfig.from_dict(json.loads(configs.pop()))
        self.reset(1)

    @classmethod
    def from_directory(cls, directory: str | Path, *, threads: int | None = None) -> OnnxBackboneRuntime:
        """Loads backbone.onnx, backbone_chunk.onnx and backbone_step.onnx, those present."""
        directory = Path(directory)
        found = {kind: directory / name for kind, name in (("full", FULL_FILE), ("chunk", CHUNK_FILE), ("step", STEP_FILE))
                 if (directory / name).is_file()}
        if not found:
            raise MissingFileError(f"{directory}: none of {FULL_FILE}, {CHUNK_FILE}, {STEP_FILE}; export the backbone first")
        return cls(**found, threads=threads)

    # -- streaming ------------------------------------------------------------------------
    def reset(self, batch: int) -> None:
        """Start new samples: zero state for `batch` streams."""
        self._received = 0
        self._logits: np.ndarray | None = None
        if self._binding is not None and self._batch == batch:
            self._binding.zero()
            self._feeds = self._binding.state
            return
        self._batch = batch
        self._feeds = zero_state(self.config, batch)
        if self._tuned and self._step is not None:
            self._binding = _PingPongBinding(self._step.session, self._feeds, (batch, *self._frame_shape),
                                             (batch, self.config.num_classes))
            self._feeds = self._binding.state

    def step(self, spikes_t) -> torch.Tensor:
        """One bin of front-end spikes `(B, C, H, W)` -> anytime logits `(B, classes)`."""
        logits = self._run_step(self._check(spikes_t, sequence=False))
        self._received += 1
        return torch.from_numpy(logits)

    def push(self, spikes) -> torch.Tensor:
        """A packet of bins `(B, T, C, H, W)` -> anytime logits after its last bin."""
        spikes = self._check(spikes, sequence=True)
        steps = spikes.shape[1]
        if self._chunk is None or int(self._feeds["pushed"]) + steps <= self.config.lookahead:
            for t in range(steps):
                self.step(spikes[:, t])
            return torch.from_numpy(self._logits)
        outputs = self._chunk.session.run(None, {SEQUENCE_INPUT: spikes, **self._state_feeds()})
        self._update(outputs)
        self._received += steps
        return torch.from_numpy(self._logits)

    def flush(self) -> torch.Tensor:
        """Finish the samples (the centered interface's lookahead zero frames); final logits."""
        if self._received == 0:
            raise OnnxRuntimeError("flush() before any spike frame of the sample; step() or push() its frames first")
        pending = flush_steps(self._received, self.config.lookahead, int(self._feeds["pushed"]))
        if pending and self._step is None:  # pushed + pending > lookahead: the chunk graph takes it in one call
            zeros = np.zeros((self._batch, pending, *self._frame_shape), np.float32)
            self._update(self._chunk.session.run(None, {SEQUENCE_INPUT: zeros, **self._state_feeds()}))
            return torch.from_numpy(self._logits)
        zeros = np.zeros((self._batch, *self._frame_shape), np.float32)
        for _ in range(pending):
            self._run_step(zeros)
        return torch.from_numpy(self._logits)

    def get_state(self) -> BackboneState:
        """The streaming state as the PyTorch model's `BackboneState` (copies)."""
        return feeds_to_state(self._state_feeds(), self._received)

    def set_state(self, state: BackboneState) -> None:
        """Continue from a state taken from this or another backbone runtime."""
        c = self.config
        if len(state.layers) != c.n_layers:
            raise OnnxRuntimeError(f"a state of {len(state.layers)} Mamba layers; this backbone has {c.n_layers}")
        feeds = state_to_feeds(state)
        try:
            batch = check_state(c, feeds)
        except ValueError as err:
            raise OnnxRuntimeError(str(err)) from None
        self.reset(batch)
        for name in STATE_NAMES:
            np.copyto(self._feeds[name], feeds[name])  # in place: the step bindings point at these arrays
        self._received = int(state.received)

    # -- offline --------------------------------------------------------------------------
    def run(self, spikes) -> torch.Tensor:
        """A whole sequence `(B, T, C, H, W)` -> logits, through the full graph. The streaming
        state is neither used nor changed."""
        if self._full is None:
            raise OnnxRuntimeError(f"run() needs the full graph ({FULL_FILE}); give full= when building the runtime")
        (logits,) = self._full.session.run([LOGITS], {SEQUENCE_INPUT: self._check(spikes, sequence=True, batch=None)})
        return torch.from_numpy(logits)

    # -- internals ------------------------------------------------------------------------
    @property
    def _frame_shape(self) -> tuple[int, int, int]:
        c = self.config
        return (c.spiking_channels, c.feature_height, c.feature_width)

    def _run_step(self, spikes_t: np.ndarray) -> np.ndarray:
        if self._step is None:
            raise OnnxRuntimeError(f"step-wise streaming needs the step graph ({STEP_FILE}); give step= when building the runtime")
        if self._binding is not None:
            self._logits = self._binding.run(spikes_t).copy()
            self._feeds = self._binding.state
            return self._logits
        self._feeds[STEP_INPUT] = spikes_t
        self._update(self._step.session.run(None, self._feeds))
        return self._logits

    def _update(self, outputs: list[np.ndarray]) -> None:
        # one dict reused call after call: the step graph's inputs are its states plus spikes_t
        self._logits = outputs[0]
        for name, value in zip(STATE_NAMES, outputs[1:]):
            if self._binding is not None:
                np.copyto(self._feeds[name], value)  # in place: the step bindings point at these arrays
            else:
                self._feeds[name] = value

    def _state_feeds(self) -> dict[str, np.ndarray]:
        return {name: self._feeds[name] for name in STATE_NAMES}

    def _check(self, spikes, *, sequence: bool, batch: int | None | bool = True) -> np.ndarray:
        array = _as_array(spikes)
        want_batch = self._batch if batch is True else batch
        shape = ("B", "T", *self._frame_shape) if sequence else ("B", *self._frame_shape)
        ok = array.ndim == len(shape) and array.shape[-3:] == self._frame_shape
        if ok and sequence and array.shape[1] < 1:
            raise OnnxRuntimeError("a packet of 0 time steps; send at least one bin")
        if not ok:
            raise OnnxRuntimeError(f"front-end spikes of shape {array.shape}; this backbone expects "
                             f"({', '.join(map(str, shape))}) float spikes")
        if want_batch is not None and array.shape[0] != want_batch:
            raise OnnxRuntimeError(f"spikes for batch {array.shape[0]}; the runtime streams batch {want_batch}: call reset({array.shape[0]}) first")
        return array


class _PingPongBinding:
    """The step graph bound to two preallocated state sets: a run reads one set and writes the other."""

    def __init__(self, session: ort.InferenceSession, state: dict[str, np.ndarray], spikes_shape: tuple[int, ...],
                 logits_shape: tuple[int, ...]):
        self._session = session
        # np.array(order="C"), not np.ascontiguousarray: the latter turns the 0-d `count` and
        # `pushed` into shape (1,), which onnxruntime 1.30 refuses against the graph's scalar outputs
        self._sets = ({k: np.array(state[k], order="C", copy=True) for k in STATE_NAMES},
                      {k: np.empty_like(state[k]) for k in STATE_NAMES})
        self._spikes = np.zeros(spikes_shape, np.float32)
        self.logits = np.zeros(logits_shape, np.float32)
        self._bindings = []
        for source, target in ((0, 1), (1, 0)):
            binding = session.io_binding()
            self._bind(binding.bind_input, STEP_INPUT, self._spikes)
            for name in STATE_NAMES:
                self._bind(binding.bind_input, name, self._sets[source][name])
                self._bind(binding.bind_output, f"{name}_out", self._sets[target][name])
            self._bind(binding.bind_output, LOGITS, self.logits)
            self._bindings.append(binding)
        self._current = 0

    @staticmethod
    def _bind(bind, name: str, array: np.ndarray) -> None:
        bind(name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The current state set (the inputs of the next run)."""
        return self._sets[self._current]

    def zero(self) -> None:
        for array in self.state.values():
            array[...] = 0

    def run(self, spikes_t: np.ndarray) -> np.ndarray:
        np.copyto(self._spikes, spikes_t)
        self._session.run_with_iobinding(self._bindings[self._current])
        self._current ^= 1
        return self.logits


# -- parity with the PyTorch model (run at every export) --------------------------------------
def _max_abs(a, b) -> float:
    difference = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return float(difference.max()) if difference.size else 0.0  # a window of 1 has an empty ring


@torch.no_grad()
def parity_with_model(model: MambaSpike, path: str | Path, graph: GraphKind, sample: torch.Tensor) -> float:
    """Max |onnxruntime - PyTorch| of one exported graph, driven as a user drives it, on `sample`.

    full: the offline logits. step: every step's anytime logits, the streaming state and the
    flushed logits (`step_backbone` on both runtimes). chunk: the anytime logits after each of
    two packets (the first reaching past the warm-up, which the chunk graph cannot take alone),
    the streaming state and the flushed logits.
    """
    reference = TorchBackboneRuntime(model)
    offline = reference.run(sample)
    if graph == "full":
        return _max_abs(OnnxBackboneRuntime(full=path).run(sample), offline)
    runtime = OnnxBackboneRuntime(**{graph: path})
    want_anytime, _ = step_backbone(reference, sample)
    if graph == "step":
        got_anytime, final = step_backbone(runtime, sample)
        worst = _max_abs(got_anytime, want_anytime)
    else:
        runtime.reset(sample.shape[0])
        steps = sample.shape[1]
        cut = min(steps, max(model.config.lookahead + 1, steps // 2))
        worst = 0.0
        for lo, hi in ((0, cut), (cut, steps)):
            if hi > lo:
                worst = max(worst, _max_abs(runtime.push(sample[:, lo:hi]), want_anytime[:, hi - 1]))
        final = runtime.flush()
    got_state, want_state = state_to_feeds(runtime.get_state()), state_to_feeds(reference.get_state())
    worst = max([worst, *(_max_abs(got_state[name], want_state[name]) for name in STATE_NAMES)])
    return max(worst, _max_abs(final, offline))
