"""One share of a dataset evaluation: read recordings, bin them, run the model, count, cost.

This is what every engine runs, in-process (`local`) or on a cluster worker (`dask`): an
`EvalSetup` (picklable: the model's path and the options) builds a `ShareRunner` once per
process (`runner_for`, cached), and `ShareRunner.run(specs)` returns a `SharePartial` with one
`SampleOutcome` per sample and one `Failure` per recording that could not be evaluated (the
rest go on). Partials carry each sample's dataset index; `neurodeploy.evaluate.merge` orders
by it, so the merged result never depends on who ran what.

Runtimes: `torch` runs the compiled offline path (`model.mamba_spike.offline`, batched, CPU
or CUDA); `nir` and `lava` step the bundle's front-end runtime one frame at a time (per
sample) and run the backbone offline in PyTorch; `onnxruntime` runs the compiled front-end
and the bundle's full-sequence ONNX backbone.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurodeploy.datasets import SampleSpec
from neurodeploy.errors import NeurodeployError
from neurodeploy.events.binning import to_frames_dt, to_frames_n_bins
from neurodeploy.events.readers import load
from neurodeploy.events.types import Recording

RUNTIMES = ("torch", "onnxruntime", "nir", "lava")


class EvalError(NeurodeployError, ValueError):
    """Evaluation options that cannot work; the message names the option and the way out."""


@dataclass(frozen=True)
class Binning:
    """Exactly one of `dt_us` (fixed bins from each sample's start) or `n_time_bins` (tonic's per-recording bins)."""

    dt_us: int | None = None
    n_time_bins: int | None = None

    def __post_init__(self) -> None:
        if (self.dt_us is None) == (self.n_time_bins is None):
            raise EvalError("give exactly one of --dt-us and --n-time-bins")
        if (self.dt_us or self.n_time_bins or 0) <= 0:
            raise EvalError(f"binning {self}: expected a positive number")

    def describe(self) -> str:
        return f"dt {self.dt_us} us" if self.dt_us else f"{self.n_time_bins} time bins per sample (tonic)"


@dataclass(frozen=True)
class EvalSetup:
    """Everything a worker needs to evaluate samples; small and picklable (the model travels as a path)."""

    model_path: str  # a bundle folder or a checkpoint file
    binning: Binning
    runtime: str = "torch"
    device: str = "cpu"
    batch_size: int = 16
    fast_math: bool = False
    targets: tuple[str, ...] = ("loihi",)
    host: str = "cpu"
    devices_file: str | None = None
    sensor_size: tuple[int, int] | None = None  # for headerless formats (N-MNIST .bin is 34x34 by definition)
    transforms: tuple[Callable[[Recording], Recording], ...] = ()
    threads: int | None = None
    # how to read each file: (name, value) pairs of the CLI's reading flags (format, truncated,
    # out_of_bounds, non_monotonic, layout, event_stream); None keeps the reader's default
    reading: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise EvalError(f"runtime {self.runtime!r}; choose from {RUNTIMES}")
        if self.batch_size < 1:
            raise EvalError(f"batch size {self.batch_size}; expected >= 1")


@dataclass(frozen=True)
class SampleOutcome:
    index: int
    name: str
    label: int | None
    prediction: int
    n_steps: int
    n_events: int
    spikes_per_layer: tuple[float, ...]
    synops_per_layer: tuple[float, ...]  # effective ACs + MACs of each front-end layer
    backbone_macs: float  # dense MACs of the backbone (what the host does)
    energy_j: tuple[float, ...]  # per target: front-end on the target + backbone on the host
    exact_prediction: int | None = None  # with fast math: the exact path's prediction


@dataclass(frozen=True)
class Failure:
    path: str
    samples: tuple[str, ...]  # the sample names that could not be evaluated
    reason: str


@dataclass
class SharePartial:
    outcomes: list[SampleOutcome] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    compute_s: float = 0.0  # model and counting time
    model_s: float = 0.0  # the runtime alone (what the throughput figure divides by)
    read_s: float = 0.0  # reading, transforms and binning


def _frames(recording: Recording, spec: SampleSpec, binning: Binning) -> tuple[np.ndarray, int]:
    events = recording.events
    if spec.t_start_us is not None:
        events = events[(events["t"] >= spec.t_start_us) & (events["t"] < spec.t_end_us)]
    size = recording.sensor_size
    if binning.n_time_bins is not None:
        if len(events) == 0:
            raise EvalError(f"{spec.name}: no events; tonic's n_time_bins binning is undefined for an empty sample")
        return to_frames_n_bins(events, size, binning.n_time_bins, dtype=np.float32), len(events)
    dt = binning.dt_us
    if spec.t_start_us is not None:  # a labelled range: as `neurodeploy run` cuts it
        n_bins = max(1, math.ceil((spec.t_end_us - spec.t_start_us) / dt))
        return to_frames_dt(events, size, dt, t_start=spec.t_start_us, n_bins=n_bins, dtype=np.float32), len(events)
    if len(events) == 0:
        raise EvalError(f"{spec.name}: the recording holds no events")
    start = int(events["t"][0])
    n_bins = (int(events["t"][-1]) - start) // dt + 1  # up to the last event's bin, as a whole-stream run
    return to_frames_dt(events, size, dt, t_start=start, n_bins=n_bins, dtype=np.float32), len(events)


class ShareRunner:
    """Holds the model, the runtimes and the device table for a whole share (built once per process)."""

    def __init__(self, setup: EvalSetup):
        from neurodeploy.bundle import load_bundle
        from neurodeploy.model.mamba_spike.checkpoint import load_checkpoint
        from neurodeploy.report.devices import load_devices

        self.setup = setup
        if setup.threads:
            torch.set_num_threads(setup.threads)
        path = Path(setup.model_path)
        self.bundle = load_bundle(path) if path.is_dir() else None
        self.model = (self.bundle.model() if self.bundle else load_checkpoint(path)[0]).eval().to(setup.device)
        if setup.runtime != "torch" and self.bundle is None:
            raise EvalError(f"runtime {setup.runtime!r} runs a bundle's artifacts; {path} is a checkpoint: export it "
                            "with `neurodeploy export` or use --runtime torch")
        if setup.runtime != "torch" and setup.device != "cpu":
            raise EvalError(f"runtime {setup.runtime!r} runs on the CPU; drop --device {setup.device}")
        self.frontend = self.bundle.frontend_runtime(setup.runtime) if setup.runtime in ("nir", "lava") else None
        self.backbone = self.bundle.backbone_runtime("onnxruntime") if setup.runtime == "onnxruntime" else None
        table = load_devices(setup.devices_file)
        self.targets = [table.get(t) for t in setup.targets]
        self.host = table.get(setup.host)
        c = self.model.config
        self.expected_size = (c.input_width, c.input_height)
        self.dt_s = (setup.binning.dt_us or 0) / 1e6 or None

    # -- reading -------------------------------------------------------------------------
    def _read(self, path: str) -> Recording:
        reading = {k: v for k, v in self.setup.reading if v is not None}
        if "event_stream" in reading:
            reading["stream"] = reading.pop("event_stream")
        recording = load(path, self.setup.sensor_size, **reading)
        for transform in self.setup.transforms:
            recording = transform(recording)
        if tuple(recording.sensor_size) != self.expected_size:
            raise EvalError(f"{path}: sensor size {tuple(recording.sensor_size)} after transforms; the model expects "
                            f"{self.expected_size}: pass --downsample {self.expected_size[0]}x{self.expected_size[1]} "
                            f"(scale the whole sensor) or --center-crop / --crop (cut out a window)")
        return recording

    def _load_samples(self, specs: Sequence[SampleSpec],
                      partial: SharePartial) -> list[tuple[SampleSpec, np.ndarray, int]]:
        loaded = []
        by_path: dict[str, list[SampleSpec]] = {}
        for spec in specs:
            by_path.setdefault(spec.path, []).append(spec)
        for path, group in by_path.items():
            try:
                recording = self._read(path)
            except Exception as err:  # noqa: BLE001  (any unreadable recording is reported, the rest go on)
                partial.failures.append(Failure(path, tuple(s.name for s in group), _reason(err)))
                continue
            for spec in group:
                try:
                    frames, n_events = _frames(recording, spec, self.setup.binning)
                except Exception as err:  # noqa: BLE001
                    partial.failures.append(Failure(path, (spec.name,), _reason(err)))
                    continue
                loaded.append((spec, frames, n_events))
        return loaded

    # -- running -------------------------------------------------------------------------
    def run(self, specs: Sequence[SampleSpec], progress: Callable[[int], None] | None = None) -> SharePartial:
        partial = SharePartial()
        step = self.setup.batch_size
        # read a few batches ahead, then batch samples of similar length together (less padding)
        window = step * 4
        for lo in range(0, len(specs), window):
            t0 = time.perf_counter()
            loaded = self._load_samples(specs[lo:lo + window], partial)
            partial.read_s += time.perf_counter() - t0
            loaded.sort(key=lambda item: (item[1].shape[0], item[0].index))
            for b in range(0, len(loaded), step):
                batch = loaded[b:b + step]
                t0 = time.perf_counter()
                try:
                    partial.outcomes.extend(self._run_batch(batch, partial))
                except Exception as err:  # noqa: BLE001  (a batch that fails: retry its samples one by one)
                    for item in batch:
                        try:
                            partial.outcomes.extend(self._run_batch([item], partial))
                        except Exception as one_err:  # noqa: BLE001
                            partial.failures.append(Failure(item[0].path, (item[0].name,), _reason(one_err)))
                    del err
                partial.compute_s += time.perf_counter() - t0
            if progress is not None:
                progress(min(window, len(specs) - lo))
        return partial

    @torch.no_grad()
    def _run_batch(self, batch: list[tuple[SampleSpec, np.ndarray, int]], partial: SharePartial) -> list[SampleOutcome]:
        lengths = [f.shape[0] for _, f, _ in batch]
        steps = max(lengths)
        frames = np.zeros((len(batch), steps, *batch[0][1].shape[1:]), np.float32)
        for i, (_, f, _) in enumerate(batch):
            frames[i, :f.shape[0]] = f
        frames_t = torch.from_numpy(frames).to(self.setup.device)
        lengths_t = torch.tensor(lengths)
        exact = None
        started = time.perf_counter()
        if self.frontend is not None:
            logits, spikes = self._stepped_frontend(frames_t, lengths)
        else:
            from neurodeploy.model.mamba_spike.offline import offline_run

            out = offline_run(self.model, frames_t, lengths_t, fast_math=self.setup.fast_math)
            logits, spikes = out.logits, out.spikes
            if self.setup.fast_math:
                exact = offline_run(self.model, frames_t, lengths_t).logits.argmax(-1).tolist()
            if self.backbone is not None:
                logits = torch.cat([torch.as_tensor(self.backbone.run(spikes[-1][i:i + 1, :n].cpu()))
                                    for i, n in enumerate(lengths)])
        predictions = logits.argmax(-1).tolist()  # (synchronises a GPU: the model time is complete)
        partial.model_s += time.perf_counter() - started
        spikes = [s.cpu() for s in spikes]
        outcomes = []
        for i, (spec, f, n_events) in enumerate(batch):
            n = lengths[i]
            counts = self._count(frames_t[i:i + 1, :n].cpu(), [s[i:i + 1, :n] for s in spikes])
            outcomes.append(SampleOutcome(
                index=spec.index, name=spec.name, label=spec.label, prediction=int(predictions[i]), n_steps=n,
                n_events=n_events, exact_prediction=None if exact is None else int(exact[i]), **counts))
        return outcomes

    def _stepped_frontend(self, frames: torch.Tensor, lengths: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """nir / lava: each sample stepped through the bundle's front-end runtime, backbone offline."""
        from neurodeploy.report.from_events import record_frontend_run

        logits, per_layer = [], []
        for i, n in enumerate(lengths):
            record = record_frontend_run(self.frontend, frames[i:i + 1, :n], dt_s=self.dt_s or 1e-3,
                                         name=self.setup.runtime)
            logits.append(self.model.backbone_forward(record.spikes[-1]))
            padded = [torch.nn.functional.pad(s, (0, 0, 0, 0, 0, 0, 0, frames.shape[1] - n)) for s in record.spikes]
            per_layer.append(padded)
        return torch.cat(logits), [torch.cat(layer) for layer in zip(*per_layer)]

    def _count(self, frames: torch.Tensor, spikes: list[torch.Tensor]) -> dict[str, Any]:
        """One sample's counts (neurodeploy.report) and its energy on each target."""
        from neurodeploy.report.backbone import count_backbone
        from neurodeploy.report.counts import count_frontend
        from neurodeploy.report.energy import backbone_energy, frontend_energy
        from neurodeploy.report.record import SpikeRecord

        record = SpikeRecord(frames, tuple(spikes), dt_s=self.dt_s)
        front = count_frontend(self.model, record)
        back = count_backbone(self.model, record)
        host_j = backbone_energy(self.host, back).total_j
        return dict(
            spikes_per_layer=tuple(layer.output_spikes for layer in front),
            synops_per_layer=tuple(layer.synaptic_ops for layer in front),
            backbone_macs=float(sum(layer.macs_per_sample for layer in back)),
            energy_j=tuple(frontend_energy(d, front).total_j + host_j for d in self.targets),
        )


def _reason(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text if isinstance(err, NeurodeployError) or isinstance(err, ValueError) else f"{type(err).__name__}: {text}"


_RUNNERS: dict[EvalSetup, ShareRunner] = {}


def runner_for(setup: EvalSetup) -> ShareRunner:
    """The process's runner for `setup`, built on first use: a worker loads the model and its
    runtimes once for its whole share, not per recording. The transforms are not part of the key
    (each task unpickles its own copies of them; they do not change what is loaded)."""
    key = dataclasses.replace(setup, transforms=())
    runner = _RUNNERS.get(key)
    if runner is None:
        runner = _RUNNERS[key] = ShareRunner(setup)
    runner.setup = setup
    return runner


def evaluate_share(setup: EvalSetup, specs: Sequence[SampleSpec]) -> SharePartial:
    """The task a worker runs: one chunk of samples with the process's cached runner."""
    return runner_for(setup).run(list(specs))


__all__ = ["Binning", "EvalError", "EvalSetup", "Failure", "RUNTIMES", "SampleOutcome", "ShareRunner", "SharePartial",
           "evaluate_share", "runner_for"]
