"""Worker processes that die with the interpreter that started them (issue 21).

Lava forks a dozen worker processes (a runtime service, one per process model) that talk through
shared memory. Ctrl-C and Python errors stop them (LavaFrontendRuntime.close, an atexit hook),
but SIGTERM ended the interpreter without atexit, and SIGKILL or a native abort leaves no chance
to run anything: 11-13 orphans (~2.9 GB) kept stdout open, so `| tee` never ended, and 35
shared-memory segments stayed in /dev/shm.

`install()` (called before Lava starts its processes):
- every process forked from the main thread from then on asks the kernel (prctl
  PR_SET_PDEATHSIG) for SIGKILL when its parent dies, so no worker outlives the interpreter,
  whatever ended it; grandchildren inherit the fork hook and die with their parent in turn. Only
  forks from the main thread: the death signal fires when the forking *thread* exits;
- SIGTERM raises SystemExit in the main thread, so `close()` and atexit stop Lava as Ctrl-C does.
Shared memory: Lava's segments are multiprocessing SharedMemory, registered with Python's
resource tracker (a separate process started with fork+exec, which this hook does not touch);
the tracker unlinks what is left once every process holding its pipe has exited, which the
orphans prevented. Measured in tests/test_hostile_inputs.py (SIGKILL of a Lava run).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

_PR_SET_PDEATHSIG = 1
_installed = False
_forking_from_main = False


def _before_fork() -> None:
    global _forking_from_main
    _forking_from_main = threading.current_thread() is threading.main_thread()


def _in_child() -> None:
    if not _forking_from_main:
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died between fork and prctl: nobody would signal us
        os._exit(1)


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)


def install() -> None:
    """Idempotent; a no-op off Linux (no PR_SET_PDEATHSIG)."""
    global _installed
    if _installed or not sys.platform.startswith("linux"):
        return
    _installed = True
    os.register_at_fork(before=_before_fork, after_in_child=_in_child)
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _terminate)
