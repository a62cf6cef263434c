"""Fashion-MNIST as Debian's dataset-fashion-mnist package installs it (idx files, gzipped)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32, 0x0E: np.float64}


def read_idx(path: str | Path) -> np.ndarray:
    """An idx array (the MNIST file format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    dtype = np.dtype(_IDX_DTYPES[data[2]]).newbyteorder(">")
    return np.frombuffer(data, dtype=dtype, offset=4 + 4 * dims).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(split: str = "train", root: str | Path = FASHION_MNIST_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) of the 'train' or 'test' split."""
    prefix = {"train": "train", "test": "t10k"}[split]
    root = Path(root)
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.exists():
        raise FileNotFoundError(
            f"Fashion-MNIST not found at {root}; install Debian's dataset-fashion-mnist or pass root="
        )
    images = read_idx(images_path)
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels
