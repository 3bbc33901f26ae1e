"""Hostile event files: seeded byte-level mutants of valid recordings, for the decoder fuzzing in
tests/test_hostile_inputs.py and benchmarks/fuzz.py (issue 21).

The valid files come from the project's own writers (`save`) on synthetic events; the mutators
do what the hostile-input campaign did: flip bits, overwrite bytes, plant extreme integers where
sizes and counts live, duplicate or drop a chunk (a packet written twice), insert garbage and cut
the file. Everything is drawn from a numpy Generator, so a seed fixes each mutant.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from .readers import save
from .types import Recording, make_events

# the formats with a writer here, and the keyword arguments of save() for each
WRITABLE = {"aedat4": {"format": "aedat4"}, "aedat4_dv": {"format": "aedat4", "library": "dv"},
            "aedat3": {"format": "aedat3"}, "aedat2": {"format": "aedat2"}, "evt2": {"format": "evt2"},
            "evt2.1": {"format": "evt2.1"}, "evt3": {"format": "evt3"}, "dat": {"format": "dat"},
            "nmnist_bin": {"format": "nmnist_bin"}, "csv": {"format": "csv"}, "npy": {"format": "npy"},
            "npz": {"format": "npz"}}
# extreme values planted where a length, count or timestamp may live
_EXTREMES = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1)


def valid_file(kind: str, n_events: int = 200, seed: int = 0) -> bytes:
    """The bytes of a valid recording of `kind` (a key of WRITABLE)."""
    rng = np.random.default_rng(seed)
    size = (34, 34) if kind == "nmnist_bin" else (128, 128)
    duration = 300_000 if kind == "nmnist_bin" else 2_000_000
    events = make_events(rng.integers(0, size[0], n_events), rng.integers(0, size[1], n_events),
                         np.sort(rng.integers(0, duration, n_events)), rng.integers(0, 2, n_events))
    with tempfile.TemporaryDirectory() as folder:
        # dv-processing writes only *.aedat4; np.save appends .npy to any other name
        extension = {"aedat4": ".aedat4", "aedat4_dv": ".aedat4", "npy": ".npy", "npz": ".npz"}.get(kind, "")
        path = os.path.join(folder, "valid" + extension)
        save(Recording(events, size), path, **WRITABLE[kind])
        with open(path, "rb") as f:
            return f.read()


def dv_stream(n_events: int = 200, seed: int = 0) -> bytes:
    """The bytes a DV network peer sends for a recording: an AEDAT4 file written here, less its
    magic line and data table (the network stream is the IOHeader followed by the packets)."""
    from .aedat4_framing import FILE_MAGIC, parse_io_header

    data = valid_file("aedat4", n_events, seed)[len(FILE_MAGIC):]
    header = parse_io_header(data, "<dv stream>")
    end = header.data_table_position - len(FILE_MAGIC) if header.data_table_position > 0 else len(data)
    return data[:end]


def mutate(data: bytes, rng: np.random.Generator, max_ops: int = 4) -> bytes:
    """One mutant: 1..max_ops mutations of data, drawn from rng."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, max_ops + 1))):
        op = int(rng.integers(0, 8))
        n = len(buf)
        at = int(rng.integers(0, n)) if n else 0
        if op == 0 and n:                                   # flip one bit
            buf[at] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and n:                                 # overwrite a byte
            buf[at] = int(rng.integers(0, 256))
        elif op == 2 and n:                                 # an extreme integer, 2/4/8 bytes, either endianness
            width = int(rng.choice([2, 4, 8]))
            value = int(rng.choice(_EXTREMES)) & ((1 << (8 * width)) - 1)
            buf[at:at + width] = value.to_bytes(width, "little" if rng.integers(0, 2) else "big")
        elif op == 3 and n:                                 # a chunk written twice
            length = int(rng.integers(1, max(2, min(n - at, 4096)) + 1))
            buf[at:at] = buf[at:at + length]
        elif op == 4 and n:                                 # a chunk lost
            length = int(rng.integers(1, max(2, min(n - at, 512)) + 1))
            del buf[at:at + length]
        elif op == 5:                                       # garbage inserted
            buf[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        elif op == 6 and n:                                 # cut
            del buf[at:]
        elif op == 7 and n:                                 # a run of one byte (zeros, 0xFF)
            length = int(rng.integers(1, 256))
            buf[at:at + length] = bytes([int(rng.choice([0, 0xFF]))]) * min(length, n - at)
    return bytes(buf)
