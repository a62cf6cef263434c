"""Real images that packages install, and the built-in sample dataset made from them.

Sources (all installed, never downloaded): scikit-image's bundled photos, Debian's
`opencv-doc` example photos and `openclipart-png` drawings.  The sample dataset plants
exact duplicates (byte copies, the same pixels in another format), near duplicates
(resized, recompressed, cropped, mirrored) and every kind of bad input the pipeline
must survive, so a first run shows what dedupkit does.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from dedupkit.decode import flatten_alpha

OPENCV_PHOTOS = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCLIPART = Path("/usr/share/openclipart/png")


def skimage_photos() -> list[Path]:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    wanted = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "horse.png",
              "hubble_deep_field.jpg", "ihc.png", "moon.png", "page.png", "retina.jpg", "rocket.jpg",
              "text.png", "brick.png", "grass.png", "gravel.png", "cell.png", "motorcycle_left.png",
              "color.png", "logo.png", "clock_motion.png", "microaneurysms.png")
    return [folder / name for name in wanted if (folder / name).exists()]


def opencv_photos() -> list[Path]:
    if not OPENCV_PHOTOS.is_dir():
        return []
    return sorted(p for p in OPENCV_PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".png"))


def openclipart_drawings(limit: int | None = None) -> list[Path]:
    if not OPENCLIPART.is_dir():
        return []
    drawings = sorted(OPENCLIPART.rglob("*.png"))
    return drawings[:limit] if limit else drawings


def real_images(limit: int | None = None, min_side: int = 64) -> list[Path]:
    """Distinct real pictures, photos first, in a fixed order.

    openclipart files the same drawing under several categories: byte-identical files
    are listed once, so callers can plant their own duplicates and know them all.
    """
    found = []
    seen = set()
    for path in skimage_photos() + opencv_photos() + openclipart_drawings():
        digest = hashlib.sha256(path.read_bytes()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        try:
            with Image.open(path) as image:
                if min(image.size) < min_side:
                    continue
        except Exception:
            continue
        found.append(path)
        if limit and len(found) >= limit:
            break
    return found


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P"):
            return flatten_alpha(image.convert("RGBA"))
        return image.convert("RGB")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- bad input


def bad_inputs(base: Image.Image) -> dict[str, tuple[bytes, str | None]]:
    """Each hostile or unusual input: file name -> (bytes, expected skip reason prefix or None if valid)."""
    jpeg = encode(base, "JPEG", quality=90)
    png = encode(base, "PNG")
    small = base.resize((48, 36))
    cmyk = encode(base.convert("CMYK"), "JPEG", quality=90)
    sixteen = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    alpha = base.convert("RGBA")
    alpha.putalpha(Image.linear_gradient("L").resize(base.size))
    frames = [small.rotate(angle) for angle in (0, 30, 60)]
    animated = io.BytesIO()
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    rotated = base.rotate(-90, expand=True)  # stored sideways; EXIF orientation 8 turns it back
    exif = Image.Exif()
    exif[0x0112] = 8
    return {
        "empty.jpg": (b"", "empty file"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated image"),
        "corrupt.png": (png[:60] + bytes(range(256)) * 8, "corrupt"),
        "notes.txt.jpg": (b"this is a text file, not a picture\n" * 20, "not an image"),
        "readme.md": (b"# not an image\n", "not an image"),
        "bomb.png": (_png_header_only(100_000, 100_000), "decompression bomb"),
        "speck.png": (encode(base.resize((3, 2)), "PNG"), "too small"),
        "cmyk.jpg": (cmyk, None),
        "sixteen_bit.png": (encode(sixteen, "PNG"), None),
        "palette.png": (encode(palette, "PNG"), None),
        "alpha.png": (encode(alpha, "PNG"), None),
        "animated.gif": (animated.getvalue(), None),
        "exif_rotated.jpg": (encode(rotated, "JPEG", quality=92, exif=exif), None),
    }


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares a huge size: decoding it would need gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- sample dataset


def near_duplicate_variants(image: Image.Image) -> dict[str, Image.Image]:
    width, height = image.size
    return {
        "resized": image.resize((max(width * 3 // 4, 16), max(height * 3 // 4, 16)), Image.Resampling.LANCZOS),
        "cropped": image.crop((width // 20, height // 20, width - width // 20, height - height // 20)),
        "mirrored": ImageOps.mirror(image),
    }


def build_sample_dataset(destination: str | Path, originals: int = 60) -> dict:
    """Write the demo dataset into DESTINATION; returns what was planted (also saved as planted.json)."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    paths = real_images(originals)
    if len(paths) < 10:
        raise RuntimeError("too few real images installed: install scikit-image, or Debian's opencv-doc / openclipart-png")
    planted = {"originals": [], "exact": [], "near": [], "bad": {}}
    for index, path in enumerate(paths):
        image = load_rgb(path)
        if max(image.size) > 1024:
            image.thumbnail((1024, 1024), Image.Resampling.LANCZOS)
        name = f"images/{index:03d}_{path.stem}.jpg"
        data = encode(image, "JPEG", quality=92)
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        (destination / name).write_bytes(data)
        (destination / name).with_suffix(".txt").write_text(f"{path.stem.replace('_', ' ')}, from {path.parent.name}")
        planted["originals"].append(name)
        if index % 6 == 0:
            copy = f"reposts/{index:03d}_{path.stem}_copy.jpg"
            (destination / copy).parent.mkdir(parents=True, exist_ok=True)
            (destination / copy).write_bytes(data)
            planted["exact"].append({"copy": copy, "of": name, "how": "same bytes"})
        if index % 6 == 1:
            lossless = f"images/{index:03d}_{path.stem}_lossless.png"
            again = f"reposts/{index:03d}_{path.stem}_lossless.bmp"
            decoded = Image.open(io.BytesIO(data)).convert("RGB")
            (destination / lossless).write_bytes(encode(decoded, "PNG"))
            (destination / again).parent.mkdir(parents=True, exist_ok=True)
            (destination / again).write_bytes(encode(decoded, "BMP"))
            planted["originals"].append(lossless)
            planted["exact"].append({"copy": again, "of": lossless, "how": "same pixels as BMP"})
        if index % 6 == 2:
            for how, variant in near_duplicate_variants(image).items():
                near = f"reposts/{index:03d}_{path.stem}_{how}.jpg"
                (destination / near).parent.mkdir(parents=True, exist_ok=True)
                (destination / near).write_bytes(encode(variant, "JPEG", quality=85))
                planted["near"].append({"copy": near, "of": name, "how": how})
    base = load_rgb(paths[0])
    base.thumbnail((320, 320))
    for name, (data, reason) in bad_inputs(base).items():
        (destination / "odd" / name).parent.mkdir(parents=True, exist_ok=True)
        (destination / "odd" / name).write_bytes(data)
        planted["bad"][f"odd/{name}"] = reason
    (destination.parent / f"{destination.name}.planted.json").write_text(json.dumps(planted, indent=2))
    return planted
