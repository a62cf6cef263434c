"""Bring training sets, held-out images and generations to one resolution, as uint8 arrays.

Every image set the verifier handles is an `ImageSet`: uint8 pixels (N, C, H, W) at the
model resolution plus a key per image, so that a replicated generation can be traced
to the training record it copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from dedupkit.decode import DecodeError, DecodeLimits, flatten_alpha, open_image
from dedupkit.records import IMAGE_EXTENSIONS

# Generations of small models and thumbnails are legitimately tiny.
_ANY_SIZE = DecodeLimits(min_side=1)


@dataclass
class ImageSet:
    pixels: np.ndarray
    """uint8 (N, C, H, W), C = 1 (grayscale) or 3."""
    keys: list[str]
    labels: np.ndarray | None = None
    """Optional class labels (int64, N) for a class-conditional model."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(key, reason) of inputs that could not be decoded."""

    def __post_init__(self):
        if len(self.keys) != len(self.pixels):
            raise ValueError(f"{len(self.keys)} keys for {len(self.pixels)} images")

    def __len__(self) -> int:
        return len(self.pixels)

    @property
    def resolution(self) -> int:
        return int(self.pixels.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[1])

    def as_pil(self, index: int) -> Image.Image:
        return array_to_pil(self.pixels[index])

    def subset(self, indices) -> "ImageSet":
        indices = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            pixels=self.pixels[indices],
            keys=[self.keys[i] for i in indices],
            labels=None if self.labels is None else self.labels[indices],
        )


def array_to_pil(chw: np.ndarray) -> Image.Image:
    """One uint8 (C, H, W) image as a PIL image (L or RGB)."""
    if chw.shape[0] == 1:
        return Image.fromarray(chw[0], "L")
    return Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0)), "RGB")


def fit_image(image: Image.Image, resolution: int, grayscale: bool) -> np.ndarray:
    """Center-crop to a square, resize with antialiasing, return uint8 (C, H, W)."""
    image = flatten_alpha(image) if image.mode == "RGBA" else image
    image = image.convert("L" if grayscale else "RGB")
    width, height = image.size
    side = min(width, height)
    if width != height:
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if grayscale else array.transpose(2, 0, 1)


def list_image_files(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, in a stable (sorted relative path) order."""
    suffixes = {f".{ext}" for ext in IMAGE_EXTENSIONS}
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in suffixes)


def load_images(source, resolution: int, grayscale: bool = False, labels=None) -> ImageSet:
    """Load `source` at `resolution`.

    `source` is an image folder (searched recursively), an `ImageSet`, a uint8 array
    (N, H, W) / (N, H, W, C) / (N, C, H, W), or an iterable of PIL images, of
    (key, PIL image) pairs, or of dedupkit Records (alive ones with pixels or bytes).
    """
    if isinstance(source, ImageSet):
        if source.resolution == resolution and source.channels == (1 if grayscale else 3):
            return source
        pil_images = ((key, source.as_pil(i)) for i, key in enumerate(source.keys))
        loaded = _from_pairs(pil_images, resolution, grayscale)
        loaded.labels = source.labels
        return loaded
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder of images; pass a directory that contains image files")
        loaded = _from_pairs(_decode_files(folder), resolution, grayscale)
    elif isinstance(source, np.ndarray):
        loaded = _from_array(source, resolution, grayscale)
    else:
        loaded = _from_pairs(_as_pairs(source), resolution, grayscale)
    if len(loaded) == 0:
        raise ValueError(f"no usable images in {source!r}")
    if labels is not None:
        loaded.labels = np.asarray(labels, dtype=np.int64)
        if len(loaded.labels) != len(loaded):
            raise ValueError(f"{len(loaded.labels)} labels for {len(loaded)} images")
    return loaded


def _decode_files(folder: Path):
    for path in list_image_files(folder):
        key = path.relative_to(folder).as_posix()
        try:
            image, _ = open_image(path.read_bytes(), _ANY_SIZE)
        except DecodeError as exc:
            yield key, str(exc)
            continue
        yield key, image


def _as_pairs(items: Iterable):
    for position, item in enumerate(items):
        if isinstance(item, Image.Image):
            yield str(position), item
        elif isinstance(item, tuple) and len(item) == 2:
            yield str(item[0]), item[1]
        elif hasattr(item, "alive") and hasattr(item, "key"):  # a dedupkit Record
            if not item.alive:
                continue
            if item.image is not None:
                yield item.key, item.image
            else:
                try:
                    yield item.key, open_image(item.data or b"", _ANY_SIZE)[0]
                except DecodeError as exc:
                    yield item.key, str(exc)
        else:
            raise TypeError(f"cannot read an image from {type(item).__name__}; pass PIL images, (key, image) or Records")


def _from_pairs(pairs, resolution: int, grayscale: bool) -> ImageSet:
    arrays, keys, skipped = [], [], []
    for key, image in pairs:
        if isinstance(image, str):
            skipped.append((key, image))
            continue
        arrays.append(fit_image(image, resolution, grayscale))
        keys.append(key)
    channels = 1 if grayscale else 3
    pixels = np.stack(arrays) if arrays else np.zeros((0, channels, resolution, resolution), np.uint8)
    return ImageSet(pixels=pixels, keys=keys, skipped=skipped)


def _from_array(array: np.ndarray, resolution: int, grayscale: bool) -> ImageSet:
    if array.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8 (0..255), got {array.dtype}")
    if array.ndim == 3:
        pil = (Image.fromarray(item, "L") for item in array)
    elif array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[-1] not in (1, 3):
        pil = (array_to_pil(item) for item in array)
    elif array.ndim == 4:
        pil = (Image.fromarray(item[..., 0], "L") if item.shape[-1] == 1 else Image.fromarray(item) for item in array)
    else:
        raise ValueError(f"expected images shaped (N, H, W[, C]) or (N, C, H, W), got {array.shape}")
    return _from_pairs(((str(i), image) for i, image in enumerate(pil)), resolution, grayscale)
