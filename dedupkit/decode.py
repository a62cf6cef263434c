"""Decode image bytes once, safely, into the canonical pixels every stage works on.

Canonical pixels: RGB, or RGBA when the image has any transparency; 8 bits per
channel; EXIF orientation applied; the first frame of an animation.  Everything a
user's data can throw at us (empty, truncated, corrupt, non-image, decompression
bombs, specks of a few pixels) becomes a one-line skip reason instead of an
exception.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import xxhash
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from dedupkit.records import Record

# Truncated files must fail, never decode to a half-grey picture that hashes as a real one.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Stored formats (Pillow's names) whose usual encoding discards detail: at the same size, a PNG or
# BMP of a picture is at least as good as its JPEG, so the `largest` keep policy prefers it.  GIF
# holds 256 colours; WebP and JPEG 2000 may be lossless, but mostly are not.
LOSSY_FORMATS = frozenset({"JPEG", "MPO", "WEBP", "GIF", "JPEG2000"})


@dataclass(frozen=True)
class DecodeLimits:
    min_side: int = 16
    """Images whose shorter side is below this are skipped as too small."""
    max_pixels: int = 128_000_000
    """Declared width x height above this is treated as a decompression bomb."""


class DecodeError(ValueError):
    """A user's record that cannot become pixels; the message is the skip reason."""


@dataclass(frozen=True)
class Decoded:
    image: Image.Image
    """Canonical pixels; smaller than `size` when a JPEG was decoded in draft mode."""
    format: str
    """The stored format as Pillow names it (JPEG, PNG, ...)."""
    size: tuple[int, int]
    """Width and height the file declares, EXIF orientation applied: the picture's real size."""


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits(), draft_side: int | None = None) -> Decoded:
    """Open, validate and decode `data` into canonical pixels.

    `draft_side`: a JPEG may be decoded at a reduced scale (1/2, 1/4 or 1/8, keeping
    both sides >= draft_side), several times faster than a full decode, for callers
    that only need a thumbnail; the size checks and `Decoded.size` still describe the
    declared size.  Raises DecodeError with a one-line reason for anything unusable.
    """
    if not data:
        raise DecodeError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise DecodeError("not an image (no format Pillow can read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"decompression bomb: {exc}") from None
    except Exception as exc:  # malformed headers surface as many exception types
        raise DecodeError(f"corrupt image header: {_short(exc)}") from None

    width, height = image.size
    if width * height > limits.max_pixels:
        raise DecodeError(
            f"decompression bomb: header declares {width}x{height} "
            f"({width * height:,} pixels > limit {limits.max_pixels:,})"
        )
    if min(width, height) < limits.min_side:
        raise DecodeError(f"too small: {width}x{height} (shorter side < {limits.min_side} px)")

    stored_format = image.format or ""
    if draft_side and stored_format == "JPEG":
        image.draft(None, (draft_side, draft_side))
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
        drafted_size = image.size
        # In place: the default copies the whole image even when there is nothing to rotate.
        ImageOps.exif_transpose(image, in_place=True)
        turned = image.size != drafted_size
        return Decoded(to_canonical_mode(image), stored_format, (height, width) if turned else (width, height))
    except OSError as exc:
        text = str(exc)
        if "truncated" in text or "image file is truncated" in text or "broken data stream" in text:
            raise DecodeError(f"truncated image: {_short(exc)}") from None
        raise DecodeError(f"corrupt image data: {_short(exc)}") from None
    except Exception as exc:
        raise DecodeError(f"corrupt image data: {_short(exc)}") from None


def open_image(
    data: bytes, limits: DecodeLimits = DecodeLimits(), draft_side: int | None = None
) -> tuple[Image.Image, str]:
    """Canonical pixels and stored format of `data` (see decode_image)."""
    decoded = decode_image(data, limits, draft_side)
    return decoded.image, decoded.format


def to_canonical_mode(image: Image.Image) -> Image.Image:
    """RGB or RGBA, 8 bits per channel, whatever the stored mode was."""
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit and 32-bit greyscale: scale to 8 bits rather than clip at 255.
        array = np.asarray(image, dtype=np.uint32 if mode == "I" else np.uint16)
        peak = 65535 if mode != "I" else max(int(array.max()), 1)
        eight = (array.astype(np.float64) * (255.0 / peak)).round().astype(np.uint8)
        return Image.fromarray(eight, "L").convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
        return Image.fromarray((scaled * 255).round().astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette.mode == "RGBA"
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode in ("LA", "La", "PA", "RGBa"):
        return image.convert("RGBA")
    if mode == "L" and "transparency" in image.info:
        return image.convert("RGBA")
    # CMYK, YCbCr, LAB, HSV, 1, L: Pillow's conversions handle them (CMYK without ICC).
    return image.convert("RGB")


def pixel_digest(image: Image.Image) -> str:
    """Identity of the decoded picture: the same pixels as PNG or BMP give the same digest.

    RGBA whose alpha is fully opaque hashes as RGB, so dropping an unused alpha
    channel does not make a different image.

    xxHash's 128-bit XXH3, not a cryptographic hash: it only has to tell the pictures of one
    dataset apart (an accidental collision is ~2^-64 likely among 2^32 pictures), and it runs
    at memory speed where BLAKE2 took a sixth of the default hashing path's time per image.
    """
    if image.mode == "RGBA" and image.getchannel("A").getextrema()[0] == 255:
        image = image.convert("RGB")
    hasher = xxhash.xxh3_128()
    hasher.update(f"{image.mode} {image.size}".encode())
    hasher.update(image.tobytes())
    return hasher.hexdigest()


def flatten_alpha(image: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """RGB view of the image, transparent parts composited on white (for signatures)."""
    if image.mode != "RGBA":
        return image
    canvas = Image.new("RGB", image.size, background)
    canvas.paste(image, mask=image.getchannel("A"))
    return canvas


def decode_record(record: Record, limits: DecodeLimits = DecodeLimits(), draft_side: int | None = None) -> Record:
    """Fill record.image, width, height (the declared size) and image_format, or mark the record skipped."""
    if not record.alive or record.image is not None:
        return record
    try:
        decoded = decode_image(record.data or b"", limits, draft_side)
    except DecodeError as exc:
        return record.skip(str(exc))
    record.image = decoded.image
    record.image_format = decoded.format
    record.width, record.height = decoded.size
    return record


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
