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
    0.93-1.0; below that, down to cosine 0.7, a pair is a copy only when its local
    features say so: the learned copy verifier (dedupkit.search.copy_model, trained on
    drawings and garments the benchmark does not use) weighs every keypoint and thumbnail
    measurement of the pair (ORB inliers under one similarity transform, as is and
    mirrored, from both ends; aligned grey thumbnails' correlation, whole and in tiles;
    whole-frame comparison; hue conflict) with the cosine, and must score it at 0.7 with
    colours not in conflict.  Hash pairs must pass the thresholds' thumbnail check, their
    whole frames at 0.95 (a nearly blank picture's pHash collides with others at 0 bits).
    A candidate the verifier rejects is still a copy when its grey thumbnails, aligned by
    themselves (ECC, no keypoints), correlate at 0.99 and in every part: flat flags and
    patterns cropped, padded or turned.  A record paired only with a copy of a cluster's
    keeper is checked against the keeper itself (see dedupkit.search.clusters), by the verifier
    at 0.4 (`min_keeper_score`).  On the held-out half, its files in a shuffled order (as a
    scraped set comes): 88.3 % of copies removed (95 % interval over families 85.0-91.6), 0.32 %
    of distinct pictures lost (2 of 620), 17 false merges, none of the 1,000 garments dropped;
    on the dev half, which the verifier never saw either, 91.4 % and 2 of 580 (2026-12-03,
    session 21, since the keep policy prefers a losslessly stored picture among as many pixels;
    before it, with ties in input order: 88.5 % and 3 held out, 90.1 % and 1 on dev).  In file
    order, originals first, the earlier defaults measured 89.1 % and 2 pictures held out.  The
    calibration keeps the defaults unless a setting finds significantly more of the same dev
    copies (one-sided McNemar test at 0.05), and none does (the closest, a copy score of 0.5:
    6 copies only it finds, 2 only the defaults, p 0.14; it loses 4 dev pictures).  Taking the
    plain maximum had moved the copy score to 0.6 (session 19: held out 88.6 %, 3 pictures, 19
    false merges) and then the keeper bar to 0.3, which held out loses 4 of 620 pictures, over
    the target.  Held out, without the aligned check 86.8 %; keeper check at the copy score
    86.9 %; verifying by the thresholds instead, `min_copy_score=None`: 82.7 %, 3 pictures, 21
    false merges and 3 garments; imagededup PHash at 10, in the same order: 51.4 %, 7.9 % and
    294 garments (earlier: before the keeper check and thumbnails for plain pictures,
    2026-11-26, 80.5 % in file order; embeddings at 0.93 without local verification: 52 % and
    1.1 %).  The verifier measures every candidate in full, so deciding costs about 1.8 times
    the thresholds' (27 s against 15 s for the benchmark's 2,460 pictures on a quiet machine; a
    third of it is OpenCV's ECC); `workers` processes share the candidates (see decide_duplicates).
    Greyscale and mildly recoloured copies are copies; the same drawing with some parts in other
    colours is not.
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
    """Keeper of a cluster: largest (most pixels; of as many, one not stored in a lossy format),
    first (input order), prefer-unmarked (then as largest).  Remaining ties go by input order."""
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
    """Keypoint matches one similarity transform must explain for a candidate to be a copy (this and
    the thresholds below verify hash pairs, and every candidate when `min_copy_score` is None)."""
    min_inlier_ratio: float = 0.1
    """...and their share of the keypoints the transform maps inside both frames."""
    min_appearance: float = 0.95
    """...and the correlation of the aligned grey thumbnails (colour-blind, -1..1)."""
    max_hue_conflict: float = 0.03
    """...and at most this share of the aligned overlap coloured in both images with hues
    more than 90 degrees apart (a recoloured copy shifts hues a little; the same drawing
    in other colours changes some of them completely)."""
    min_copy_score: float | None = 0.7
    """An embedding candidate is a copy when the learned copy verifier (dedupkit.search.copy_model:
    trees over every keypoint and thumbnail measurement of the pair and the cosine) scores it at
    this or more (0..1); the thresholds above and below then only check hash pairs.  None
    verifies candidates by those thresholds instead."""
    min_keeper_score: float = 0.4
    """With the learned verifier: a record paired only with a copy of a cluster's keeper (a crop of the
    original when a padded copy is the keeper) is dropped when the verifier scores it against the keeper
    itself at this or more (the lower of this and `min_copy_score`).  Its pair with the copy already passed
    `min_copy_score`; against the keeper, two edits meet (the crop and the padding), which the verifier
    scores lower than either alone.  `min_copy_score` or more holds it to the candidates' bar."""
    min_frame_appearance: float | None = 0.98
    """A candidate the keypoints cannot confirm (a small or plain picture) is still a copy when
    its frame has the other's shape and, one scaled onto the other, the grey thumbnails
    correlate at this or more (colours checked as above); None turns the check off."""
    min_aligned_appearance: float | None = 0.99
    """A candidate the verifier (or the thresholds) rejects is still a copy when the grey thumbnails,
    aligned by themselves with no keypoints (ECC: a flat flag or chevron cropped, padded or turned a
    few degrees, too plain for keypoints and no longer of the other's shape), correlate at this or
    more, the lower quartile of their 4x4 tiles at 0.9 too, colours not in conflict; as is only, not
    mirrored (openclipart holds mirror-image recolourings as drawings of their own).  None turns it off."""

    @property
    def hash_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self.hash_radius)
