"""How invisible and how robust is each watermark method, per image size, on real images?

For every method and size: PSNR; bit accuracy and detection rate (the payload decodes
to the right record) on the clean marked image and after JPEG 90/75/50, resize to half
and back, a 10 % crop (top-left 90 % x 90 % kept, no rescale), brightness +-20 % and
Gaussian noise (sigma 5); embed and detect images per second.  Then the false-positive
rate of detection on >= 10,000 unmarked real images and crops (Fashion-MNIST items and
crops of real photos), next to the analytic rate.

Images: opencv-doc example photos, skimage.data photos, openclipart drawings composited
on white (>= 256 px), Fashion-MNIST items and photo thumbnails (32 and 64 px).
Timings share a 2-core machine with other jobs: compare methods within one run.

    python benchmarks/watermark_robustness.py [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from dedupkit.watermark.detect import detect_pixels, false_alarm_bound
from dedupkit.watermark.embed import codec_for, psnr
from dedupkit.watermark.methods import DEFAULT_LARGE_METHOD, METHOD_NAMES, get_method

PHOTOS = Path("/usr/share/doc/opencv-doc/examples/data")
CLIPART = Path("/usr/share/openclipart/png")
FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
RESULTS = Path(__file__).parent / "results" / "watermark_robustness.json"
KEY = b"dedupkit-benchmark-key-0123456789"
SIZES = (32, 64, 256, 512, 1024)


# ------------------------------------------------------------------ real images


def square(image: Image.Image, size: int) -> np.ndarray:
    """Centre square crop resized to size x size (upscaled for 1024 px: the sources are smaller)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return np.asarray(image.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS))


def photos() -> list[Image.Image]:
    images = []
    for path in sorted(PHOTOS.glob("*.jpg")) + sorted(PHOTOS.glob("*.png")):
        with Image.open(path) as image:
            if min(image.size) >= 200:
                images.append(image.convert("RGB"))
    try:
        import skimage.data as data

        for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                     "retina", "motorcycle_left", "camera", "moon", "grass", "gravel", "brick"):
            try:
                array = getattr(data, name)()
            except Exception:  # images that skimage would have to download are left out
                continue
            images.append(Image.fromarray(array).convert("RGB"))
    except ImportError:
        pass
    return images


def drawings(count: int, seed: int = 0) -> list[Image.Image]:
    paths = sorted(CLIPART.rglob("*.png"))
    random.Random(seed).shuffle(paths)
    images = []
    for path in paths:
        if len(images) == count:
            break
        try:
            with Image.open(path) as image:
                if min(image.size) < 200:
                    continue
                rgba = image.convert("RGBA")
        except Exception:
            continue
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        images.append(canvas)
    return images


def fashion_mnist(limit: int | None = None) -> np.ndarray:
    with gzip.open(FASHION) as stream:
        raw = stream.read()
    count, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    items = np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows, cols)
    return items[:limit] if limit else items


def fashion_rgb(item: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(item).resize((size, size), Image.BICUBIC).convert("RGB"))


def test_images(size: int, count: int, photo_pool, drawing_pool, fashion) -> list[tuple[str, np.ndarray]]:
    """Half photos, a quarter drawings (>= 256 px) or Fashion-MNIST (small sizes), cycled to `count`."""
    images = []
    others = [("drawing", d) for d in drawing_pool] if size >= 256 else [("fashion", f) for f in fashion]
    for i in range(count):
        if i % 2 == 0 or not others:
            images.append(("photo", square(photo_pool[(i // 2) % len(photo_pool)], size)))
        else:
            kind, item = others[(i // 2) % len(others)]
            images.append((kind, square(item, size) if kind == "drawing" else fashion_rgb(item, size)))
    return images


# ------------------------------------------------------------------ attacks


def jpeg(quality: int):
    def attack(rgb: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)  # Pillow's default 4:2:0
        return np.asarray(Image.open(buffer).convert("RGB"))
    return attack


def resize_half(rgb: np.ndarray) -> np.ndarray:
    image = Image.fromarray(rgb)
    small = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.BICUBIC)
    return np.asarray(small.resize(image.size, Image.BICUBIC))


def crop10(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    return np.ascontiguousarray(rgb[: int(height * 0.9), : int(width * 0.9)])


def brightness(factor: float):
    def attack(rgb: np.ndarray) -> np.ndarray:
        return np.asarray(ImageEnhance.Brightness(Image.fromarray(rgb)).enhance(factor))
    return attack


def gaussian_noise(rgb: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    rng = np.random.default_rng(int(rgb[:4, :4].sum()))
    return np.clip(rgb + rng.normal(0, sigma, rgb.shape), 0, 255).round().astype(np.uint8)


ATTACKS = {
    "clean": lambda rgb: rgb,
    "jpeg90": jpeg(90),
    "jpeg75": jpeg(75),
    "jpeg50": jpeg(50),
    "resize_half": resize_half,
    "crop10": crop10,
    "brightness+20": brightness(1.2),
    "brightness-20": brightness(0.8),
    "noise5": gaussian_noise,
}


# ------------------------------------------------------------------ measurements


def bit_accuracy(method, rgb: np.ndarray, bits: np.ndarray) -> float:
    reader = getattr(method, "extract_candidates", None)
    candidates = reader(rgb, KEY) if reader else [method.extract(rgb, KEY)]
    return max(float(np.mean((scores > 0) == bits)) for scores in candidates)


def measure(method_name: str, size: int, images) -> dict:
    method = get_method(method_name)
    codec = codec_for(method, KEY)
    rows = {name: {"bit_accuracy": [], "detected": [], "kind": []} for name in ATTACKS}
    psnrs, embed_seconds, detect_seconds = [], 0.0, 0.0
    for index, (kind, rgb) in enumerate(images):
        record_index = 1000 + index
        bits = codec.encode(record_index)
        start = time.perf_counter()
        marked = method.embed(rgb, bits, KEY)
        embed_seconds += time.perf_counter() - start
        psnrs.append(psnr(rgb, marked))
        for name, attack in ATTACKS.items():
            attacked = attack(marked)
            rows[name]["kind"].append(kind)
            if not method.accepts(attacked.shape[1], attacked.shape[0]):
                rows[name]["bit_accuracy"].append(np.nan)  # too small to read after the attack
                rows[name]["detected"].append(False)
                continue
            start = time.perf_counter()
            detection = detect_pixels(attacked, KEY, [method_name])
            detect_seconds += time.perf_counter() - start
            rows[name]["detected"].append(detection.marked and detection.record_index == record_index % method.layout.index_modulus)
            rows[name]["bit_accuracy"].append(bit_accuracy(method, attacked, bits))
    count = len(images)
    return {
        "method": method_name,
        "size": size,
        "images": count,
        "payload": method.layout.describe(),
        "psnr_mean": round(float(np.mean(psnrs)), 2),
        "psnr_min": round(float(np.min(psnrs)), 2),
        "embed_images_per_s": round(count / embed_seconds, 2),
        "detect_images_per_s": round(count * len(ATTACKS) / detect_seconds, 2),
        "attacks": {
            name: {
                "bit_accuracy": None if np.all(np.isnan(values["bit_accuracy"]))
                else round(float(np.nanmean(values["bit_accuracy"])), 4),
                "detection_rate": round(float(np.mean(values["detected"])), 4),
                "detection_rate_by_kind": {
                    kind: round(float(np.mean([d for d, k in zip(values["detected"], values["kind"]) if k == kind])), 4)
                    for kind in sorted(set(values["kind"]))
                },
            }
            for name, values in rows.items()
        },
    }


def false_positives(method_name: str, images) -> dict:
    flagged = sum(detect_pixels(rgb, KEY, [method_name]).marked for rgb in images)
    return {
        "method": method_name,
        "unmarked_images": len(images),
        "flagged": int(flagged),
        "empirical_rate": flagged / len(images),
        "empirical_rate_95_upper": (3.0 / len(images)) if flagged == 0 else None,
        "theoretical_rate": false_alarm_bound(method_name),
    }


def unmarked_pool(count: int, photo_pool, fashion, seed: int = 1) -> list[np.ndarray]:
    """Fashion-MNIST items at 32 px and random 32/64 px crops of real photos."""
    rng = np.random.default_rng(seed)
    images = [fashion_rgb(item, 32) for item in fashion[: count // 2]]
    arrays = [np.asarray(p) for p in photo_pool]
    while len(images) < count:
        source = arrays[rng.integers(len(arrays))]
        side = 32 if rng.random() < 0.5 else 64
        y = rng.integers(0, source.shape[0] - side + 1)
        x = rng.integers(0, source.shape[1] - side + 1)
        images.append(np.ascontiguousarray(source[y : y + side, x : x + side]))
    return images


def large_unmarked_pool(count: int, photo_pool, seed: int = 2) -> list[np.ndarray]:
    """Random 256 px crops of real photos, for the methods that need 256 px."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(p) for p in photo_pool if min(p.size) >= 256]
    pool = []
    for _ in range(count):
        source = arrays[rng.integers(len(arrays))]
        y = rng.integers(0, source.shape[0] - 256 + 1)
        x = rng.integers(0, source.shape[1] - 256 + 1)
        pool.append(np.ascontiguousarray(source[y : y + 256, x : x + 256]))
    return pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few images per cell, 1,000 unmarked images")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    per_cell = 6 if args.quick else 30
    per_cell_slow = {"rivaGan": 2 if args.quick else 4, 1024: 3 if args.quick else 8}
    unmarked = 1000 if args.quick else 10000
    unmarked_large = 100 if args.quick else 500

    photo_pool, drawing_pool = photos(), drawings(40)
    fashion = fashion_mnist()
    print(f"images: {len(photo_pool)} photos, {len(drawing_pool)} drawings, {len(fashion)} Fashion-MNIST items")

    cells = []
    for size in SIZES:
        for name in METHOD_NAMES:
            method = get_method(name)
            # rivaGan runs a network over the whole frame: minutes per image at 512 px on this CPU.
            if not method.accepts(size, size) or (name == "rivaGan" and size > 256):
                continue
            count = min(per_cell_slow.get(name, per_cell), per_cell_slow.get(size, per_cell))
            images = test_images(size, count, photo_pool, drawing_pool, fashion)
            started = time.perf_counter()
            cell = measure(name, size, images)
            cells.append(cell)
            attacks = cell["attacks"]
            print(f"{name:>9} {size:>5}px n={count:<3} PSNR {cell['psnr_mean']:5.1f} dB  "
                  + "  ".join(f"{a}={v['detection_rate']:.2f}/{v['bit_accuracy'] or 0:.3f}" for a, v in attacks.items())
                  + f"  ({time.perf_counter() - started:.0f}s)", flush=True)

    small_pool = unmarked_pool(unmarked, photo_pool, fashion)
    large_pool = large_unmarked_pool(unmarked_large, photo_pool)
    fp = [false_positives("stdmDct", small_pool)]
    fp += [false_positives(name, large_pool) for name in ("stdmDct", "dwtDct", "dwtDctSvd")]
    for row in fp:
        print(f"false positives {row['method']:>9}: {row['flagged']}/{row['unmarked_images']} "
              f"(theory {row['theoretical_rate']:.2e})")

    default_cells = [c for c in cells if c["method"] == DEFAULT_LARGE_METHOD and c["size"] >= 256]
    targets = {
        "default_method": DEFAULT_LARGE_METHOD,
        "psnr_ge_38": all(c["psnr_mean"] >= 38 for c in default_cells),
        "clean_detection_ge_0.99": all(c["attacks"]["clean"]["detection_rate"] >= 0.99 for c in default_cells),
        "jpeg75_detection_ge_0.95": all(c["attacks"]["jpeg75"]["detection_rate"] >= 0.95 for c in default_cells),
        "false_positive_rate_le_1e-4": all(r["theoretical_rate"] <= 1e-4 for r in fp),
    }
    # Peer comparison at 512 px, within this run: speed and robustness relative to the default.
    at_512 = {c["method"]: c for c in cells if c["size"] == 512}
    reference = at_512.get(DEFAULT_LARGE_METHOD)
    comparison = {
        name: {
            "embed_speed_ratio": round(c["embed_images_per_s"] / reference["embed_images_per_s"], 3),
            "detect_speed_ratio": round(c["detect_images_per_s"] / reference["detect_images_per_s"], 3),
            "psnr_difference_db": round(c["psnr_mean"] - reference["psnr_mean"], 2),
            "jpeg75_detection_difference": round(c["attacks"]["jpeg75"]["detection_rate"]
                                                 - reference["attacks"]["jpeg75"]["detection_rate"], 3),
        }
        for name, c in at_512.items()
    } if reference else {}
    for name, row in comparison.items():
        print(f"vs {DEFAULT_LARGE_METHOD} at 512 px: {name:>9} embed x{row['embed_speed_ratio']}, "
              f"detect x{row['detect_speed_ratio']}, PSNR {row['psnr_difference_db']:+.1f} dB, "
              f"JPEG75 detection {row['jpeg75_detection_difference']:+.2f}")
    print("targets:", targets)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "quick": args.quick,
        "note": "timings on a shared 2-core CPU machine; compare ratios within this run",
        "attacks": "JPEG via Pillow (4:2:0), resize_half bicubic down and up, crop10 keeps the top-left 90%x90% "
                   "without rescaling, brightness via PIL ImageEnhance, noise5 = Gaussian sigma 5",
        "cells": cells,
        "false_positives": fp,
        "comparison_at_512": comparison,
        "targets": targets,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
