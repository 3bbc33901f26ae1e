"""Hostile-input fuzzing of every event decoder (issue 21): seeded mutants of valid files written by
the project's own writers, decoded by `neurodeploy.events.load` in worker processes watched by
this one.

    .venv/bin/python benchmarks/fuzz.py [--inputs 100000] [--jobs 2] [--kinds evt3,npz] [--dv]

Per decoder it prints: inputs, process deaths (a worker that died: abort, segfault), hangs (no
answer within --hang-s, default 5 s: the worker is killed), exceptions outside NeurodeployError
(a bug), NeurodeployError refusals, files decoded, the slowest input, and the peak RSS of a
worker against its RSS right after the imports (the baseline measured in the same run; workers
are recycled every --recycle inputs so the peak belongs to a window of inputs). The row dv_stream
feeds mutants of a DV network stream (an AEDAT4 file's IOHeader and packets) through a socket to
events.dv_network's reader. `--dv` adds a row that decodes the AEDAT4 mutants with dv-processing's
MonoCameraRecording directly (what load() used before issue 21), the baseline for choosing faery.
Method: docs/hostile_inputs.md.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from multiprocessing.connection import wait

import numpy as np

from neurodeploy.events.mutation import WRITABLE, dv_stream, mutate, valid_file

POLICIES = ({}, {"out_of_bounds": "drop", "non_monotonic": "keep", "truncated": "count"})


def _decode_dv(path: str) -> int:
    import dv_processing as dv

    recording = dv.io.MonoCameraRecording(path)
    n = 0
    while True:
        batch = recording.getNextEventBatch()
        if batch is None:
            return n
        n += batch.size()


def _decode_dv_stream(data: bytes) -> int:
    """The mutant as a DV network peer would send it, through a socket pair, then closed."""
    import socket
    import threading

    from neurodeploy.events.dv_network import DvStreamReader
    from neurodeploy.events.errors import DecodeStats

    ours, peer = socket.socketpair()

    def send():
        with peer:
            try:
                peer.sendall(data)
            except OSError:  # the reader refused and closed first
                pass

    sender = threading.Thread(target=send)
    sender.start()
    n = 0
    try:
        reader = DvStreamReader(ours, "<fuzz>", DecodeStats(), read_timeout_s=2.0)
        while (packet := reader.next_packet()) is not None:
            n += len(packet)
    finally:
        ours.close()
        sender.join()
    return n


def _worker(conn, kind: str, folder: str) -> None:
    import neurodeploy.events as E
    from neurodeploy.errors import NeurodeployError

    base = dv_stream() if kind == "dv_stream" else valid_file(kind.removesuffix("+dv"))
    conn.send(("ready", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    path = os.path.join(folder, f"{os.getpid()}.{'aedat4' if kind.startswith('aedat4') else 'in'}")
    fmt = {"aedat4_dv": "aedat4", "aedat4+dv": "aedat4"}.get(kind, kind)
    while True:
        seed = conn.recv()
        if seed is None:
            return
        data = mutate(base, np.random.default_rng(seed))
        with open(path, "wb") as f:
            f.write(data)
        started = time.perf_counter()
        try:
            if kind == "aedat4+dv":
                _decode_dv(path)
            elif kind == "dv_stream":
                _decode_dv_stream(data)
            else:
                E.load(path, format=fmt, sensor_size=(34, 34) if fmt in ("nmnist_bin", "npy") else None,
                       **POLICIES[seed % 2])
            outcome = "decoded"
        except NeurodeployError:
            outcome = "refused"
        except BaseException as exc:  # noqa: BLE001  (what we count: anything outside the error base)
            outcome = f"other:{type(exc).__name__}"
        conn.send((outcome, time.perf_counter() - started, len(data),
                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


class _Slot:
    def __init__(self, kind: str, folder: str):
        self.kind, self.folder = kind, folder
        self.start()

    def start(self) -> None:
        parent, child = mp.Pipe()
        self.process = mp.Process(target=_worker, args=(child, self.kind, self.folder), daemon=True)
        self.process.start()
        child.close()
        self.conn = parent
        tag, self.baseline_kb = self.conn.recv()
        self.seed, self.sent_at, self.done = None, None, 0

    def send(self, seed: int) -> None:
        self.seed, self.sent_at = seed, time.monotonic()
        self.conn.send(seed)

    def restart(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.start()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()


def fuzz(kind: str, inputs: int, jobs: int, hang_s: float, recycle: int, first_seed: int = 0) -> dict:
    counts = {"deaths": 0, "hangs": 0, "other": 0, "refused": 0, "decoded": 0}
    others: dict[str, int] = {}
    worst = (0.0, None)
    peak_kb = baseline_kb = 0
    bad_seeds: list[tuple[str, int]] = []
    retried: set[int] = set()  # seeds whose worker died once; a second death counts
    with tempfile.TemporaryDirectory() as folder:
        slots = [_Slot(kind, folder) for _ in range(jobs)]
        baseline_kb = max(s.baseline_kb for s in slots)
        next_seed, finished = first_seed, 0
        for slot in slots:
            if next_seed < first_seed + inputs:
                slot.send(next_seed)
                next_seed += 1
        while finished < inputs:
            ready = wait([s.conn for s in slots if s.seed is not None], timeout=0.2)
            for slot in slots:
                if slot.seed is None:
                    continue
                if slot.conn in ready:
                    try:
                        outcome, seconds, size, rss_kb = slot.conn.recv()
                    except (EOFError, ConnectionResetError):
                        seed = slot.seed
                        slot.process.join(5)
                        print(f"  {kind}: worker died on seed {seed}, exit code {slot.process.exitcode}",
                              file=sys.stderr, flush=True)
                        slot.restart()
                        if seed not in retried:  # once more in a fresh worker: is it the input?
                            retried.add(seed)
                            slot.send(seed)
                            continue
                        counts["deaths"] += 1
                        bad_seeds.append(("death", seed))
                    else:
                        peak_kb = max(peak_kb, rss_kb)
                        if seconds > worst[0]:
                            worst = (seconds, slot.seed)
                        if outcome.startswith("other:"):
                            counts["other"] += 1
                            others[outcome[6:]] = others.get(outcome[6:], 0) + 1
                            bad_seeds.append((outcome, slot.seed))
                        else:
                            counts[outcome] += 1
                        slot.done += 1
                        if slot.done >= recycle:
                            slot.restart()
                elif time.monotonic() - slot.sent_at > hang_s:
                    counts["hangs"] += 1
                    bad_seeds.append(("hang", slot.seed))
                    slot.restart()
                else:
                    continue
                finished += 1
                slot.seed = None
                if next_seed < first_seed + inputs:
                    slot.send(next_seed)
                    next_seed += 1
        for slot in slots:
            slot.stop()
    flaky = len(retried) - counts["deaths"]
    if flaky:
        bad_seeds.append(("died once, not again", flaky))
    return {"kind": kind, "inputs": inputs, **counts, "others": others, "slowest_s": worst[0],
            "slowest_seed": worst[1], "peak_rss_mb": peak_kb / 1024, "baseline_rss_mb": baseline_kb / 1024,
            "bad_seeds": bad_seeds[:10]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000, help="mutants per decoder")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--kinds", default=",".join([*WRITABLE, "dv_stream"]),
                        help=f"comma-separated, of {[*WRITABLE, 'dv_stream']}")
    parser.add_argument("--dv", action="store_true", help="also decode the AEDAT4 mutants with dv-processing")
    parser.add_argument("--hang-s", type=float, default=5.0)
    parser.add_argument("--recycle", type=int, default=2000)
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if args.dv:
        kinds.append("aedat4+dv")
    print(f"load: {os.getloadavg()}; {args.inputs} mutants per decoder, {args.jobs} workers, hang = {args.hang_s} s")
    header = (f"{'decoder':<11}{'inputs':>8}{'deaths':>8}{'hangs':>7}{'other':>7}{'refused':>9}{'decoded':>9}"
              f"{'slowest s':>11}{'peak RSS MB':>13}{'base MB':>9}  inputs/s")
    print(header)
    for kind in kinds:
        started = time.perf_counter()
        row = fuzz(kind, args.inputs, args.jobs, args.hang_s, args.recycle)
        rate = args.inputs / (time.perf_counter() - started)
        print(f"{kind:<11}{row['inputs']:>8}{row['deaths']:>8}{row['hangs']:>7}{row['other']:>7}{row['refused']:>9}"
              f"{row['decoded']:>9}{row['slowest_s']:>11.3f}{row['peak_rss_mb']:>13.0f}{row['baseline_rss_mb']:>9.0f}"
              f"  {rate:.0f}", flush=True)
        if row["others"] or row["bad_seeds"]:
            print(f"    outside the error base: {row['others']}; first bad seeds: {row['bad_seeds']}", flush=True)


if __name__ == "__main__":
    main()
