"""Running an image classifier (Vision Mamba) on images: what `run` and `eval` call for images.

`classify_images(loaded, source)` reads a folder of images or a `.npy` batch
(`neurodeploy.images`), runs the PyTorch model or an exported ONNX graph in onnxruntime in
batches, and returns per-image logits and predictions; with labels (class folders or a labels
`.npy`) it also gives top-1 / top-5 accuracy, which is all `eval` adds. The CLI calls this one
function; the model is whatever `neurodeploy.model.registry.load_model` returned.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.images import ImageBatch, Preprocess, batches, read_images
from neurodeploy.model.family import LoadedModel

Runtime = Literal["torch", "onnx"]


IMAGE_FAMILIES = ("vision-mamba",)


def is_image_checkpoint(path: str | Path) -> bool:
    """True when `path` is a checkpoint of an image-classifier family (so `eval` hands it images)."""
    from neurodeploy.model.checkpoint_io import read_checkpoint
    from neurodeploy.model.registry import get_family

    try:
        raw = read_checkpoint(path)
    except NeurodeployError:
        return False
    return any(get_family(name).claims(raw) for name in IMAGE_FAMILIES)


class ImageClassificationError(NeurodeployError, ValueError):
    """A model or graph that cannot classify these images."""


@dataclass(frozen=True)
class ImageResults:
    names: tuple[str, ...]
    logits: torch.Tensor  # (N, classes)
    labels: torch.Tensor | None
    runtime: str
    class_names: tuple[str, ...] = ()

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(dim=-1)

    def accuracy(self, k: int = 1) -> float | None:
        if self.labels is None:
            return None
        k = min(k, self.logits.shape[-1])
        top = self.logits.topk(k, dim=-1).indices
        return float((top == self.labels[:, None]).any(dim=-1).float().mean())

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for i, name in enumerate(self.names):
            row = {"image": name, "prediction": int(self.predictions[i]), "max_logit": float(self.logits[i].max())}
            if self.labels is not None:
                row["label"] = int(self.labels[i])
            rows.append(row)
        summary = {"images": len(self.names), "runtime": self.runtime}
        if self.labels is not None:
            summary.update(top1=self.accuracy(1), top5=self.accuracy(5))
        return {"summary": summary, "images": rows, "class_names": list(self.class_names)}


def _onnx_session(path: Path, loaded: LoadedModel):
    import onnxruntime

    from neurodeploy.formats.onnx_backbone import read_metadata

    if not path.is_file():
        raise ImageClassificationError(f"{path}: no such ONNX file; export the model first")
    saved = read_metadata(path).get("neurodeploy.model_config")
    if saved is None or json.loads(saved) != json.loads(loaded.config.to_json()):
        raise ImageClassificationError(f"{path}: the graph was not exported from this checkpoint and config "
                                       "(neurodeploy.model_config differs); re-export it")
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def classify_batch(loaded: LoadedModel, batch: ImageBatch, *, runtime: Runtime = "torch", onnx_path: str | Path | None = None,
                   batch_size: int = 16) -> ImageResults:
    if runtime not in ("torch", "onnx"):
        raise ImageClassificationError(f"runtime {runtime!r}; expected 'torch' or 'onnx'")
    if batch_size < 1:
        raise ImageClassificationError(f"batch size {batch_size}; expected >= 1")
    session = None
    if runtime == "onnx":
        if onnx_path is None:
            raise ImageClassificationError("runtime 'onnx' needs the exported graph (`--onnx FILE.onnx`)")
        session = _onnx_session(Path(onnx_path), loaded)
    out = []
    for part in batches(batch.images.shape[0], batch_size):
        chunk = batch.images[part]
        if session is None:
            with torch.inference_mode():
                out.append(loaded.model(chunk).float())
        else:
            (logits,) = session.run(["logits"], {"images": np.ascontiguousarray(chunk.numpy())})
            out.append(torch.from_numpy(logits))
    logits = torch.cat(out)
    if batch.labels is not None and int(batch.labels.max()) >= logits.shape[-1]:
        raise ImageClassificationError(f"label {int(batch.labels.max())} but the model has {logits.shape[-1]} classes")
    return ImageResults(batch.names, logits, batch.labels, runtime, batch.class_names)


def classify_images(loaded: LoadedModel, source: str | Path, *, runtime: Runtime = "torch",
                    onnx_path: str | Path | None = None, labels: str | Path | None = None, batch_size: int = 16,
                    crop_ratio: float = 0.875) -> ImageResults:
    """Read `source` (image folder or `.npy`) for `loaded`'s image size and classify it."""
    config = loaded.config
    if not hasattr(config, "img_size"):
        raise ImageClassificationError(f"{loaded.family.name} is not an image classifier; give it events, not images")
    prep = Preprocess(size=config.img_size, channels=config.in_chans, crop_ratio=crop_ratio)
    return classify_batch(loaded, read_images(source, prep, labels=labels), runtime=runtime, onnx_path=onnx_path,
                          batch_size=batch_size)
