"""The one error type of the report package."""
from __future__ import annotations

from neurodeploy.errors import NeurodeployError


class ReportError(NeurodeployError, ValueError):
    """Bad input to a report (unknown target, malformed devices file, mis-shaped spikes).

    The message names the thing (file, field, tensor) and the way out.
    """
