"""The boundary around third-party decoders (faery's Rust, dv-processing's C++, numpy's .npy parser).

Rust extensions built with pyo3 turn a panic into `pyo3_runtime.PanicException`, which derives
from `BaseException`, so `except Exception` lets it through and the user gets a backtrace. Every
call into a library decoder goes through `library_boundary`, which turns anything but the
interpreter's own control flow (Ctrl-C, exit, generator close) into an EventFileError naming the
source; the library's message is cut to its first line (dv-processing appends a C++ stack
trace). The bounds of every decoder: docs/hostile_inputs.md.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .errors import EventFileError

# what must pass through untouched: the user's Ctrl-C, sys.exit(), a generator being closed
_CONTROL_FLOW = (KeyboardInterrupt, SystemExit, GeneratorExit)


def first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(exc).__name__}: {line[:limit]}"


@contextlib.contextmanager
def library_boundary(source: str | os.PathLike, what: str, fix: str, offset: int | None = None) -> Iterator[None]:
    """Turn every error raised inside (panics, and numpy's TokenError, SyntaxError, zlib.error...
    on a corrupt header) into one EventFileError."""
    try:
        yield
    except EventFileError:
        raise
    except _CONTROL_FLOW:
        raise
    except BaseException as exc:  # noqa: BLE001  (pyo3 PanicException is a BaseException)
        raise EventFileError(source, f"{what}: {first_line(exc)}", offset=offset, fix=fix) from None
