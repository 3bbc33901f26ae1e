"""Train a small deployable Mamba-Spike on the synthetic N-MNIST-like events.

The reusable pieces, each usable alone:

- `build_dataset(n, seed, dt_us=...)`: generate `n` labelled synthetic samples
  (`neurodeploy.events.synthetic.make_nmnist_like`) and bin every one of them once into a
  `FrameDataset` (frames `(N, T, 2, 34, 34)` int16 event counts, labels `(N,)` int64). Binning is
  at a fixed `dt_us` from each sample's first event, as the streaming runtime bins, with
  `T = ceil(duration_us / dt_us)` bins; events at or after `t0 + T * dt_us` lie outside by choice.
- `train(TrainConfig(...))`: seeded AdamW + cosine training with a rich progress bar, evaluation
  on a test set generated from a different seed; returns a `TrainResult` (model, metrics, history).
- `evaluate(model, dataset)`: accuracy (and mean loss) of a model on a `FrameDataset`.
- `deployable_from_checkpoint(path, ...)`: load any checkpoint (a reference v1/v2 `.pth` too) and
  rebuild it with the deployable settings (sum/avg pooling instead of max, causal interface,
  Lava's immediate zero reset), copying every weight; the start of a fine-tuning run
  (`TrainConfig(init_from=path)`).
- `save_trained(result, path)`: the toolkit's safetensors checkpoint, with the training facts
  (`dt_us`, `n_bins`, seeds, accuracy, wall time...) in its metadata.

Reproducibility: `torch.manual_seed`, a numpy `Generator` for the shuffling, and
`torch.use_deterministic_algorithms(True)` while training (every op used here has a
deterministic CPU kernel). Two runs with the same config and the same thread count give
bit-identical weights.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from neurodeploy.errors import NeurodeployError
from neurodeploy.events.binning import to_frames_dt
from neurodeploy.events.synthetic import NmnistLike
from neurodeploy.events.types import Recording
from neurodeploy.model import MambaSpike, MambaSpikeConfig, load_checkpoint, save_checkpoint

class TrainError(NeurodeployError, ValueError):
    """Training data or a fine-tuning start that cannot be used; the message names the file and the way out."""


SENSOR_SIZE = (34, 34)  # (width, height) of the N-MNIST-like generator
NUM_CLASSES = 10

# The small model the shipped checkpoint uses (about 44 k parameters, 0.2 MB).
SMALL_MODEL: dict[str, Any] = dict(conv_channels=8, spiking_channels=16, d_model=32, n_layers=1, d_state=8)

# The settings that make a model deployable (MambaSpikeConfig.deployable), changed on conversion.
_DEPLOYABLE_FIELDS = ("pooling", "reset", "reset_timing", "interface")


class TrainError(NeurodeployError, ValueError):
    """A training request that cannot run as given (the message names the option)."""


# -- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameDataset:
    """Pre-binned samples: `frames (N, T, 2, H, W)` int16 event counts and `labels (N,)` int64."""

    frames: torch.Tensor
    labels: torch.Tensor
    seed: int
    dt_us: int

    def __post_init__(self) -> None:
        if self.frames.ndim != 5 or self.labels.ndim != 1 or len(self.frames) != len(self.labels):
            raise TrainError(f"frames {tuple(self.frames.shape)} and labels {tuple(self.labels.shape)} do not match")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_bins(self) -> int:
        return self.frames.shape[1]


def n_bins_for(duration_us: int, dt_us: int) -> int:
    """Bins that cover a sample of `duration_us` at `dt_us` per bin."""
    if dt_us <= 0 or duration_us <= 0:
        raise TrainError(f"dt_us ({dt_us}) and duration_us ({duration_us}) must be positive")
    return -(-duration_us // dt_us)


def bin_recording(recording: Recording, dt_us: int, n_bins: int, t_start: int | None = None,
                  t_end: int | None = None) -> np.ndarray:
    """One sample -> `(n_bins, 2, H, W)` int16 counts, bins of `dt_us` from `t_start` (default: the
    first event, which is where `concatenate_samples` puts a sample's label segment). With
    `t_start`/`t_end` only the events in `[t_start, t_end)` count (one segment of a longer recording)."""
    events = recording.events
    if t_start is not None or t_end is not None:
        lo = t_start if t_start is not None else (int(events["t"][0]) if len(events) else 0)
        hi = lo + n_bins * dt_us if t_end is None else min(t_end, lo + n_bins * dt_us)
        events = events[(events["t"] >= lo) & (events["t"] < hi)]
        t_start = lo
    return to_frames_dt(events, recording.sensor_size, dt_us, t_start=t_start, n_bins=n_bins, dtype=np.int16)


def bin_labelled_recording(path: str | Path, dt_us: int, n_bins: int) -> FrameDataset:
    """A recording written by `write_labelled_recording` -> one binned sample per label segment,
    each binned from its segment's start (as during training)."""
    from neurodeploy.events import load
    from neurodeploy.events.labels import read_labels

    recording = load(path)
    segments = read_labels(path)
    frames = np.stack([bin_recording(recording, dt_us, n_bins, seg.t_start_us, seg.t_end_us) for seg in segments])
    labels = np.array([seg.label for seg in segments], np.int64)
    return FrameDataset(torch.from_numpy(frames), torch.from_numpy(labels), -1, dt_us)


def bin_samples(samples: Sequence[tuple[Recording, int]], dt_us: int, n_bins: int, *, seed: int = -1) -> FrameDataset:
    """Bin labelled recordings once into one tensor."""
    if not samples:
        raise TrainError("no samples to bin")
    width, height = samples[0][0].sensor_size
    frames = np.zeros((len(samples), n_bins, 2, height, width), np.int16)
    for i, (recording, _) in enumerate(samples):
        frames[i] = bin_recording(recording, dt_us, n_bins)
    labels = np.array([label for _, label in samples], np.int64)
    return FrameDataset(torch.from_numpy(frames), torch.from_numpy(labels), seed, dt_us)


def build_dataset(n_samples: int, seed: int, *, dt_us: int = 10_000, duration_us: int = 300_000,
                  on_progress: Callable[[int], None] | None = None) -> FrameDataset:
    """Generate `n_samples` synthetic N-MNIST-like samples with `seed` and bin them at `dt_us`.

    The same samples as `make_nmnist_like(n_samples, seed, duration_us)`, generated one at a
    time (`NmnistLike`) so that only one sample's events are alive at once.
    """
    if n_samples < 1:
        raise TrainError(f"n_samples must be positive, got {n_samples}")
    n_bins = n_bins_for(duration_us, dt_us)
    lazy = NmnistLike(n_samples, seed=seed, duration_us=duration_us)
    frames = np.zeros((n_samples, n_bins, 2, SENSOR_SIZE[1], SENSOR_SIZE[0]), np.int16)
    for i in range(n_samples):
        recording, _ = lazy[i]
        frames[i] = bin_recording(recording, dt_us, n_bins)
        if on_progress:
            on_progress(1)
    return FrameDataset(torch.from_numpy(frames), torch.from_numpy(lazy.labels.astype(np.int64)), seed, dt_us)


# -- models ----------------------------------------------------------------------------------------
def deployable_config(base: MambaSpikeConfig | None = None, **overrides: Any) -> MambaSpikeConfig:
    """`base`'s sizes with the deployable settings (MambaSpikeConfig.deployable), then `overrides`.

    Max pooling becomes sum pooling unless `pooling="avg"` is asked for; the interface becomes
    causal and the reset Lava's immediate zero reset. Sizes, recurrence, beta and threshold are kept.
    """
    if base is None:
        return MambaSpikeConfig.deployable(**overrides)
    kept = {k: v for k, v in base.to_dict().items() if k not in _DEPLOYABLE_FIELDS}
    return MambaSpikeConfig.deployable(**{**kept, **overrides})


def deployable_from_checkpoint(path: str | Path, **overrides: Any) -> tuple[MambaSpike, MambaSpikeConfig]:
    """Load any checkpoint (own format, reference v1/v2 `.pth`, state_dict with its config) and
    rebuild it as a deployable model with every weight copied (the shapes do not change).

    `overrides` are config fields to set on the deployable config (`pooling="avg"`, `beta=...`);
    a field that changes a weight's shape is refused. Returns the model in train mode and the
    config it was built from.
    """
    source, source_config = load_checkpoint(path)
    config = deployable_config(source_config, **overrides)
    if (config.input_width, config.input_height) != (source_config.input_width, source_config.input_height):
        raise TrainError(f"{path}: the input size may not change on fine-tuning")
    model = MambaSpike(config)
    state = source.state_dict()
    target = model.state_dict()
    mismatched = [k for k in target if k not in state or tuple(state[k].shape) != tuple(target[k].shape)]
    if mismatched or set(state) - set(target):
        raise TrainError(
            f"{path}: the deployable config changes the weights ({(mismatched or sorted(set(state) - set(target)))[0]!r}); "
            "only pooling, reset, reset_timing, interface (and beta/threshold) may differ from the checkpoint"
        )
    model.load_state_dict(state, strict=True)
    return model.train(), config


def conversion_changes(before: MambaSpikeConfig, after: MambaSpikeConfig) -> list[str]:
    """What fine-tuning from a checkpoint changes, in words (pooling, reset, interface...)."""
    why = {"pooling": "NIR and Lava have no max pooling", "interface": "no look-ahead when streaming",
           "reset": "Lava's LIF resets to zero", "reset_timing": "Lava resets in the same step"}
    changes = []
    for name, a in before.to_dict().items():
        b = after.to_dict()[name]
        if a != b:
            changes.append(f"{name}: {a} -> {b}" + (f" ({why[name]})" if name in why else ""))
    return changes


def split_dataset(data: FrameDataset, test_fraction: float, seed: int) -> tuple[FrameDataset, FrameDataset]:
    """A seeded split into training and held-out samples (at least one of each)."""
    if len(data) < 2:
        raise TrainError(f"{len(data)} labelled sample(s): need at least 2 to hold one out for testing "
                         "(or pass --test-data)")
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(data)))
    n_test = min(len(data) - 1, max(1, round(len(data) * test_fraction)))
    test, train_ = order[:n_test], order[n_test:]
    return (FrameDataset(data.frames[train_], data.labels[train_], seed, data.dt_us),
            FrameDataset(data.frames[test], data.labels[test], seed, data.dt_us))


def recordings_dataset(source: str | Path, dt_us: int, *, labels_csv: str | Path | None = None, transforms=None,
                       model_size: tuple[int, int] = SENSOR_SIZE, reading: Mapping[str, Any] | None = None,
                       n_bins: int | None = None) -> FrameDataset:
    """The user's labelled recordings as a FrameDataset: `source` is an event file (segments from
    `labels_csv`, default `FILE.labels.csv`) or a folder of event files each with its
    `.labels.csv`. Events go through `transforms` (checked against `model_size`); every segment is
    binned from its start at `dt_us`, `n_bins` (default: the longest segment's) bins each."""
    from neurodeploy.events.labels import labels_beside, read_label_file
    from neurodeploy.sources import load_fitted

    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.endswith(".labels.csv")
                       and labels_beside(str(p)))
        if not files:
            raise TrainError(f"{source}: no event file with a FILE.labels.csv beside it; label your recordings "
                             "(t_start_us,t_end_us,label rows)")
        pairs = [(p, labels_beside(str(p))) for p in files]
    else:
        csv = Path(labels_csv) if labels_csv else labels_beside(str(source))
        if csv is None:
            raise TrainError(f"{source}: no labels; pass --labels CSV (t_start_us,t_end_us,label rows) or put "
                             f"{source.name}.labels.csv beside it")
        pairs = [(source, csv)]
    loaded = [(load_fitted(path, transforms, model_size, **dict(reading or {})), read_label_file(csv))
              for path, csv in pairs]
    longest = max(seg.t_end_us - seg.t_start_us for _, segments in loaded for seg in segments)
    n_bins = n_bins or n_bins_for(longest, dt_us)
    frames, labels = [], []
    for recording, segments in loaded:
        for seg in segments:
            frames.append(bin_recording(recording, dt_us, n_bins, seg.t_start_us, seg.t_end_us))
            labels.append(seg.label)
    return FrameDataset(torch.from_numpy(np.stack(frames)), torch.tensor(labels, dtype=torch.int64), -1, dt_us)


# -- training ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; the same config gives the same weights."""

    n_train: int = 1200
    n_test: int = 500
    train_seed: int = 0          # generator seed of the training samples
    test_seed: int = 1000        # a different seed: the held-apart test set
    seed: int = 0                # torch init and the shuffling order
    dt_us: int = 10_000
    duration_us: int = 300_000
    epochs: int = 5
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 20
    grad_clip: float = 1.0
    # MambaSpikeConfig.deployable overrides; None: SMALL_MODEL from scratch, the checkpoint's own sizes with init_from
    model: Mapping[str, Any] | None = None
    init_from: str | None = None  # a checkpoint to fine-tune, rebuilt with deployable settings
    num_threads: int | None = 2   # torch intra-op threads while training (None: leave as is)
    deterministic: bool = True
    eval_every_epoch: bool = False  # test accuracy after every epoch (reporting only; costs time)
    eval_train: bool = True       # a final clean pass over the training set for the train accuracy

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model"] = self.model_overrides()
        return out

    def model_overrides(self) -> dict[str, Any]:
        if self.model is not None:
            return dict(self.model)
        return {} if self.init_from else dict(SMALL_MODEL)


@dataclass
class TrainResult:
    model: MambaSpike
    config: TrainConfig
    metrics: dict[str, Any]           # test/train accuracy, wall times, samples per second...
    history: list[dict[str, float]]   # one row per epoch (and `losses`: one value per step)
    losses: list[float]


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return factor


@torch.no_grad()
def evaluate(model: MambaSpike, data: FrameDataset, *, batch_size: int = 64,
             on_batch: Callable[[int], None] | None = None) -> dict[str, float]:
    """Accuracy and mean cross-entropy of `model` on `data` (model put in eval mode, restored after)."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(data), batch_size):
        x = data.frames[start:start + batch_size].float()
        y = data.labels[start:start + batch_size]
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        if on_batch:
            on_batch(len(y))
    model.train(was_training)
    return {"accuracy": correct / len(data), "loss": loss_sum / len(data)}


class _Quiet:
    """Stands in for a rich Progress when progress=False."""

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def advance(self, *a, **k):
        pass

    def remove_task(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, console=None):
    if not enabled:
        return _Quiet()
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=console, transient=False)


def _log(console, message: str, enabled: bool) -> None:
    if not enabled:
        return
    if console is None:
        from rich.console import Console

        console = Console()
    console.print(message)


def train(config: TrainConfig = TrainConfig(), *, train_data: FrameDataset | None = None,
          test_data: FrameDataset | None = None, progress: bool = True, console=None) -> TrainResult:
    """Train a deployable Mamba-Spike; returns the trained model (eval mode) with its figures.

    `train_data` / `test_data` skip the generation (they must be binned at `config.dt_us`).
    """
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        return _train(config, train_data, test_data, progress, console)
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


def _train(config: TrainConfig, train_data, test_data, show: bool, console) -> TrainResult:
    t_begin = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with _progress(show, console) as bar:
        # 1. data, generated and binned once
        t0 = time.perf_counter()
        for name, n, seed, given in (("train", config.n_train, config.train_seed, train_data),
                                     ("test", config.n_test, config.test_seed, test_data)):
            if given is not None:
                if given.dt_us != config.dt_us:
                    raise TrainError(f"{name}_data is binned at dt_us={given.dt_us}, the config says {config.dt_us}")
                continue
            task = bar.add_task(f"generate {name} (seed {seed})", total=n, info="")
            data = build_dataset(n, seed, dt_us=config.dt_us, duration_us=config.duration_us,
                                 on_progress=lambda k, task=task: bar.advance(task, k))
            if name == "train":
                train_data = data
            else:
                test_data = data
        t_data = time.perf_counter() - t0
        assert train_data is not None and test_data is not None

        # 2. model, seeded
        torch.manual_seed(config.seed)
        if config.init_from:
            model, model_config = deployable_from_checkpoint(config.init_from, **config.model_overrides())
        else:
            model_config = MambaSpikeConfig.deployable(**config.model_overrides())
            model = MambaSpike(model_config)
        model.train()
        for name, data in (("training", train_data), ("test", test_data)):
            if len(data) and int(data.labels.max()) >= model_config.num_classes or int(data.labels.min()) < 0:
                raise TrainError(f"the {name} labels run {int(data.labels.min())}..{int(data.labels.max())}, the model "
                                 f"has {model_config.num_classes} classes (0..{model_config.num_classes - 1})")
            shape = tuple(data.frames.shape[2:])
            expected = (model_config.input_channels, model_config.input_height, model_config.input_width)
            if shape != expected:
                raise TrainError(f"the {name} frames are {shape}, the model takes {expected}; fit the events "
                                 "with --downsample / --crop / --center-crop")
        n_params = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = -(-len(train_data) // config.batch_size)
        total_steps = steps_per_epoch * config.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total_steps, min(config.warmup_steps, total_steps)))
        rng = np.random.default_rng(config.seed)

        # 3. training
        history: list[dict[str, float]] = []
        losses: list[float] = []
        t_train0 = time.perf_counter()
        t_eval = 0.0
        seen = 0
        task = bar.add_task("train", total=total_steps, info="")
        for epoch in range(config.epochs):
            order = torch.from_numpy(rng.permutation(len(train_data)))
            correct, loss_sum, count = 0, 0.0, 0
            t_epoch = time.perf_counter()
            for start in range(0, len(order), config.batch_size):
                index = order[start:start + config.batch_size]
                x = train_data.frames[index].float()
                y = train_data.labels[index]
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                value = loss.item()
                losses.append(value)
                loss_sum += value * len(y)
                correct += int((logits.argmax(1) == y).sum())
                count += len(y)
                seen += len(y)
                rate = seen / (time.perf_counter() - t_train0 - t_eval)
                bar.update(task, advance=1, info=f"ep {epoch + 1}/{config.epochs} loss {value:.3f} "
                                                 f"acc {correct / count:.2f} {rate:.1f}/s")
            row = {"epoch": epoch + 1, "train_loss": loss_sum / count, "train_running_accuracy": correct / count,
                   "lr": optimizer.param_groups[0]["lr"], "epoch_s": time.perf_counter() - t_epoch}
            if config.eval_every_epoch or epoch == config.epochs - 1:
                t1 = time.perf_counter()
                ev = evaluate(model, test_data)
                t_eval += time.perf_counter() - t1
                row.update(test_accuracy=ev["accuracy"], test_loss=ev["loss"])
            history.append(row)
            _log(bar.console if show else console,
                 "epoch {epoch}: train loss {train_loss:.4f} running acc {train_running_accuracy:.4f}".format(**row)
                 + (" | test acc {test_accuracy:.4f} loss {test_loss:.4f}".format(**row) if "test_accuracy" in row else ""),
                 show)
        t_train = time.perf_counter() - t_train0 - t_eval

        # 4. final evaluation
        t1 = time.perf_counter()
        final_test = evaluate(model, test_data)
        final_train = evaluate(model, train_data) if config.eval_train else None
        t_final_eval = time.perf_counter() - t1
    model.eval()
    wall = time.perf_counter() - t_begin
    metrics: dict[str, Any] = {
        "test_accuracy": final_test["accuracy"],
        "test_loss": final_test["loss"],
        "train_accuracy": final_train["accuracy"] if final_train else history[-1]["train_running_accuracy"],
        "train_accuracy_kind": "clean pass" if final_train else "running (last epoch)",
        "n_train": len(train_data),
        "n_test": len(test_data),
        "n_bins": train_data.n_bins,
        "dt_us": config.dt_us,
        "parameters": n_params,
        "steps": total_steps,
        "data_s": t_data,
        "train_s": t_train,
        "eval_s": t_eval + t_final_eval,
        "wall_time_s": wall,
        "train_samples_per_s": seen / t_train if t_train > 0 else float("nan"),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        "model_config": model_config.to_dict(),
    }
    return TrainResult(model, config, metrics, history, losses)


def save_trained(result: TrainResult, path: str | Path, *, command: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Save the trained model with the training facts in the checkpoint metadata (all strings).

    Keys: accuracy (test), train_accuracy, seed, train_seed, test_seed, dt_us, n_bins,
    duration_us, n_train, n_test, epochs, batch_size, lr, wall_time_s, train_samples_per_s,
    command, torch; read back with `neurodeploy.model.mamba_spike.checkpoint.checkpoint_metadata`.
    """
    m, c = result.metrics, result.config
    meta = {
        "accuracy": f"{m['test_accuracy']:.4f}",
        "train_accuracy": f"{m['train_accuracy']:.4f}",
        "seed": c.seed,
        "train_seed": c.train_seed,
        "test_seed": c.test_seed,
        "dt_us": c.dt_us,
        "n_bins": m["n_bins"],
        "duration_us": c.duration_us,
        "n_train": m["n_train"],
        "n_test": m["n_test"],
        "epochs": c.epochs,
        "batch_size": c.batch_size,
        "lr": c.lr,
        "wall_time_s": f"{m['wall_time_s']:.1f}",
        "train_samples_per_s": f"{m['train_samples_per_s']:.2f}",
        "threads": m["threads"],
        "load_average_start": f"{m['load_average_start']:.2f}",
        "torch": torch.__version__,
        "dataset": "neurodeploy.events.synthetic.make_nmnist_like",
    }
    if command:
        meta["command"] = command
    if c.init_from:
        meta["init_from"] = os.path.basename(c.init_from)
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return save_checkpoint(result.model, path, metadata={k: str(v) for k, v in meta.items()})
