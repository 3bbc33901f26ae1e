"""Bit-exact numpy model of a netx front-end on Loihi fixed point (docs/lava.md).

It reads the same netx file `lava.lib.dl.netx.hdf5.Network` loads and computes, per layer
and time step, exactly what Lava's `Conv` (fixed_pt) and `PyLifModelBitAcc` compute:

    a  = wrap24(conv(x, w_int))                         graded counts or 0/1 spikes in
    u  = sign(u*(4096-iDecay)) * (|u*(4096-iDecay)| >> 12) + (a << 6),   one wrap into 24 bits
    v  = sign(v*(4096-vDecay)) * (|v*(4096-vDecay)| >> 12) + u + (bias << 6), clipped to +-(2**23-1)
    s  = v > (vThMant << 6);  v[s] = 0

with no pipeline delay (step t of every layer is torch's step t). Wraps and clips are
counted per layer (`FixedPointStats`), because on the chip they happen silently.
Integer convolutions run in float64 through torch: every partial sum is an integer far
below 2**53, so the result is exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from neurodeploy.errors import MissingFileError
from neurodeploy.runtimes.contract import FrontendRuntime
from neurodeploy.runtimes.lava_layers import LavaMappingError

STATE_LIMIT = 2 ** 23  # 24-bit signed state
SHIFT = 6
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT


@dataclass(frozen=True)
class FixedPointLayer:
    """One netx conv block as integers, read from the file."""

    name: str
    weight: np.ndarray  # (Cout, Cin, kh, kw) int, torch layout
    bias: np.ndarray  # (Cout,) int mantissa, bias_exp 6
    stride: tuple[int, int]
    padding: tuple[int, int]
    v_threshold: int
    i_decay: int
    v_decay: int
    output_shape: tuple[int, int, int]


@dataclass
class FixedPointStats:
    """Per layer: how often Loihi's fixed point left its range (each would be silent on chip)."""

    conv_wraps: dict[str, int] = field(default_factory=dict)
    current_wraps: dict[str, int] = field(default_factory=dict)
    membrane_clips: dict[str, int] = field(default_factory=dict)

    def total(self) -> int:
        return sum(self.conv_wraps.values()) + sum(self.current_wraps.values()) + sum(self.membrane_clips.values())


def _scalar(dataset) -> int:
    return int(np.asarray(dataset[()]).ravel()[0])


def read_netx_layers(path: str | Path) -> tuple[tuple[FixedPointLayer, ...], dict[str, object]]:
    """The conv blocks of a netx file written by `neurodeploy.exporters.netx`, and its attributes."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"netx file {path} does not exist; write it with neurodeploy.exporters.netx.export_netx")
    layers = []
    with h5py.File(path, "r") as f:
        attrs = {key: (value.decode() if isinstance(value, bytes) else value) for key, value in f.attrs.items()}
        names = str(attrs.get("lif_layers", "")).split(",")
        groups = f["layer"]
        for index in sorted(groups, key=int):
            group = groups[index]
            kind = group["type"][()].decode() if isinstance(group["type"][()], bytes) else str(group["type"][()])
            if kind == "input":
                continue
            if kind != "conv":
                raise LavaMappingError(f"{path}: layer {index} has type {kind!r}; the fixed-point model runs conv layers only")
            neuron = group["neuron"]
            k = len(layers)
            layers.append(FixedPointLayer(
                name=names[k] if k < len(names) and names[k] else f"layer{index}",
                weight=np.asarray(group["weight"][()], dtype=np.int64),
                bias=np.asarray(group["bias"][()], dtype=np.int64) if "bias" in group else None,
                stride=tuple(int(v) for v in np.broadcast_to(group["stride"][()], (2,))),
                padding=tuple(int(v) for v in np.broadcast_to(group["padding"][()], (2,))),
                v_threshold=_scalar(neuron["vThMant"]), i_decay=_scalar(neuron["iDecay"]),
                v_decay=_scalar(neuron["vDecay"]),
                output_shape=tuple(int(v) for v in group["shape"][()])))
    return tuple(layers), attrs


def _decay(state: np.ndarray, decay: int) -> np.ndarray:
    product = state.astype(np.int64) * (DECAY_UNITY - decay)
    return np.sign(product) * (np.abs(product) >> DECAY_SHIFT)


class FixedPointFrontend(FrontendRuntime):
    """FrontendRuntime stepping a netx front-end in Loihi's integer arithmetic (no pipeline delay:
    step t is torch's step t, unlike Lava itself). Frames are integer event counts `(B, C, H, W)`;
    spikes come back as float 0/1 tensors. `stats` counts the wraps and clips since `reset`."""

    def __init__(self, layers: tuple[FixedPointLayer, ...]):
        self.layers = layers
        self.layer_names = tuple(layer.name for layer in layers)
        self.output_shape = tuple(layers[-1].output_shape)
        self._weights = [torch.from_numpy(layer.weight.astype(np.float64)) for layer in layers]
        self.reset(1)

    @classmethod
    def from_netx(cls, path: str | Path) -> FixedPointFrontend:
        layers, _ = read_netx_layers(path)
        return cls(layers)

    def reset(self, batch: int) -> None:
        self.u = [np.zeros((batch, *layer.output_shape), np.int64) for layer in self.layers]
        self.v = [np.zeros((batch, *layer.output_shape), np.int64) for layer in self.layers]
        self.stats = FixedPointStats(*({layer.name: 0 for layer in self.layers} for _ in range(3)))
        self._start_sample(batch)

    def _update(self, k: int, x: np.ndarray) -> np.ndarray:
        """One step of layer k on input x (B, C, H, W): its 0/1 spikes (B, C, H, W), int64."""
        layer = self.layers[k]
        x = torch.from_numpy(np.asarray(x, dtype=np.float64))
        a = F.conv2d(x, self._weights[k], stride=layer.stride, padding=layer.padding).numpy().astype(np.int64)
        # Conv's fixed model clamps its output to 24 signed bits by wrapping
        wrapped = (a + STATE_LIMIT) % (2 * STATE_LIMIT) - STATE_LIMIT
        self.stats.conv_wraps[layer.name] += int(np.count_nonzero(wrapped != a))
        u = _decay(self.u[k], layer.i_decay) + (wrapped << SHIFT)
        # PyLifModelBitAcc wraps u once, asymmetrically (> 2**23 and <= -2**23)
        u_wrapped = np.where(u > STATE_LIMIT, u - 2 * STATE_LIMIT, u)
        u_wrapped = np.where(u_wrapped <= -STATE_LIMIT, u + 2 * STATE_LIMIT, u_wrapped)
        self.stats.current_wraps[layer.name] += int(np.count_nonzero(u_wrapped != u))
        bias = 0 if layer.bias is None else (layer.bias[None, :, None, None] << SHIFT)
        v = _decay(self.v[k], layer.v_decay) + u_wrapped + bias
        v_clipped = np.clip(v, -STATE_LIMIT + 1, STATE_LIMIT - 1)
        self.stats.membrane_clips[layer.name] += int(np.count_nonzero(v_clipped != v))
        spikes = v_clipped > (layer.v_threshold << SHIFT)
        self.u[k] = u_wrapped
        self.v[k] = np.where(spikes, 0, v_clipped)
        return spikes.astype(np.int64)

    def step(self, frame: torch.Tensor | np.ndarray) -> torch.Tensor:
        """frame (B, C, H, W) integer counts -> the last layer's spikes; every layer's in `layer_spikes`."""
        spikes_per_layer, x = {}, np.asarray(frame)
        for k, layer in enumerate(self.layers):
            x = self._update(k, x)
            spikes_per_layer[layer.name] = torch.from_numpy(x.astype(np.float32))
        self._record_spikes(spikes_per_layer)
        return spikes_per_layer[self.layer_names[-1]]

    def run_pipelined(self, frames: np.ndarray) -> list[np.ndarray]:
        """Loihi's timing: every synapse hop takes a step and every neuron updates every step.

        The input spikes at step s with frame s; layer k (0-based) receives layer k-1's spikes
        of step s-1 (the input's for k = 0) and integrates its bias from step 0, also while the
        pipeline fills, as on the chip. Returns per layer (T, C, H, W), layer k's step s + k + 1
        as row s. Without biases this equals the unpipelined `step` exactly; with them the fill
        steps differ. `frames` (T, C, H, W) is one sample.
        """
        frames = np.asarray(frames)[:, None]  # one sample: (T, 1, C, H, W)
        steps, depth = frames.shape[0], len(self.layers)
        self.reset(1)
        previous = [np.zeros(frames.shape[1:], np.int64)] + [np.zeros((1, *l.output_shape), np.int64)
                                                             for l in self.layers]
        rows: list[list[np.ndarray]] = [[] for _ in self.layers]
        for s in range(steps + depth):
            current = [frames[s] if s < steps else np.zeros(frames.shape[1:], np.int64)]
            for k in range(depth):
                spikes = self._update(k, previous[k])
                current.append(spikes)
                if 0 <= s - k - 1 < steps:
                    rows[k].append(spikes[0])
            previous = current
        return [np.stack(r) for r in rows]


__all__ = ["FixedPointFrontend", "FixedPointLayer", "FixedPointStats", "read_netx_layers"]
