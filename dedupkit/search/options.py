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
    families and reported on the other, and 1,000 distinct Fashion-MNIST garments (28 px,
    one frame: look-alikes that must all be kept).  pHash only at distance 0 (with its
    mirror), because flat drawings and flags collide at 2-8 bits; embeddings alone only
    at cosine 0.97, because distinct look-alikes (flags, card suits, moon phases) reach
    0.93-1.0; below that, down to cosine 0.7, a pair is a copy only when local features
    confirm it (15 ORB keypoints and a tenth of the shared ones under one similarity
    transform, checked from both ends and against each end's mirror; the aligned grey
    thumbnails correlate at 0.95, with the alignment polished on the thumbnails and plain
    margins left out; colours do not conflict), or, for pictures too small or plain for
    keypoints, when the same-shaped frames' thumbnails correlate at 0.98 scaled onto each
    other.  Hash pairs must pass the thumbnail check too, their whole frames at 0.95 (a
    nearly blank picture's pHash collides with others at 0 bits).  A record paired only
    with a copy of a cluster's keeper is checked against the keeper itself (see
    dedupkit.search.clusters).  On the held-out half: 81.5 % of copies removed, 0.5 % of
    distinct pictures lost (3 of 620; one is a labelled version of another family's
    drawing), 3 of the 1,000 garments dropped (before that keeper check and thumbnails for
    plain pictures, 2026-11-26: 80.5 %, 2 pictures and 3 garments; before the alignment
    polish and the margins, 2026-11-25: 77.4 %, 2
    pictures and 9 garments, with the whole-frame bar at 0.99; at 12 keypoints and a
    ratio of 0.08, before the whole-frame and hash checks: 76.9 %, 5 pictures and 24
    garments; embeddings at 0.93 without local verification: 52 % and 1.1 %; imagededup
    PHash at 10: 49 %, 6.6 % and 294 garments).  An appearance bar of 0.9 would remove
    2.9 / 2.8 points more copies (dev / held out) for 5 / 7 pictures lost and 9 garments.
    Greyscale and mildly recoloured copies are copies; the same drawing with some parts
    in other colours is not.
    """

    hash_radius: tuple[tuple[str, int], ...] = (("phash", 0),)
    """Perceptual hash kinds and the Hamming radius (of 64 bits) under which two images are copies."""
    flip: bool = True
    """Also match mirrored copies (hash of the mirrored image against the others, and
    local features against the mirrored keypoints)."""
    embedder: str | None = "efficientnet-lite0"
    """Embedding model spec, or None for hashes only."""
    min_similarity: float = 0.97
    """Cosine similarity of embeddings at or above which two images are copies."""
    keep: str = "largest"
    """Keeper of a cluster: largest (most pixels), first (input order), prefer-unmarked."""
    search_method: str = "auto"
    verify_local: bool = True
    """With an embedder: also confirm looser embedding candidates by local features (ORB
    keypoints under one similarity transform): catches crops, padding, rotations and
    overlays that score below `min_similarity`; and require thumbnail agreement of hash
    pairs too, whole frames at `min_appearance` (nearly blank pictures collide in pHash).  Needs the "orb" signature
    (dedupkit.signatures.local)."""
    candidate_similarity: float = 0.7
    """Embedding cosine at or above which a pair is a candidate for local verification."""
    max_candidates_per_record: int = 20
    """Only a record's nearest candidates (by cosine) are verified: bounds the work to about
    this many checks per record in crowds of look-alikes (flags, playing cards)."""
    min_inliers: int = 15
    """Keypoint matches one similarity transform must explain for a candidate to be a copy."""
    min_inlier_ratio: float = 0.1
    """...and their share of the keypoints the transform maps inside both frames."""
    min_appearance: float = 0.95
    """...and the correlation of the aligned grey thumbnails (colour-blind, -1..1)."""
    max_hue_conflict: float = 0.03
    """...and at most this share of the aligned overlap coloured in both images with hues
    more than 90 degrees apart (a recoloured copy shifts hues a little; the same drawing
    in other colours changes some of them completely)."""
    min_frame_appearance: float | None = 0.98
    """A candidate the keypoints cannot confirm (a small or plain picture) is still a copy when
    its frame has the other's shape and, one scaled onto the other, the grey thumbnails
    correlate at this or more (colours checked as above); None turns the check off."""

    @property
    def hash_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self.hash_radius)
