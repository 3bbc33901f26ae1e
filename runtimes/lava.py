"""The spiking front-end in Lava on the CPU simulator (FrontendRuntime), floating and fixed point.

    with LavaFrontendRuntime.fixed_point("frontend.net") as lava:      # netx, bit-accurate Loihi
        spikes = lava.run(frames)                                       # (B, T, C, H, W), torch's time steps
    with LavaFrontendRuntime.floating(nir_graph) as lava:               # Conv + LIF processes, floating_pt
        ...

Network: an `Injector` feeds each frame (graded event counts) into the first synapse, one
`Extractor` per LIF layer reads its spikes every step. In fixed point the network is the netx
file itself (`lava.lib.dl.netx.hdf5.Network`, `Loihi2SimCfg(select_tag="fixed_pt")`); in
floating point it is built from `neurodeploy.runtimes.lava_layers.lava_layers(graph)` as
`lava.proc.conv` Conv + `lava.proc.lif` LIF processes (du = 1, dv = 1 - beta, vth, bias), with
a 1x1 Conv from a layer's spikes back into its own input for recurrent models.

Time alignment. Every Lava synapse delays by one step, so LIF layer k (0-based) computes at
Lava step n (1-based) torch's step n - 2 - k of the current sample. Samples are laid out on
Lava's clock in slots of R = steps_per_sample + latency_steps steps, and the neurons are
`LIFReset` (netx's own `reset_interval` / `reset_offset`, and the same process in floating
point): layer k zeroes its current and membrane at the start of Lava step k + 2 of every
slot, the step its first real input arrives. Whatever a layer did before (its bias alone,
the previous sample's tail) is wiped then, and its spikes from those steps only reach
deeper layers in their own not-yet-reset steps. No Var is written between steps (Lava's
Var.set sends one message per element: 0.24 s for a 32x17x17 layer). The runtime re-indexes
every layer's output by its offset, so step t of `run` is torch's step t. Streaming has the
pipeline's latency: `step(frame_t)` returns the spikes of step t - `latency_steps` (None
while the pipeline fills), and `flush()` returns the rest; Loihi behaves the same way.
`reset` moves to the next slot (running zero frames to its start).

Processes: Lava forks worker processes. Every Lava call is guarded: an exception (bad input,
Ctrl-C, a Lava error) stops the Lava run before it propagates, `close()` / the context
manager stop it normally, and an atexit hook stops what is still open, so the interpreter
never hangs at exit. Lava simulates one sample at a time: `reset(batch)` takes batch 1, and
`run` loops over the batch.

netx import: `lava.lib.dl.netx` imports `lava.lib.dl.slayer`, whose package `__init__`
imports slayer's object-detection utilities and with them cv2 and torchvision; torchvision
cannot be installed beside this CPU torch, and netx itself needs only slayer's RF neuron
parameter helper. `import_netx()` therefore registers `lava.lib.dl.slayer` as a bare package
(its real directory, its `__init__` not run) when the real one cannot be imported, so that
netx's imports of slayer submodules resolve to the installed files.
"""
from __future__ import annotations

import atexit
import importlib
import importlib.util
import sys
import types
import weakref
from collections import deque
from pathlib import Path
from typing import Any, Callable

import h5py
import nir
import numpy as np
import torch

from neurodeploy.runtimes.lava_layers import LavaLayer, LavaMappingError, lava_layers
from neurodeploy.errors import NeurodeployError
from neurodeploy.lava_compat import import_lava
from neurodeploy.runtimes.lava_fixed_point import read_netx_layers
from neurodeploy.runtimes import process_guard
from neurodeploy.runtimes.contract import FrontendRuntime, RuntimeOperationError

CHUNK_STEPS = 32  # steps per blocking Lava run; the I/O buffers hold one chunk
_open_runtimes: "weakref.WeakSet[LavaFrontendRuntime]" = weakref.WeakSet()


class LavaRunError(RuntimeOperationError):
    """The Lava run could not go on; its processes have been stopped."""


class LavaInputError(NeurodeployError, ValueError):
    """An input or option the Lava runtime refuses (the message names it and the way out)."""


def import_netx() -> types.ModuleType:
    """Import `lava.lib.dl.netx.hdf5` without slayer's optional cv2 / torchvision (module docstring)."""
    import_lava()
    name = "lava.lib.dl.slayer"
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name not in ("cv2", "torchvision"):
                raise
            for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[key]  # drop the half-imported package
            spec = importlib.util.find_spec(name)
            package = types.ModuleType(name, "lava-dl slayer, imported without its __init__ (see neurodeploy.runtimes.lava)")
            package.__path__ = list(spec.submodule_search_locations)
            package.__package__ = name
            sys.modules[name] = package
    return importlib.import_module("lava.lib.dl.netx.hdf5")


def _whc(chw: np.ndarray) -> np.ndarray:
    """torch (C, H, W) -> Lava (W, H, C)."""
    return np.ascontiguousarray(np.transpose(chw, (2, 1, 0)))


def _lava_kernel(weight: np.ndarray) -> np.ndarray:
    """torch (Cout, Cin, kh, kw) correlation kernel -> Lava (Cout, kw, kh, Cin) convolution kernel."""
    return np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


@atexit.register
def _close_open_runtimes() -> None:
    for runtime in list(_open_runtimes):
        runtime.close()


class _Network:
    """The Lava processes of one front-end (built by the two factories) and their I/O."""

    def __init__(self, *, names: tuple[str, ...], shapes: tuple[tuple[int, int, int], ...],
                 input_shape: tuple[int, int, int], injector: Any, extractors: list[Any], select_tag: str,
                 input_message_bits: int | None):
        self.names, self.shapes, self.input_shape = names, shapes, input_shape
        self.injector, self.extractors = injector, extractors
        self.select_tag = select_tag
        self.input_message_bits = input_message_bits  # None: floating point, any finite count


def _io_processes(input_shape: tuple[int, int, int], shapes) -> tuple[Any, list[Any]]:
    import_lava()
    from lava.proc.io.extractor import Extractor
    from lava.proc.io.injector import Injector

    injector = Injector(shape=tuple(input_shape[::-1]), buffer_size=CHUNK_STEPS)
    extractors = [Extractor(shape=tuple(shape[::-1]), buffer_size=CHUNK_STEPS) for shape in shapes]
    return injector, extractors


def _check_steps(steps_per_sample: int) -> None:
    if not isinstance(steps_per_sample, int) or isinstance(steps_per_sample, bool) or steps_per_sample < 1:
        raise LavaInputError(f"steps_per_sample={steps_per_sample!r}; expected the longest sample in time steps (>= 1)")


def _floating_network(layers: tuple[LavaLayer, ...], steps_per_sample: int) -> _Network:
    import_lava()
    from lava.proc.conv.process import Conv
    from lava.proc.lif.process import LIFReset

    for layer in layers:
        if layer.recurrent_weight is not None:
            raise LavaMappingError(
                f"{layer.name}: has a recurrent 1x1 conv. Lava could carry it as a Conv process from the layer's "
                "spikes back into its input, but that loop re-injects the spikes of the steps before the layer's "
                "reset (netx's reset_offset scheme) and torch adds the recurrent bias only from t = 1, which a LIF "
                "bias cannot do; it is not mapped rather than mapped approximately. Ways out: a model without "
                "recurrence (MambaSpikeConfig.deployable()), or neurodeploy.runtimes.torch / runtimes.nir.")
    interval = steps_per_sample + len(layers)
    injector, extractors = _io_processes(layers[0].input_shape, [layer.output_shape for layer in layers])
    source = injector.out_port
    for k, layer in enumerate(layers):
        shape = tuple(layer.output_shape[::-1])
        conv = Conv(weight=_lava_kernel(layer.weight), input_shape=tuple(layer.input_shape[::-1]),
                    padding=layer.padding[::-1], stride=layer.stride[::-1],
                    num_message_bits=24 if k == 0 else 0)  # > 0: the first layer's input is graded counts
        lif = LIFReset(shape=shape, du=1.0, dv=1.0 - layer.beta, vth=layer.threshold,
                       bias_mant=np.broadcast_to(layer.bias, shape).astype(np.float64),
                       reset_interval=interval, reset_offset=k + 2)
        source.connect(conv.s_in)
        conv.a_out.connect(lif.a_in)
        lif.s_out.connect(extractors[k].in_port)
        source = lif.s_out
    return _Network(names=tuple(layer.name for layer in layers), shapes=tuple(l.output_shape for l in layers),
                    input_shape=layers[0].input_shape, injector=injector, extractors=extractors,
                    select_tag="floating_pt", input_message_bits=None)


def _netx_network(path: Path, steps_per_sample: int) -> tuple[_Network, Any]:
    hdf5 = import_netx()
    fixed_layers, attrs = read_netx_layers(path)
    bits = int(attrs.get("input_message_bits", 0))
    if bits < 1:
        raise LavaInputError(f"{path}: no 'input_message_bits' attribute; the front-end's input is graded event counts. "
                         "Write the file with neurodeploy.exporters.netx.export_netx")
    with h5py.File(path, "r") as f:
        input_shape = tuple(int(v) for v in f["layer"]["0"]["shape"][()])
    # netx gives block i (1-based) reset_offset + 1 + (i - 1): with 1, block i resets at step i + 1
    net = hdf5.Network(net_config=str(path), input_message_bits=bits,
                       reset_interval=steps_per_sample + len(fixed_layers), reset_offset=1)
    injector, extractors = _io_processes(input_shape, [layer.output_shape for layer in fixed_layers])
    injector.out_port.connect(net.inp)
    for block, extractor in zip(net.layers, extractors):
        block.out.connect(extractor.in_port)
    network = _Network(names=tuple(l.name for l in fixed_layers), shapes=tuple(l.output_shape for l in fixed_layers),
                       input_shape=input_shape, injector=injector, extractors=extractors,
                       select_tag="fixed_pt", input_message_bits=bits)
    return network, net


class LavaFrontendRuntime(FrontendRuntime):
    """FrontendRuntime on Lava's CPU simulator (module docstring); build with `floating` or `fixed_point`."""

    def __init__(self, network: _Network, steps_per_sample: int, owner: Any = None):
        import_lava()
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
        from lava.proc.io.injector import Injector, PyLoihiInjectorModel

        self._net = network
        self._owner = owner  # the netx Network process, kept alive with the runtime
        self.layer_names: tuple[str, ...] = network.names
        self.output_shape = tuple(network.shapes[-1])
        self.latency_steps = len(network.names)
        self.steps_per_sample = steps_per_sample
        self.slot_steps = steps_per_sample + self.latency_steps
        self.select_tag = network.select_tag
        # The I/O processes have one model per sync protocol and no tags; name the Loihi ones.
        self._run_cfg = Loihi2SimCfg(select_tag=network.select_tag, exception_proc_model_map={
            Injector: PyLoihiInjectorModel, Extractor: PyLoihiExtractorModel})
        self._handle = network.injector
        self._open = False
        self._lava_step = 0  # Lava steps run so far (Lava counts them from 1)
        self._slot_start = 0  # Lava step before the current sample's first one
        self._open = True
        _open_runtimes.add(self)
        process_guard.install()  # Lava's workers die with this interpreter, however it ends
        self._guard(lambda: self._handle.create_runtime(run_cfg=self._run_cfg))
        self.reset(1)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def floating(cls, graph: nir.NIRGraph, *, steps_per_sample: int = 300) -> LavaFrontendRuntime:
        """Lava Conv + LIFReset processes in floating_pt, from the front-end's NIR graph.

        `steps_per_sample`: the longest sample (in time steps) this runtime will run.
        """
        _check_steps(steps_per_sample)
        return cls(_floating_network(lava_layers(graph), steps_per_sample), steps_per_sample)

    @classmethod
    def fixed_point(cls, netx_path: str | Path, *, steps_per_sample: int = 300) -> LavaFrontendRuntime:
        """The netx file on `Loihi2SimCfg(select_tag="fixed_pt")` (bit-accurate Loihi)."""
        _check_steps(steps_per_sample)
        network, netx = _netx_network(Path(netx_path), steps_per_sample)
        return cls(network, steps_per_sample, owner=netx)

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop the Lava processes (idempotent)."""
        if not getattr(self, "_open", False):
            return
        self._open = False
        _open_runtimes.discard(self)
        runtime = getattr(self._handle, "runtime", None)
        if runtime is None:
            return
        if not getattr(runtime, "_is_started", True):
            # lava-nc 0.10.0: stop() of a runtime that never ran joins worker processes that
            # wait for a first command forever; end them instead.
            for actor in runtime._messaging_infrastructure.actors:
                actor.terminate()
        try:
            self._handle.stop()
        except Exception:  # a broken run may not stop cleanly; its processes are ended either way
            for actor in runtime._messaging_infrastructure.actors:
                if actor.is_alive():
                    actor.terminate()

    def __del__(self) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._open

    def _guard(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except BaseException:
            self.close()
            raise

    def _fail(self, message: str) -> None:
        self.close()
        raise LavaInputError(f"{message}; the Lava run has been stopped (build a new runtime to continue)")

    # -- state -------------------------------------------------------------------------
    def reset(self, batch: int) -> None:
        """Start a sample in the next slot; zero the spike counts."""
        if batch != 1:
            raise LavaInputError(f"reset(batch={batch}): Lava simulates one sample at a time (as one Loihi chip does); "
                             "use batch 1 for step(), or run(frames) which runs a batch sample by sample")
        self._next_slot()
        self._start_sample(batch)

    def _next_slot(self) -> None:
        if not self._open:
            raise LavaRunError("this Lava runtime has been stopped; build a new one")
        if self._lava_step > self._slot_start:  # the current slot has begun: run it out on zero frames
            rest = self._slot_start + self.slot_steps - self._lava_step
            self._guard(lambda: self._advance([self._zero_frame()] * rest))
            self._slot_start += self.slot_steps
        self._pending: list[deque] = [deque() for _ in self.layer_names]  # (torch step, spikes CHW)
        self._next_output = 0
        self._frames_in = 0
        self._drained = False

    def _zero_frame(self) -> np.ndarray:
        return np.zeros(tuple(self._net.input_shape[::-1]))

    # -- stepping ----------------------------------------------------------------------
    def _frame_to_lava(self, frame: torch.Tensor | np.ndarray) -> np.ndarray:
        array = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if tuple(array.shape) != tuple(self._net.input_shape):
            self._fail(f"frame of shape {tuple(np.shape(frame))}; this front-end takes (1, "
                       f"{', '.join(map(str, self._net.input_shape))}) event counts")
        array = array.astype(np.float64)
        if not np.all(np.isfinite(array)):
            self._fail("frame holds NaN or infinite counts")
        bits = self._net.input_message_bits
        if bits is not None:
            top = 2 ** bits - 1
            if np.any(array != np.round(array)) or array.min() < 0 or array.max() > top:
                self._fail(f"frame holds counts outside the integers 0..{top} (min {array.min()}, max {array.max()}); "
                           f"the netx input carries {bits}-bit graded spikes: re-export with a larger "
                           "input_message_bits or bin the events more finely")
        return _whc(array)

    def _advance(self, frames: list[np.ndarray]) -> list[list[np.ndarray]]:
        """Feed Lava-layout frames, one Lava step each; return the aligned steps that completed."""
        from lava.magma.core.run_conditions import RunSteps

        completed = []
        for position in range(0, len(frames), CHUNK_STEPS):
            chunk = frames[position:position + CHUNK_STEPS]
            for frame in chunk:
                self._net.injector.send(frame)
            self._handle.run(condition=RunSteps(num_steps=len(chunk), blocking=True), run_cfg=self._run_cfg)
            for _ in chunk:
                self._lava_step += 1
                local = self._lava_step - self._slot_start  # 1-based step within the slot
                for k, extractor in enumerate(self._net.extractors):
                    spikes = extractor.receive()
                    t = local - 2 - k
                    if 0 <= t < self._frames_in and local <= self.slot_steps:
                        self._pending[k].append((t, np.transpose(spikes, (2, 1, 0)) != 0))
            while all(queue and queue[0][0] == self._next_output for queue in self._pending):
                completed.append([queue.popleft()[1] for queue in self._pending])
                self._next_output += 1
        return completed

    def _record(self, steps: list[list[np.ndarray]]) -> None:
        for step in steps:
            for name, spikes in zip(self.layer_names, step):
                self._counts[name] += int(spikes.sum())
        if steps:
            self._layer_spikes = {name: torch.from_numpy(s.astype(np.float32))[None]
                                  for name, s in zip(self.layer_names, steps[-1])}

    def step(self, frame: torch.Tensor) -> torch.Tensor | None:
        """Push frame t (1, 2, H, W); return the last layer's spikes (1, C, H, W) of step t - latency_steps.

        None while the pipeline fills (the first `latency_steps` calls); `layer_spikes` then
        holds every layer's spikes of that same returned step.
        """
        if self._drained:
            raise LavaRunError("the sample was drained by flush() or run(); call reset(1) to start a new one")
        if self._frames_in >= self.steps_per_sample:
            self._fail(f"sample longer than steps_per_sample={self.steps_per_sample}; build the runtime with a "
                       "larger steps_per_sample, or reset(1) between samples")
        lava_frame = self._frame_to_lava(frame)
        self._frames_in += 1
        steps = self._guard(lambda: self._advance([lava_frame]))
        self._record(steps)
        return self._layer_spikes[self.layer_names[-1]] if steps else None

    def flush(self) -> torch.Tensor:
        """Finish the sample: the last layer's spikes of the steps still in the pipeline, (1, n, C, H, W)."""
        rest = self._slot_start + self.slot_steps - self._lava_step
        steps = self._guard(lambda: self._advance([self._zero_frame()] * rest))
        self._slot_start += self.slot_steps
        self._drained = True
        self._record(steps)
        c, h, w = self._net.shapes[-1]
        if not steps:
            return torch.zeros((1, 0, c, h, w))
        return torch.from_numpy(np.stack([s[-1] for s in steps]).astype(np.float32))[None]

    def run_layers(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames (B, T, 2, H, W) -> every layer's spikes (B, T, C, H, W), each sample from rest."""
        if not isinstance(frames, torch.Tensor) or frames.ndim != 5:
            self._fail(f"frames of shape {tuple(getattr(frames, 'shape', ()))}; expected a (B, T, "
                       f"{', '.join(map(str, self._net.input_shape))}) tensor of event counts")
        if frames.shape[1] > self.steps_per_sample:
            self._fail(f"{frames.shape[1]} steps per sample; this runtime was built for at most "
                       f"steps_per_sample={self.steps_per_sample}")
        self.reset(1)
        per_sample = []
        for sample in frames:
            if self._drained:
                self._next_slot()
            lava_frames = [self._frame_to_lava(frame) for frame in sample]
            self._frames_in = len(lava_frames)
            steps = self._finish_slot(lava_frames)
            if len(steps) != sample.shape[0]:
                raise LavaRunError(f"Lava returned {len(steps)} aligned steps for {sample.shape[0]} frames")
            per_sample.append([np.stack([s[k] for s in steps]) for k in range(len(self.layer_names))])
        self._layer_spikes = {name: torch.from_numpy(np.stack([p[k][-1] for p in per_sample]).astype(np.float32))
                              for k, name in enumerate(self.layer_names)}
        return {name: torch.from_numpy(np.stack([p[k] for p in per_sample]).astype(np.float32))
                for k, name in enumerate(self.layer_names)}

    def _finish_slot(self, lava_frames: list[np.ndarray]) -> list[list[np.ndarray]]:
        """Run `lava_frames` then zeros to the end of the slot; every aligned step of the sample."""
        rest = self._slot_start + self.slot_steps - self._lava_step - len(lava_frames)
        steps = self._guard(lambda: self._advance(lava_frames + [self._zero_frame()] * rest))
        self._slot_start += self.slot_steps
        self._drained = True
        self._record(steps)
        return steps



__all__ = ["LavaFrontendRuntime", "LavaInputError", "LavaRunError", "import_netx"]
