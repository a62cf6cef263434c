"""Local features for verifying near-duplicate candidates: ORB keypoints as a compact signature.

A global signature (hash, embedding) cannot tell a cropped, padded or overlaid copy
from a different picture that merely looks alike (another flag, the next moon phase).
Keypoints can: a copy shares many keypoints that one geometric transform maps onto the
original, a look-alike does not.  The analysis pass stores up to `MAX_KEYPOINTS` ORB
keypoints per image (32-byte binary descriptors, float16 positions in a thumbnail whose
long side is `THUMBNAIL_SIDE`, so copies at any size land at one scale); the decision
only verifies candidate pairs from the loose global search and never touches pixels.

Signature layout (bytes): n descriptors of 32 bytes, then n (x, y) float16 pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np
from PIL import Image

from dedupkit.records import Record

SIGNATURE_NAME = "orb"
THUMBNAIL_SIDE = 512
MAX_KEYPOINTS = 256
DESCRIPTOR_BYTES = 32
# Hamming distance (of 256 bits) under which two descriptors may be the same point.
MAX_DESCRIPTOR_DISTANCE = 64
# Lowe's ratio: the best match must be clearly better than the second best.
MATCH_RATIO = 0.8
# RANSAC tolerance in thumbnail pixels (of THUMBNAIL_SIDE).
RANSAC_PIXELS = 8.0


def grey_thumbnail(image: Image.Image) -> np.ndarray:
    """Grey image whose long side is THUMBNAIL_SIDE (small pictures are enlarged so ORB finds corners)."""
    grey = image.convert("L")
    scale = THUMBNAIL_SIDE / max(grey.size)
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    return np.asarray(grey.resize(size, Image.BILINEAR if scale > 1 else Image.BOX))


_ORB = None


def _orb():
    global _ORB
    if _ORB is None:
        _ORB = cv2.ORB_create(nfeatures=MAX_KEYPOINTS, fastThreshold=10)
    return _ORB


def orb_signature(image: Image.Image) -> bytes:
    """The packed ORB keypoints of one decoded image (empty bytes for a flat picture)."""
    keypoints, descriptors = _orb().detectAndCompute(grey_thumbnail(image), None)
    if descriptors is None or not keypoints:
        return b""
    # ORB can return a few more than nfeatures; the strongest come first.
    order = np.argsort([-point.response for point in keypoints])[:MAX_KEYPOINTS]
    points = np.asarray([keypoints[i].pt for i in order], dtype=np.float16)
    return np.ascontiguousarray(descriptors[order]).tobytes() + points.tobytes()


def unpack_orb(signature: bytes | None) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors uint8 (n, 32), points float32 (n, 2)) from `orb_signature` bytes."""
    if not signature:
        return np.empty((0, DESCRIPTOR_BYTES), np.uint8), np.empty((0, 2), np.float32)
    stride = DESCRIPTOR_BYTES + 4
    if len(signature) % stride:
        raise ValueError(f"an ORB signature of {len(signature)} bytes is not a whole number of keypoints ({stride} bytes each)")
    count = len(signature) // stride
    descriptors = np.frombuffer(signature, np.uint8, count * DESCRIPTOR_BYTES).reshape(count, DESCRIPTOR_BYTES)
    points = np.frombuffer(signature, np.float16, count * 2, offset=count * DESCRIPTOR_BYTES).reshape(count, 2)
    return descriptors, points.astype(np.float32)


_MATCHER = None


def _matcher():
    global _MATCHER
    if _MATCHER is None:
        _MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING)
    return _MATCHER


@dataclass(frozen=True)
class Verification:
    """How well two keypoint sets agree: matches passing the ratio test, and RANSAC inliers among them."""

    matches: int
    inliers: int
    keypoints: int  # the smaller of the two sets

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / self.keypoints if self.keypoints else 0.0


def verify_pair(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]) -> Verification:
    """Match two unpacked ORB signatures and count the matches one similarity transform explains."""
    (desc_a, pts_a), (desc_b, pts_b) = first, second
    smaller = min(len(desc_a), len(desc_b))
    if len(desc_a) < 2 or len(desc_b) < 2:
        return Verification(0, 0, smaller)
    knn = _matcher().knnMatch(desc_a, desc_b, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance <= MAX_DESCRIPTOR_DISTANCE
            and m[0].distance < MATCH_RATIO * m[1].distance]
    if len(good) < 3:
        return Verification(len(good), 0, smaller)
    src = pts_a[[m.queryIdx for m in good]]
    dst = pts_b[[m.trainIdx for m in good]]
    _, inlier_mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS,
                                                 maxIters=2000, confidence=0.99)
    inliers = int(inlier_mask.sum()) if inlier_mask is not None else 0
    return Verification(len(good), inliers, smaller)


@dataclass
class LocalFeatureStage:
    """Adds `record.signatures["orb"]`: packed ORB keypoints of the decoded image (a few KB)."""

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            if record.alive and record.image is not None:
                record.signatures[SIGNATURE_NAME] = orb_signature(record.image)
            yield record
