"""How many planted copies does near-duplicate removal catch, and how many distinct pictures does it lose?

A development set from real images that packages install (scikit-image and opencv-doc
photos, openclipart drawings flattened on white, deduplicated by pixels), resized to
realistic sizes (256-1024 px, plus a slice of small 48-128 px pictures).  A share of
the originals get transformed copies: resize, JPEG, crop, flip, small rotation,
colour change, text overlay, padding, grayscale, and combinations.  Every original
and its copies form one *family*.

The analysis pass (decode, perceptual hashes with their mirrored hashes, EfficientNet
embeddings) runs once through `dedupkit.pipeline.run_clean`; its signature shards are
cached under benchmarks/.cache/ and every dedupkit setting is then just a call of
`decide_duplicates`.  imagededup's PHash (`encode_images`, `find_duplicates_to_remove`)
runs on the same files at its default threshold 10 and at a tighter one.

Families are split in two halves by a hash of their id: thresholds are chosen on the
`dev` half (`--calibrate` prints the grid) and the table reports the `test` half.  The
learned copy verifier (dedupkit.search.copy_model) never saw either half: it was trained
by scripts/train_copy_verifier.py on openclipart series this script does not draw from
and on Fashion-MNIST training garments; only its score threshold is calibrated here.

Each half is decided in one shuffled order of its files (`INPUT_ORDER_SEED`).  The files
are written family by family, the original first, and where the keep policy ties (copies
of one size) that order would make the original the keeper; a scraped set comes in no
such order.  (Until 2026-12-03 the halves were decided in file order: 1.9 points more of
the dev copies were removed than in two shuffled orders, 0-0.2 points held out.)

Metrics, per method and half:
- copies removed: records dropped in favour of a member of their own family, over the
  planted copies (the keep policy may keep an upscaled or padded copy and drop the
  original instead: one of the family's redundant members is removed all the same);
- distinct lost: families whose every member was dropped in favour of another family;
- false merges: records dropped in favour of a record of another family;
- per-transform recall: the copy and its original were tied together, whichever is kept;
  the same for the copies of small pictures; the defaults list the copies not so tied
  (`missed_copies`), and each other setting is paired with them: how many copies only
  one of the two finds (`paired_with_defaults`).  Next to the share of copies
  removed, a 95 % interval from resampling families (`family_bootstrap_interval`);
- kept for the original: in each family with copies, what stays in the original's place (the
  original, a copy by its transform, or another family's picture): a padded, greyscale or
  captioned copy kept is a worse training picture, which the shares above do not see;
- look-alikes dropped: of 1,000 distinct Fashion-MNIST test images (28 px garments, all
  centred in the same frame: the homogeneous, low-resolution data on which a thumbnail
  comparison merges things that are merely alike), how many are dropped as duplicates.
  Fashion-MNIST holds a few near-copies of its own, so the count is read against the
  keypoint-only verification's and the target share of distinct pictures lost, not against zero.

    python benchmarks/neardup_quality.py                 # build/reuse the set, print the test half
    python benchmarks/neardup_quality.py --calibrate     # also the grid of variants on the dev half
    python benchmarks/neardup_quality.py --calibrate --workers 2   # the same, candidates verified in 2 processes

The calibration spends most of its time deciding the look-alikes for every variant (14 of 21
minutes with --workers 2 on 2 quiet cores); those counts are stored beside the garments and
reused while the settings, the signatures and dedupkit's search and signature code stay the
same (a rerun with nothing changed: under 5 minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import logging
import re
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from dedupkit.records import DROPPED
from dedupkit.samples import load_rgb, opencv_photos, real_images, skimage_photos
from dedupkit.search.decide import decide_duplicates
from dedupkit.search.options import DedupOptions

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "neardup_quality"
RESULTS = HERE / "results"

SINGLE_TRANSFORMS = ("resize", "jpeg", "crop", "flip", "rotate", "colour", "text", "pad", "grayscale")
COMBINATIONS = {
    "resize+jpeg": ("resize", "jpeg"),
    "crop+flip": ("crop", "flip"),
    "colour+text": ("colour", "text"),
    "pad+resize+jpeg": ("pad", "resize", "jpeg"),
    "rotate+crop+colour": ("rotate", "crop", "colour"),
}
TRANSFORMS = SINGLE_TRANSFORMS + tuple(COMBINATIONS)
ANALYSIS_HASHES = ("phash", "dhash")
# Only the duplicate signatures: copyright tagging and watermarking do not change them.
NO_OTHER_STAGES = {"copyright": None, "visible_marks": False, "watermark_method": None}
SIMILARITIES = (0.88, 0.9, 0.92, 0.93, 0.94, 0.95, 0.96)
# (min_inliers, min_inlier_ratio), min_appearance and candidate cosine of local-feature
# verification tried by the calibration (each variant repeats the verification: keep it small).
LOCAL_GRID = ((12, 0.08), (15, 0.1), (20, 0.15))
APPEARANCES = (0.85, 0.9, 0.95)
# Candidates from cosine 0.6 were tried too: on the dev half half a point more copies
# removed, for three times the pairs to verify.
CANDIDATES = (0.7,)
# Scores of the learned copy verifier tried by the calibration.
COPY_SCORES = (0.5, 0.6, 0.7, 0.8, 0.9)
# The defaults with candidates verified by thresholds instead of the learned verifier (as until 2026-12-02).
THRESHOLDS = "thresholds, no learned verifier"
# Grey-thumbnail correlation of the whole-frame check (candidates the keypoints cannot confirm).
FRAME_APPEARANCES = (0.97, 0.98, 0.99)
# Grey-thumbnail correlation of the aligned-thumbnail check (candidates the verifier rejects, aligned by ECC alone).
ALIGNED_APPEARANCES = (0.98, 0.99, 0.995)
NO_ALIGNED_CHECK = "dedupkit defaults, no aligned-thumbnail check"
# Verifier score a record paired only with a copy of the keeper needs against the keeper itself.
KEEPER_SCORES = (0.3, 0.4, 0.5, 0.6)
SAME_KEEPER_BAR = "dedupkit defaults, keeper check at the copy score"
LOOKALIKES = 1000
# Each half is decided in one shuffled order of its files (see `evaluate`).
INPUT_ORDER_SEED = 0
TARGET_REMOVED, TARGET_LOST_SHARE = 0.95, 0.005
# A setting replaces the defaults only when it finds more of the same copies at this one-sided
# significance (exact binomial test on the copies only one of the two finds, McNemar's test).
SWITCH_SIGNIFICANCE = 0.05
DEFAULTS = "dedupkit defaults"
# The defaults before local verification: global signatures only.
GLOBAL_BASELINE = "phash 0 + flip, embedding 0.93"
# Local verification at the thresholds it shipped with first: (similarity, candidate, inliers, ratio, appearance).
LOSS_REFERENCE_THRESHOLDS = (0.97, 0.7, 15, 0.1, 0.95)
MAX_SOURCE_PIXELS = 40_000_000  # a few openclipart posters are 170 Mpx: slow to load, and no different in kind


# ----------------------------------------------------------------------------- transforms


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _text_font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(10, size))


def apply_transform(image: Image.Image, name: str, rng: np.random.Generator) -> Image.Image:
    """One planted copy of `image` (RGB): a single transform or a named combination."""
    if name in COMBINATIONS:
        for step in COMBINATIONS[name]:
            image = apply_transform(image, step, rng)
        return image
    width, height = image.size
    if name == "resize":
        scale = rng.uniform(0.3, 0.7) if rng.random() < 0.7 else rng.uniform(1.2, 1.6)
        return image.resize((max(16, round(width * scale)), max(16, round(height * scale))), Image.LANCZOS)
    if name == "jpeg":
        return _jpeg(image, int(rng.integers(30, 91)))
    if name == "crop":
        # 5-20 % of each side's length removed, split at random between its two ends.
        cut_x, cut_y = rng.uniform(0.05, 0.2) * width, rng.uniform(0.05, 0.2) * height
        left, top = rng.uniform(0, cut_x), rng.uniform(0, cut_y)
        return image.crop((round(left), round(top), round(width - (cut_x - left)), round(height - (cut_y - top))))
    if name == "flip":
        return ImageOps.mirror(image)
    if name == "rotate":
        angle = rng.uniform(3, 10) * rng.choice([-1, 1])
        fill = (255, 255, 255) if rng.random() < 0.5 else (0, 0, 0)
        return image.rotate(angle, resample=Image.BICUBIC, fillcolor=fill)
    if name == "colour":
        image = ImageEnhance.Color(image).enhance(rng.uniform(0.4, 1.7))
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.3))
        return _shift_hue(image, rng.uniform(0.03, 0.12) * rng.choice([-1, 1]))
    if name == "text":
        draw_on = image.copy()
        draw = ImageDraw.Draw(draw_on)
        size = int(min(width, height) * rng.uniform(0.06, 0.12))
        text = rng.choice(["© stock photo 2024", "SAMPLE", "www.example.com", "my favourite picture"])
        x, y = rng.uniform(0.02, 0.4) * width, rng.uniform(0.05, 0.85) * height
        colour = tuple(int(c) for c in rng.choice([[255, 255, 255], [0, 0, 0], [220, 30, 30]]))
        draw.text((x, y), text, fill=colour, font=_text_font(size), stroke_width=max(1, size // 12),
                  stroke_fill=(128, 128, 128))
        return draw_on
    if name == "pad":
        border = max(2, round(max(width, height) * rng.uniform(0.05, 0.2)))
        colour = tuple(int(c) for c in rng.choice([[255, 255, 255], [0, 0, 0], [128, 128, 128]]))
        return ImageOps.expand(image, border=border, fill=colour)
    if name == "grayscale":
        return image.convert("L").convert("RGB")
    raise ValueError(f"unknown transform {name!r}: choose from {', '.join(TRANSFORMS)}")


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    hsv = np.asarray(image.convert("HSV"), dtype=np.int16)
    hsv[..., 0] = (hsv[..., 0] + round(shift * 255)) % 256
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


# ----------------------------------------------------------------------------- the development set


@dataclass(frozen=True)
class SetConfig:
    originals: int = 1200
    planted_share: float = 0.35
    copies_per_planted: int = 3
    small_share: float = 0.15
    seed: int = 0

    @property
    def name(self) -> str:
        digest = hashlib.sha256(json.dumps({**asdict(self), "version": 2}, sort_keys=True).encode()).hexdigest()[:10]
        return f"set_{self.originals}_{digest}"


def drawing_series(path: Path) -> str:
    """openclipart's numbered series share a name but for digits: star_73pt02step, star_75pt02step, ..."""
    return re.sub(r"\d+", "#", path.name)


def distinct_pictures(rng: np.random.Generator, count: int) -> list[tuple[Path, Image.Image]]:
    """`count` real pictures, distinct by pixels: every photo, then drawings drawn at random.

    At most one drawing per numbered series: openclipart holds hundreds of generated
    stars that differ by a point or two, which no one would call distinct pictures
    and which would swamp the measure of distinct pictures lost.  The photos keep
    their natural look-alikes (chessboard views left01..left14, aloeL/aloeR, ...).
    """
    photos = set(skimage_photos() + opencv_photos())
    candidates = real_images()
    chosen_photos = [p for p in candidates if p in photos]
    drawings = [p for p in candidates if p not in photos]
    order = chosen_photos + [drawings[i] for i in rng.permutation(len(drawings))]
    return first_distinct(order, count, series_exempt=photos)


def first_distinct(paths: list[Path], count: int, series_exempt: set = frozenset()) -> list[tuple[Path, Image.Image]]:
    """The first `count` usable pictures of `paths`, in order: one per numbered drawing series
    (`drawing_series`; `series_exempt` paths are not drawings), none over MAX_SOURCE_PIXELS,
    unreadable, blank, or identical in pixels to an earlier one."""
    pictures, seen, series_seen = [], set(), set()
    for path in paths:
        if path not in series_exempt:
            if drawing_series(path) in series_seen:
                continue
            series_seen.add(drawing_series(path))
        try:
            with Image.open(path) as header:
                if header.width * header.height > MAX_SOURCE_PIXELS:
                    continue
            image = load_rgb(path)
        except Exception:
            continue
        digest = hashlib.sha256(image.tobytes() + repr(image.size).encode()).digest()
        if digest in seen or np.asarray(image).std() < 2:  # identical pixels, or a blank canvas
            continue
        seen.add(digest)
        pictures.append((path, image))
        if len(pictures) >= count:
            break
    return pictures


def realistic_size(image: Image.Image, rng: np.random.Generator, small: bool) -> Image.Image:
    long_side = int(rng.integers(48, 129)) if small else int(rng.integers(256, 1025))
    long_side = min(long_side, max(image.size)) if not small else long_side
    scale = long_side / max(image.size)
    size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
    return image.resize(size, Image.LANCZOS)


def split_of(family: int) -> str:
    return "dev" if hashlib.sha256(f"family-{family}".encode()).digest()[0] % 2 == 0 else "test"


def build_set(config: SetConfig, folder: Path, choose: Callable | None = None) -> list[dict]:
    """Write the originals and planted copies under `folder`; returns one label per file.

    `choose(rng, count)` picks the (path, image) originals (`distinct_pictures` by default)."""
    labels_path = folder / "labels.json"
    if labels_path.exists():
        return json.loads(labels_path.read_text())
    rng = np.random.default_rng(config.seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    labels = []
    pictures = (choose or distinct_pictures)(rng, config.originals)
    planted = set(rng.choice(len(pictures), size=round(config.planted_share * len(pictures)), replace=False).tolist())
    photo_paths = set(skimage_photos() + opencv_photos())
    for family, (path, picture) in enumerate(pictures):
        small = bool(rng.random() < config.small_share)
        original = realistic_size(picture, rng, small)
        is_photo = path in photo_paths
        entries = [("original", original)]
        if family in planted:
            for transform in rng.choice(TRANSFORMS, size=config.copies_per_planted, replace=False):
                entries.append((str(transform), apply_transform(original, str(transform), rng)))
        for index, (transform, image) in enumerate(entries):
            # Photos and copies are stored as JPEG (as the web has them), drawings as PNG.
            ext = "jpg" if (is_photo or transform != "original") else "png"
            name = f"{family:05d}_{index}_{transform.replace('+', '-')}.{ext}"
            options = {"quality": 92} if ext == "jpg" and "jpeg" not in transform else {}
            if ext == "jpg" and "jpeg" in transform:
                options = {"quality": 95}  # the JPEG transform already degraded it
            image.save(images / name, **options)
            labels.append({
                "key": name, "family": family, "transform": transform, "split": split_of(family),
                "small": small, "photo": is_photo, "source": str(path), "width": image.width, "height": image.height,
            })
    labels_path.write_text(json.dumps(labels))
    return labels


# ----------------------------------------------------------------------------- signatures


def analyse(folder: Path) -> pa.Table:
    """Signature table of every file (dedupkit's analysis pass, run once and cached)."""
    from dedupkit.pipeline import CleanOptions, run_clean

    out = folder / "run"
    shards = sorted((out / "signatures").glob("*.parquet")) if out.exists() else []
    if not (out / "manifest.parquet").exists():
        # Local features are joined apart (`with_local_features`), so a cached run stays usable.
        analysis = DedupOptions(hash_radius=tuple((kind, 8) for kind in ANALYSIS_HASHES), flip=True,
                                embedder="efficientnet-lite0", verify_local=False)
        run_clean(str(folder / "images"), out, CleanOptions(dedup=analysis, write_output=False, shard_size=500, **NO_OTHER_STAGES),
                  overwrite=False)
        shards = sorted((out / "signatures").glob("*.parquet"))
    return pa.concat_tables([pq.read_table(shard) for shard in shards], promote_options="default")


def with_local_features(folder: Path, table: pa.Table) -> pa.Table:
    """`table` with the ORB keypoint signature of every file joined by key.

    Computed apart from the cached analysis run (and cached beside it), so adding the
    local features does not redo the embedding pass; same decoded pixels as the stage gets.
    """
    from dedupkit.signatures.local import LAYOUT_MARK, SIGNATURE_NAME, SIGNATURE_REVISION, orb_signature

    cache = folder / f"local_{SIGNATURE_NAME}_{LAYOUT_MARK:x}_r{SIGNATURE_REVISION}.parquet"
    column = "sig_" + SIGNATURE_NAME
    if not cache.exists():
        keys = table.column("key").to_pylist()
        started = time.perf_counter()
        signatures = [orb_signature(load_rgb(folder / "images" / key)) for key in keys]
        print(f"local features: {len(keys)} files, {1000 * (time.perf_counter() - started) / len(keys):.1f} ms per file "
              f"(decode included), {np.mean([len(s) for s in signatures]) / 1024:.1f} KiB each", flush=True)
        pq.write_table(pa.table({"key": keys, column: pa.array(signatures, pa.binary())}), cache)
    by_key = dict(zip(*pq.read_table(cache).to_pydict().values()))
    return table.append_column(column, pa.array([by_key[key] for key in table.column("key").to_pylist()], pa.binary()))


def imagededup_encodings(folder: Path) -> dict[str, str]:
    cache = folder / "imagededup_phash.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from imagededup.methods import PHash

    _quiet_imagededup()
    encodings = PHash(verbose=False).encode_images(image_dir=str(folder / "images"), num_enc_workers=0)
    cache.write_text(json.dumps(encodings))
    return encodings


def _quiet_imagededup() -> None:
    """imagededup logs every search at INFO on its own handlers; the table is what this script prints."""
    for name in ("imagededup.methods.hashing", "imagededup.handlers.search.retrieval"):
        logging.getLogger(name).setLevel(logging.WARNING)


# ----------------------------------------------------------------------------- scoring


def build_lookalikes(count: int, folder: Path, split: str = "test") -> Path:
    """`count` distinct Fashion-MNIST images of `split` as PNG files (distinct by pixels)."""
    from dedupkit.verify.datasets import load_fashion_mnist

    images = folder / "images"
    if not (folder / "complete").exists():
        images.mkdir(parents=True, exist_ok=True)
        pictures, seen = load_fashion_mnist(split)[0], set()
        for index, picture in enumerate(pictures):
            if picture.tobytes() in seen:
                continue
            seen.add(picture.tobytes())
            Image.fromarray(picture, "L").save(images / f"{index:05d}.png")
            if len(seen) >= count:
                break
        (folder / "complete").write_text(str(len(seen)))
    return folder


def lookalikes_dropped(table: pa.Table, options: DedupOptions, workers: int = 1) -> int:
    return len(dedupkit_outcome(table, options, workers).dropped)


def stored_lookalikes_dropped(folder: Path, table: pa.Table, variants: dict[str, DedupOptions],
                              workers: int = 1) -> dict[str, int]:
    """`lookalikes_dropped` of each variant, reusing the counts an earlier run stored in `folder`
    for the same settings, the same signatures and the same decision code (`_decision_digest`).

    Most of a calibration's time goes to deciding the look-alikes for every variant of the grid;
    a rerun after a change to the benchmark or to the defaults then only decides the settings
    it has not met."""
    store = folder / "dropped.json"
    digest = _decision_digest(table)
    stored = json.loads(store.read_text()) if store.exists() else {}
    counts = stored.get(digest, {})
    dropped = {}
    for name, options in variants.items():
        settings = json.dumps(_settings(options), sort_keys=True)
        if settings not in counts:
            counts[settings] = lookalikes_dropped(table, options, workers)
            store.write_text(json.dumps({digest: counts}))  # an interrupted run keeps what it measured
        dropped[name] = counts[settings]
    return dropped


def _decision_digest(table: pa.Table) -> str:
    """What a decision depends on besides its settings: the signature table, dedupkit's search
    and signature code with the verifier's trees (options.py only holds the defaults, which the
    settings spell out), and the versions of the libraries that measure and search."""
    import cv2
    import faiss
    import scipy

    import dedupkit

    digest = hashlib.sha256(" ".join((cv2.__version__, faiss.__version__, np.__version__, scipy.__version__)).encode())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    digest.update(sink.getvalue())
    package = Path(dedupkit.__file__).parent
    for path in sorted([*package.glob("search/*"), *package.glob("signatures/*")]):
        if path.is_file() and path.name != "options.py":
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Outcome:
    """One method's decision on one half: which files it drops and the file kept in their place."""

    dropped: set
    keeper: dict  # dropped key -> the kept key it was dropped for


def score(outcome: Outcome, labels: list[dict]) -> dict:
    family = {label["key"]: label["family"] for label in labels}
    original = {label["family"]: label["key"] for label in labels if label["transform"] == "original"}
    copies = [label for label in labels if label["transform"] != "original"]
    # The keep policy may keep a larger copy (upscaled, padded) and drop the original: what
    # counts is how many of a family's redundant members go, and that they go to their own family.
    removed_per_family = Counter(family[key] for key in outcome.dropped if family[outcome.keeper[key]] == family[key])
    removed_in_family = sum(removed_per_family.values())
    copies_per_family = Counter(label["family"] for label in copies)
    false_merges = sum(1 for key in outcome.dropped if family[outcome.keeper[key]] != family[key])

    def found(label: dict) -> bool:
        """The copy was tied to its original, whichever of the two was kept."""
        key, source = label["key"], original[label["family"]]
        if key in outcome.dropped:
            return family[outcome.keeper[key]] == label["family"]
        return source in outcome.dropped and outcome.keeper[source] == key

    members: dict[int, list[str]] = {}
    for label in labels:
        members.setdefault(label["family"], []).append(label["key"])
    lost = [f for f, keys in members.items() if all(key in outcome.dropped for key in keys)]
    small_families = {label["family"] for label in labels if label["small"]}

    def recall(subset: list[dict]) -> dict:
        hits = sum(1 for label in subset if found(label))
        return {"copies": len(subset), "found": hits, "recall": hits / len(subset) if subset else None}

    transform = {label["key"]: label["transform"] for label in labels}

    def kept_for(source: str) -> str:
        """What stays in the original's place: itself, a copy (by its transform) or another family's picture."""
        if source not in outcome.dropped:
            return "original"
        keeper = outcome.keeper[source]
        return transform[keeper] if family[keeper] == family[source] else "another family"

    return {
        "families": len(members),
        "files": len(labels),
        "planted_copies": len(copies),
        "copies_removed": removed_in_family / len(copies),
        "copies_removed_interval": family_bootstrap_interval(
            [removed_per_family[f] for f in copies_per_family], list(copies_per_family.values())),
        "missed_copies": sorted(label["key"] for label in copies if not found(label)),
        "distinct_lost": len(lost),
        "distinct_lost_share": len(lost) / len(members),
        "false_merges": false_merges,
        "dropped": len(outcome.dropped),
        "per_transform": {name: recall([c for c in copies if c["transform"] == name]) for name in TRANSFORMS},
        "small_slice": {
            "families": len(small_families),
            "distinct_lost": sum(1 for f in lost if f in small_families),
            **recall([c for c in copies if c["small"]]),
        },
        "lost_examples": [members[f][0] for f in lost[:12]],
        # Which version a user keeps: the benchmark counts copies removed, not whether the colour,
        # unpadded, uncaptioned original is the one that stays.
        "kept_for_original": dict(Counter(kept_for(original[f]) for f in copies_per_family).most_common()),
    }


def family_bootstrap_interval(removed: list[int], copies: list[int], resamples: int = 2000,
                              seed: int = 0) -> list[float]:
    """95 % interval of the share of copies removed, families resampled with replacement.

    A family's copies stand or fall together (one original, one keeper), so the families,
    not the copies, are the independent draws.  At ~600 copies a half the interval spans
    about 4 points: two settings closer than that on one half are told apart by
    `paired_difference`, not by their shares."""
    removed, copies = np.asarray(removed, dtype=np.float64), np.asarray(copies, dtype=np.float64)
    if not copies.sum():
        return [float("nan"), float("nan")]
    draws = np.random.default_rng(seed).integers(0, len(copies), size=(resamples, len(copies)))
    shares = removed[draws].sum(axis=1) / copies[draws].sum(axis=1)
    return [float(q) for q in np.quantile(shares, [0.025, 0.975])]


def paired_difference(first: dict, second: dict) -> tuple[int, int]:
    """(copies only `first` found, copies only `second` found), of two `score` results on one half."""
    missed_first, missed_second = set(first["missed_copies"]), set(second["missed_copies"])
    return len(missed_second - missed_first), len(missed_first - missed_second)


def dedupkit_outcome(table: pa.Table, options: DedupOptions, workers: int = 1) -> Outcome:
    verdicts = decide_duplicates(table, options, workers)
    keys = table.column("key").to_pylist()
    dropped = {key for key, status in zip(keys, verdicts.status) if status == DROPPED}
    keeper = {key: k for key, k, status in zip(keys, verdicts.keeper_key, verdicts.status) if status == DROPPED}
    return Outcome(dropped, keeper)


def imagededup_outcome(encodings: dict[str, str], threshold: int) -> Outcome:
    """imagededup's own removal list; a removed file's keeper is its nearest duplicate that stays."""
    from imagededup.methods import PHash

    _quiet_imagededup()
    method = PHash(verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "num_enc_workers has no effect" with an encoding map
        dropped = set(method.find_duplicates_to_remove(encoding_map=encodings, max_distance_threshold=threshold))
        duplicates = method.find_duplicates(encoding_map=encodings, max_distance_threshold=threshold, scores=True)
    keeper = {}
    for key in dropped:
        kept = sorted((distance, other) for other, distance in duplicates[key] if other not in dropped)
        keeper[key] = kept[0][1] if kept else duplicates[key][0][0]
    return Outcome(dropped, keeper)


# ----------------------------------------------------------------------------- methods


def dedupkit_variants() -> dict[str, DedupOptions]:
    """dedupkit's defaults and the grid of settings the calibration compares."""
    variants = {DEFAULTS: DedupOptions()}
    for radius in (4, 6, 8, 10):
        variants[f"phash {radius} + flip only"] = DedupOptions(hash_radius=(("phash", radius),), embedder=None)
    for similarity in SIMILARITIES:
        variants[f"embedding {similarity} only"] = DedupOptions(hash_radius=(), min_similarity=similarity, verify_local=False)
    for radius in (0, 2, 4, 6, 8):
        for similarity in SIMILARITIES:
            variants[f"phash {radius} + flip, embedding {similarity}"] = DedupOptions(
                hash_radius=(("phash", radius),), min_similarity=similarity, verify_local=False)
    for candidate in CANDIDATES:
        for (inliers, ratio), appearance in itertools.product(LOCAL_GRID, APPEARANCES):
            variants[local_variant_name(0.97, candidate, inliers, ratio, appearance)] = DedupOptions(
                min_similarity=0.97, verify_local=True, candidate_similarity=candidate, min_copy_score=None,
                min_inliers=inliers, min_inlier_ratio=ratio, min_appearance=appearance)
    defaults = DedupOptions()
    variants["dedupkit defaults, no colour check"] = replace(defaults, max_hue_conflict=1.0)
    for score in COPY_SCORES:
        variants[f"learned verifier at {score}"] = replace(defaults, min_copy_score=score)
    thresholds = replace(defaults, min_copy_score=None)
    variants[THRESHOLDS] = thresholds
    variants[f"{THRESHOLDS}, no whole-frame check"] = replace(thresholds, min_frame_appearance=None)
    for appearance in FRAME_APPEARANCES:
        variants[f"{THRESHOLDS}, whole frame at {appearance}"] = replace(thresholds, min_frame_appearance=appearance)
    variants[NO_ALIGNED_CHECK] = replace(defaults, min_aligned_appearance=None)
    variants[SAME_KEEPER_BAR] = replace(defaults, min_keeper_score=defaults.min_copy_score)
    for score in KEEPER_SCORES:
        variants[f"dedupkit defaults, keeper check at {score}"] = replace(defaults, min_keeper_score=score)
    for appearance in ALIGNED_APPEARANCES:
        variants[f"dedupkit defaults, aligned thumbnails at {appearance}"] = replace(defaults, min_aligned_appearance=appearance)
    variants["dhash 4 + flip, embedding 0.93"] = DedupOptions(hash_radius=(("dhash", 4),), min_similarity=0.93,
                                                             verify_local=False)
    variants["phash 0 no flip, embedding 0.93"] = DedupOptions(hash_radius=(("phash", 0),), flip=False,
                                                              min_similarity=0.93, verify_local=False)
    return variants


def local_variant_name(similarity: float, candidate: float, inliers: int, ratio: float, appearance: float) -> str:
    """Candidates at cosine `candidate`, confirmed by inliers / inlier ratio / appearance correlation."""
    return f"phash 0+flip, emb {similarity}, local {candidate}/{inliers}/{ratio}/{appearance}"


def calibrated_choice(dev: dict[str, dict], lookalikes: dict[str, int]) -> str:
    """The dev-half variant that removes the most copies while losing no more pictures than allowed,
    and dropping no more Fashion-MNIST look-alikes than local verification at its first thresholds.

    Allowed: the target share, or when no variant reaches it, as many as the local
    verification lost at its earlier thresholds (`LOSS_REFERENCE_THRESHOLDS`), so that a new
    default never buys recall with distinct pictures.  (Until 2026-11-25 the allowance
    was what the global signatures lose, `GLOBAL_BASELINE`; its pick lost 1.5 % of the
    held-out pictures against 0.9 % on dev, so the allowance was tightened, after that
    held-out number had been seen.  Until 2026-12-02 the larger of the two allowances
    applied even when variants met the target; with the learned verifier that picked a
    score of 0.4, which lost 4 dev pictures, as the reference thresholds do, and 8 held-out
    ones; the held-out numbers of scores 0.4-0.9 had been looked at before this change.)
    Variants without the colour check are not candidates: that "the same drawing with some
    parts in other colours is not a copy" is the definition, not a setting (on 2026-12-02,
    with the learned verifier at 0.6, dropping the check removed 0.2 points more dev copies,
    the same pictures lost; held out, 0.2 points more and 2 more false merges).
    The defaults stay unless a variant within those bounds finds significantly more of the same
    copies (`switch_significance` under SWITCH_SIGNIFICANCE); among those that do, the one that
    removes the most (the plain maximum when the defaults themselves are out of bounds).  Added
    on 2026-12-03 (session 19): in shuffled order the plain maximum moved from a copy score of
    0.7 to 0.6 (3 dev copies only 0.7 finds, 5 only 0.6), and with 0.6 as the default on to a
    keeper bar of 0.3 (1 against 2), one or two copies at a time, well within the noise.  The
    held-out numbers at 0.6 had been seen (88.6 % against 88.5 %).
    Some openclipart pictures are mirror images, recolourings or re-framings of others,
    which every flip- and colour-tolerant setting merges.  Since 2026-11-26 the
    Fashion-MNIST look-alikes bound the pick as well: the thresholds chosen before they were
    measured (12 inliers, ratio 0.08) drop 24 of the 1,000 distinct garments, the reference
    thresholds 9.  Since 2026-12-03 the look-alikes are also held to the target share of
    distinct pictures lost (5 of the 1,000 garments): they are distinct pictures too.  That
    was added after the dev half showed the aligned-thumbnail check at 0.98 dropping 7
    garments (a boot and T-shirts merely alike), within the reference's 9; no held-out
    number had been looked at for it.
    """
    # What counts as a copy is not calibrated: variants without the colour check are shown for comparison only.
    ours = {name: r for name, r in dev.items()
            if not name.startswith("imagededup") and r["settings"].get("max_hue_conflict", 0.0) < 1.0}
    reference = ours[local_variant_name(*LOSS_REFERENCE_THRESHOLDS)]["distinct_lost_share"]
    lookalikes_allowed = min(lookalikes[local_variant_name(*LOSS_REFERENCE_THRESHOLDS)], round(TARGET_LOST_SHARE * LOOKALIKES))

    def within(allowed: float) -> list[str]:
        return [name for name, r in ours.items()
                if r["distinct_lost_share"] <= allowed and lookalikes[name] <= lookalikes_allowed]

    candidates = within(TARGET_LOST_SHARE) or within(max(TARGET_LOST_SHARE, reference))
    if DEFAULTS in candidates:
        candidates = [DEFAULTS] + [name for name in candidates if switch_significance(ours[DEFAULTS], ours[name])
                                   < SWITCH_SIGNIFICANCE]
    return max(candidates, key=lambda name: (ours[name]["copies_removed"], -ours[name]["false_merges"]))


def switch_significance(defaults: dict, setting: dict) -> float:
    """One-sided p-value that `setting` finds more of the planted copies than `defaults` does on
    the same half: an exact binomial test on the copies only one of the two finds (McNemar's)."""
    from scipy.stats import binomtest

    only_defaults, only_setting = paired_difference(defaults, setting)
    if only_setting <= only_defaults:
        return 1.0
    return float(binomtest(only_setting, only_defaults + only_setting, 0.5, alternative="greater").pvalue)


def evaluate(labels: list[dict], table: pa.Table, encodings: dict[str, str], split: str,
             variants: dict[str, DedupOptions], peers: bool, workers: int = 1) -> dict[str, dict]:
    half = [label for label in labels if label["split"] == split]
    keys = {label["key"] for label in half}
    rows = table.filter(pa.compute.is_in(table.column("key"), pa.array(sorted(keys))))
    # Files come family by family, the original first: where the keep policy ties (copies of one size),
    # input order would hand the original the keeper's place.  A scraped set has no such order.
    rows = rows.take(np.random.default_rng(INPUT_ORDER_SEED).permutation(rows.num_rows))
    results = {}
    if peers:
        # The peer gets the same order: which of two duplicates imagededup removes depends on it too.
        half_encodings = {key: encodings[key] for key in rows.column("key").to_pylist() if key in encodings}
        for threshold in (10, 6):
            results[f"imagededup PHash {threshold}"] = {
                "settings": {"max_distance_threshold": threshold},
                **score(imagededup_outcome(half_encodings, threshold), half),
            }
    for name, options in variants.items():
        results[name] = {"settings": _settings(options), **score(dedupkit_outcome(rows, options, workers), half)}
    return results


def _settings(options: DedupOptions) -> dict:
    settings = asdict(options)
    settings["hash_radius"] = [list(pair) for pair in options.hash_radius]
    return settings


def print_table(title: str, results: dict[str, dict]) -> None:
    print(f"\n{title}")
    header = f"{'method':42} {'copies removed':>14} {'95% interval':>12} {'distinct lost':>15} {'false merges':>12}"
    short = {"resize+jpeg": "rs+jp", "crop+flip": "cr+fl", "colour+text": "co+tx", "pad+resize+jpeg": "pd+rs+jp",
             "rotate+crop+colour": "ro+cr+co"}
    names = [short.get(name, name[:6]) for name in TRANSFORMS]
    print(header + "  " + " ".join(f"{n:>8}" for n in names) + f" {'small':>6}")
    for name, r in results.items():
        per = " ".join(_percent(r["per_transform"][t]["recall"], 8) for t in TRANSFORMS)
        low, high = (100 * bound for bound in r["copies_removed_interval"])
        print(f"{name:42} {100 * r['copies_removed']:13.1f}% {f'{low:.1f}-{high:.1f}':>12} "
              f"{r['distinct_lost']:5d} ({100 * r['distinct_lost_share']:4.1f}%)"
              f" {r['false_merges']:12d}  {per} {_percent(r['small_slice']['recall'], 6)}")


def print_paired(results: dict[str, dict], against: str = DEFAULTS) -> None:
    """Each other dedupkit setting against `against` on the same copies: what each finds that the other misses."""
    print(f"\npaired with {against} (copies only it finds / only the setting finds):")
    for name, r in results.items():
        if name != against and "missed_copies" in r:
            only_ours, only_theirs = paired_difference(results[against], r)
            print(f"  {name:42} {only_ours:4d} / {only_theirs:4d}")


def with_pairings(report: dict, against: str = DEFAULTS) -> dict:
    """`report` as written: each half's settings carry `paired_with_defaults` (`paired_difference` with
    `against`), and only `against` keeps its list of missed copies (the others' run to hundreds)."""
    report = json.loads(json.dumps(report))
    for half in ("dev", "test"):
        results = report.get(half, {})
        for name, result in results.items():
            if name != against and "missed_copies" in result:
                result["paired_with_defaults"] = list(paired_difference(results[against], result))
        for name, result in results.items():
            if name != against:
                result.pop("missed_copies", None)
    return report


def _percent(share: float | None, width: int) -> str:
    return f"{'-':>{width}}" if share is None else f"{100 * share:{width}.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--originals", type=int, default=SetConfig.originals)
    parser.add_argument("--seed", type=int, default=SetConfig.seed)
    parser.add_argument("--calibrate", action="store_true", help="also score the grid of variants on the dev half")
    parser.add_argument("--output", type=Path, default=RESULTS / "neardup_quality.json")
    parser.add_argument("--workers", type=int, default=1, help="processes that verify candidate pairs (same numbers)")
    args = parser.parse_args(argv)

    config = SetConfig(originals=args.originals, seed=args.seed)
    folder = CACHE / config.name
    started = time.perf_counter()
    labels = build_set(config, folder)
    print(f"set: {len(labels)} files, {len({l['family'] for l in labels})} families ({folder}), "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    table = with_local_features(folder, analyse(folder))
    print(f"signatures: {table.num_rows} rows, {time.perf_counter() - started:.0f} s", flush=True)
    encodings = imagededup_encodings(folder)
    matches = _imagededup_agreement(table, encodings)
    print(f"dedupkit pHash equal to imagededup's on {matches:.1%} of files", flush=True)

    variants = dedupkit_variants()
    report = {"set": asdict(config), "files": len(labels), "phash_equal_to_imagededup": matches,
              "transforms": {"single": list(SINGLE_TRANSFORMS), "combinations": COMBINATIONS}}
    shown = _report_variants(variants)
    lookalike_folder = build_lookalikes(LOOKALIKES, CACHE / f"lookalikes_fashion_{LOOKALIKES}")
    lookalike_table = with_local_features(lookalike_folder, analyse(lookalike_folder))
    lookalike_encodings = imagededup_encodings(lookalike_folder)
    report["lookalikes"] = {"images": lookalike_table.num_rows, "dropped": {
        **{f"imagededup PHash {t}": len(imagededup_outcome(lookalike_encodings, t).dropped) for t in (10, 6)},
        **stored_lookalikes_dropped(lookalike_folder, lookalike_table,
                                    variants if args.calibrate else {name: variants[name] for name in shown}, args.workers)}}
    print("\nFashion-MNIST look-alikes dropped (of "
          f"{lookalike_table.num_rows} distinct): " + ", ".join(f"{name} {count}" for name, count in report["lookalikes"]["dropped"].items()
                                                               if name in shown or name.startswith("imagededup")))
    if args.calibrate:
        report["dev"] = evaluate(labels, table, encodings, "dev", variants, peers=True, workers=args.workers)
        print_table("dev half (calibration grid)", report["dev"])
        print_paired(report["dev"])
        report["calibrated_choice"] = calibrated_choice(report["dev"], report["lookalikes"]["dropped"])
        print(f"\ncalibrated on the dev half: {report['calibrated_choice']}")
        shown.append(report["calibrated_choice"])
    report["test"] = evaluate(labels, table, encodings, "test", {name: variants[name] for name in shown}, peers=True,
                              workers=args.workers)
    print_table("test half (held out)", report["test"])
    print_paired(report["test"])
    defaults = report["test"][DEFAULTS]
    peer = report["test"]["imagededup PHash 10"]
    met = defaults["copies_removed"] >= TARGET_REMOVED and defaults["distinct_lost_share"] <= TARGET_LOST_SHARE
    print(f"\ndedupkit defaults vs imagededup PHash 10 (test half): copies removed "
          f"{100 * defaults['copies_removed']:.1f}% vs {100 * peer['copies_removed']:.1f}%, distinct lost "
          f"{defaults['distinct_lost']} vs {peer['distinct_lost']} of {defaults['families']} families, false merges "
          f"{defaults['false_merges']} vs {peer['false_merges']}; targets >= {TARGET_REMOVED:.0%} removed and "
          f"<= {TARGET_LOST_SHARE:.1%} lost: {'met' if met else 'NOT met'}")
    kept = defaults["kept_for_original"]
    print(f"kept in the original's place by the defaults, of the test half's {sum(kept.values())} families with copies: "
          + ", ".join(f"{what} {count}" for what, count in kept.items()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(with_pairings(report), indent=1))
    print(f"wrote {args.output}")
    return 0


def _report_variants(variants: dict[str, DedupOptions]) -> list[str]:
    wanted = [DEFAULTS, "dedupkit defaults, no colour check", NO_ALIGNED_CHECK, SAME_KEEPER_BAR, THRESHOLDS,
              GLOBAL_BASELINE, "phash 8 + flip only", "phash 4 + flip only", "embedding 0.93 only",
              "embedding 0.95 only", "phash 8 + flip, embedding 0.93",
              local_variant_name(0.97, 0.7, 15, 0.1, 0.95), local_variant_name(0.97, 0.7, 15, 0.1, 0.9),
              local_variant_name(0.97, 0.7, 12, 0.08, 0.9)]
    return [name for name in wanted if name in variants]


def _imagededup_agreement(table: pa.Table, encodings: dict[str, str]) -> float:
    from dedupkit.signatures.columns import hashes_from_column
    from dedupkit.signatures.hashes import hash_to_hex

    ours = dict(zip(table.column("key").to_pylist(), (hash_to_hex(h) for h in hashes_from_column(table.column("sig_phash")))))
    shared = [key for key in ours if key in encodings]
    return sum(ours[key] == encodings[key] for key in shared) / max(1, len(shared))


if __name__ == "__main__":
    sys.exit(main())
