"""Decode throughput (events/s) of every reader on a generated million-event file.

    .venv/bin/python benchmarks/events.py [--events 1000000] [--repeats 3]

Prints, per format, the best-of-N load() throughput and its ratio to a baseline measured in the
same run (np.frombuffer of the same number of 13-byte records: the cost of touching the bytes).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import neurodeploy.events as E

CASES = [  # (file name, save kwargs, library or own)
    ("x.aedat4", {"library": "faery"}, "faery"),
    ("x_evt2.raw", {"format": "evt2"}, "own (vectorised)"),
    ("x_evt21.raw", {"format": "evt2.1"}, "own (vectorised)"),
    ("x_evt3.raw", {"format": "evt3"}, "own (vectorised)"),
    ("x.dat", {}, "own (vectorised)"),
    ("x3.aedat", {"format": "aedat3"}, "own"),
    ("x2.aedat", {"format": "aedat2", "layout": "dvs128"}, "own"),
    ("x.bin", {}, "own"),
    ("x.npz", {}, "numpy"),
    ("x.csv", {}, "own (np.loadtxt)"),
]


def make_events(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # 1 M events over 8 s: ~125 k events/s, spanning the EVT3 time-high counter many times
    return E.make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n),
                         np.sort(rng.integers(0, 8_000_000, n)), rng.integers(0, 2, n))


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as d:
        blob = np.zeros(n, E.EVENT_DTYPE).tobytes()
        base = best_of(lambda: np.frombuffer(blob, E.EVENT_DTYPE).copy(), args.repeats)
        print(f"{n} events; baseline frombuffer+copy: {n / base / 1e6:.0f} M events/s")
        print(f"{'format':<12} {'decoder':<18} {'M events/s':>10} {'vs baseline':>12} {'MB':>7}")
        for name, kwargs, decoder in CASES:
            size = (34, 34) if name.endswith(".bin") else (128, 128)
            rec = E.Recording(make_events(n if not name.endswith(".csv") else n // 10, size), size)
            path = os.path.join(d, name)
            E.save(rec, path, **kwargs)
            assert E.load(path) == rec
            elapsed = best_of(lambda: E.load(path), args.repeats)
            rate = len(rec) / elapsed
            print(f"{E.detect_format(path):<12} {decoder:<18} {rate / 1e6:>10.1f} {rate * base / n:>12.3f} "
                  f"{os.path.getsize(path) / 1e6:>7.1f}")
        print("(csv measured on a tenth of the events)")


if __name__ == "__main__":
    main()
