"""Spatial transforms for real sensors: fit a camera's events to the input a model was trained on.

Small tonic-style callables (frozen dataclasses): each knows the sensor size it produces
(`output_size(sensor_size)`), transforms a whole `Recording` when called on one (the events
carry their sensor size), and gives a `streamer(sensor_size)` that transforms packet by packet,
so files and live sources go through the same code. `Transforms` chains them.

Semantics are tonic 1.7's, checked against tonic in tests/test_events_transforms.py (docs/real_cameras.md):

- `Crop(x, y, width, height)`: tonic `functional.crop_numpy` with a fixed box: events inside
  the box are kept and shifted by (-x, -y); the rest are removed (and counted by
  `TransformedSource`).
- `CenterCrop(width, height)`: tonic `CenterCrop`: the box centred with offset (W - w) // 2; a
  size larger than the sensor pads (events shift, none are removed).
- `Downsample(factor)` / `Downsample(target=(w, h))`: tonic `Downsample(spatial_factor=f)` /
  `Downsample(sensor_size=..., target_size=...)`: x' = floor(x * fx), y' = floor(y * fy) in
  float64, as tonic's assignment of the float product to the integer field does, with
  fx = w / W for a target. No event is removed: several source pixels land on one target pixel
  and their events add up when binned (counts pooled, as tonic `ToFrame` sums them). Output
  size: the target, or floor((W - 1) * f) + 1 for a factor. Not a pooling of per-pixel rates.
- `FlipX` / `FlipY`: tonic `RandomFlipLR` / `RandomFlipUD` with p = 1: x' = W - 1 - x.
- `MergePolarity`: tonic `MergePolarities`: every event becomes OFF (p = 0, channel 0).
- `Denoise(filter_time)`: tonic `Denoise` (the reference training used it), from
  `events.denoise`, streamed with per-pixel memory across packets.

The command-line flags build one chain in a fixed order (`from_flags`): denoise (on the native
sensor, where the noise is), crop (a box in the camera's own coordinates), flip, downsample,
centre crop (so `--downsample F --center-crop WxH` scales keeping the aspect ratio and then
cuts the model's input out of the middle), merge polarity.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np

from neurodeploy.errors import NeurodeployError

from .denoise import Denoise
from .types import Recording

Size = tuple[int, int]


class TransformError(NeurodeployError, ValueError):
    """A transform that cannot apply to this sensor; the message names the flag."""


class Transform(Protocol):
    name: str

    def output_size(self, sensor_size: Size) -> Size: ...

    def streamer(self, sensor_size: Size) -> Callable[[np.ndarray], np.ndarray]: ...

    def describe(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class _Stateless:
    """Transforms that map each event on its own: the streamer is `apply` with the size bound."""

    name = ""

    def apply(self, events: np.ndarray, sensor_size: Size) -> np.ndarray:
        raise NotImplementedError

    def streamer(self, sensor_size: Size) -> Callable[[np.ndarray], np.ndarray]:
        self.output_size(sensor_size)  # refuses a sensor it cannot apply to, before any event
        return lambda events: self.apply(events, sensor_size)

    def __call__(self, recording: Recording) -> Recording:
        return Recording(self.apply(recording.events, recording.sensor_size), self.output_size(recording.sensor_size))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


def _keep_box(events: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    inside = (x >= x0) & (x < x0 + width) & (y >= y0) & (y < y0 + height)
    out = events[inside]  # a copy (boolean index)
    out["x"] = (x[inside] - x0).astype(out.dtype["x"])
    out["y"] = (y[inside] - y0).astype(out.dtype["y"])
    return out


@dataclasses.dataclass(frozen=True)
class Crop(_Stateless):
    """Keep the box [x, x + width) x [y, y + height) and move it to the origin (`--crop X,Y,W,H`)."""

    x: int
    y: int
    width: int
    height: int
    name = "crop"

    def output_size(self, sensor_size: Size) -> Size:
        w, h = sensor_size
        if self.width <= 0 or self.height <= 0 or self.x < 0 or self.y < 0:
            raise TransformError(f"--crop {self.x},{self.y},{self.width},{self.height}: expected X,Y >= 0 and W,H > 0")
        if self.x + self.width > w or self.y + self.height > h:
            raise TransformError(f"--crop {self.x},{self.y},{self.width},{self.height}: the box reaches "
                                 f"({self.x + self.width}, {self.y + self.height}), outside the {w}x{h} sensor; "
                                 f"choose a box inside it")
        return self.width, self.height

    def apply(self, events: np.ndarray, sensor_size: Size) -> np.ndarray:
        return _keep_box(events, self.x, self.y, self.width, self.height)

    def describe(self) -> str:
        return f"crop {self.width}x{self.height} at ({self.x}, {self.y})"


@dataclasses.dataclass(frozen=True)
class CenterCrop(_Stateless):
    """tonic CenterCrop (`--center-crop WxH`)."""

    width: int
    height: int
    name = "center_crop"

    def output_size(self, sensor_size: Size) -> Size:
        if self.width <= 0 or self.height <= 0:
            raise TransformError(f"--center-crop {self.width}x{self.height}: expected a positive size")
        return self.width, self.height

    def apply(self, events: np.ndarray, sensor_size: Size) -> np.ndarray:
        ox, oy = (sensor_size[0] - self.width) // 2, (sensor_size[1] - self.height) // 2
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        bx, by = max(ox, 0), max(oy, 0)
        inside = (x >= bx) & (x < bx + self.width) & (y >= by) & (y < by + self.height)
        out = events[inside]
        out["x"] = (x[inside] - ox).astype(out.dtype["x"])
        out["y"] = (y[inside] - oy).astype(out.dtype["y"])
        return out

    def describe(self) -> str:
        return f"centre crop {self.width}x{self.height}"


@dataclasses.dataclass(frozen=True)
class Downsample(_Stateless):
    """tonic Downsample, spatial part (`--downsample F` or `--downsample WxH`); see the module docstring."""

    factor: float | None = None
    target: Size | None = None
    name = "downsample"

    def __post_init__(self):
        if (self.factor is None) == (self.target is None):
            raise TransformError("downsample: give a factor or a target size, not both (--downsample F | WxH)")
        if self.factor is not None and not self.factor > 0:
            raise TransformError(f"--downsample {self.factor}: expected a factor > 0 (0.1 keeps one pixel in ten)")
        if self.target is not None:
            object.__setattr__(self, "target", (int(self.target[0]), int(self.target[1])))
            if min(self.target) <= 0:
                raise TransformError(f"--downsample {self.target[0]}x{self.target[1]}: expected a positive size")

    def _factors(self, sensor_size: Size) -> np.ndarray:
        if self.target is not None:  # tonic: np.asarray(target_size) / sensor_size[:-1]
            return np.asarray(self.target) / np.asarray(sensor_size)
        return np.asarray((self.factor, self.factor), dtype=np.float64)

    def output_size(self, sensor_size: Size) -> Size:
        if self.target is not None:
            return self.target
        fx, fy = self._factors(sensor_size)
        return int(math.floor((sensor_size[0] - 1) * fx)) + 1, int(math.floor((sensor_size[1] - 1) * fy)) + 1

    def apply(self, events: np.ndarray, sensor_size: Size) -> np.ndarray:
        fx, fy = self._factors(sensor_size)
        out = events.copy()
        out["x"] = events["x"] * fx  # float product assigned to the integer field: floor, as tonic
        out["y"] = events["y"] * fy
        return out

    def describe(self) -> str:
        if self.target is not None:
            return f"downsample to {self.target[0]}x{self.target[1]} (tonic Downsample, counts pooled)"
        return f"downsample by {self.factor:g} (tonic Downsample, counts pooled)"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "factor": self.factor, "target": list(self.target) if self.target else None}


@dataclasses.dataclass(frozen=True)
class FlipX(_Stateless):
    """Mirror left-right, x' = W - 1 - x (`--flip-x`)."""

    name = "flip_x"

    def output_size(self, sensor_size: Size) -> Size:
        return tuple(sensor_size)

    def apply(self, events: np.ndarray, sensor_size: Size) -> np.ndarray:
        out = events.copy()
        out["x"] = sensor_size[0] - 1 - events["x"].astype(np.int64)
        return out

    def describe(self) -> str:
        return "flip x"


@dataclasses.dataclass(frozen=True)
class FlipY(_Stateless):
    """Mirror up-down, y' = H - 1 - y (`--flip-y`)."""

    name = "flip_y"

    def output_size(self, sensor_size: Size) -> Size:
        return tuple(sensor_size)

    def apply(self, events: np.ndarray, sensor_size: Size) -> np.ndarray:
        out = events.copy()
        out["y"] = sensor_size[1] - 1 - events["y"].astype(np.int64)
        return out

    def describe(self) -> str:
        return "flip y"


@dataclasses.dataclass(frozen=True)
class MergePolarity(_Stateless):
    """tonic MergePolarities: all events OFF, p = 0 (`--merge-polarity`)."""

    name = "merge_polarity"

    def output_size(self, sensor_size: Size) -> Size:
        return tuple(sensor_size)

    def apply(self, events: np.ndarray, sensor_size: Size) -> np.ndarray:
        out = events.copy()
        out["p"] = 0
        return out

    def describe(self) -> str:
        return "merge polarity (all events OFF)"


_BY_NAME: dict[str, type] = {"crop": Crop, "center_crop": CenterCrop, "downsample": Downsample, "flip_x": FlipX,
                             "flip_y": FlipY, "merge_polarity": MergePolarity, "denoise": Denoise}


@dataclasses.dataclass(frozen=True)
class Transforms:
    """A chain of transforms; empty is the identity."""

    steps: tuple[Transform, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.steps)

    def output_size(self, sensor_size: Size) -> Size:
        size = tuple(int(v) for v in sensor_size)
        for step in self.steps:
            size = step.output_size(size)
        return size

    def streamer(self, sensor_size: Size) -> Callable[[np.ndarray], np.ndarray]:
        """A packet -> packet function with the state of one stream (denoise memory)."""
        chain, size = [], tuple(int(v) for v in sensor_size)
        for step in self.steps:
            chain.append(step.streamer(size))
            size = step.output_size(size)

        def apply(events: np.ndarray) -> np.ndarray:
            for fn in chain:
                events = fn(events)
            return events

        return apply

    def __call__(self, recording: Recording) -> Recording:
        size = recording.sensor_size
        return Recording(self.streamer(size)(recording.events), self.output_size(size))

    def describe(self) -> str:
        return ", then ".join(step.describe() for step in self.steps) or "none"

    def to_list(self) -> list[dict[str, Any]]:
        return [step.to_dict() for step in self.steps]

    @classmethod
    def from_list(cls, items: Iterable[dict[str, Any]] | None) -> Transforms:
        """The inverse of `to_list` (what a bundle manifest records)."""
        steps = []
        for item in items or ():
            params = dict(item)
            name = params.pop("name", None)
            if name not in _BY_NAME:
                raise TransformError(f"unknown transform {name!r}; known: {sorted(_BY_NAME)}")
            if name == "downsample" and params.get("target") is not None:
                params["target"] = tuple(params["target"])
            steps.append(_BY_NAME[name](**params))
        return cls(tuple(steps))


@dataclasses.dataclass(frozen=True)
class Plain:
    """Any callable events -> events as a transform of the chain; a geometry-changing one says its
    output size through an `output_sensor_size(sensor_size)` method. Not recordable in a bundle."""

    fn: Callable[[np.ndarray], np.ndarray]
    name = "callable"

    def output_size(self, sensor_size: Size) -> Size:
        resize = getattr(self.fn, "output_sensor_size", None)
        return tuple(resize(sensor_size)) if resize is not None else tuple(sensor_size)

    def streamer(self, sensor_size: Size) -> Callable[[np.ndarray], np.ndarray]:
        return self.fn

    def describe(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def to_dict(self) -> dict[str, Any]:
        raise TransformError(f"{self.describe()}: a plain callable cannot be recorded in a bundle; use the "
                             "transforms of neurodeploy.events.transforms")


def as_transforms(value: Transforms | Iterable[Any] | None) -> Transforms | None:
    """None, a Transforms chain, or a sequence of transforms / plain callables -> a Transforms (or None)."""
    if value is None or isinstance(value, Transforms):
        return value
    return Transforms(tuple(step if isinstance(step, (_Stateless, Denoise)) else Plain(step) for step in value))


def _size(flag: str, value: str) -> Size:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise TransformError(f"{flag} {value}: expected WIDTHxHEIGHT, e.g. 34x34") from None
    return width, height


def from_flags(*, crop: str | None = None, center_crop: str | None = None, downsample: str | None = None,
               flip_x: bool = False, flip_y: bool = False, merge_polarity: bool = False,
               denoise_us: int | None = None) -> Transforms:
    """The chain the command-line flags ask for (`--crop X,Y,W,H`, `--center-crop WxH`,
    `--downsample F|WxH`, `--flip-x`, `--flip-y`, `--merge-polarity`, `--denoise-us US`), in the
    fixed order of the module docstring. Every command that reads events uses this."""
    steps: list[Transform] = []
    if denoise_us is not None:
        if denoise_us <= 0:
            raise TransformError(f"--denoise-us {denoise_us}: expected a positive filter time in microseconds")
        steps.append(Denoise(int(denoise_us)))
    if crop is not None:
        try:
            x, y, w, h = (int(v) for v in crop.split(","))
        except ValueError:
            raise TransformError(f"--crop {crop}: expected X,Y,WIDTH,HEIGHT, e.g. 156,113,34,34") from None
        steps.append(Crop(x, y, w, h))
    if flip_x:
        steps.append(FlipX())
    if flip_y:
        steps.append(FlipY())
    if downsample is not None:
        if "x" in downsample.lower():
            steps.append(Downsample(target=_size("--downsample", downsample)))
        else:
            try:
                factor = float(downsample)
            except ValueError:
                raise TransformError(f"--downsample {downsample}: expected a factor (0.1) or WIDTHxHEIGHT "
                                     "(34x34)") from None
            steps.append(Downsample(factor=factor))
    if center_crop is not None:
        steps.append(CenterCrop(*_size("--center-crop", center_crop)))
    if merge_polarity:
        steps.append(MergePolarity())
    return Transforms(tuple(steps))


def size_mismatch_hint(sensor_size: Size, model_size: Size) -> str:
    """The flags that fit a sensor to a model's input, with this sensor's numbers filled in."""
    (w, h), (mw, mh) = sensor_size, model_size
    hints = []
    if w >= mw and h >= mh:
        hints.append(f"--downsample {mw}x{mh} (scale the whole sensor)")
        hints.append(f"--center-crop {mw}x{mh} or --crop X,Y,{mw},{mh} (cut out a window)")
        factor = max(mw / w, mh / h)  # the smallest scale that still covers the model's input
        rest = (int(math.floor((w - 1) * factor)) + 1, int(math.floor((h - 1) * factor)) + 1)
        if rest != (mw, mh) and rest[0] >= mw and rest[1] >= mh:
            hints.append(f"or keep the aspect ratio: --downsample {factor:.4g} --center-crop {mw}x{mh} "
                         f"(scales to {rest[0]}x{rest[1]}, then cuts the centre)")
    else:
        hints.append(f"--center-crop {mw}x{mh} (pads a smaller sensor) or --downsample {mw}x{mh}")
    return "pass " + "; ".join(hints)


class SensorSizeError(NeurodeployError, ValueError):
    """Events (after any transforms) of another size than the model's input; names the flags that fit them."""


def check_fits(name: str, raw_size: Size, transforms: Transforms, model_size: Size) -> None:
    """Refuse events whose size after `transforms` is not the model's input, naming the flags that fit."""
    size = transforms.output_size(raw_size)
    if tuple(size) == tuple(model_size):
        return
    after = f" ({transforms.describe()} makes it {size[0]}x{size[1]})" if transforms else ""
    raise SensorSizeError(f"{name}: sensor size {raw_size[0]}x{raw_size[1]}{after}, but the model expects "
                          f"{model_size[0]}x{model_size[1]}; " + size_mismatch_hint(raw_size, model_size)
                          + (" instead" if transforms else ""))


class TransformedSource:
    """A packet source with a transform chain applied to each packet (files and live sources alike).

    Has what the stream expects of a source: `sensor_size` (after the transforms), `stats` (the
    underlying source's), `stop()`; and counts what the transforms removed (crop, denoise):
    `events_in`, `events_out`."""

    def __init__(self, source: Iterable[np.ndarray], sensor_size: Size, transforms: Transforms):
        self.source = source
        self.transforms = transforms
        self.input_size = tuple(int(v) for v in sensor_size)
        self.sensor_size = transforms.output_size(self.input_size)
        self._apply = transforms.streamer(self.input_size)
        self.events_in = 0
        self.events_out = 0

    @property
    def stats(self):
        return getattr(self.source, "stats", None)

    def __iter__(self) -> Iterator[np.ndarray]:
        for packet in self.source:
            self.events_in += len(packet)
            packet = self._apply(packet)
            self.events_out += len(packet)
            yield packet

    def stop(self) -> None:
        stop = getattr(self.source, "stop", None)
        if stop is not None:
            stop()
