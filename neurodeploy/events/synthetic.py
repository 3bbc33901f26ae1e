"""Synthetic DVS events: an ESIM / v2e-style pixel model driven by rendered moving shapes, and two
seeded labelled datasets (N-MNIST-like digits, gesture-like motions).

Pixel model (per pixel, log intensity L = log(I + eps)):
- a reference level starts at L(0); an ON event fires each time L rises a threshold C_on above it,
  an OFF event each time it falls C_off below it, and the reference moves by that threshold;
- C_on / C_off are drawn per pixel (mean, relative spread) for every sample: mismatch between pixels;
- the intensity is rendered every step_us and interpolated linearly in between, so each crossing
  gets its own interpolated timestamp (ESIM);
- refractory period as a paralysable dead time: a crossing closer than refractory_us to the
  previous crossing of the same pixel emits no event (the reference still moves);
- background activity: Poisson events at noise_rate_hz per pixel, random polarity.
Everything is drawn from a numpy Generator, so a seed fixes every sample.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .labels import LabelSegment, labels_path_for, write_label_file
from .types import EVENT_DTYPE, Recording

# ---------------------------------------------------------------------------------------------
# pixel model


@dataclasses.dataclass(frozen=True)
class PixelModel:
    threshold: float = 0.3            # mean log-intensity contrast threshold (both polarities)
    threshold_spread: float = 0.1     # relative standard deviation of the per-pixel thresholds
    refractory_us: int = 500
    noise_rate_hz: float = 0.1        # background events per pixel per second
    log_eps: float = 0.05             # L = log(I + eps): keeps dark pixels from exploding


def simulate(frames: np.ndarray, step_us: int, model: PixelModel, rng: np.random.Generator) -> np.ndarray:
    """Events from intensity frames (K, H, W) in [0, 1] sampled at t = k * step_us."""
    frames = np.asarray(frames, np.float32)
    n_steps, height, width = frames.shape
    n_pix = height * width
    log_i = np.log(frames.reshape(n_steps, n_pix) + np.float32(model.log_eps))
    spread = model.threshold * model.threshold_spread
    c_on = np.maximum(rng.normal(model.threshold, spread, n_pix), 0.02).astype(np.float32)
    c_off = np.maximum(rng.normal(model.threshold, spread, n_pix), 0.02).astype(np.float32)

    ref = log_i[0].copy()
    rec_step, rec_pix, rec_n, rec_ref = [], [], [], []
    for k in range(1, n_steps):
        d = log_i[k] - ref
        n = np.where(d >= c_on, np.floor(d / c_on), np.where(d <= -c_off, -np.floor(-d / c_off), 0))
        moved = np.flatnonzero(n)
        if len(moved):
            nm = n[moved]
            rec_step.append(np.full(len(moved), k, np.int32))
            rec_pix.append(moved)
            rec_n.append(nm.astype(np.int32))
            rec_ref.append(ref[moved].copy())
            ref[moved] += np.where(nm > 0, nm * c_on[moved], nm * c_off[moved])
    events = _crossings_to_events(log_i, step_us, c_on, c_off, width, rec_step, rec_pix, rec_n, rec_ref,
                                  model.refractory_us)
    noise = _background(rng, model.noise_rate_hz, width, height, n_steps, step_us)
    events = np.concatenate([events, noise])
    return events[np.argsort(events["t"], kind="stable")]


def _crossings_to_events(log_i, step_us, c_on, c_off, width, rec_step, rec_pix, rec_n, rec_ref, refractory_us):
    if not rec_step:
        return np.zeros(0, EVENT_DTYPE)
    step = np.concatenate(rec_step)
    pix = np.concatenate(rec_pix)
    n = np.concatenate(rec_n)
    ref = np.concatenate(rec_ref)
    count = np.abs(n)
    # one row per crossing: m = 1..|n|
    row = np.repeat(np.arange(len(n)), count)
    m = np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count) + 1
    sign = np.sign(n[row]).astype(np.float32)
    p = pix[row]
    c = np.where(sign > 0, c_on[p], c_off[p])
    level = ref[row] + sign * m * c
    k = step[row]
    l0 = log_i[k - 1, p]
    l1 = log_i[k, p]
    frac = np.clip((level - l0) / (l1 - l0), 0.0, 1.0)
    t = ((k - 1) + frac) * step_us
    t_us = np.floor(t).astype(np.int64)
    # paralysable dead time: sort by pixel then time, drop a crossing too close to the previous one
    order = np.lexsort((t_us, p))
    p_sorted, t_sorted = p[order], t_us[order]
    keep_sorted = np.ones(len(order), bool)
    same = p_sorted[1:] == p_sorted[:-1]
    keep_sorted[1:] = ~(same & (t_sorted[1:] - t_sorted[:-1] < refractory_us))
    keep = np.empty(len(order), bool)
    keep[order] = keep_sorted
    events = np.empty(int(keep.sum()), EVENT_DTYPE)
    events["x"] = p[keep] % width
    events["y"] = p[keep] // width
    events["t"] = t_us[keep]
    events["p"] = sign[keep] > 0
    return events


def _background(rng, rate_hz, width, height, n_steps, step_us):
    duration_us = (n_steps - 1) * step_us
    count = rng.poisson(rate_hz * width * height * duration_us * 1e-6) if rate_hz > 0 else 0
    events = np.empty(count, EVENT_DTYPE)
    events["x"] = rng.integers(0, width, count)
    events["y"] = rng.integers(0, height, count)
    events["t"] = rng.integers(0, max(duration_us, 1), count)
    events["p"] = rng.integers(0, 2, count)
    return events


# ---------------------------------------------------------------------------------------------
# rendering

def _bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample image (h, w) at float coordinates (u = column, v = row); zero outside."""
    h, w = image.shape
    padded = np.zeros((h + 2, w + 2), image.dtype)
    padded[1:-1, 1:-1] = image
    u = np.clip(u + 1, 0, w + 0.999)
    v = np.clip(v + 1, 0, h + 0.999)
    u0 = np.floor(u).astype(np.int32)
    v0 = np.floor(v).astype(np.int32)
    fu = (u - u0).astype(np.float32)
    fv = (v - v0).astype(np.float32)
    u1 = np.minimum(u0 + 1, w + 1)
    v1 = np.minimum(v0 + 1, h + 1)
    top = padded[v0, u0] * (1 - fu) + padded[v0, u1] * fu
    bottom = padded[v1, u0] * (1 - fu) + padded[v1, u1] * fu
    return top * (1 - fv) + bottom * fv


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, image)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, out)


# 5x7 digit font (one string per row, '#' = ink): ten clearly different glyphs
_DIGITS = (
    [" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "],
    ["  #  ", " ##  ", "# #  ", "  #  ", "  #  ", "  #  ", "#####"],
    [" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"],
    ["#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "],
    ["   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "],
    ["#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "],
    ["  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "],
    ["#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "],
    [" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "],
    [" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "],
)
_GLYPH_SCALE = 8  # template pixels per font cell


def _glyph_templates() -> list[np.ndarray]:
    out = []
    for rows in _DIGITS:
        cells = np.array([[ch == "#" for ch in r] for r in rows], np.float32)
        big = np.kron(cells, np.ones((_GLYPH_SCALE, _GLYPH_SCALE), np.float32))
        big = np.pad(big, _GLYPH_SCALE)
        out.append(_blur(big, _GLYPH_SCALE * 0.35).astype(np.float32))
    return out


_TEMPLATES: list[np.ndarray] | None = None


def _templates() -> list[np.ndarray]:
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = _glyph_templates()
    return _TEMPLATES


def saccade_path(times_us: np.ndarray, duration_us: int, amplitude_px: float) -> tuple[np.ndarray, np.ndarray]:
    """N-MNIST's three saccades: a triangle walked in three equal parts with a smooth speed profile."""
    vertices = np.array([[0.0, 0.0], [amplitude_px / 2, amplitude_px], [amplitude_px, 0.0], [0.0, 0.0]])
    phase = np.clip(times_us / duration_us, 0, 1 - 1e-9) * 3
    seg = phase.astype(np.int64)
    s = phase - seg
    s = 0.5 - 0.5 * np.cos(np.pi * s)  # accelerate, decelerate
    start, end = vertices[seg], vertices[seg + 1]
    pos = start + (end - start) * s[:, None]
    return pos[:, 0], pos[:, 1]


def render_digit(label: int, rng: np.random.Generator, times_us: np.ndarray, duration_us: int,
                 size: int = 34) -> np.ndarray:
    """Intensity frames (K, size, size): a bright digit on a dark screen, randomly scaled, sheared,
    rotated and placed, moved by the saccades."""
    template = _templates()[label]
    th, tw = template.shape
    scale = rng.uniform(0.8, 1.05) * (size - 8) / th          # digit about 26 px tall at 34x34
    angle = np.deg2rad(rng.uniform(-12, 12))
    shear = rng.uniform(-0.2, 0.2)
    contrast = rng.uniform(0.6, 1.0)
    background = rng.uniform(0.02, 0.1)
    offset = rng.uniform(-1.5, 1.5, 2)
    amplitude = rng.uniform(2.5, 4.0)
    # the motion is a pure translation: warp the digit once onto a grid with a margin, then shift it
    margin = int(np.ceil(amplitude)) + 3
    full = size + 2 * margin
    ys, xs = np.mgrid[0:full, 0:full].astype(np.float32)
    rx = xs - (full / 2 - amplitude / 2 + offset[0])
    ry = ys - (full / 2 - amplitude / 2 + offset[1])
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = (cos * rx + sin * ry) / np.float32(scale)
    v = (-sin * rx + cos * ry) / np.float32(scale)
    u = u - np.float32(shear) * v
    still = np.clip(_bilinear(template, u + tw / 2, v + th / 2), 0, 1).astype(np.float32)
    dx, dy = saccade_path(times_us, duration_us, amplitude)
    return (background + contrast * _translate(still, dx, dy, margin, size)).astype(np.float32)


def _translate(still: np.ndarray, dx: np.ndarray, dy: np.ndarray, margin: int, size: int) -> np.ndarray:
    """Frames k: still shifted by (dx[k], dy[k]) (bilinear), cropped to size x size at margin."""
    sx = margin - dx
    sy = margin - dy
    ix = np.floor(sx).astype(np.int64)
    iy = np.floor(sy).astype(np.int64)
    fx = (sx - ix).astype(np.float32)[:, None, None]
    fy = (sy - iy).astype(np.float32)[:, None, None]
    grid = np.arange(size)
    rows = (iy[:, None] + grid[None])[:, :, None]
    cols = (ix[:, None] + grid[None])[:, None, :]
    a = still[rows, cols]
    b = still[rows, cols + 1]
    c = still[rows + 1, cols]
    d = still[rows + 1, cols + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


GESTURE_CLASSES = ("swipe_right", "swipe_left", "swipe_up", "swipe_down", "circle_cw", "circle_ccw",
                   "zoom_in", "zoom_out", "wave_horizontal", "wave_vertical", "random_walk")


def render_gesture(label: int, rng: np.random.Generator, times_us: np.ndarray, duration_us: int,
                   size: int = 128) -> np.ndarray:
    """Intensity frames (K, size, size): a bright elliptic 'hand' on an arm, moved by one of 11 motions."""
    s = times_us / duration_us
    c = size / 2 + rng.uniform(-8, 8, 2)
    amp = size * rng.uniform(0.22, 0.3)
    radius = size * rng.uniform(0.08, 0.11) * np.ones_like(s)
    phase0 = rng.uniform(0, 2 * np.pi)
    x = np.full_like(s, c[0])
    y = np.full_like(s, c[1])
    name = GESTURE_CLASSES[label]
    if name == "swipe_right":
        x = c[0] + amp * (2 * s - 1)
    elif name == "swipe_left":
        x = c[0] - amp * (2 * s - 1)
    elif name == "swipe_up":
        y = c[1] - amp * (2 * s - 1)
    elif name == "swipe_down":
        y = c[1] + amp * (2 * s - 1)
    elif name in ("circle_cw", "circle_ccw"):
        direction = 1 if name == "circle_cw" else -1
        a = phase0 + direction * 2 * np.pi * 1.5 * s
        x, y = c[0] + 0.7 * amp * np.cos(a), c[1] + 0.7 * amp * np.sin(a)
    elif name == "zoom_in":
        radius = radius * (0.6 + 1.2 * s)
    elif name == "zoom_out":
        radius = radius * (1.8 - 1.2 * s)
    elif name == "wave_horizontal":
        x = c[0] + 0.6 * amp * np.sin(phase0 + 2 * np.pi * 3 * s)
    elif name == "wave_vertical":
        y = c[1] + 0.6 * amp * np.sin(phase0 + 2 * np.pi * 3 * s)
    else:  # random walk: smooth random motion
        knots = rng.uniform(-amp, amp, (6, 2))
        grid = np.linspace(0, 1, 6)
        x = c[0] + np.interp(s, grid, knots[:, 0])
        y = c[1] + np.interp(s, grid, knots[:, 1])
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    aspect = rng.uniform(0.7, 0.9)
    r = np.sqrt(((xs[None] - x[:, None, None]) / radius[:, None, None]) ** 2
                + ((ys[None] - y[:, None, None]) / (radius[:, None, None] / aspect)) ** 2)
    hand = 1 / (1 + np.exp((r - 1) * 8))
    # the arm: a soft vertical bar from the hand to the bottom edge
    arm_w = radius[:, None, None] * 0.45
    arm = (1 / (1 + np.exp((np.abs(xs[None] - x[:, None, None]) - arm_w) * 1.5))) * (ys[None] > y[:, None, None])
    contrast = rng.uniform(0.5, 0.9)
    return (0.05 + contrast * np.clip(hand + 0.6 * arm, 0, 1)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# datasets

NMNIST_MODEL = PixelModel(threshold=0.22, threshold_spread=0.1, refractory_us=500, noise_rate_hz=0.2)
GESTURE_MODEL = PixelModel(threshold=0.5, threshold_spread=0.1, refractory_us=1000, noise_rate_hz=0.05)


def nmnist_like_sample(label: int, rng: np.random.Generator, duration_us: int = 300_000, step_us: int = 2000,
                       model: PixelModel = NMNIST_MODEL) -> Recording:
    times = np.arange(0, duration_us + 1, step_us, dtype=np.float64)
    frames = render_digit(label, rng, times, duration_us)
    return Recording(simulate(frames, step_us, model, rng), (34, 34))


def gesture_like_sample(label: int, rng: np.random.Generator, duration_us: int = 500_000, step_us: int = 4000,
                        model: PixelModel = GESTURE_MODEL, size: int = 128) -> Recording:
    times = np.arange(0, duration_us + 1, step_us, dtype=np.float64)
    frames = render_gesture(label, rng, times, duration_us, size)
    return Recording(simulate(frames, step_us, model, rng), (size, size))


def _labels(n_samples: int, n_classes: int, seed: int) -> np.ndarray:
    """Each block of n_classes samples holds every class once, in a seeded order: sample i's label
    does not depend on n_samples, and any prefix is (nearly) balanced."""
    n_blocks = -(-n_samples // n_classes)
    blocks = [np.random.default_rng([seed, 0x1abe1, b]).permutation(n_classes) for b in range(n_blocks)]
    return np.concatenate(blocks)[:n_samples] if blocks else np.zeros(0, np.int64)


def _sample_rngs(n_samples: int, seed: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n_samples)]


def make_nmnist_like(n_samples: int, seed: int = 0, duration_us: int = 300_000) -> list[tuple[Recording, int]]:
    """Balanced, shuffled, deterministic N-MNIST-like samples (34x34, 10 digit classes, 3 saccades)."""
    labels = _labels(n_samples, 10, seed)
    return [(nmnist_like_sample(int(lab), rng, duration_us), int(lab))
            for lab, rng in zip(labels, _sample_rngs(n_samples, seed))]


def make_gesture_like(n_samples: int, seed: int = 0, duration_us: int = 500_000,
                      size: int = 128) -> list[tuple[Recording, int]]:
    """Balanced, shuffled, deterministic gesture-like samples (size x size, 11 motion classes)."""
    labels = _labels(n_samples, len(GESTURE_CLASSES), seed)
    return [(gesture_like_sample(int(lab), rng, duration_us, size=size), int(lab))
            for lab, rng in zip(labels, _sample_rngs(n_samples, seed))]


class NmnistLike:
    """A lazily generated dataset: item i is the same (Recording, label) whatever order it is asked in."""

    def __init__(self, n_samples: int, seed: int = 0, duration_us: int = 300_000, transform=None):
        self.n_samples = n_samples
        self.seed = seed
        self.duration_us = duration_us
        self.transform = transform
        self.labels = _labels(n_samples, 10, seed)
        self._seeds = np.random.SeedSequence(seed).spawn(n_samples)

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, i: int):
        label = int(self.labels[i])
        rec = nmnist_like_sample(label, np.random.default_rng(self._seeds[i]), self.duration_us)
        return (self.transform(rec) if self.transform else rec), label


def concatenate_samples(samples: list[tuple[Recording, int]], gap_us: int = 0) -> tuple[Recording, list[LabelSegment]]:
    """One recording of the samples back to back (each shifted to start where the previous ended plus
    gap_us) and the label of each time segment, for streaming tests."""
    if not samples:
        raise ValueError("no samples to concatenate")
    sizes = {rec.sensor_size for rec, _ in samples}
    if len(sizes) != 1:
        raise ValueError(f"samples of different sensor sizes {sizes}")
    parts, segments = [], []
    t = 0
    for rec, label in samples:
        ev = rec.events.copy()
        origin = rec.t_start_us if len(ev) else 0
        length = max(rec.duration_us + 1, 1)
        ev["t"] = ev["t"] - origin + t
        parts.append(ev)
        segments.append(LabelSegment(t, t + length, int(label)))
        t += length + gap_us
    return Recording(np.concatenate(parts), sizes.pop()), segments


def write_labelled_recording(path, samples: list[tuple[Recording, int]], gap_us: int = 0,
                             format: str | None = None) -> tuple[Recording, list[LabelSegment]]:
    """Write concatenate_samples() to an event file and its labels beside it (events.labels)."""
    from .readers import save

    recording, segments = concatenate_samples(samples, gap_us)
    save(recording, path, format=format)
    write_label_file(labels_path_for(path), segments)
    return recording, segments
