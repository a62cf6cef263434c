"""Perceptual hashes (pHash, dHash, wHash, aHash) bit-for-bit equal to imagededup's.

imagededup hashes one image at a time: it resizes the RGB image with Pillow's
LANCZOS filter straight to the hash's target size, converts the thumbnail to 'L',
then thresholds a transform of it.  We keep exactly that per-image Pillow step
(reproducing it in NumPy would only risk the bits) and vectorize everything after
it over a batch: one DCT call for all pHash thumbnails, one Haar low-pass for all
wHash thumbnails, one median per row.

A hash is 64 bits whose big-endian bytes are imagededup's hex string, so
`hash_to_hex(h)` is what `imagededup.methods.PHash().encode_image(...)` returns for
the same decoded RGB image.  Batches are uint64 arrays; in `record.signatures` the
same 64 bits are stored as a signed int64 Python int, because pyarrow cannot infer a
column from Python ints at or above 2**63 (half of all hashes) and every Parquet
reader handles int64; `columns.hashes_from_column` views them back as uint64.

Images with alpha are hashed from `decode.flatten_alpha` (composited on white); imagededup's file loader instead
drops the alpha channel, which exposes whatever colour hides under transparent
pixels, so for transparent images our hash equals imagededup's hash of the
flattened image, not of the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.fftpack import dct

from dedupkit.decode import flatten_alpha
from dedupkit.records import Record
from dedupkit.signatures.batching import map_alive_in_batches

HASH_KINDS = ("phash", "dhash", "whash", "ahash")

# (width, height) handed to Image.resize, as imagededup's `target_size`.
_THUMBNAIL_SIZE = {"phash": (32, 32), "dhash": (9, 8), "whash": (256, 256), "ahash": (8, 8)}

FLIP_SUFFIX = "_flip"


def _phash_bits(gray: np.ndarray) -> np.ndarray:
    # scipy.fftpack.dct over axis 1 then 2 computes each 1-D transform exactly as
    # imagededup's per-image dct(dct(a, axis=0), axis=1) does, so no bit can move.
    coefficients = dct(dct(gray.astype(np.float64), axis=1), axis=2)[:, :8, :8]
    flat = coefficients.reshape(len(gray), 64)
    median = np.median(flat[:, 1:], axis=1)  # the DC term is left out, as imagededup does
    return flat >= median[:, None]


def _dhash_bits(gray: np.ndarray) -> np.ndarray:
    return (gray[:, :, 1:] > gray[:, :, :-1]).reshape(len(gray), 64)


# pywt's Haar analysis low-pass filter, both taps 1/sqrt(2) as pywt rounds it.
_HAAR_TAP = 0.7071067811865476
_HAAR_CHUNK = 4


def haar_low_pass(gray: np.ndarray, levels: int = 5) -> np.ndarray:
    """`pywt.wavedec2(gray / 255, "haar", level=levels, axes=(1, 2))[0]`, equal to the last bit.

    pywt filters each line in C as tap * odd + tap * even, rows first, then columns,
    level after level; the same float operations in that order give the same values
    (tests/test_hashes.py compares them), in an eighth of pywt's time: pywt also
    computes the detail bands the hash throws away, and a few thumbnails at a time
    (0.5 MB each in float64) stay in cache where a whole batch would not.
    """
    parts = []
    for start in range(0, len(gray), _HAAR_CHUNK):
        low = gray[start : start + _HAAR_CHUNK] / 255
        for _ in range(levels):
            low = _HAAR_TAP * low[:, 0::2, :] + _HAAR_TAP * low[:, 1::2, :]
            low = _HAAR_TAP * low[:, :, 0::2] + _HAAR_TAP * low[:, :, 1::2]
        parts.append(low)
    return np.concatenate(parts) if parts else np.empty((0, *(side >> levels for side in gray.shape[1:])))


def _whash_bits(gray: np.ndarray) -> np.ndarray:
    flat = haar_low_pass(gray).reshape(len(gray), 64)
    return flat >= np.median(flat, axis=1)[:, None]


def _ahash_bits(gray: np.ndarray) -> np.ndarray:
    # pixel >= mean  <=>  64 * pixel >= sum, in exact integers (the mean of 64
    # uint8 values is exact in float64 too, so this is imagededup's comparison).
    flat = gray.reshape(len(gray), 64).astype(np.int64)
    return flat * 64 >= flat.sum(axis=1, keepdims=True)


_BITS = {"phash": _phash_bits, "dhash": _dhash_bits, "whash": _whash_bits, "ahash": _ahash_bits}


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(n, 64) booleans, most significant bit first -> (n,) uint64 (imagededup's bit order)."""
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def hash_to_hex(value: int | np.integer) -> str:
    """The 16-character hex string imagededup uses for a hash."""
    return f"{int(value) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def hex_to_hash(text: str) -> int:
    return int(text, 16)


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(kinds)
    unknown = [kind for kind in kinds if kind not in _BITS]
    if unknown or not kinds:
        raise ValueError(f"unknown hash kind(s) {unknown or kinds}: choose from {', '.join(HASH_KINDS)}")
    return kinds


def gray_thumbnail(image: Image.Image, kind: str) -> np.ndarray:
    """imagededup's preprocessing of an RGB image: LANCZOS resize, then Pillow's 'L'."""
    thumbnail = image.resize(_THUMBNAIL_SIZE[kind], Image.LANCZOS).convert("L")
    return np.asarray(thumbnail, dtype=np.uint8)


def _rgb(image: Image.Image) -> Image.Image:
    image = flatten_alpha(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def hash_images(
    images: Sequence[Image.Image], kinds: Iterable[str] = ("phash",), flip: bool = False
) -> dict[str, np.ndarray]:
    """Hashes of a batch of decoded images: {kind: (n,) uint64}, plus {kind_flip: ...} if `flip`.

    The flipped hash is the hash of the horizontally mirrored thumbnail, which is
    what a mirrored copy of the image hashes to (Pillow's resampling is mirror
    symmetric on every real image we tested; tests/test_hashes.py checks it).
    """
    kinds = _check_kinds(kinds)
    thumbnails = {
        kind: np.empty((len(images), _THUMBNAIL_SIZE[kind][1], _THUMBNAIL_SIZE[kind][0]), dtype=np.uint8)
        for kind in kinds
    }
    for index, image in enumerate(images):
        rgb = _rgb(image)
        for kind in kinds:
            thumbnails[kind][index] = gray_thumbnail(rgb, kind)
    result: dict[str, np.ndarray] = {}
    for kind, gray in thumbnails.items():
        result[kind] = pack_bits(_BITS[kind](gray))
        if flip:
            result[kind + FLIP_SUFFIX] = pack_bits(_BITS[kind](np.ascontiguousarray(gray[:, :, ::-1])))
    return result


@dataclass
class HashStage:
    """Stage: perceptual hashes of every alive record (64 bits stored as a signed int64 int).

    Adds `record.signatures[kind]` for each kind, and `record.signatures[kind + "_flip"]`
    (the hash of the mirrored image) when `flip` is set.
    """

    kinds: tuple[str, ...] = ("phash",)
    flip: bool = False
    batch_size: int = 256

    def __post_init__(self) -> None:
        self.kinds = _check_kinds(self.kinds)

    @property
    def signature_names(self) -> tuple[str, ...]:
        names = list(self.kinds)
        if self.flip:
            names += [kind + FLIP_SUFFIX for kind in self.kinds]
        return tuple(names)

    def _hash_batch(self, records: list[Record]) -> None:
        hashes = hash_images([record.image for record in records], self.kinds, self.flip)
        for name, values in hashes.items():
            for record, value in zip(records, values.view(np.int64).tolist()):
                record.signatures[name] = value

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        yield from map_alive_in_batches(records, self._hash_batch, self.batch_size)
