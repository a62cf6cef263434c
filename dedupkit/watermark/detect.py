"""Is this image marked with our key, and which record does it trace to?"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from dedupkit.decode import DecodeError, open_image
from dedupkit.watermark.embed import codec_for
from dedupkit.watermark.methods import METHOD_NAMES, get_method
from dedupkit.watermark.payload import (
    KEY_FILE_NAME,
    WatermarkKeyError,
    chase_decode,
    chase_trials,
    dataset_fingerprint,
    false_alarm_probability,
    load_key,
    parse_key,
)
from dedupkit.watermark.registry import Registry


@dataclass
class Detection:
    marked: bool
    method: str | None
    p_value: float
    """Probability that an unmarked image scores at least this well, over every method and
    gain tried (Bonferroni); 1.0 when nothing decoded."""
    bit_accuracy: float | None
    """Share of read bits that agree with the decoded codeword (None when nothing decoded)."""
    dataset_match: bool
    """The mark carries this key's dataset id (and the registry, if given, is of this dataset)."""
    record_index: int | None
    """The record index the payload carries (mod 2**index_bits of the method)."""
    record_key: str | None
    """The registry's record for that payload; with several candidates (rivaGan's short index), the first."""
    candidates: list[str] = field(default_factory=list)
    methods_tried: list[str] = field(default_factory=list)
    source: str | None = None
    error: str | None = None
    """Why the image could not be checked (unreadable, not an image); None when it was."""

    def to_dict(self) -> dict:
        return asdict(self)

    def table_row(self) -> dict[str, str]:
        """Display strings for one line of the `dedupkit detect` terminal table."""
        return {
            "image": self.source or "",
            "marked": "yes" if self.marked else ("error" if self.error else "no"),
            "method": self.method or "",
            "p_value": f"{self.p_value:.1e}" if self.marked else "",
            "bit_accuracy": f"{self.bit_accuracy:.3f}" if self.bit_accuracy is not None else "",
            "dataset_match": "yes" if self.dataset_match else "no",
            "record_index": "" if self.record_index is None else str(self.record_index),
            "record": self.error or self.record_key or (f"{len(self.candidates)} candidates" if self.candidates else ""),
        }


def resolve_key(key: str | bytes | None, registry: str | Path | Registry | None) -> bytes:
    """The key given, else the one saved beside the registry."""
    if key is not None:
        return parse_key(key)
    if registry is not None:
        directory = registry.path.parent if isinstance(registry, Registry) else Path(registry)
        directory = directory if directory.is_dir() else directory.parent
        return load_key(directory / KEY_FILE_NAME)
    raise WatermarkKeyError(f"no watermark key: pass --key, or --registry with its {KEY_FILE_NAME} beside it")


def _load_rgb(image_or_path: Image.Image | np.ndarray | str | Path) -> np.ndarray:
    if isinstance(image_or_path, np.ndarray):
        return image_or_path[..., :3]
    if isinstance(image_or_path, Image.Image):
        return np.asarray(image_or_path.convert("RGB"))  # RGBA -> RGB keeps the RGB values
    path = Path(image_or_path)
    try:
        image, _ = open_image(path.read_bytes())
    except OSError as exc:
        raise DecodeError(f"cannot read {path}: {exc.strerror or exc}") from None
    # Alpha is left aside: the mark is in the RGB values, also under transparent pixels.
    return np.asarray(image)[..., :3]


CHASE_UNRELIABLE_BITS = 6
"""Soft-score methods also try flipping every pattern of their 6 least reliable bits."""


def _trials_per_read(method) -> int:
    return chase_trials(CHASE_UNRELIABLE_BITS) if method.soft_scores else 1


def false_alarm_bound(method_name: str) -> float:
    """Probability that one detection with this method flags an unmarked image (union bound over
    its gain hypotheses and soft-decoding trials), assuming read bits are fair coins; see
    SpreadTransformDct for where that assumption is weak."""
    method = get_method(method_name)
    reads = len(getattr(method, "GAINS", (1.0,)))
    return min(1.0, reads * _trials_per_read(method) * false_alarm_probability(method.layout))


def _p_value(method, flipped: int) -> float:
    """Chance that one read of an unmarked image decodes this well (flips beyond t come from soft trials)."""
    if flipped <= method.layout.correctable:
        return false_alarm_probability(method.layout, flipped)
    return _trials_per_read(method) * false_alarm_probability(method.layout)


def detect_pixels(rgb: np.ndarray, key: bytes, methods: list[str] | None = None) -> Detection:
    """Try the methods cheapest first and stop at the first payload of this key that decodes.

    The p-value is multiplied by every read that could have run (each method, and each
    gain hypothesis of stdmDct), so stopping early does not flatter it.
    """
    height, width = rgb.shape[:2]
    names = [name for name in (methods or METHOD_NAMES) if get_method(name).accepts(width, height)]
    reads = sum(len(getattr(get_method(name), "GAINS", (1.0,))) for name in names)
    for name in names:
        method = get_method(name)
        codec = codec_for(method, key)
        reader = getattr(method, "extract_candidates", None)
        best = None
        for scores in (reader(rgb, key) if reader else [method.extract(rgb, key)]):
            if method.soft_scores:
                decoded = chase_decode(codec, scores, CHASE_UNRELIABLE_BITS)
            else:
                decoded = codec.decode((scores > 0).astype(np.uint8))
            if decoded is not None and (best is None or decoded.flipped < best[0].flipped):
                best = (decoded, (scores > 0).astype(np.uint8))
        if best is not None:
            decoded, bits = best
            return Detection(
                marked=True,
                method=name,
                p_value=min(1.0, _p_value(method, decoded.flipped) * reads),
                bit_accuracy=float(np.mean(decoded.codeword == bits)),
                dataset_match=True,
                record_index=decoded.record_index,
                record_key=None,
                methods_tried=names,
            )
    return Detection(False, None, 1.0, None, False, None, None, methods_tried=names)


def detect_image(image_or_path: Image.Image | np.ndarray | str | Path, key: str | bytes | None = None,
                 registry: str | Path | Registry | None = None, method: str | None = None) -> Detection:
    """Look for a mark of `key` (default: the key saved beside `registry`) with every method, or `method`.

    With a registry, a decoded payload is traced to its record key.
    """
    secret = resolve_key(key, registry)
    if method is not None and method != "auto":
        get_method(method)  # unknown names fail with the list of valid ones
    detection = detect_pixels(_load_rgb(image_or_path), secret, None if method in (None, "auto") else [method])
    if isinstance(image_or_path, (str, Path)):
        detection.source = str(image_or_path)
    if registry is not None and detection.marked:
        table = registry if isinstance(registry, Registry) else Registry(registry)
        entries = table.lookup(dataset_fingerprint(secret), detection.method, detection.record_index)
        detection.candidates = [entry.record_key for entry in entries]
        detection.record_key = entries[0].record_key if entries else None
        detection.dataset_match = bool(entries) or _registry_has_dataset(table, dataset_fingerprint(secret))
    return detection


def _registry_has_dataset(registry: Registry, dataset: str) -> bool:
    return dataset in set(registry.table["dataset"].to_pylist())


def detect_paths(paths: list[str | Path], key: str | bytes | None = None, registry: str | Path | None = None,
                 method: str | None = None) -> list[Detection]:
    """`detect_image` for many files, loading the key and registry once; unreadable files get `error`."""
    secret = resolve_key(key, registry)
    table = Registry(registry) if registry is not None else None
    detections = []
    for path in paths:
        try:
            detections.append(detect_image(path, secret, table, method))
        except DecodeError as exc:
            detections.append(Detection(False, None, 1.0, None, False, None, None, source=str(path), error=str(exc)))
    return detections
