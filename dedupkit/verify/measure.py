"""Measure replication of training images in sets of generations, against a real control.

`measure_replication` is the one place where generations meet the training set: it is
used for the verifier's own retrained models (`dedupkit.verify.run.compare_arms`) and
for outside models' outputs (`verify_generations`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np
from PIL import Image

from dedupkit.verify.distances import Neighbours, cosine_nearest, default_tile_grid, nearest_neighbours
from dedupkit.verify.images import ImageSet
from dedupkit.verify.metrics import RateWithInterval, ReplicationCriterion, summarize_replication

Embedder = Callable[[list[Image.Image]], np.ndarray]
"""Images -> (N, D) embeddings (the dedup stage's embedder, as a second view)."""
WatermarkDetector = Callable[[Image.Image], object]
"""Image -> the decoded payload, or None when no mark is detected."""


@dataclass
class Reference:
    """The raw training set, reduced to distinct pixel images for the search."""

    images: ImageSet
    """One image per distinct picture."""
    groups: list[Hashable]
    """Duplicate group of each distinct image."""
    copy_counts: Counter
    """Raw training images per group (> 1: duplicated in the raw data)."""

    @classmethod
    def from_training(cls, training: ImageSet, groups: Sequence[Hashable] | None = None) -> "Reference":
        """Distinct pictures of `training`; `groups[i]` is the duplicate group of training image i
        (default: exact pixel copies form a group)."""
        flat = training.pixels.reshape(len(training), -1)
        _, first, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if groups is None:
            groups = [int(i) for i in inverse]
        elif len(groups) != len(training):
            raise ValueError(f"{len(groups)} duplicate groups given for {len(training)} training images")
        order = np.sort(first)
        return cls(
            images=training.subset(order),
            groups=[groups[i] for i in order],
            copy_counts=Counter(groups),
        )


@dataclass
class SetMeasurement:
    name: str
    neighbours: Neighbours
    flags: np.ndarray
    summary: dict
    generations: ImageSet
    flags_by_mode: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Measurement:
    criterion: ReplicationCriterion
    configured_criterion: ReplicationCriterion
    reference: Reference
    sets: dict[str, SetMeasurement]
    control: SetMeasurement | None


CONTROL_QUANTILE = 0.01
NEARER_THAN_MOST_REAL = "nearer_than_99_percent_of_held_out"
"""Summary key: generations nearer to a training image than 99 % of the held-out real images."""


def _flag_modes(criterion: ReplicationCriterion, neighbours: Neighbours) -> dict[str, np.ndarray]:
    return {mode: dataclasses.replace(criterion, mode=mode).flags(neighbours) for mode in ("absolute", "relative", "both")}


def measure_replication(
    generation_sets: Mapping[str, ImageSet],
    reference: Reference,
    holdout: ImageSet | None = None,
    criterion: ReplicationCriterion = ReplicationCriterion(),
    calibrate: bool = True,
    embed: Embedder | None = None,
    watermark_detector: WatermarkDetector | None = None,
) -> Measurement:
    """Nearest training images, replica flags and rates for every set of generations.

    With `holdout` (real images of the same distribution, never trained on), the same
    criterion is applied to them as a control and, with `calibrate`, tightened until it
    flags none of them.
    """
    tile_grid = criterion.tile_grid or default_tile_grid(reference.images.resolution)
    configured = dataclasses.replace(criterion, tile_grid=tile_grid)

    def search(images: ImageSet) -> Neighbours:
        return nearest_neighbours(images.pixels, reference.images.pixels, configured.n_neighbours, tile_grid)

    control_neighbours = search(holdout) if holdout is not None else None
    used = configured.calibrate(control_neighbours) if (calibrate and control_neighbours is not None) else configured

    def measured(name: str, images: ImageSet, neighbours: Neighbours) -> SetMeasurement:
        flags = used.flags(neighbours)
        summary = summarize_replication(neighbours, flags, reference.groups, reference.copy_counts)
        by_mode = _flag_modes(configured, neighbours)
        summary["flagged_by_configured_criteria"] = {
            mode: dataclasses.asdict(RateWithInterval.of(int(f.sum()), len(f))) for mode, f in by_mode.items()
        }
        return SetMeasurement(name, neighbours, flags, summary, images, by_mode)

    control = measured("held-out real", holdout, control_neighbours) if holdout is not None else None
    sets = {name: measured(name, images, search(images)) for name, images in generation_sets.items()}
    if control is not None:
        # Threshold-free views: generations nearer to a training image than every real
        # unseen image is, and than all but the nearest CONTROL_QUANTILE of them (which the
        # control itself meets at that rate by construction).  Memorization shows here
        # before copies become pixel-exact.
        real = control.neighbours.nearest_distance
        closest_real, real_quantile = float(real.min()), float(np.quantile(real, CONTROL_QUANTILE))
        for item in [*sets.values(), control]:
            nearer = item.neighbours.nearest_distance < real_quantile
            item.summary[NEARER_THAN_MOST_REAL] = {
                "distance": real_quantile,
                **{key: value for key, value in summarize_replication(
                    item.neighbours, nearer, reference.groups, reference.copy_counts).items()
                   if key != "nearest_distance_quantiles"},
            }
        for item in sets.values():
            closer = int((item.neighbours.nearest_distance < closest_real).sum())
            item.summary["closer_than_any_held_out"] = dataclasses.asdict(RateWithInterval.of(closer, len(item.flags)))
            item.summary["closest_held_out_distance"] = closest_real

    if embed is not None:
        _add_embedding_view(sets, control, reference, embed)
    if watermark_detector is not None:
        for item in sets.values():
            item.summary["watermark"] = _watermark_summary(item.generations, watermark_detector)
    return Measurement(used, configured, reference, sets, control)


def _embeddings(images: ImageSet, embed: Embedder) -> np.ndarray:
    return np.asarray(embed([images.as_pil(i).convert("RGB") for i in range(len(images))]), dtype=np.float32)


def _add_embedding_view(sets, control, reference: Reference, embed: Embedder) -> None:
    """Cosine similarity to the most similar training image; a replica by this view is a
    generation more similar to training data than any real held-out image is."""
    reference_embeddings = _embeddings(reference.images, embed)
    ceiling = None
    if control is not None:
        _, control_similarity = cosine_nearest(_embeddings(control.generations, embed), reference_embeddings)
        ceiling = float(control_similarity.max())
        control.summary["embedding"] = _similarity_summary(control_similarity, ceiling)
    for item in sets.values():
        _, similarity = cosine_nearest(_embeddings(item.generations, embed), reference_embeddings)
        item.summary["embedding"] = _similarity_summary(similarity, ceiling)


def _similarity_summary(similarity: np.ndarray, ceiling: float | None) -> dict:
    summary = {
        "max_cosine_quantiles": {str(q): float(np.quantile(similarity, q)) for q in (0.5, 0.95, 0.99, 1.0)},
    }
    if ceiling is not None:
        above = int((similarity > ceiling).sum())
        summary["control_max_cosine"] = ceiling
        summary["above_control_max"] = dataclasses.asdict(RateWithInterval.of(above, len(similarity)))
    return summary


def _watermark_summary(images: ImageSet, detector: WatermarkDetector) -> dict:
    payloads = [detector(images.as_pil(i)) for i in range(len(images))]
    found = [str(p) for p in payloads if p is not None and p is not False]
    return {
        "marked": dataclasses.asdict(RateWithInterval.of(len(found), len(payloads))),
        "traced_to": dict(Counter(found).most_common(20)),
    }
