"""Write marked pixels once, in a format and quality the mark survives.

PNG, BMP, TIFF and WebP stay lossless (WebP in its lossless mode); JPEG stays JPEG at
high quality with chroma subsampling off; GIF (a 256-colour palette would destroy
the mark) and anything else become PNG.  Alpha is carried through untouched.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

JPEG_QUALITY = 95

# Pillow format name -> (format to write, extension, save options)
_LOSSLESS = {
    "PNG": ("PNG", "png", {"compress_level": 6}),
    "BMP": ("BMP", "bmp", {}),
    "TIFF": ("TIFF", "tiff", {"compression": "tiff_deflate"}),
    "WEBP": ("WEBP", "webp", {"lossless": True, "quality": 80, "method": 4}),
}
_FALLBACK = _LOSSLESS["PNG"]


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    ext: str
    format: str


def target_format(source_format: str | None, has_alpha: bool) -> tuple[str, str, dict]:
    """(Pillow format, extension, save options) to write a marked image that was `source_format`."""
    name = (source_format or "").upper()
    if name in ("JPEG", "MPO"):
        if has_alpha:
            return _FALLBACK
        return "JPEG", "jpg", {"quality": JPEG_QUALITY, "subsampling": 0, "optimize": True}
    return _LOSSLESS.get(name, _FALLBACK)


def encode_marked(rgb: np.ndarray, alpha: np.ndarray | None, source_format: str | None,
                  lossless: bool = False) -> EncodedImage:
    """Bytes of the marked pixels (uint8 HxWx3, optional HxW alpha), encoded exactly once."""
    pixels = np.dstack([rgb, alpha]) if alpha is not None else rgb
    image = Image.fromarray(pixels, "RGBA" if alpha is not None else "RGB")
    fmt, ext, options = _FALLBACK if lossless else target_format(source_format, alpha is not None)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return EncodedImage(buffer.getvalue(), ext, fmt)


def decode_rgb(data: bytes) -> np.ndarray:
    """RGB pixels of written bytes (alpha dropped: the mark lives in RGB)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))
