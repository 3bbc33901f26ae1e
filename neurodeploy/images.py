"""Reading images for the image-classifier families: a folder of image files or a `.npy` batch.

Sources:
- a folder of image files (anything Pillow decodes), read in sorted order, unlabelled; or a
  folder of class folders (`root/<class>/<image>`, torchvision's ImageFolder layout): labels
  are the class folders' indices in sorted order;
- a `.npy` batch: float32 `(N, C, H, W)` is taken as already preprocessed model input (its
  size must be the model's); uint8 `(N, H, W, C)` or `(N, C, H, W)` is raw pixels and goes
  through the same preprocessing as image files; a single image without the batch axis is a
  batch of one. Labels of a `.npy` batch come from an integer `.npy` of length N.

Preprocessing is timm's / Vim's evaluation transform: resize the shorter side to
`int(size / crop_ratio)` (bicubic), centre-crop `size`, scale to [0, 1], normalise with the
ImageNet mean and std. Decisions: Pillow does the decoding and resizing (the library made for
it; torchvision is not installed in this project); nothing is padded, clipped or guessed: a
file that does not decode, a wrong size or channel count is an error naming the file and the
way out.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from neurodeploy.errors import NeurodeployError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageInputError(NeurodeployError, ValueError):
    """Images that cannot be read as model input; the message names the file and the way out."""


@dataclass(frozen=True)
class Preprocess:
    """The evaluation transform: resize shorter side to size/crop_ratio, centre crop, normalise."""

    size: int
    channels: int = 3
    crop_ratio: float = 0.875
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not 0 < self.crop_ratio <= 1:
            raise ImageInputError(f"crop_ratio {self.crop_ratio}; expected 0 < crop_ratio <= 1 (Vim evaluates at 0.875)")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ImageInputError(f"mean/std of {len(self.mean)}/{len(self.std)} values for {self.channels} channels")

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (C, H, W) -> float32 normalised."""
        scaled = pixels.astype(np.float32) / 255.0
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return (scaled - mean) / std


@dataclass(frozen=True)
class ImageBatch:
    images: torch.Tensor  # (N, C, H, W) float32, model input
    names: tuple[str, ...]  # file names, or "<file>[i]" for a .npy batch
    labels: torch.Tensor | None = None  # (N,) int64 when the source carries labels
    class_names: tuple[str, ...] = ()  # ImageFolder class folders, in label order


def _decode(path: Path, prep: Preprocess) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    mode = {1: "L", 3: "RGB"}.get(prep.channels)
    if mode is None:
        raise ImageInputError(f"{path}: image files give 1 or 3 channels, the model takes {prep.channels}; pass a .npy batch")
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            short = int(prep.size / prep.crop_ratio)
            w, h = image.size
            scale = short / min(w, h)
            image = image.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.Resampling.BICUBIC)
            w, h = image.size
            left, top = (w - prep.size) // 2, (h - prep.size) // 2
            image = image.crop((left, top, left + prep.size, top + prep.size))
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ImageInputError(f"{path}: not a readable image ({err}); remove it or convert it to PNG/JPEG") from None
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return prep.normalise(pixels)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_folder(folder: Path, prep: Preprocess) -> ImageBatch:
    files = _image_files(folder)
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if files and class_dirs:
        raise ImageInputError(f"{folder}: holds both image files and folders; use either a flat folder of images or "
                              "one folder per class (root/<class>/<image>)")
    labels: list[int] | None = None
    if class_dirs:
        files, labels = [], []
        for index, class_dir in enumerate(class_dirs):
            found = _image_files(class_dir)
            files += found
            labels += [index] * len(found)
    if not files:
        raise ImageInputError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...) found")
    images = np.stack([_decode(path, prep) for path in files])
    return ImageBatch(
        images=torch.from_numpy(images),
        names=tuple(str(p.relative_to(folder)) for p in files),
        labels=None if labels is None else torch.tensor(labels, dtype=torch.int64),
        class_names=tuple(d.name for d in class_dirs),
    )


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ImageInputError(f"{path}: not a readable .npy array ({err}); save it with numpy.save (no pickled objects)") from None


def read_npy_batch(path: Path, prep: Preprocess) -> ImageBatch:
    array = _read_npy(path)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[0] == 0:
        raise ImageInputError(f"{path}: array of shape {array.shape}; expected a batch (N, C, H, W) or (N, H, W, C)")
    size, chans = prep.size, prep.channels
    if array.dtype == np.uint8:
        if array.shape[-1] == chans and array.shape[1] != chans:
            array = array.transpose(0, 3, 1, 2)
        if array.shape[1:] != (chans, size, size):
            raise ImageInputError(f"{path}: uint8 pixels of shape {array.shape}; the model takes {chans}x{size}x{size} "
                                  "images. Resize them first, or pass a folder of image files (resized and cropped here)")
        images = np.stack([prep.normalise(a) for a in array])
    elif np.issubdtype(array.dtype, np.floating):
        if array.shape[1:] != (chans, size, size):
            raise ImageInputError(f"{path}: float array of shape {array.shape}; a float .npy is taken as preprocessed "
                                  f"model input and must be (N, {chans}, {size}, {size})")
        images = array.astype(np.float32)
        if not np.isfinite(images).all():
            raise ImageInputError(f"{path}: holds NaN or inf values")
    else:
        raise ImageInputError(f"{path}: dtype {array.dtype}; expected uint8 pixels or float32 model input")
    names = tuple(f"{path.name}[{i}]" for i in range(images.shape[0]))
    return ImageBatch(torch.from_numpy(np.ascontiguousarray(images)), names)


def read_labels(path: str | Path, count: int) -> torch.Tensor:
    path = Path(path)
    labels = _read_npy(path)
    if labels.ndim != 1 or labels.shape[0] != count or not np.issubdtype(labels.dtype, np.integer):
        raise ImageInputError(f"{path}: labels of shape {labels.shape} and dtype {labels.dtype}; expected {count} integers")
    return torch.from_numpy(labels.astype(np.int64))


def read_images(source: str | Path, prep: Preprocess, *, labels: str | Path | None = None) -> ImageBatch:
    """Images from a folder or a `.npy` batch, preprocessed for a model of `prep.size` pixels."""
    source = Path(source)
    if source.is_dir():
        batch = read_image_folder(source, prep)
    elif source.is_file() and source.suffix == ".npy":
        batch = read_npy_batch(source, prep)
    elif source.is_file():
        raise ImageInputError(f"{source}: expected a folder of images or a .npy batch")
    else:
        raise ImageInputError(f"{source}: no such file or folder")
    if labels is not None:
        batch = ImageBatch(batch.images, batch.names, read_labels(labels, batch.images.shape[0]), batch.class_names)
    return batch


def batches(count: int, size: int) -> Sequence[slice]:
    return [slice(i, min(i + size, count)) for i in range(0, count, size)]
