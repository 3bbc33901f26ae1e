"""neurodeploy: deploy Mamba-Spike models to neuromorphic and ONNX runtimes."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("neurodeploy")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
