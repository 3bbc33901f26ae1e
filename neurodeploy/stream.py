"""The streaming pipeline: source -> samples -> binning at dt_us -> front-end -> backbone -> results.

Every time bin goes through both halves one step at a time with the state kept in the
runtimes, exactly as it would on a chip: the front-end runtime (`torch` | `nir` | `lava`)
turns the bin's event counts into spikes, the backbone runtime (`torch` | `onnxruntime`)
turns them into the anytime prediction. At the end of a sample the backbone is flushed (the
centered interface's look-ahead), the sample's result is emitted and both states are reset.

Samples are delimited by a label file (segments `[t_start_us, t_end_us)`), by a fixed time
window, or by the end of the stream. A sample of duration D has ceil(D / dt_us) bins starting
at its own start, the last one possibly partial: the same frames that
`events.binning.to_frames_dt(events, t_start=start, n_bins=ceil(D/dt))` gives offline, so a
streamed sample's prediction equals the offline model's on those frames.

Live sources are read on a thread into a bounded queue; when the pipeline falls behind,
`overflow="block"` back-pressures the source and `overflow="drop_oldest"` discards the
oldest queued packet and counts it. Nothing is dropped silently.

Bounded for hostile or endless streams (issue 21): bins are computed `_BINS_PER_BATCH` at a time
(an event an hour ahead cost one gap-sized allocation of 6 GiB); without labels, an event more
than `max_time_jump_us` after the previous one closes the sample and re-anchors the windows at
it (counted in `time_jumps`; a window run would otherwise step through every empty window of the
gap); step latencies go into a LogHistogram instead of a list; the run keeps the last
`keep_results` results and each sample its last `keep_steps` per-step entries, with counters for
the summary.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import queue
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from neurodeploy.bundle import Bundle, load_bundle
from neurodeploy.errors import NeurodeployError
from neurodeploy.events.binning import FrameBinner, to_frames_dt
from neurodeploy.events.labels import LabelSegment, labels_beside, read_label_file
from neurodeploy.latency_histogram import LogHistogram
from neurodeploy.events.transforms import SensorSizeError, TransformedSource, Transforms, as_transforms, check_fits
from neurodeploy.realtime import real_time_factor
from neurodeploy.runtimes.contract import BackboneRuntime, FrontendRuntime
from neurodeploy.sources import open_source

Overflow = Literal["block", "drop_oldest"]
_END = object()
MIN_DT_US, MAX_DT_US = 1, 10_000_000
_BINS_PER_BATCH = 256  # frames binned at once: bounds memory whatever the gap between events
_INT64_MAX = np.iinfo(np.int64).max
BACKLOG_LAG_S = 1.0  # a live packet older than this when taken: the pipeline is behind
BACKLOG_WARN_EVERY_S = 5.0


class StreamError(NeurodeployError, ValueError):
    """A stream that cannot be opened as asked (sensor size, options); the message names the way out."""


@dataclass(frozen=True)
class StreamOptions:
    dt_us: int
    window_us: int | None = None  # fixed sample windows; None: labels or the whole stream
    labels: tuple[LabelSegment, ...] | None = None
    realtime: bool = False  # pace file sources as if live
    replay_factor: float = 1.0  # with realtime: >1 replays faster than recorded
    queue_packets: int = 64  # bound of the live-source queue
    overflow: Overflow = "block"
    keep_anytime: bool = True
    max_time_jump_us: int | None = 60_000_000  # without labels: a larger jump closes the sample (None: off)
    keep_results: int = 10_000  # SampleResults kept in StreamRun.results (the summary counts all)
    keep_steps: int = 100_000  # per-step entries (latency, anytime prediction) kept per sample: the last ones

    def __post_init__(self) -> None:
        if isinstance(self.dt_us, bool) or not isinstance(self.dt_us, int) or not MIN_DT_US <= self.dt_us <= MAX_DT_US:
            raise StreamError(f"dt_us = {self.dt_us!r}; expected an integer {MIN_DT_US}..{MAX_DT_US} microseconds")
        if self.max_time_jump_us is not None and self.max_time_jump_us < self.dt_us:
            raise StreamError(f"max_time_jump_us = {self.max_time_jump_us}; expected at least dt_us ({self.dt_us})")
        if self.keep_results < 1 or self.keep_steps < 1:
            raise StreamError("keep_results and keep_steps must be >= 1")
        if self.window_us is not None and self.window_us <= 0:
            raise StreamError(f"window_us = {self.window_us}; expected a positive number of microseconds")
        if self.window_us is not None and self.labels is not None:
            raise StreamError("give either labels or window_us to delimit samples, not both")
        if self.overflow not in ("block", "drop_oldest"):
            raise StreamError(f"overflow = {self.overflow!r}; expected 'block' or 'drop_oldest'")
        if self.replay_factor <= 0:
            raise StreamError(f"replay_factor = {self.replay_factor}; expected > 0")
        if self.queue_packets < 1:
            raise StreamError(f"queue_packets = {self.queue_packets}; expected >= 1")


@dataclass(frozen=True)
class SampleResult:
    index: int
    t_start_us: int
    t_end_us: int
    n_steps: int
    n_events: int
    prediction: int
    scores: tuple[float, ...]
    label: int | None
    spikes_per_layer: dict[str, int]
    anytime_predictions: tuple[int, ...]
    step_latency_us: tuple[float, ...]
    decision_latency_us: float | None  # last event's arrival -> final decision (live sources)

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.prediction == self.label

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["correct"] = self.correct
        return data


@dataclass
class StreamStats:
    """Counters of one run; mutable while the run goes on."""

    events_received: int = 0
    packets_received: int = 0
    packets_dropped: int = 0  # drop_oldest overflow
    events_dropped: int = 0
    events_outside_samples: int = 0  # between labelled segments: not part of any sample
    steps: int = 0
    wall_s: float = 0.0
    compute_s: float = 0.0
    samples: int = 0
    labelled: int = 0
    correct: int = 0
    time_jumps: int = 0  # implausible jumps forward (> max_time_jump_us): the sample was closed there
    largest_time_jump_us: int = 0
    step_latency_us: LogHistogram = field(default_factory=LogHistogram)
    decision_latency_us: LogHistogram = field(default_factory=LogHistogram)
    source: dict[str, int] = field(default_factory=dict)
    max_backlog_packets: int = 0  # live: packets waiting in the queue, at most
    max_lag_s: float = 0.0  # live: age of a packet when the pipeline took it, at most
    backlog_warnings: int = 0
    events_removed_by_transforms: int = 0
    first_t_us: int | None = None  # the first event's timestamp: the recording's start

    def count(self, result: SampleResult) -> None:
        self.samples += 1
        if result.label is not None:
            self.labelled += 1
            self.correct += int(bool(result.correct))

    def summary(self, dt_us: int, results: Any = None) -> dict[str, Any]:
        simulated_s = self.steps * dt_us / 1e6
        out: dict[str, Any] = {
            "samples": self.samples,
            "accuracy": (self.correct / self.labelled) if self.labelled else None,
            "steps": self.steps,
            "dt_us": dt_us,
            "events_received": self.events_received,
            "packets_received": self.packets_received,
            "packets_dropped": self.packets_dropped,
            "events_dropped": self.events_dropped,
            "events_outside_samples": self.events_outside_samples,
            "time_jumps": self.time_jumps,
            "largest_time_jump_us": self.largest_time_jump_us,
            "step_latency_us": self.step_latency_us.summary(),
            "decision_latency_us": self.decision_latency_us.summary(),
            "wall_s": self.wall_s,
            # recorded time / wall time of processing (neurodeploy.realtime): > 1 is faster than real time
            "real_time_factor": real_time_factor(simulated_s, self.compute_s),
            "source": dict(self.source),
            "max_backlog_packets": self.max_backlog_packets,
            "max_lag_s": self.max_lag_s,
            "backlog_warnings": self.backlog_warnings,
            # events that did not reach the model: dropped on overflow, or by the source (out of bounds, by
            # request); packets / bytes the transport lost are in source.packets_lost / bytes_lost
            "events_lost": self.events_dropped + int(self.source.get("out_of_bounds", 0)),
            "events_removed_by_transforms": self.events_removed_by_transforms,
            "first_t_us": self.first_t_us,
        }
        return out


class _Queued:
    """Reads a live source on a thread into a bounded queue (see module docstring)."""

    def __init__(self, source: Iterable[np.ndarray], options: StreamOptions, stats: StreamStats):
        self.source = source
        self.options = options
        self.stats = stats
        self.queue: queue.Queue = queue.Queue(maxsize=options.queue_packets)
        self.error: BaseException | None = None
        self.full_events = 0  # puts that found the queue full (blocked, or dropped the oldest)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, name="neurodeploy-source", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        if self.options.overflow == "block" or item is _END:
            try:
                self.queue.put_nowait(item)
            except queue.Full:
                self.full_events += 1
                self.queue.put(item)
            return
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                self.full_events += 1
                try:
                    dropped = self.queue.get_nowait()
                except queue.Empty:
                    continue
                if dropped is not _END:
                    with self._lock:
                        self.stats.packets_dropped += 1
                        self.stats.events_dropped += len(dropped[1])

    def _pump(self) -> None:
        try:
            for packet in self.source:
                self._put((time.perf_counter(), packet))
        except BaseException as err:  # noqa: BLE001  (re-raised in the consumer thread)
            self.error = err
        finally:
            self._put(_END)

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        while True:
            item = self.queue.get()
            if item is _END:
                self._thread.join(timeout=5)
                if self.error is not None:
                    raise self.error
                return
            yield item

    def stop(self) -> None:
        stop = getattr(self.source, "stop", None)
        if stop is not None:
            stop()


class StreamRun:
    """Iterate to get one `SampleResult` per sample; `summary()` afterwards."""

    def __init__(
        self,
        frontend: FrontendRuntime,
        backbone: BackboneRuntime,
        source: Iterable[np.ndarray],
        sensor_size: tuple[int, int],
        options: StreamOptions,
        *,
        live: bool = False,
        labels_path: Path | None = None,
        warn: Any = None,
    ):
        self.frontend = frontend
        # live sources that fall behind are reported through `warn(message)` (default: warnings.warn)
        self.warn = warn or (lambda message: warnings.warn(message, RuntimeWarning, stacklevel=3))
        self.backbone = backbone
        self.source = source
        self.sensor_size = tuple(sensor_size)
        self.options = options
        self.live = live
        self.labels_path = labels_path  # the labels file the samples were cut by, if any
        self.runtimes: tuple[str, str] | None = None  # (front-end, back-end) names, set by stream()
        self.stats = StreamStats()
        self.results: collections.deque[SampleResult] = collections.deque(maxlen=options.keep_results)
        self._last_t: int | None = None  # the last event's time, for the time-jump check

    def close(self) -> None:
        """Release the runtimes (Lava stops its processes)."""
        self.frontend.close()
        self.backbone.close()

    def __enter__(self) -> StreamRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- packets in ---------------------------------------------------------------------
    def _packets(self) -> Iterator[tuple[float, np.ndarray]]:
        if self.live:
            queued = _Queued(self.source, self.options, self.stats)
            try:
                for arrival, packet in queued:
                    self._watch_backlog(queued, arrival)
                    yield arrival, packet
            finally:
                queued.stop()
            return
        start_wall = time.perf_counter()
        t0: int | None = None
        for packet in self.source:
            if self.options.realtime and len(packet):
                t0 = int(packet["t"][0]) if t0 is None else t0
                due = start_wall + (int(packet["t"][-1]) - t0) / 1e6 / self.options.replay_factor
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            yield time.perf_counter(), packet

    def _watch_backlog(self, queued: _Queued, arrival: float) -> None:
        """A live source that the pipeline cannot keep up with: say so, with the backlog, at most every
        BACKLOG_WARN_EVERY_S, and suggest dropping instead of falling further behind."""
        backlog = queued.queue.qsize()
        lag = time.perf_counter() - arrival
        self.stats.max_backlog_packets = max(self.stats.max_backlog_packets, backlog)
        self.stats.max_lag_s = max(self.stats.max_lag_s, lag)
        full = queued.full_events > getattr(self, "_full_seen", 0)  # the queue filled up since the last look
        self._full_seen = queued.full_events
        behind = lag > BACKLOG_LAG_S or full
        now = time.monotonic()
        if behind and now - getattr(self, "_last_warning", -math.inf) >= BACKLOG_WARN_EVERY_S:
            self._last_warning = now
            self.stats.backlog_warnings += 1
            advice = ("pass --overflow drop_oldest to drop the oldest packets (counted) and stay current"
                      if self.options.overflow == "block" else
                      f"dropping the oldest packets ({self.stats.packets_dropped} so far, counted)")
            self.warn(f"the pipeline is falling behind the live source: {backlog} packets queued "
                      f"(bound {self.options.queue_packets}), the packet taken now arrived {lag:.2f} s ago; {advice}")

    # -- the loop -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[SampleResult]:
        start = time.perf_counter()
        try:
            yield from self._run()
        finally:
            self.stats.wall_s = time.perf_counter() - start
            source_stats = getattr(self.source, "stats", None)
            if source_stats is not None and hasattr(source_stats, "as_dict"):
                self.stats.source = source_stats.as_dict()
            if isinstance(self.source, TransformedSource):
                self.stats.events_removed_by_transforms = self.source.events_in - self.source.events_out

    def _segments(self, first_t: int) -> Iterator[tuple[int, int | None, int | None]]:
        """(start, end or None for open-ended, label) of each sample."""
        o = self.options
        if o.labels is not None:
            for seg in o.labels:
                yield seg.t_start_us, seg.t_end_us, seg.label
            return
        if o.window_us is not None:
            k = 0
            while True:  # ends with the stream
                yield first_t + k * o.window_us, first_t + (k + 1) * o.window_us, None
                k += 1
        yield first_t, None, None

    def _run(self) -> Iterator[SampleResult]:
        sample: _Sample | None = None
        segments: Iterator[tuple[int, int | None, int | None]] | None = None
        pending_segment: tuple[int, int | None, int | None] | None = None
        for arrival, whole in self._packets():
            self.stats.packets_received += 1
            self.stats.events_received += len(whole)
            for packet, jumped in self._split_at_jumps(whole):
                if jumped:
                    # an implausible jump forward: close the sample at its last event, re-anchor at the jump
                    if sample is not None:
                        yield self._close(sample, arrival)
                        sample = None
                    segments = pending_segment = None
                while len(packet):
                    if segments is None:
                        if self.stats.first_t_us is None:
                            self.stats.first_t_us = int(packet["t"][0])
                        segments = self._segments(int(packet["t"][0]))
                        pending_segment = next(segments, None)
                    if sample is None:
                        if pending_segment is None:  # after the last labelled segment
                            self.stats.events_outside_samples += len(packet)
                            break
                        start, end, label = pending_segment
                        before = packet["t"] < start
                        self.stats.events_outside_samples += int(before.sum())
                        packet = packet[~before]
                        if not len(packet):
                            break
                        if end is not None and int(packet["t"][0]) >= end:
                            # a whole sample passed without events: it still is a sample
                            sample = self._open(start, end, label)
                            yield self._close(sample, arrival)
                            sample, pending_segment = None, next(segments, None)
                            continue
                        sample = self._open(start, end, label)
                    inside = packet if sample.end is None else packet[packet["t"] < sample.end]
                    if len(inside):
                        self._feed(sample, inside, arrival)
                    packet = packet[len(inside):]
                    if sample.end is not None and len(packet):
                        yield self._close(sample, arrival)
                        sample, pending_segment = None, next(segments, None)
        if sample is not None:
            yield self._close(sample, time.perf_counter())
            pending_segment = next(segments, None) if segments is not None else None
        # labelled samples after the end of the stream: no events, still reported
        if pending_segment is not None and segments is not None and self.options.labels is not None:
            for start, end, label in [pending_segment, *segments]:
                yield self._close(self._open(start, end, label), time.perf_counter())

    def _split_at_jumps(self, packet: np.ndarray) -> Iterator[tuple[np.ndarray, bool]]:
        """The packet in pieces cut before every jump forward larger than max_time_jump_us (no
        cut with labels: they say where samples are); True where a piece starts after a jump."""
        limit = self.options.max_time_jump_us
        if not len(packet):
            return
        t = packet["t"]
        latest = np.maximum.accumulate(t)
        if self._last_t is not None:
            np.maximum(latest, self._last_t, out=latest)
        previous = np.empty_like(t)
        previous[0] = t[0] if self._last_t is None else self._last_t
        previous[1:] = latest[:-1]
        self._last_t = int(latest[-1])
        if limit is None or self.options.labels is not None:
            yield packet, False
            return
        # compare against previous + limit, saturated: subtracting int64 times could overflow
        ceiling = np.where(previous > _INT64_MAX - limit, _INT64_MAX, previous + limit)
        cuts = np.flatnonzero(t > ceiling)
        for cut in cuts:
            self.stats.time_jumps += 1
            self.stats.largest_time_jump_us = max(self.stats.largest_time_jump_us, int(t[cut]) - int(previous[cut]))
        after_jump = set(cuts.tolist())
        bounds = [0, *cuts.tolist(), len(packet)]
        for begin, end in zip(bounds[:-1], bounds[1:]):
            if end > begin:
                yield packet[begin:end], begin in after_jump

    # -- one sample ---------------------------------------------------------------------
    def _open(self, start: int, end: int | None, label: int | None) -> _Sample:
        batch = 1
        self.frontend.reset(batch)
        self.backbone.reset(batch)
        binner = FrameBinner(self.sensor_size, self.options.dt_us, t_start=start, dtype=np.float32)
        return _Sample(index=self.stats.samples, start=start, end=end, label=label, binner=binner,
                       keep_steps=self.options.keep_steps)

    def _feed(self, sample: _Sample, events: np.ndarray, arrival: float) -> None:
        sample.n_events += len(events)
        sample.last_t = int(events["t"][-1])
        # the bins that end at or before the last event are complete
        sample.binner.push(events, max_bins=0)
        self._advance(sample, int(events["t"].max()), arrival)

    def _run_frames(self, sample: _Sample, frames: np.ndarray, arrival: float | None) -> None:
        for frame in frames:
            self._step(sample, torch.from_numpy(frame).unsqueeze(0))
        if len(frames) and arrival is not None and self.live:
            self.stats.decision_latency_us.add((time.perf_counter() - arrival) * 1e6)

    def _advance(self, sample: _Sample, t_us: int, arrival: float | None) -> None:
        """Run every bin that ends by t_us, _BINS_PER_BATCH at a time: memory does not grow with a gap."""
        ran = False
        while len(frames := sample.binner.advance_to(t_us, max_bins=_BINS_PER_BATCH)):
            self._run_frames(sample, frames, None)
            ran = True
        if ran and arrival is not None and self.live:
            self.stats.decision_latency_us.add((time.perf_counter() - arrival) * 1e6)

    @torch.no_grad()
    def _step(self, sample: _Sample, frame: torch.Tensor) -> None:
        t = time.perf_counter()
        spikes = self.frontend.step(frame)
        # a pipelined front-end (Lava: one step of delay per layer) returns None while its
        # pipeline fills; its spikes come out later and the rest at flush()
        logits = None if spikes is None else torch.as_tensor(self.backbone.step(torch.as_tensor(spikes)))
        elapsed = time.perf_counter() - t
        self.stats.compute_s += elapsed
        self.stats.steps += 1
        sample.steps += 1
        sample.latency_us.append(elapsed * 1e6)
        self.stats.step_latency_us.add(elapsed * 1e6)
        if self.options.keep_anytime and logits is not None:
            sample.anytime.append(int(logits.argmax(dim=-1)[0]))

    @torch.no_grad()
    def _close(self, sample: _Sample, arrival: float) -> SampleResult:
        dt = self.options.dt_us
        if sample.end is not None:
            n_bins = max(1, math.ceil((sample.end - sample.start) / dt))
        else:
            # open-ended (the whole stream): up to the bin of the last event, the last one partial
            n_bins = max(sample.steps, (sample.last_t - sample.start) // dt + 1, 1)
        if n_bins > sample.steps:
            self._advance(sample, sample.start + n_bins * dt, None)
        t = time.perf_counter()
        rest = self.frontend.flush()  # spikes still in a pipelined front-end: (1, n, C, H, W)
        for k in range(rest.shape[1]):
            self.backbone.step(rest[:, k])
        logits = torch.as_tensor(self.backbone.flush())
        self.stats.compute_s += time.perf_counter() - t
        decision_us = (time.perf_counter() - arrival) * 1e6 if self.live else None
        if decision_us is not None:
            self.stats.decision_latency_us.add(decision_us)
        scores = torch.softmax(logits[0], dim=-1)
        result = SampleResult(
            index=sample.index,
            t_start_us=sample.start,
            t_end_us=sample.end if sample.end is not None else sample.start + n_bins * dt,
            n_steps=sample.steps,
            n_events=sample.n_events,
            prediction=int(logits[0].argmax()),
            scores=tuple(float(s) for s in scores),
            label=sample.label,
            spikes_per_layer=dict(self.frontend.spike_counts),
            anytime_predictions=tuple(sample.anytime),
            step_latency_us=tuple(sample.latency_us),
            decision_latency_us=decision_us,
        )
        self.results.append(result)
        self.stats.count(result)
        return result

    def summary(self) -> dict[str, Any]:
        out = self.stats.summary(self.options.dt_us, self.results)
        out["results_kept"] = len(self.results)  # the last keep_results of them (a live run may never end)
        return out


@dataclass
class _Sample:
    index: int
    start: int
    end: int | None
    label: int | None
    binner: FrameBinner
    steps: int = 0
    n_events: int = 0
    last_t: int = 0
    keep_steps: int = 100_000
    anytime: collections.deque = field(init=False)
    latency_us: collections.deque = field(init=False)

    def __post_init__(self) -> None:
        self.anytime = collections.deque(maxlen=self.keep_steps)
        self.latency_us = collections.deque(maxlen=self.keep_steps)


def offline_frames(events: np.ndarray, sensor_size: tuple[int, int], dt_us: int, start: int, end: int) -> np.ndarray:
    """The frames a streamed sample `[start, end)` sees, computed offline (for parity checks)."""
    inside = events[(events["t"] >= start) & (events["t"] < end)]
    n_bins = max(1, math.ceil((end - start) / dt_us))
    return to_frames_dt(inside, sensor_size, dt_us, t_start=start, n_bins=n_bins, dtype=np.float32)


def check_sensor_size(bundle: Bundle, sensor_size: tuple[int, int], source: str,
                      transforms: Transforms | None = None) -> None:
    """Refuse events whose sensor size (after `transforms`) is not the model's input size, naming
    both and the transform flags that fit them (events.transforms.check_fits)."""
    c = bundle.config
    try:
        check_fits(source, tuple(sensor_size), transforms or Transforms(), (c.input_width, c.input_height))
    except SensorSizeError as err:
        raise StreamError(str(err)) from None


def pick_runtimes(bundle: Bundle, frontend: str | None, backbone: str | None,
                  say: Callable[[str], None] | None = None) -> tuple[str, str]:
    """The fastest runtimes the bundle allows, when none is named: the native front-end (it runs
    frontend.nir) if present, else torch; the native backbone (it needs only the model). Measured
    faster than nir / onnxruntime in benchmarks/streaming.py. Says which through `say`."""
    chosen = []
    if frontend is None:
        frontend = "native" if bundle.has("frontend_nir") else "torch"
        chosen.append(f"front-end {frontend}" + ("" if frontend == "native" else " (no NIR in this bundle)"))
    if backbone is None:
        backbone = "native"
        chosen.append(f"backbone {backbone}")
    if chosen and say is not None:
        say("runtimes: " + ", ".join(chosen) + " (the best this bundle has; --frontend / --backbone choose others)")
    return frontend, backbone


def input_transforms(bundle: Bundle, given: Transforms | None, say: Callable[[str], None] | None = None) -> Transforms:
    """`given` transforms when there are any, else those the bundle recorded at export; says which."""
    say = say or (lambda line: None)
    recorded = bundle.transforms
    if given:
        if recorded and recorded != given:
            say(f"input transforms: {given.describe()} (from the flags, instead of the bundle's "
                f"{recorded.describe()})")
        else:
            say(f"input transforms: {given.describe()}")
        return given
    if recorded:
        say(f"input transforms: {recorded.describe()} (recorded in the bundle at export; transform flags replace them)")
    return recorded


def _steps_per_sample(dt_us: int, labels: tuple[LabelSegment, ...] | None, window_us: int | None) -> int | None:
    """The longest sample in bins, when the samples are delimited (the pipelined Lava runtime needs it)."""
    if labels:
        return max(-(-(s.t_end_us - s.t_start_us) // dt_us) for s in labels)
    if window_us:
        return -(-window_us // dt_us)
    return None


def stream(bundle: Bundle | str | Path, source: str | Path | Iterable[np.ndarray], *, frontend: str | None = None,
           backbone: str | None = None, sensor_size: tuple[int, int] | None = None, follow: bool = False,
           format: str | None = None, idle_timeout_s: float = 2.0,
           labels: str | Path | Sequence[LabelSegment] | None = None, window_us: int | None = None,
           transforms: Transforms | Sequence[Callable[[np.ndarray], np.ndarray]] | None = None,
           live: bool | None = None,
           steps_per_sample: int | None = None, truncated: str | None = None, out_of_bounds: str = "error",
           non_monotonic: str = "error", layout: str | None = None, event_stream: str | None = None,
           say: Callable[[str], None] | None = None,
           warn: Callable[[str], None] | None = None, **options: Any) -> StreamRun:
    """Open a stream: the one way in, for `neurodeploy run`, `neurodeploy demo` and `neurodeploy.stream()`.

    1. `bundle`: a Bundle or a bundle folder (loaded and checked).
    2. `source`: an event file path, `-` or an address (see neurodeploy.sources), read with the
       policy `truncated` / `out_of_bounds` / `non_monotonic` (events.ReadPolicy), or an
       iterable of event packets (then `sensor_size` is needed).
    3. `transforms` (`events.transforms.Transforms`: crop, downsample, denoise...; or a list of
       callables events -> events, a geometry-changing one with `output_sensor_size`) fit the sensor
       to the model, on every packet, files and live sources alike; none given: the ones the
       bundle recorded at export (`input_transforms`).
    4. The sensor size (after the transforms) must be the model's input size; the error names
       the transform flags that fit it.
    5. Samples: `labels` (a labels file or segments), else `window_us`, else the labels file
       beside an event file (`<file>.labels.csv`), else the whole stream is one sample.
    6. The runtimes: `frontend` (torch | nir | lava) and `backbone` (onnxruntime | torch), by
       default the best the bundle has (`pick_runtimes`); Lava lays samples out on its clock and
       gets the longest sample's length (`steps_per_sample`, by default from the labels or the window).
    `live`: read the source on a thread through a bounded queue (default: as the source says;
    True replays a file as a live source). `say(line)` gets the notes (runtimes and transforms
    chosen), `warn(line)` a live source falling behind. `options` are further StreamOptions
    fields; `dt_us` defaults to the bundle's. Iterate the returned run for per-sample results;
    close it (or use `with`) to release the runtimes.
    """
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    options.setdefault("dt_us", bundle.dt_us)
    notes: list[str] = []  # said once the source is open and fits: an error comes before any output
    frontend, backbone = pick_runtimes(bundle, frontend, backbone, notes.append)
    transforms = input_transforms(bundle, as_transforms(transforms), notes.append)
    if isinstance(source, (str, Path)):
        opened = open_source(str(source), sensor_size=sensor_size, follow=follow, format=format,
                             idle_timeout_s=idle_timeout_s, truncated=truncated, out_of_bounds=out_of_bounds,
                             non_monotonic=non_monotonic, layout=layout, event_stream=event_stream)
        packets, size, source_live, name = opened.packets, opened.sensor_size, opened.live, str(source)
    else:
        if sensor_size is None:
            raise StreamError("a packet iterable carries no sensor size: pass sensor_size=(width, height)")
        packets, size, source_live, name = source, tuple(sensor_size), False, "<packets>"
    check_sensor_size(bundle, size, name, transforms)
    if transforms:
        packets = TransformedSource(packets, size, transforms)
        size = packets.sensor_size
    for line in notes if say is not None else ():
        say(line)

    labels_path = None
    if labels is None and window_us is None and isinstance(source, (str, Path)):
        labels = labels_beside(source)
    if isinstance(labels, (str, Path)):
        labels_path, labels = Path(labels), read_label_file(labels)
    segments = tuple(labels) if labels is not None else None
    if steps_per_sample is None:
        steps_per_sample = _steps_per_sample(options["dt_us"], segments, window_us)
    stream_options = StreamOptions(labels=segments, window_us=window_us, **options)
    runtime_options = {} if steps_per_sample is None else {"steps_per_sample": steps_per_sample}
    run = StreamRun(bundle.frontend_runtime(frontend, **runtime_options), bundle.backbone_runtime(backbone),
                    packets, size, stream_options, live=source_live if live is None else live,
                    labels_path=labels_path, warn=warn)
    run.runtimes = (frontend, backbone)
    return run


class _CallableModule(types.ModuleType):
    """`neurodeploy.stream(...)` is the API function, and `neurodeploy.stream` is also this module:
    once the submodule is imported, Python binds the package attribute to the module, so the
    module itself forwards calls to `stream()`."""

    def __call__(self, *args: Any, **kwargs: Any) -> StreamRun:
        return stream(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
