"""Real source images and synthetic visible marks drawn on them.

The visible-mark classifier is trained, and measured, on real pictures that are
installed on the machine (photos from opencv-doc and scikit-image, public-domain
openclipart drawings, Fashion-MNIST) with marks drawn on the fly: text in many
fonts, openclipart logos, tiled semi-transparent patterns, corner credits and
banners, at many sizes, opacities, positions and colours.

Sources are split by a hash of their identity (near-duplicate families of
opencv-doc photos hash together), so a benchmark can draw marks on
images that training never saw (`split="holdout"`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
OPENCLIPART = Path("/usr/share/openclipart/png")
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

HOLDOUT_FRACTION = 0.25
"""Share of every source kind kept away from training, chosen by hash of the source id."""

# Symbol-only and display-size fonts draw no letters; they would teach nothing.
_FONT_NAME_SKIP = ("cmex", "cmsy", "cmmi", "stixsiz", "stixnonuni", "lastresort", "mathjax", "display",
                   "dingbat", "symbol", "d050000l")

_AGENCIES = ("Shutterstock", "Getty Images", "iStock", "Alamy", "Adobe Stock", "Dreamstime",
             "123RF", "Depositphotos", "Pond5", "Fotolia", "Bigstock", "Can Stock Photo")
_NAMES = ("Maria Lopez", "J. Smith", "Anna Kowalska", "Tom Becker", "Li Wei", "Sara Nilsson",
          "Pixel Studio", "Bright Lens", "NORDIC FOTO", "Kim Photography", "A. Rossi", "Studio 54")
_WORDS = ("SAMPLE", "PREVIEW", "PROOF", "COPYRIGHT", "WATERMARK", "DO NOT COPY", "COMP",
          "draft", "licensed", "photo")
_DOMAINS = ("www.pixelstudio.com", "brightlens.net", "kimphoto.co", "nordicfoto.se", "fotos-rossi.it")


def is_holdout(source_id: str) -> bool:
    digest = hashlib.blake2b(source_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < HOLDOUT_FRACTION


def _in_split(source_id: str, split: str) -> bool:
    if split == "all":
        return True
    return is_holdout(source_id) == (split == "holdout")


@lru_cache(maxsize=None)
def font_paths() -> tuple[str, ...]:
    """Every usable TrueType/OpenType font on the machine, plus matplotlib's bundled ones."""
    found: set[str] = set()
    if shutil.which("fc-list"):
        try:
            listing = subprocess.run(["fc-list", ":", "file"], capture_output=True, text=True, timeout=30)
            found.update(line.split(":")[0].strip() for line in listing.stdout.splitlines())
        except (OSError, subprocess.SubprocessError):
            pass
    for root in (Path("/usr/share/fonts"), Path.home() / ".fonts"):
        if root.is_dir():
            found.update(str(p) for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    try:
        import matplotlib

        bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        found.update(str(p) for p in bundled.glob("*.ttf"))
    except ImportError:
        pass
    usable = sorted(
        p for p in found
        if p.lower().endswith((".ttf", ".otf")) and not any(s in Path(p).name.lower() for s in _FONT_NAME_SKIP)
        and _draws_latin(p)
    )
    if not usable:
        raise RuntimeError("no TrueType fonts found: install fonts-dejavu-core or matplotlib")
    return tuple(usable)


def _draws_latin(font_path: str) -> bool:
    """False for fonts that lack Latin letters (they draw the same missing-glyph box for all)."""
    try:
        font = ImageFont.truetype(font_path, 24)
        masks = {bytes(font.getmask(letter)) for letter in "aRx"}
    except OSError:
        return False
    return len(masks) == 3


@lru_cache(maxsize=None)
def font_split(split: str) -> tuple[str, ...]:
    """Fonts for a split; held-out fonts are used only by the benchmark."""
    fonts = tuple(f for f in font_paths() if _in_split(Path(f).name, split))
    return fonts or font_paths()


# ---------------------------------------------------------------- real sources


@dataclass(frozen=True)
class SourceImage:
    source_id: str
    kind: str  # photo | drawing | fashion
    path: str | None = None
    index: int | None = None
    split_key: str | None = None
    """What decides the split when it is not the source id (a family of near-duplicates)."""


# Near-duplicate families among opencv-doc's photos (stereo pairs, viewpoint series)
# share a split, so the held-out set holds no near-copy of a training picture.
_OPENCV_FAMILIES = ("left", "right", "aloe", "graf", "pic", "basketball", "rubberwhale", "blender_suzanne",
                    "ela_", "imagetext", "leuven", "box", "opencv-logo", "aero")
_SKIMAGE_FILES = {"astronaut": "astronaut.png", "brick": "brick.png", "camera": "camera.png",
                  "chelsea": "chelsea.png", "coffee": "coffee.png", "coins": "coins.png", "grass": "grass.png",
                  "gravel": "gravel.png", "hubble_deep_field": "hubble_deep_field.jpg",
                  "immunohistochemistry": "ihc.png", "moon": "moon.png", "rocket": "rocket.jpg",
                  "retina": "retina.jpg", "motorcycle_left": "motorcycle_left.png"}


# Photos whose content is printed text, digits, grids or fine repeated texture: the clean
# pictures most easily mistaken for a mark, drawn more often as training negatives.
TEXT_AND_PATTERN_PHOTOS = ("opencv:text_", "opencv:imagetext", "opencv:notes", "opencv:licenseplate",
                            "opencv:sudoku", "opencv:digits", "opencv:chessboard", "opencv:board", "opencv:cards",
                            "opencv:windowslogo", "opencv:linuxlogo", "opencv:opencv-logo", "skimage:brick",
                            "skimage:grass", "skimage:gravel", "skimage:coins")


def _opencv_group(name: str) -> str:
    stem = Path(name).stem.lower()
    for family in _OPENCV_FAMILIES:
        if stem.startswith(family):
            return "stereo" if family in ("left", "right") else family
    return stem


@lru_cache(maxsize=None)
def _photo_sources() -> tuple[SourceImage, ...]:
    """opencv-doc photos and the scikit-image photos that ship inside the wheel (no fetching)."""
    found = []
    if OPENCV_DATA.is_dir():
        for path in sorted(OPENCV_DATA.iterdir()):
            if path.suffix.lower() in (".jpg", ".png"):
                found.append(SourceImage(f"opencv:{path.name}", "photo", str(path),
                                         split_key=f"opencv:{_opencv_group(path.name)}"))
    try:
        from skimage import data as skdata

        for name, filename in _SKIMAGE_FILES.items():
            path = Path(skdata.data_dir) / filename
            if path.exists():
                found.append(SourceImage(f"skimage:{name}", "photo", str(path)))
    except ImportError:
        pass
    return tuple(found)


@lru_cache(maxsize=None)
def _drawing_paths() -> tuple[str, ...]:
    if not OPENCLIPART.is_dir():
        return ()
    return tuple(sorted(str(p) for p in OPENCLIPART.rglob("*.png")))


@lru_cache(maxsize=None)
def _fashion_images() -> np.ndarray:
    path = FASHION_MNIST / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        return np.zeros((0, 28, 28), np.uint8)
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)


@lru_cache(maxsize=256)
def load_photo(source: SourceImage) -> Image.Image:
    with Image.open(source.path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


@lru_cache(maxsize=None)
def sources(kind: str, split: str) -> tuple[SourceImage, ...]:
    """Source images of one kind (photo, drawing, fashion) in a split (train, holdout, all)."""
    if kind == "photo":
        candidates = _photo_sources()
    elif kind == "drawing":
        candidates = tuple(SourceImage(f"clipart:{os.path.basename(p)}", "drawing", p) for p in _drawing_paths())
    elif kind == "fashion":
        candidates = tuple(SourceImage(f"fashion:{i}", "fashion", index=i) for i in range(len(_fashion_images())))
    else:
        raise ValueError(f"unknown source kind {kind!r}")
    return tuple(s for s in candidates if _in_split(s.split_key or s.source_id, split))


def _random_background(rng: random.Random, size: tuple[int, int], photos: list[SourceImage]) -> Image.Image:
    choice = rng.random()
    if choice < 0.35:
        return Image.new("RGB", size, (255, 255, 255))
    if choice < 0.6:
        return Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    if choice < 0.8 or not photos:
        top = np.array([rng.randrange(256) for _ in range(3)], np.float32)
        bottom = np.array([rng.randrange(256) for _ in range(3)], np.float32)
        ramp = np.linspace(0, 1, size[1], dtype=np.float32)[:, None, None]
        grad = top * (1 - ramp) + bottom * ramp
        return Image.fromarray(np.broadcast_to(grad, (size[1], size[0], 3)).astype(np.uint8))
    return _random_crop(rng, load_photo(rng.choice(photos)), size).filter(ImageFilter.GaussianBlur(3))


def _random_crop(rng: random.Random, image: Image.Image, size: tuple[int, int]) -> Image.Image:
    width, height = image.size
    scale = rng.uniform(0.45, 1.0)
    crop_w = max(16, int(width * scale))
    crop_h = max(16, min(height, int(crop_w * size[1] / size[0])))
    left = rng.randrange(0, max(1, width - crop_w + 1))
    top = rng.randrange(0, max(1, height - crop_h + 1))
    return image.crop((left, top, left + crop_w, top + crop_h)).resize(size, Image.BICUBIC)


MAX_DRAWING_PIXELS = 16_000_000
"""A few openclipart PNGs are rendered at poster size (one is 600 megapixels); they are passed over."""


def _load_drawing(rng: random.Random, drawings: tuple[SourceImage, ...]) -> tuple[Image.Image, str]:
    """A random drawing of the list as RGBA with its source id, skipping the few oversized ones."""
    while True:
        source = rng.choice(drawings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                with Image.open(source.path) as drawing:
                    if drawing.width * drawing.height <= MAX_DRAWING_PIXELS:
                        return drawing.convert("RGBA"), source.source_id
            except (Image.DecompressionBombError, OSError):  # unreadable files are passed over too
                pass


def _paste_drawing(rng: random.Random, canvas: Image.Image, drawing: Image.Image, fill: float) -> None:
    side = int(min(canvas.size) * fill)
    drawing.thumbnail((side, side), Image.LANCZOS)
    left = rng.randrange(0, max(1, canvas.width - drawing.width + 1))
    top = rng.randrange(0, max(1, canvas.height - drawing.height + 1))
    canvas.paste(drawing, (left, top), drawing)


def _text_and_pattern_photos(photos: tuple[SourceImage, ...]) -> list[SourceImage]:
    return [s for s in photos if s.source_id.lower().startswith(TEXT_AND_PATTERN_PHOTOS)]


def clean_image(rng: random.Random, split: str, size: int = 320,
                hard_negative_share: float = 0.0) -> tuple[Image.Image, str]:
    """A real unmarked picture from the split: a photo crop, a drawing on a background, or fashion.

    `hard_negative_share` of the pictures are crops of photos showing printed text,
    digits, grids or fine texture (for training; 0 keeps the plain mix, the one the
    benchmark measures on).
    """
    aspect = rng.choice((1.0, 1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3))
    dims = (size, int(size / aspect)) if aspect >= 1 else (int(size * aspect), size)
    photos = sources("photo", split)
    if hard_negative_share and rng.random() < hard_negative_share:
        hard = _text_and_pattern_photos(photos)
        if hard:
            source = rng.choice(hard)
            return _random_crop(rng, load_photo(source), dims), source.source_id
    kind = rng.choices(("photo", "drawing", "fashion"), weights=(0.45, 0.4, 0.15))[0]
    if kind == "photo" and photos:
        source = rng.choice(photos)
        return _random_crop(rng, load_photo(source), dims), source.source_id
    if kind == "drawing" and _drawing_paths():
        drawing, source_id = _load_drawing(rng, sources("drawing", split))
        canvas = _random_background(rng, dims, photos)
        _paste_drawing(rng, canvas, drawing, rng.uniform(0.6, 1.0))
        return canvas, source_id
    fashion = sources("fashion", split)
    if fashion:
        source = rng.choice(fashion)
        array = _fashion_images()[source.index]
        if rng.random() < 0.5:
            array = 255 - array
        image = Image.fromarray(array).resize(dims, Image.BICUBIC).convert("RGB")
        return image, source.source_id
    source = rng.choice(photos)
    return _random_crop(rng, load_photo(source), dims), source.source_id


_PROSE = ("the of and to in is that for it as with was on be by this are from at or an which have not "
          "their has were can all one more been other when who will would there we about into only some "
          "time these two may then first any like over such our what most after also made many before well "
          "through where much your way even new because each those people how both between under never "
          "students course images problems projects camera light colour water river market village table "
          "method results figure section chapter report measured system model value number small large "
          "following example however therefore although during without within against among").split()
"""Ordinary words for printed pages; none of them is a rights notice."""


def document_image(rng: random.Random, split: str, size: int = 320) -> tuple[Image.Image, str]:
    """A printed page: lines of ordinary prose filling the picture, dark on a light paper tone.

    Pages, notes and screenshots are clean pictures whose whole content is text; without
    them in training, dense text alone would pass for a mark.
    """
    aspect = rng.choice((1.0, 4 / 3, 3 / 2, 2.0, 3 / 4))
    dims = (size, int(size / aspect)) if aspect >= 1 else (int(size * aspect), size)
    paper = tuple(rng.randint(225, 255) - shade for shade in (0, rng.randint(0, 6), rng.randint(0, 14)))
    ink = (rng.randint(0, 70),) * 3
    page = Image.new("RGB", dims, paper)
    draw = ImageDraw.Draw(page)
    font_path = rng.choice(font_split(split))
    line_px = max(7, int(min(dims) * rng.uniform(0.03, 0.07)))
    font = ImageFont.truetype(font_path, line_px)
    margin = int(dims[0] * rng.uniform(0.0, 0.08))
    top = rng.randint(-line_px, line_px)
    spacing = rng.uniform(1.15, 1.6)
    while top < dims[1]:
        line, indent = [], margin + (rng.randint(1, 4) * line_px if rng.random() < 0.1 else 0)
        while draw.textlength(" ".join(line), font=font) < dims[0] - indent - margin:
            line.append(rng.choice(_PROSE))
        text = " ".join(line[:-1]) if rng.random() < 0.85 else " ".join(line[: rng.randint(1, max(1, len(line) - 1))])
        draw.text((indent, top), text, font=font, fill=ink)
        top += int(line_px * spacing) * (2 if rng.random() < 0.08 else 1)
    if rng.random() < 0.3:
        page = page.rotate(rng.uniform(-4, 4), resample=Image.BICUBIC, fillcolor=paper)
    if rng.random() < 0.3:
        page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    return page, f"document:{Path(font_path).name}"


# ---------------------------------------------------------------- marks


def _mark_text(rng: random.Random) -> str:
    year = rng.randrange(1995, 2026)
    name = rng.choice(_NAMES)
    options = (
        f"© {name}", f"© {year} {name}", f"(c) {year} {name}", f"Copyright {year} {name}",
        rng.choice(_AGENCIES), rng.choice(_AGENCIES).lower(), f"{rng.choice(_AGENCIES)} | {name}",
        rng.choice(_WORDS), f"@{name.replace(' ', '').replace('.', '').lower()}",
        rng.choice(_DOMAINS), f"Photo: {name}", f"{name} Photography", f"{name}\n{rng.choice(_DOMAINS)}",
    )
    return rng.choice(options)


def _mark_colour(rng: random.Random, background: Image.Image) -> tuple[int, int, int]:
    style = rng.random()
    if style < 0.4:
        return (255, 255, 255)
    if style < 0.65:
        return (0, 0, 0)
    if style < 0.8:
        grey = rng.randrange(60, 200)
        return (grey, grey, grey)
    if style < 0.9:
        # Contrasting with the average background, the way a designer would pick it.
        mean = np.asarray(background.resize((8, 8))).reshape(-1, 3).mean(0)
        return tuple(int(255 - m) for m in mean)
    return tuple(rng.randrange(256) for _ in range(3))


def _text_layer(rng: random.Random, text: str, font_path: str, height_px: int,
                colour: tuple[int, int, int], alpha: int) -> Image.Image:
    font = ImageFont.truetype(font_path, max(6, height_px))
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    box = probe.multiline_textbbox((0, 0), text, font=font, spacing=2)
    pad = max(2, height_px // 4)
    layer = Image.new("RGBA", (box[2] - box[0] + 2 * pad, box[3] - box[1] + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    origin = (pad - box[0], pad - box[1])
    effect = rng.random()
    if effect < 0.2:
        outline = (0, 0, 0, alpha) if sum(colour) > 380 else (255, 255, 255, alpha)
        draw.multiline_text(origin, text, font=font, fill=colour + (alpha,), spacing=2,
                            stroke_width=max(1, height_px // 14), stroke_fill=outline)
    elif effect < 0.35:
        shadow = (0, 0, 0, alpha // 2) if sum(colour) > 380 else (255, 255, 255, alpha // 2)
        offset = max(1, height_px // 12)
        draw.multiline_text((origin[0] + offset, origin[1] + offset), text, font=font, fill=shadow, spacing=2)
        draw.multiline_text(origin, text, font=font, fill=colour + (alpha,), spacing=2)
    else:
        draw.multiline_text(origin, text, font=font, fill=colour + (alpha,), spacing=2)
    return layer


def _logo_layer(rng: random.Random, split: str, side: int, alpha: int) -> Image.Image | None:
    drawings = sources("drawing", split)
    if not drawings:
        return None
    logo, _ = _load_drawing(rng, drawings)
    logo.thumbnail((side, side), Image.LANCZOS)
    if rng.random() < 0.5:
        # Single-colour silhouettes, as most stamped logos are.
        colour = (255, 255, 255) if rng.random() < 0.5 else (0, 0, 0)
        silhouette = Image.new("RGBA", logo.size, colour + (0,))
        silhouette.putalpha(logo.getchannel("A"))
        logo = silhouette
    scaled_alpha = (np.asarray(logo.getchannel("A"), np.float32) * alpha / 255).astype(np.uint8)
    logo.putalpha(Image.fromarray(scaled_alpha))
    return logo


def _place(rng: random.Random, canvas: Image.Image, layer: Image.Image, where: str) -> None:
    width, height = canvas.size
    margin = int(min(width, height) * rng.uniform(0.01, 0.05))
    max_left = max(0, width - layer.width)
    max_top = max(0, height - layer.height)
    if where == "corner":
        left = rng.choice((margin, max_left - margin))
        top = rng.choice((margin, max_top - margin))
    elif where == "center":
        left = max_left // 2 + rng.randint(-width // 10, width // 10)
        top = max_top // 2 + rng.randint(-height // 10, height // 10)
    else:
        left, top = rng.randint(0, max_left), rng.randint(0, max_top)
    canvas.alpha_composite(layer, (min(max(left, 0), max_left), min(max(top, 0), max_top)))


MARK_STYLES = {"corner": 0.3, "center": 0.22, "tiled": 0.18, "logo": 0.15, "banner": 0.15}
"""Mark styles and how often each is drawn (the benchmark's mix; training may weight them otherwise)."""


def draw_visible_mark(rng: random.Random, image: Image.Image, split: str,
                      style_weights: dict[str, float] | None = None) -> tuple[Image.Image, str]:
    """The image with one synthetic visible mark; returns it and the mark style used.

    Sizes are relative to the image (text at least ~3 % of the shorter side), so a
    mark stays legible at the classifier's input resolution.
    """
    canvas = image.convert("RGBA")
    short = min(canvas.size)
    fonts = font_split(split)
    weights = style_weights or MARK_STYLES
    style = rng.choices(list(weights), weights=list(weights.values()))[0]
    colour = _mark_colour(rng, image)
    text = _mark_text(rng)
    if style == "corner":
        alpha = rng.randint(150, 255)
        layer = _text_layer(rng, text, rng.choice(fonts), int(short * rng.uniform(0.035, 0.08)), colour, alpha)
        _place(rng, canvas, _fit(layer, canvas, 0.9), "corner")
    elif style == "center":
        alpha = rng.randint(70, 230)
        layer = _text_layer(rng, text, rng.choice(fonts), int(short * rng.uniform(0.08, 0.2)), colour, alpha)
        if rng.random() < 0.5:
            layer = layer.rotate(rng.uniform(-40, 40), expand=True, resample=Image.BICUBIC)
        _place(rng, canvas, _fit(layer, canvas, 0.95), "center")
    elif style == "tiled":
        alpha = rng.randint(60, 170)
        layer = _text_layer(rng, text.split("\n")[0], rng.choice(fonts), int(short * rng.uniform(0.045, 0.1)),
                            colour, alpha)
        angle = rng.choice((0, rng.uniform(-45, 45)))
        tile = layer.rotate(angle, expand=True, resample=Image.BICUBIC)
        gap_x, gap_y = int(tile.width * rng.uniform(1.1, 1.8)), int(tile.height * rng.uniform(1.5, 3.0))
        shift = rng.randrange(gap_x)
        overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        for row, top in enumerate(range(-tile.height // 2, canvas.height, max(gap_y, 8))):
            for left in range(-shift - (row % 2) * gap_x // 2, canvas.width, max(gap_x, 8)):
                overlay.paste(tile, (left, top), tile)
        canvas.alpha_composite(overlay)
    elif style == "logo":
        alpha = rng.randint(110, 255)
        logo = _logo_layer(rng, split, int(short * rng.uniform(0.12, 0.3)), alpha)
        if logo is None:
            return draw_visible_mark(rng, image, split, style_weights)
        if rng.random() < 0.6:
            caption = _text_layer(rng, text.split("\n")[0], rng.choice(fonts), max(8, logo.height // 3), colour, alpha)
            combined = Image.new("RGBA", (logo.width + caption.width, max(logo.height, caption.height)), (0, 0, 0, 0))
            combined.alpha_composite(logo, (0, (combined.height - logo.height) // 2))
            combined.alpha_composite(caption, (logo.width, (combined.height - caption.height) // 2))
            logo = combined
        _place(rng, canvas, _fit(logo, canvas, 0.9), rng.choice(("corner", "center", "anywhere")))
    else:  # banner: a translucent strip with the credit on it
        height_px = int(short * rng.uniform(0.04, 0.08))
        layer = _text_layer(rng, text.split("\n")[0], rng.choice(fonts), height_px, colour, 255)
        strip_colour = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
        strip = Image.new("RGBA", (canvas.width, layer.height), strip_colour + (rng.randint(90, 200),))
        strip.alpha_composite(_fit(layer, strip, 0.95), (rng.randint(0, max(0, strip.width - layer.width)), 0))
        canvas.alpha_composite(strip, (0, rng.choice((0, canvas.height - strip.height))))
    return canvas.convert("RGB"), style


def _fit(layer: Image.Image, canvas: Image.Image, share: float) -> Image.Image:
    """Shrink a layer that would not fit inside `share` of the canvas."""
    limit_w, limit_h = int(canvas.width * share), int(canvas.height * share)
    if layer.width <= limit_w and layer.height <= limit_h:
        return layer
    ratio = min(limit_w / layer.width, limit_h / layer.height)
    return layer.resize((max(1, int(layer.width * ratio)), max(1, int(layer.height * ratio))), Image.LANCZOS)


def labelled_sample(rng: random.Random, split: str, marked: bool, size: int = 320,
                    style_weights: dict[str, float] | None = None,
                    hard_negative_share: float = 0.0) -> tuple[Image.Image, int, str]:
    """One example for the classifier: (image, 1 if a mark was drawn else 0, description)."""
    image, source_id = clean_image(rng, split, size, hard_negative_share if not marked else 0.0)
    if not marked:
        return image, 0, f"clean {source_id}"
    marked_image, style = draw_visible_mark(rng, image, split, style_weights)
    return marked_image, 1, f"{style} {source_id}"


def jpeg_round_trip(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def degrade(rng: random.Random, image: Image.Image, jpeg_share: float = 0.4, resize_share: float = 0.25) -> Image.Image:
    """What a scraped copy goes through: sometimes a downscale, sometimes a JPEG round trip.

    Applied alike to marked and clean training pictures, so neither becomes a cue.
    """
    if rng.random() < resize_share:
        factor = rng.uniform(0.45, 0.9)
        image = image.resize((max(16, int(image.width * factor)), max(16, int(image.height * factor))),
                             rng.choice((Image.BILINEAR, Image.BICUBIC, Image.LANCZOS)))
    if rng.random() < jpeg_share:
        image = jpeg_round_trip(image, rng.randint(50, 95))
    return image


def seed_for(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


__all__ = [
    "MARK_STYLES", "clean_image", "degrade", "draw_visible_mark", "font_paths", "font_split", "is_holdout",
    "jpeg_round_trip", "labelled_sample", "load_photo", "seed_for", "sources",
]
