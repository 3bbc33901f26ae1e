"""neurodeploy: deploy Mamba-Spike models to neuromorphic and ONNX runtimes.

    import neurodeploy
    bundle = neurodeploy.export("checkpoint.pth", "bundle/")
    for result in neurodeploy.stream(bundle, "recording.aedat4"):
        print(result.prediction)
"""
from importlib.metadata import PackageNotFoundError, version as _version
from typing import Any

try:
    __version__ = _version("neurodeploy")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

# The API is imported lazily: `neurodeploy --version` and the events readers should not pay
# for importing torch, onnxruntime and nir.
_API = {
    "export": ("neurodeploy.bundle", "export"),
    "load_bundle": ("neurodeploy.bundle", "load_bundle"),
    "ExportOptions": ("neurodeploy.bundle", "ExportOptions"),
    "stream": ("neurodeploy.stream", "stream"),
    "load_checkpoint": ("neurodeploy.model.mamba_spike.checkpoint", "load_checkpoint"),
    "save_checkpoint": ("neurodeploy.model.mamba_spike.checkpoint", "save_checkpoint"),
}


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'neurodeploy' has no attribute {name!r}")


__all__ = ["__version__", *_API]
