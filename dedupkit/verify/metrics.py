"""Replication criteria, their calibration against real held-out images, and the rates.

A generation is a *replica* of the training image nearest to it when
- absolute: its normalized l2 distance to it is below `max_distance`, and/or
- relative (Carlini et al., CIFAR-10): that distance divided by the mean distance to
  its `n_neighbours` nearest training images is below `alpha`.

The same criterion applied to real images of the same distribution that were not
trained on is the control: a detector that calls unseen real images copies is broken.
`calibrate` tightens the thresholds until the control has no replica and says so.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from dedupkit.verify.distances import Neighbours

ABSOLUTE, RELATIVE, BOTH = "absolute", "relative", "both"
CALIBRATION_MARGIN = 0.9
"""Calibrated thresholds sit this fraction below the closest control image."""


@dataclass(frozen=True)
class ReplicationCriterion:
    mode: str = ABSOLUTE
    """'absolute', 'relative' or 'both' (a replica must pass both tests)."""
    max_distance: float = 0.03
    """Absolute test: nearest normalized l2 below this.  0.03 separated copies from real
    unseen Fashion-MNIST images at 16 px, where Carlini's 0.15 flags most real images."""
    alpha: float = 0.5
    n_neighbours: int = 50
    tile_grid: int | None = None
    """Tiles per side for the distance; None: whole image up to 64 px, 4 x 4 above."""

    def __post_init__(self):
        if self.mode not in (ABSOLUTE, RELATIVE, BOTH):
            raise ValueError(f"criterion mode must be absolute, relative or both, not {self.mode!r}")

    def flags(self, neighbours: Neighbours) -> np.ndarray:
        absolute = neighbours.nearest_distance < self.max_distance
        relative = neighbours.relative_score < self.alpha
        return {ABSOLUTE: absolute, RELATIVE: relative, BOTH: absolute & relative}[self.mode]

    def calibrate(self, control: Neighbours) -> "ReplicationCriterion":
        """The criterion, tightened (never loosened) so that no control image is flagged."""
        if not self.flags(control).any():
            return self
        changes = {}
        if self.mode in (ABSOLUTE, BOTH):
            changes["max_distance"] = min(self.max_distance, CALIBRATION_MARGIN * float(control.nearest_distance.min()))
        if self.mode in (RELATIVE, BOTH):
            changes["alpha"] = min(self.alpha, CALIBRATION_MARGIN * float(control.relative_score.min()))
        if self.mode == BOTH:
            # Tightening one test is enough when it alone clears the control; keep the other as set.
            for name in ("max_distance", "alpha"):
                single = dataclasses.replace(self, **{name: changes[name]})
                if not single.flags(control).any():
                    return single
        return dataclasses.replace(self, **changes)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sensible at 0 and at n)."""
    if trials <= 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class RateWithInterval:
    count: int
    total: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, count: int, total: int) -> "RateWithInterval":
        low, high = wilson_interval(count, total)
        return cls(int(count), int(total), count / total if total else 0.0, low, high)


def summarize_replication(
    neighbours: Neighbours,
    flags: np.ndarray,
    reference_groups: Sequence,
    copy_counts: Mapping,
) -> dict:
    """Rates and distinct replicated training images for one set of generations.

    `reference_groups[i]` is the duplicate group of reference image i; `copy_counts`
    maps a group to how many raw training images it holds (>1: duplicated in the raw data).
    """
    replicated_references = sorted(set(int(i) for i in neighbours.nearest_index[flags]))
    replicated_groups = sorted({reference_groups[i] for i in replicated_references}, key=str)
    duplicated_groups = [group for group in replicated_groups if copy_counts.get(group, 1) > 1]
    distances = neighbours.nearest_distance
    return {
        "generations": int(len(flags)),
        "replicated": dataclasses.asdict(RateWithInterval.of(int(flags.sum()), len(flags))),
        "distinct_training_images_replicated": len(replicated_references),
        "distinct_groups_replicated": len(replicated_groups),
        "distinct_groups_replicated_that_were_duplicated": len(duplicated_groups),
        "nearest_distance_quantiles": {
            str(q): float(np.quantile(distances, q)) for q in (0.0, 0.01, 0.05, 0.25, 0.5)
        },
    }
