"""Dataset folders in the layouts users have, listed as samples (file, label, optional time range).

    dataset = discover("N-MNIST/Test")            # layout detected from the folder
    dataset = discover("recordings/", labels_csv="labels.csv")

Layouts:
- `class_folders` (tonic's N-MNIST: `<class>/*.bin`; CIFAR10-DVS: `<class>/*.aedat`): one
  sample per file, label = the class folder's position among the sorted class folders (numeric
  names sort as numbers, so N-MNIST's `0`..`9` are labels 0..9).
- `segments` (DVS Gesture: `userXX_lighting.aedat` + `userXX_lighting_labels.csv` with rows
  `class,startTime_usec,endTime_usec`, classes 1-based; or neurodeploy's `<file>.labels.csv`
  with `t_start_us,t_end_us,label`, read by `events.labels`): one sample per labelled time
  range, `[start, end)`. A recording whose labels file cannot be read is listed in `unlisted`
  with the reason (the evaluation reports it and goes on).
- `labels_csv` (any folder + one CSV): rows `file,label` (file relative to the folder),
  optionally `t_start_us,t_end_us` columns for time ranges.

Samples are listed in a fixed order (sorted paths, then time), and each keeps its position as
`index`: sharding and merging key on it, so a result never depends on which worker ran what.
A `--labels-csv` that cannot be parsed is an error naming the file, line and the expected columns.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from neurodeploy.errors import NeurodeployError
from neurodeploy.events.labels import read_label_file

LAYOUTS = ("auto", "class_folders", "segments", "labels_csv")
EVENT_EXTENSIONS = (".bin", ".aedat", ".aedat4", ".raw", ".dat", ".npy", ".npz", ".csv")
_GESTURE_SUFFIX = "_labels.csv"
_OWN_SUFFIX = ".labels.csv"


class DatasetError(NeurodeployError, ValueError):
    """A dataset folder or labels file that cannot be listed; the message names it and the way out."""


@dataclass(frozen=True)
class SampleSpec:
    index: int
    path: str
    label: int | None
    t_start_us: int | None = None  # None: the whole recording
    t_end_us: int | None = None  # exclusive

    @property
    def name(self) -> str:
        if self.t_start_us is None:
            return self.path
        return f"{self.path}[{self.t_start_us}:{self.t_end_us}]"


@dataclass(frozen=True)
class Dataset:
    root: str
    layout: str
    classes: tuple[str, ...]  # class names in label order ("" where the layout has none)
    samples: tuple[SampleSpec, ...]
    unlisted: tuple[tuple[str, str], ...] = ()  # (recording, reason): its labels file could not be read

    def select(self, *, max_samples: int | None = None, shard: tuple[int, int] | None = None) -> tuple[SampleSpec, ...]:
        """The first `max_samples` samples, then shard `i` of `n` (every n-th, starting at i)."""
        chosen = self.samples[:max_samples] if max_samples is not None else self.samples
        if shard is not None:
            i, n = shard
            if not 0 <= i < n:
                raise DatasetError(f"shard {i}/{n}: expected 0 <= i < n, e.g. --shard 0/4")
            chosen = tuple(s for k, s in enumerate(chosen) if k % n == i)
        return tuple(chosen)


def _is_event_file(path: Path) -> bool:
    name = path.name.lower()
    return (path.is_file() and name.endswith(EVENT_EXTENSIONS) and not name.endswith(_OWN_SUFFIX)
            and not name.endswith(_GESTURE_SUFFIX))


def _class_order(names: list[str]) -> list[str]:
    if all(n.isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _class_folders(root: Path) -> Dataset:
    folders = [p for p in root.iterdir() if p.is_dir() and any(_is_event_file(f) for f in p.iterdir())]
    if not folders:
        raise DatasetError(f"{root}: no class folders holding event files ({', '.join(EVENT_EXTENSIONS)})")
    classes = _class_order([p.name for p in folders])
    specs = []
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if _is_event_file(f):
                specs.append((str(f), label))
    specs.sort()
    return Dataset(str(root), "class_folders", tuple(classes),
                   tuple(SampleSpec(i, p, label) for i, (p, label) in enumerate(specs)))


def _read_rows(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise DatasetError(f"{path}: header {header} lacks column(s) {missing}; expected columns "
                                   f"{list(required) + list(optional)}")
            return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read the labels file ({err})") from None


def _int(path: Path, line: int, row: dict[str, str], column: str) -> int:
    try:
        return int(row[column])
    except (ValueError, KeyError):
        raise DatasetError(f"{path}, line {line}: column {column!r} = {row.get(column)!r} is not an integer") from None


def _segments_of(label_file: Path) -> list[tuple[int, int, int]]:
    """(start, end, label) rows of a DVS Gesture labels file, or of neurodeploy's (events.labels)."""
    with label_file.open(encoding="utf-8") as f:
        header = f.readline()
    if "startTime_usec" not in header:
        return [(s.t_start_us, s.t_end_us, s.label) for s in read_label_file(label_file)]
    rows = _read_rows(label_file, ("class", "startTime_usec", "endTime_usec"))  # DVS Gesture: class 1..11
    out = [(_int(label_file, i + 2, r, "startTime_usec"), _int(label_file, i + 2, r, "endTime_usec"),
            _int(label_file, i + 2, r, "class") - 1) for i, r in enumerate(rows)]
    for i, (start, end, label) in enumerate(out):
        if end <= start or label < 0:
            raise DatasetError(f"{label_file}, line {i + 2}: segment [{start}, {end}) class {label + 1}: expected "
                               "endTime_usec > startTime_usec and classes counted from 1")
    return out


def _label_file_of(event_file: Path) -> Path | None:
    own = event_file.with_name(event_file.name + _OWN_SUFFIX)
    gesture = event_file.with_name(event_file.stem + _GESTURE_SUFFIX)
    return own if own.is_file() else gesture if gesture.is_file() else None


def _segment_files(root: Path) -> Dataset:
    pairs = []
    for f in sorted(root.rglob("*")):
        if _is_event_file(f):
            labels = _label_file_of(f)
            if labels is not None:
                pairs.append((f, labels))
    if not pairs:
        raise DatasetError(f"{root}: no event file with a labels file beside it (X.aedat + X_labels.csv, or "
                           "X.npz + X.npz.labels.csv)")
    specs, unlisted = [], []
    for f, labels in pairs:
        try:
            segments = _segments_of(labels)
        except (NeurodeployError, ValueError, OSError, UnicodeDecodeError) as err:  # that recording only
            unlisted.append((str(f), f"labels file {labels}: {err}"))
            continue
        for start, end, label in segments:
            specs.append(SampleSpec(len(specs), str(f), label, start, end))
    n_classes = max((s.label for s in specs), default=-1) + 1
    return Dataset(str(root), "segments", ("",) * n_classes, tuple(specs), tuple(unlisted))


def _labels_csv(root: Path, labels_csv: Path) -> Dataset:
    rows = _read_rows(labels_csv, ("file", "label"), ("t_start_us", "t_end_us"))
    entries = []
    for i, row in enumerate(rows):
        path = root / row["file"]
        if not path.resolve().is_relative_to(root.resolve()):
            raise DatasetError(f"{labels_csv}, line {i + 2}: file {row['file']!r} lies outside {root}")
        ranged = bool(row.get("t_start_us")) or bool(row.get("t_end_us"))
        start = _int(labels_csv, i + 2, row, "t_start_us") if ranged else None
        end = _int(labels_csv, i + 2, row, "t_end_us") if ranged else None
        entries.append((str(path), start if start is not None else -1, end, _int(labels_csv, i + 2, row, "label")))
    entries.sort(key=lambda e: (e[0], e[1]))
    specs = tuple(SampleSpec(i, p, label, None if s == -1 else s, e) for i, (p, s, e, label) in enumerate(entries))
    n_classes = max((s.label for s in specs), default=-1) + 1
    return Dataset(str(root), "labels_csv", ("",) * n_classes, specs)


def discover(root: str | os.PathLike, *, layout: str = "auto", labels_csv: str | os.PathLike | None = None) -> Dataset:
    """List the samples of a dataset folder (see the module docstring for the layouts)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; a dataset is a folder of recordings (see `neurodeploy eval --help`)")
    if layout not in LAYOUTS:
        raise DatasetError(f"layout {layout!r}; choose from {LAYOUTS}")
    if labels_csv is not None or layout == "labels_csv":
        if labels_csv is None:
            raise DatasetError("layout 'labels_csv' needs the labels file: pass --labels-csv FILE")
        return _labels_csv(root, Path(labels_csv))
    if layout == "segments" or (layout == "auto" and any(
            p.name.endswith((_GESTURE_SUFFIX, _OWN_SUFFIX)) for p in root.rglob("*.csv"))):
        return _segment_files(root)
    return _class_folders(root)
