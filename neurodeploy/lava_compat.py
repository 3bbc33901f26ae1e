"""Make lava-nc 0.10.0 importable on Python 3.11 (docs/lava.md).

lava-nc declares Python <3.11. On 3.11 exactly one module fails to import:
``lava/magma/compiler/var_model.py`` declares eight dataclass fields whose default is a
``ByteEncoder()`` instance, and Python 3.11 rejects mutable dataclass defaults. Those fields
only describe Loihi hardware addresses. We rewrite the eight defaults to
``field(default_factory=ByteEncoder)`` while the module is loaded, through a meta-path
finder, so nothing in site-packages is edited.

Call :func:`import_lava` (or import this module) before any ``import lava``; every part of
neurodeploy that touches Lava goes through here.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import re
import sys
from types import ModuleType

from neurodeploy.errors import NeurodeployError

EXPECTED_LAVA_NC = "0.10.0"
_TARGET = "lava.magma.compiler.var_model"
_MUTABLE_DEFAULT = re.compile(r"^(\s+\w+: ByteEncoder) = ByteEncoder\(\)\s*$", re.MULTILINE)
_EXPECTED_REWRITES = 8


class LavaCompatError(NeurodeployError, RuntimeError):
    """The installed Lava is not the one this shim knows how to fix."""


class _PatchedSourceLoader(importlib.machinery.SourceFileLoader):
    def get_data(self, path: str) -> bytes:
        source = super().get_data(path)
        if not path.endswith(".py"):
            return source
        text = source.decode("utf-8")
        patched, count = _MUTABLE_DEFAULT.subn(r"\1 = field(default_factory=ByteEncoder)", text)
        if count != _EXPECTED_REWRITES:
            raise LavaCompatError(
                f"{path}: expected {_EXPECTED_REWRITES} `ByteEncoder()` dataclass defaults to "
                f"rewrite, found {count}. This lava-nc is not {EXPECTED_LAVA_NC}; reinstall it with "
                f"`bash scripts/setup.sh` (pip install --no-deps lava-nc=={EXPECTED_LAVA_NC})."
            )
        patched = patched.replace(
            "from dataclasses import dataclass, InitVar",
            "from dataclasses import dataclass, InitVar, field",
            1,
        )
        return patched.encode("utf-8")

    def get_code(self, fullname: str):
        # Never reuse the unpatched bytecode cache of the original file.
        source = self.get_data(self.path)
        return compile(source, self.path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        loader = _PatchedSourceLoader(fullname, spec.origin)
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)


_installed = False


def install() -> None:
    """Check the installed lava-nc and register the import fix (idempotent)."""
    global _installed
    if _installed:
        return
    try:
        version = importlib.metadata.version("lava-nc")
    except importlib.metadata.PackageNotFoundError:
        raise LavaCompatError(
            "lava-nc is not installed; run `bash scripts/setup.sh` (it installs lava-nc "
            f"{EXPECTED_LAVA_NC} and lava-dl with --no-deps --ignore-requires-python)."
        ) from None
    if version != EXPECTED_LAVA_NC:
        raise LavaCompatError(
            f"lava-nc {version} is installed, this toolkit is tested with {EXPECTED_LAVA_NC} only; "
            f"reinstall with `pip install --no-deps --ignore-requires-python lava-nc=={EXPECTED_LAVA_NC}`."
        )
    if _TARGET in sys.modules:
        raise LavaCompatError(
            f"{_TARGET} was imported before neurodeploy.lava_compat; import neurodeploy.lava_compat "
            "(or call import_lava()) before anything imports lava."
        )
    sys.meta_path.insert(0, _VarModelFinder())
    _installed = True


def import_lava() -> ModuleType:
    """Import and return the ``lava`` package with the Python 3.11 fix applied.

    Lava's runtime switches the process-wide multiprocessing start method to ``fork`` when
    imported; we import it here once so that this side effect happens at a known place.
    """
    install()
    import lava  # noqa: F401  (after install(): the patched var_model is used)
    import lava.magma.compiler.var_model  # noqa: F401  (fails here, not later, if the fix is wrong)

    _import_message_infrastructure()
    return sys.modules["lava"]


_MESSAGE_INFRASTRUCTURE = "lava.magma.runtime.message_infrastructure.multiprocessing"


def _import_message_infrastructure() -> None:
    """Lava's multiprocessing module calls `multiprocessing.set_start_method('fork')` when it is
    imported, which raises RuntimeError once anything in the process has fixed the start method
    (numba's or Dask's pools, a process pool of the evaluation engine). Lava needs fork either
    way, so the module is imported here once with that one call made forcing."""
    import importlib
    import multiprocessing

    if _MESSAGE_INFRASTRUCTURE in sys.modules:
        return
    original = multiprocessing.set_start_method

    def forcing(method, force=False):
        original(method, force=True)

    multiprocessing.set_start_method = forcing
    try:
        importlib.import_module(_MESSAGE_INFRASTRUCTURE)
    finally:
        multiprocessing.set_start_method = original


__all__ = ["import_lava", "install", "LavaCompatError", "EXPECTED_LAVA_NC"]
