"""Settings of the near-duplicate decision; light to import (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass

KEEP_POLICIES = ("largest", "first", "prefer-unmarked")

@dataclass(frozen=True)
class DedupOptions:
    """Which signatures decide near duplicates, and how close is a copy.

    Defaults calibrated by benchmarks/neardup_quality.py (results in
    benchmarks/results/neardup_quality.json): 1,200 real pictures (photos, openclipart
    drawings) at 48-1024 px with 1,260 planted copies, chosen on one half of the
    families and reported on the other.  The setting that removes the most copies
    while losing the fewest distinct pictures: pHash only at distance 0 (with its
    mirror), because flat drawings and flags collide at 2-8 bits; embeddings at
    cosine 0.93 catch crops, rotations, recolourings and overlays.  On the held-out
    half: 52 % of copies removed, 1.1 % of distinct pictures lost (imagededup PHash
    at 10: 49 % and 6.6 %).  Radius 8 with cosine 0.93 removes 61 % but loses 5.5 %.
    """

    hash_radius: tuple[tuple[str, int], ...] = (("phash", 0),)
    """Perceptual hash kinds and the Hamming radius (of 64 bits) under which two images are copies."""
    flip: bool = True
    """Also match mirrored copies (hash of the mirrored image against the others)."""
    embedder: str | None = "efficientnet-lite0"
    """Embedding model spec, or None for hashes only."""
    min_similarity: float = 0.93
    """Cosine similarity of embeddings at or above which two images are copies."""
    keep: str = "largest"
    """Keeper of a cluster: largest (most pixels), first (input order), prefer-unmarked."""
    search_method: str = "auto"
    verify_local: bool = False
    """Also confirm looser embedding candidates by local features (ORB keypoints under one
    similarity transform): catches crops, padding, rotations and overlays that score below
    `min_similarity`.  Needs the "orb" signature (dedupkit.signatures.local)."""
    candidate_similarity: float = 0.75
    """Embedding cosine at or above which a pair is a candidate for local verification."""
    min_inliers: int = 20
    """Keypoint matches one similarity transform must explain for a candidate to be a copy."""
    min_inlier_ratio: float = 0.15
    """...and their share of the keypoints the transform maps inside both frames."""
    min_appearance: float = 0.0
    """...and the correlation of the aligned grey thumbnails (colour-blind, -1..1)."""

    @property
    def hash_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self.hash_radius)
