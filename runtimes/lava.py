"""The spiking front-end in Lava on the CPU simulator (FrontendRuntime), floating and fixed point.

    with LavaFrontendRuntime.fixed_point("frontend.net") as lava:      # netx, bit-accurate Loihi
        spikes = lava.run(frames)                                       # (B, T, C, H, W), torch's time steps
    with LavaFrontendRuntime.floating(nir_graph) as lava:               # Conv + LIF processes, floating_pt
        ...

Network: an `Injector` feeds each frame (graded event counts) into the first synapse, one
`Extractor` per LIF layer reads its spikes every step. In fixed point the network is the netx
file itself (`lava.lib.dl.netx.hdf5.Network`, `Loihi2SimCfg(select_tag="fixed_pt")`); in
floating point it is built from `neurodeploy.exporters.netx.lava_layers(graph)` as
`lava.proc.conv` Conv + `lava.proc.lif` LIF processes (du = 1, dv = 1 - beta, vth, bias), with
a 1x1 Conv from a layer's spikes back into its own input for recurrent models.

Time alignment. Every Lava synapse delays by one step, so LIF layer k (0-based) computes at
Lava step n (1-based, counted from reset) torch's step n - 2 - k. Before its first real
input a layer must not move; its bias is therefore held at zero (Var.set) until the step its
first input arrives, and switched on then (for recurrent layers, the recurrent bias one step
later, as torch adds it from t = 1). The runtime re-indexes every layer's output by that
offset, so step t of `run` is torch's step t. Streaming has the pipeline's latency:
`step(frame_t)` returns the spikes of step t - `latency_steps` (None while the pipeline
fills), and `flush()` returns the rest; Loihi itself behaves the same way.

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

from neurodeploy.exporters.netx import LavaLayer, lava_layers
from neurodeploy.lava_compat import import_lava
from neurodeploy.runtimes.lava_fixed_point import read_netx_layers

CHUNK_STEPS = 32  # steps per blocking Lava run; the I/O buffers hold one chunk
_open_runtimes: "weakref.WeakSet[LavaFrontendRuntime]" = weakref.WeakSet()


class LavaRunError(RuntimeError):
    """The Lava run could not go on; its processes have been stopped."""


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
    """The Lava processes of one front-end and how to drive them (built by the two factories)."""

    def __init__(self, *, names: tuple[str, ...], shapes: tuple[tuple[int, int, int], ...],
                 input_shape: tuple[int, int, int], injector: Any, extractors: list[Any], neurons: list[Any],
                 synapses: list[Any], bias_schedule: list[tuple[int, int, np.ndarray]], select_tag: str,
                 input_message_bits: int | None):
        self.names, self.shapes, self.input_shape = names, shapes, input_shape
        self.injector, self.extractors, self.neurons, self.synapses = injector, extractors, neurons, synapses
        self.bias_schedule = bias_schedule  # (after Lava step n, layer index, bias in Lava layout)
        self.select_tag = select_tag
        self.input_message_bits = input_message_bits  # None: floating point, any finite count


def _io_processes(input_shape: tuple[int, int, int], shapes) -> tuple[Any, list[Any]]:
    import_lava()
    from lava.proc.io.extractor import Extractor
    from lava.proc.io.injector import Injector

    injector = Injector(shape=tuple(input_shape[::-1]), buffer_size=CHUNK_STEPS)
    extractors = [Extractor(shape=tuple(shape[::-1]), buffer_size=CHUNK_STEPS) for shape in shapes]
    return injector, extractors


def _floating_network(layers: tuple[LavaLayer, ...]) -> _Network:
    import_lava()
    from lava.proc.conv.process import Conv
    from lava.proc.lif.process import LIF

    injector, extractors = _io_processes(layers[0].input_shape, [layer.output_shape for layer in layers])
    neurons, synapses, schedule = [], [], []
    source = injector.out_port
    for k, layer in enumerate(layers):
        shape = tuple(layer.output_shape[::-1])
        conv = Conv(weight=_lava_kernel(layer.weight), input_shape=tuple(layer.input_shape[::-1]),
                    padding=layer.padding[::-1], stride=layer.stride[::-1],
                    num_message_bits=24 if k == 0 else 0)  # > 0: the first layer's input is graded counts
        lif = LIF(shape=shape, du=1.0, dv=1.0 - layer.beta, vth=layer.threshold, bias_mant=np.zeros(shape))
        source.connect(conv.s_in)
        conv.a_out.connect(lif.a_in)
        lif.s_out.connect(extractors[k].in_port)
        synapses.append(conv)
        bias = np.broadcast_to(layer.bias, shape).astype(np.float64)
        schedule.append((k + 1, k, bias))
        if layer.recurrent_weight is not None:
            recurrent = Conv(weight=_lava_kernel(layer.recurrent_weight), input_shape=shape)
            lif.s_out.connect(recurrent.s_in)
            recurrent.a_out.connect(lif.a_in)
            synapses.append(recurrent)
            schedule.append((k + 2, k, bias + np.broadcast_to(layer.recurrent_bias, shape)))
        neurons.append(lif)
        source = lif.s_out
    return _Network(names=tuple(layer.name for layer in layers), shapes=tuple(l.output_shape for l in layers),
                    input_shape=layers[0].input_shape, injector=injector, extractors=extractors, neurons=neurons,
                    synapses=synapses, bias_schedule=schedule, select_tag="floating_pt", input_message_bits=None)


def _netx_network(path: Path) -> tuple[_Network, Any]:
    hdf5 = import_netx()
    fixed_layers, attrs = read_netx_layers(path)
    bits = int(attrs.get("input_message_bits", 0))
    if bits < 1:
        raise ValueError(f"{path}: no 'input_message_bits' attribute; the front-end's input is graded event counts. "
                         "Write the file with neurodeploy.exporters.netx.export_netx")
    with h5py.File(path, "r") as f:
        input_shape = tuple(int(v) for v in f["layer"]["0"]["shape"][()])
    net = hdf5.Network(net_config=str(path), input_message_bits=bits)
    blocks = list(net.layers)
    injector, extractors = _io_processes(input_shape, [layer.output_shape for layer in fixed_layers])
    injector.out_port.connect(net.inp)
    schedule = []
    for k, block in enumerate(blocks):
        block.out.connect(extractors[k].in_port)
        schedule.append((k + 1, k, np.array(block.neuron.bias_mant.init, dtype=np.int64)))
    network = _Network(names=tuple(l.name for l in fixed_layers), shapes=tuple(l.output_shape for l in fixed_layers),
                       input_shape=input_shape, injector=injector, extractors=extractors,
                       neurons=[block.neuron for block in blocks], synapses=[block.synapse for block in blocks],
                       bias_schedule=schedule, select_tag="fixed_pt", input_message_bits=bits)
    return network, net


class LavaFrontendRuntime:
    """FrontendRuntime on Lava's CPU simulator (module docstring); build with `floating` or `fixed_point`."""

    def __init__(self, network: _Network):
        import_lava()
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
        from lava.proc.io.injector import Injector, PyLoihiInjectorModel

        self._net = network
        self.layer_names: tuple[str, ...] = network.names
        self.latency_steps = len(network.names)
        self.select_tag = network.select_tag
        # The I/O processes have one model per sync protocol and no tags; name the Loihi ones.
        self._run_cfg = Loihi2SimCfg(select_tag=network.select_tag, exception_proc_model_map={
            Injector: PyLoihiInjectorModel, Extractor: PyLoihiExtractorModel})
        self._handle = network.injector
        self._open = False
        self._guard(lambda: self._handle.create_runtime(run_cfg=self._run_cfg))
        self._open = True
        _open_runtimes.add(self)
        self.reset(1)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def floating(cls, graph: nir.NIRGraph) -> LavaFrontendRuntime:
        """Lava Conv + LIF processes in floating_pt, from the front-end's NIR graph."""
        return cls(_floating_network(lava_layers(graph)))

    @classmethod
    def fixed_point(cls, netx_path: str | Path) -> LavaFrontendRuntime:
        """The netx file on `Loihi2SimCfg(select_tag="fixed_pt")` (bit-accurate Loihi)."""
        network, netx = _netx_network(Path(netx_path))
        runtime = cls(network)
        runtime._netx = netx
        return runtime

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop the Lava processes (idempotent)."""
        if getattr(self, "_open", False):
            self._open = False
            _open_runtimes.discard(self)
            try:
                self._handle.stop()
            except Exception:  # a broken runtime may fail to stop cleanly; it is gone either way
                pass

    def __enter__(self) -> LavaFrontendRuntime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
        raise ValueError(f"{message}; the Lava run has been stopped (build a new runtime to continue)")

    # -- state -------------------------------------------------------------------------
    def reset(self, batch: int) -> None:
        """Start a sample: zero membranes, currents, synapse buffers and spike counts."""
        if batch != 1:
            raise ValueError(f"reset(batch={batch}): Lava simulates one sample at a time (as one Loihi chip does); "
                             "use batch 1 for step(), or run(frames) which runs a batch sample by sample")
        self._restart()
        self._counts = dict.fromkeys(self.layer_names, 0)
        self._layer_spikes: dict[str, torch.Tensor] = {}

    def _restart(self) -> None:
        if not self._open:
            raise LavaRunError("this Lava runtime has been stopped; build a new one")

        def zero() -> None:
            for neuron in self._net.neurons:
                for var in (neuron.u, neuron.v, neuron.bias_mant):
                    var.set(np.zeros(var.shape))
            for synapse in self._net.synapses:
                synapse.a_buf.set(np.zeros(synapse.a_buf.shape))

        self._guard(zero)
        self._lava_step = 0  # Lava steps since the restart
        self._pending: list[deque] = [deque() for _ in self.layer_names]  # (torch step, spikes CHW)
        self._next_output = 0
        self._drained = False

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
        position = 0
        while position < len(frames):
            start = self._lava_step
            # stop where a bias must be switched on, and at the I/O buffer size
            stops = [after for after, _, _ in self._net.bias_schedule if after > start]
            length = min([CHUNK_STEPS, len(frames) - position] + [after - start for after in stops])
            for frame in frames[position:position + length]:
                self._net.injector.send(frame)
            self._handle.run(condition=RunSteps(num_steps=length, blocking=True), run_cfg=self._run_cfg)
            for offset in range(length):
                n = start + offset + 1
                for k, extractor in enumerate(self._net.extractors):
                    spikes = extractor.receive()
                    t = n - 2 - k
                    if t >= 0:
                        self._pending[k].append((t, np.transpose(spikes, (2, 1, 0)) != 0))
            self._lava_step = start + length
            position += length
            for after, k, bias in self._net.bias_schedule:
                if after == self._lava_step:
                    self._net.neurons[k].bias_mant.set(bias)
            while all(queue and queue[0][0] == self._next_output for queue in self._pending):
                step = [queue.popleft()[1] for queue in self._pending]
                completed.append(step)
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
            raise LavaRunError("the pipeline was drained by flush() or run(); call reset(1) to start a new sample")
        lava_frame = self._frame_to_lava(frame)
        steps = self._guard(lambda: self._advance([lava_frame]))
        self._record(steps)
        return self._layer_spikes[self.layer_names[-1]] if steps else None

    def flush(self) -> torch.Tensor:
        """Drain the pipeline (zero frames): the last layer's spikes of the pending steps, (1, n, C, H, W)."""
        zeros = [np.zeros(tuple(self._net.input_shape[::-1]))] * self.latency_steps
        steps = self._guard(lambda: self._advance(zeros))
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
        self.reset(1)
        per_sample = []
        for sample in frames:
            self._restart()
            lava_frames = [self._frame_to_lava(frame) for frame in sample]
            lava_frames += [np.zeros_like(lava_frames[0])] * self.latency_steps
            steps = self._guard(lambda: self._advance(lava_frames))
            self._drained = True
            if len(steps) != sample.shape[0]:
                raise LavaRunError(f"Lava returned {len(steps)} aligned steps for {sample.shape[0]} frames")
            self._record(steps)
            per_sample.append([np.stack([s[k] for s in steps]) for k in range(len(self.layer_names))])
        self._layer_spikes = {name: torch.from_numpy(np.stack([p[k][-1] for p in per_sample]).astype(np.float32))
                              for k, name in enumerate(self.layer_names)}
        return {name: torch.from_numpy(np.stack([p[k] for p in per_sample]).astype(np.float32))
                for k, name in enumerate(self.layer_names)}

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 2, H, W) -> last layer's spikes (B, T, C, H, W); step t is torch's step t."""
        return self.run_layers(frames)[self.layer_names[-1]]

    @property
    def layer_spikes(self) -> dict[str, torch.Tensor]:
        return dict(self._layer_spikes)

    @property
    def spike_counts(self) -> dict[str, int]:
        return dict(self._counts)


__all__ = ["LavaFrontendRuntime", "LavaRunError", "import_netx"]
