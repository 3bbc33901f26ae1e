"""The one error base of the toolkit.

Every error neurodeploy raises on purpose derives from `NeurodeployError`; its message names the
thing (file, field, key, offset) and the way out. The CLI turns any `NeurodeployError` into
exit code 1 with that message; anything else reaching the CLI is a bug. This module imports
nothing from the project, so every layer may use it.
"""
from __future__ import annotations


class NeurodeployError(Exception):
    """Bad input or a refused request; `str(err)` is the whole message a user needs."""


class UnsupportedCapabilityError(NeurodeployError):
    """A model family (or this model's config) cannot do what was asked: export to NIR, stream..."""

    def __init__(self, family: str, capability: str, reason: str):
        self.family = family
        self.capability = capability
        self.reason = reason
        super().__init__(f"{family}: {capability} is not supported: {reason}")


class MissingFileError(NeurodeployError, FileNotFoundError):
    """A file or folder the user named does not exist (the message names it and how to make it)."""
