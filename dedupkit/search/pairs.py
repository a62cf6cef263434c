"""Near-duplicate pairs: the common currency between the searches and the clustering."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pairs:
    """Pairs (i, j) with i < j whose signature distance is within a threshold.

    `distance` is in the signature's own unit: Hamming bits for hashes and binary
    codes, 1 - cosine similarity for embeddings, 1 - the share of keypoints that agree
    for local features, 1 - the grey thumbnails' correlation for whole-frame and aligned-thumbnail checks.  `kind` names what found them
    ("exact", "hash", "embedding", "verified", "local", "thumbnail", "aligned"); it becomes the manifest's `dup_kind`.
    """

    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray
    kind: str

    def __len__(self) -> int:
        return int(self.i.shape[0])

    @classmethod
    def empty(cls, kind: str, distance_dtype=np.float32) -> "Pairs":
        none = np.empty(0, dtype=np.int64)
        return cls(none, none.copy(), np.empty(0, dtype=distance_dtype), kind)

    @classmethod
    def canonical(cls, i, j, distance, kind: str) -> "Pairs":
        """Order each pair as (min, max), drop self pairs and repeats, sort by (i, j).

        A repeated pair keeps its smallest distance, so merging the results of a
        search run in both directions (or of several probes) cannot lose the best.
        """
        i = np.asarray(i, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        distance = np.asarray(distance)
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        keep = lo != hi
        lo, hi, distance = lo[keep], hi[keep], distance[keep]
        order = np.lexsort((distance, hi, lo))
        lo, hi, distance = lo[order], hi[order], distance[order]
        first = np.ones(lo.shape[0], dtype=bool)
        first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
        return cls(lo[first], hi[first], distance[first], kind)


def describe_match(kind: str | None, distance: float | None) -> str:
    """How a copy was matched to its keeper, in words and in the unit its kind measures in
    (the manifest's reason and the report's captions say it the same way)."""
    if kind == "exact":
        return "exact copy"
    if distance is None:
        return kind or "unknown match"
    if kind == "hash":
        return f"perceptual hash within {int(round(distance))} bits"
    if kind == "embedding":
        return f"embedding cosine {1 - distance:.3f}"
    if kind == "local":
        return f"local features: {1 - distance:.0%} of the shared keypoints in one geometric transform"
    if kind == "thumbnail":
        return f"same frame: thumbnails correlate at {1 - distance:.3f}"
    if kind == "aligned":
        return f"thumbnails aligned without keypoints correlate at {1 - distance:.3f}"
    if kind == "verified":
        return f"keypoints and thumbnails: copy score {1 - distance:.3f}"
    return f"{kind or 'match'}: distance {distance:.3g}"
