"""The toolkit's one event layout and the Recording container."""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import DecodeStats

# Field names as tonic names them, so tonic's functional transforms accept these arrays as is.
# x/y unsigned 16-bit: every sensor in use is below 65536 pixels a side; t signed so that
# differences of timestamps never wrap; p 0 = OFF, 1 = ON.
EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])


def empty_events(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(x, y, t, p) -> np.ndarray:
    """Build an EVENT_DTYPE array from four equally long columns (p: anything > 0 is ON)."""
    x = np.asarray(x)
    n = x.shape[0]
    events = np.empty(n, dtype=EVENT_DTYPE)
    events["x"] = x
    events["y"] = y
    events["t"] = t
    events["p"] = np.asarray(p) > 0
    return events


def _check_sensor_size(sensor_size) -> tuple[int, int]:
    if sensor_size is None or len(sensor_size) != 2:
        raise ValueError(f"sensor_size must be (width, height), got {sensor_size!r}")
    width, height = (int(v) for v in sensor_size)
    if not (0 < width <= 65536 and 0 < height <= 65536):
        raise ValueError(f"sensor_size {sensor_size!r} is not a plausible (width, height)")
    return width, height


@dataclasses.dataclass(frozen=True)
class Recording:
    """Events with the sensor they came from. `stats` says what the reader recovered from."""

    events: np.ndarray
    sensor_size: tuple[int, int]
    stats: DecodeStats | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.events.dtype != EVENT_DTYPE:
            raise ValueError(f"Recording events must have EVENT_DTYPE {EVENT_DTYPE}, got {self.events.dtype}; "
                             "convert with neurodeploy.events.from_structured()")
        object.__setattr__(self, "sensor_size", _check_sensor_size(self.sensor_size))
        if len(self.events):
            width, height = self.sensor_size
            if int(self.events["x"].max()) >= width or int(self.events["y"].max()) >= height:
                raise ValueError(f"events lie outside sensor_size {self.sensor_size}")

    @property
    def width(self) -> int:
        return self.sensor_size[0]

    @property
    def height(self) -> int:
        return self.sensor_size[1]

    def __len__(self) -> int:
        return len(self.events)

    @property
    def t_start_us(self) -> int:
        return int(self.events["t"][0]) if len(self.events) else 0

    @property
    def t_end_us(self) -> int:
        return int(self.events["t"][-1]) if len(self.events) else 0

    @property
    def duration_us(self) -> int:
        return self.t_end_us - self.t_start_us

    def __eq__(self, other) -> bool:
        if not isinstance(other, Recording):
            return NotImplemented
        return self.sensor_size == other.sensor_size and np.array_equal(self.events, other.events)

    __hash__ = None  # numpy payload: not hashable
