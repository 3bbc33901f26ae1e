"""The labels file: which time span of a recording is which labelled sample.

    <event file>.labels.csv          written beside the recording (write_labelled_recording)
    t_start_us,t_end_us,label        header line, then one row per sample
    0,300001,7                       [t_start_us, t_end_us) in the recording's microseconds

Rows are integers, segments non-empty (t_end_us > t_start_us), in time order and not
overlapping. Reading checks all of it and names the file, the line and the way out; a
malformed file is refused, never half read.
"""
from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable
from pathlib import Path

from .errors import EventFileError

SUFFIX = ".labels.csv"
HEADER = ("t_start_us", "t_end_us", "label")


@dataclasses.dataclass(frozen=True)
class LabelSegment:
    t_start_us: int
    t_end_us: int  # exclusive
    label: int


def labels_path_for(event_path: str | Path) -> Path:
    """Where the labels of an event file live: `<event file>.labels.csv`."""
    return Path(f"{event_path}{SUFFIX}")


def labels_beside(spec: str | Path) -> Path | None:
    """`<file>.labels.csv` next to an event file, if there is one (None for `-` and addresses)."""
    spec = str(spec)
    if spec == "-" or "://" in spec:
        return None
    path = labels_path_for(spec)
    return path if path.is_file() else None


def write_label_file(path: str | Path, segments: Iterable[LabelSegment]) -> Path:
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for s in segments:
            writer.writerow((s.t_start_us, s.t_end_us, s.label))
    return path


def read_label_file(path: str | Path) -> tuple[LabelSegment, ...]:
    """The segments of a labels file (module docstring), checked."""
    path = Path(path)
    fix = f"write it as a CSV with the header {','.join(HEADER)} and one integer row per sample"
    if not path.is_file():
        raise EventFileError(path, "no such labels file" if not path.exists() else "is a folder, not a labels file",
                             fix="pass --labels FILE of an existing labels CSV")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise EventFileError(path, "is not a text labels file", fix=fix) from None
    rows = list(csv.reader(lines))
    if not rows or tuple(cell.strip() for cell in rows[0]) != HEADER:
        raise EventFileError(path, f"line 1 is {','.join(rows[0]) if rows else 'missing'!r}, not the header "
                             f"{','.join(HEADER)!r}", fix=fix)
    segments: list[LabelSegment] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            if len(row) != 3:
                raise ValueError
            start, end, label = (int(cell) for cell in row)
        except ValueError:
            raise EventFileError(path, f"line {number} is {','.join(row)!r}, not three integers "
                                 f"{','.join(HEADER)}", fix=fix) from None
        if end <= start:
            raise EventFileError(path, f"line {number}: the segment ends ({end} us) before it starts ({start} us)",
                                 fix=fix)
        if segments and start < segments[-1].t_end_us:
            raise EventFileError(path, f"line {number}: the segment starts at {start} us, before the previous one "
                                 f"ends ({segments[-1].t_end_us} us); labelled samples must be in time order and "
                                 "must not overlap", fix=fix)
        segments.append(LabelSegment(start, end, label))
    return tuple(segments)


def read_labels(event_path: str | Path) -> list[LabelSegment]:
    """The segments written beside an event file by write_labelled_recording (pass the event file's path)."""
    return list(read_label_file(labels_path_for(event_path)))
