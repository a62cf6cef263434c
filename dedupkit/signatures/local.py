"""Local features for verifying near-duplicate candidates: ORB keypoints as a compact signature.

A global signature (hash, embedding) cannot tell a cropped, padded or overlaid copy
from a different picture that merely looks alike (another flag, the next moon phase).
Keypoints can: a copy shares many keypoints that one geometric transform maps onto the
original, a look-alike does not.  The analysis pass stores up to `MAX_KEYPOINTS` ORB
keypoints per image (32-byte binary descriptors, float16 positions in a thumbnail whose
long side is `THUMBNAIL_SIDE`, so copies at any size land at one scale); the decision
only verifies candidate pairs from the loose global search and never touches pixels.

A verified pair must also be plausible as a copy: the similarity transform keeps the
scale within [MIN_SCALE, MAX_SCALE] (thumbnails share a long side, so crops and pads move
it little; a collapse onto a few points is how RANSAC fits repeated texture), and the
inliers must be a fair share of the keypoints that the transform maps inside the other
frame (a card sharing its frame with another card, but not its face, is not a copy).
Last, appearance: a tiny grey thumbnail (long side `APPEARANCE_SIDE`) of one image, warped
by the transform onto the other's, must correlate (normalized cross-correlation over the
overlap, blind to brightness, contrast and colour, so recoloured and greyscale copies
pass; the transform is first polished on the thumbnails themselves, within RANSAC's
tolerance, and plain margins such as a padded copy's border are left out of the overlap),
and the colours must not conflict: in a colour thumbnail (long side `COLOUR_SIDE`)
warped the same way, the share of the overlap where both images are saturated but their
hues lie more than `HUE_CONFLICT_DEGREES` apart (`hue_conflict`).  A recoloured copy shifts
every hue a little and a greyscale copy has no saturated pixels, so both pass; the same
drawing with a green instead of a red jester, or a magenta instead of a green arrow, does not.

Copies too small or too plain for keypoints (a 40 px icon, a flat drawing resized and
recompressed) are tried once more without them: when the two frames have the same shape
(aspect ratios within `FRAME_ASPECT_TOLERANCE`), one thumbnail is simply scaled onto the
other; the grey thumbnails must then correlate at `min_frame_appearance` and the colours
must not conflict (`confirm_whole_frame`).  That catches resized, recompressed, recoloured
and greyscale copies whose embedding drifted below the global threshold, and only those:
a crop, a pad or a rotation changes the frame.  Those are left to the thumbnails aligned by
themselves (`confirm_aligned_frame`): OpenCV's ECC maximises their correlation from a few
starts under a motion that must stay close to a similarity, and the aligned grey thumbnails
must correlate at `min_aligned_appearance`, the lower quartile of their 4x4 tiles at
MIN_ALIGNED_TILES, colours not in conflict.  As is only, never mirrored: without keypoints
a mirrored copy and a mirror-image sibling align alike.  Tricolour flags cropped or turned
(Germany, Italy, Romania) still escape it: their thumbnails align to 0.85-0.97 only.

Mirrored copies: ORB descriptors do not survive mirroring (the binary tests of a
mirrored patch are not a permutation of the original's), so the signature also holds the
keypoints of the mirrored thumbnail, and `confirm_copy` tries the pair as is, then
against the mirror; the mirrored thumbnails are the stored ones flipped.

Signature layout (bytes): a header of uint16 [LAYOUT_MARK, width, height, n, m] (thumbnail
size, keypoint counts of the image and of its mirror), n descriptors of 32 bytes, n (x, y)
float16 pairs, m mirrored descriptors, m mirrored pairs, the grey appearance thumbnail
(uint8, row-major), then the RGB colour thumbnail (uint8, row-major).  A picture too plain for
keypoints has n = m = 0 and its thumbnails (until 2026-11-26 it had empty bytes, which still
unpack, to no keypoints and no thumbnails).  Signatures written
before mirrored keypoints and colours existed (header [width, height], keypoints, grey
thumbnail; LAYOUT_MARK is larger than any thumbnail side) still unpack, and verify in
their own orientation without the colour test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache, cached_property
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
from PIL import Image

from dedupkit.decode import flatten_alpha
from dedupkit.records import Record

SIGNATURE_NAME = "orb"
THUMBNAIL_SIDE = 512
MAX_KEYPOINTS = 256
# The mirror's strongest keypoints only: on the benchmark's dev half 128 confirm as many
# flipped copies as 256, at half the bytes.
MAX_MIRROR_KEYPOINTS = 128
DESCRIPTOR_BYTES = 32
# Hamming distance (of 256 bits) under which two descriptors may be the same point.
MAX_DESCRIPTOR_DISTANCE = 64
# Lowe's ratio: the best match must be clearly better than the second best.
MATCH_RATIO = 0.8
# RANSAC tolerance in thumbnail pixels (of THUMBNAIL_SIDE).
RANSAC_PIXELS = 8.0
MIN_SCALE, MAX_SCALE = 0.6, 1.7
# Keypoints mapped this far (thumbnail pixels) outside the other frame still count as inside.
FRAME_MARGIN = 4.0
HEADER = np.dtype("<u2")
LAYOUT_MARK = 0xF121
# Changes whenever one picture's signature changes without a new layout (caches keyed by it are
# rebuilt): 2 since plain pictures keep their thumbnails.
SIGNATURE_REVISION = 2
APPEARANCE_SIDE = 64
COLOUR_SIDE = 32
# Pixels count as coloured from this HSV saturation and value (OpenCV's 0..255 scales) on.
MIN_SATURATION, MIN_VALUE = 60, 40
HUE_CONFLICT_DEGREES = 90.0
# How far the ECC polish of a keypoint fit may change its linear part (the shift may move RANSAC_PIXELS),
# and the smallest thumbnail side it works on.
REFINE_LINEAR = 0.03
REFINE_MIN_SIDE = 8
# The alignment without keypoints (_thumbnail_alignment): ECC's stop, its smoothing (a wider basin for
# crops and pads that start a tenth of the frame off), and how far from a similarity it may end.
ALIGNMENT_ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-3)
ALIGNMENT_SMOOTHING = 5
ALIGNMENT_MAX_ANISOTROPY = 0.08
ALIGNMENT_MAX_ROTATION = 15.0
# ...and the lower quartile of the 4x4 tile correlations it must reach besides min_aligned_appearance: a
# look-alike (another deck's card, the next moon phase) correlates well on the whole, not in every part.
MIN_ALIGNED_TILES = 0.9
# Plain margins of a grey thumbnail (see _content): grey levels of spread, and the least share of
# the thumbnail trimming them must leave.
MARGIN_LEVELS = 6
MIN_CONTENT_SHARE = 0.1
# Frames this close in aspect ratio (relative) may be one picture rescaled: checked whole.
FRAME_ASPECT_TOLERANCE = 0.04


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


def _keypoints(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The strongest ORB keypoints of a grey thumbnail: (n, 32) descriptors, (n, 2) float16 positions."""
    keypoints, descriptors = _orb().detectAndCompute(grey, None)
    if descriptors is None or not keypoints:
        return np.empty((0, DESCRIPTOR_BYTES), np.uint8), np.empty((0, 2), np.float16)
    # ORB can return a few more than nfeatures; the strongest come first.
    order = np.argsort([-point.response for point in keypoints])[:MAX_KEYPOINTS]
    points = np.asarray([keypoints[i].pt for i in order], dtype=np.float16)
    return np.ascontiguousarray(descriptors[order]), points


def orb_signature(image: Image.Image) -> bytes:
    """The packed ORB keypoints of one decoded image and of its mirror, with its thumbnails.

    A picture too plain for keypoints (a striped flag, a gradient) keeps its thumbnails, so
    the whole-frame check can still confirm its resized or recoloured copies."""
    image = flatten_alpha(image)  # what transparent pixels hide is not part of the picture
    grey = grey_thumbnail(image)
    descriptors, points = _keypoints(grey)
    mirror_descriptors, mirror_points = descriptors, points  # none: a picture without corners has none mirrored
    if len(descriptors):
        mirror_descriptors, mirror_points = (part[:MAX_MIRROR_KEYPOINTS] for part in _keypoints(np.ascontiguousarray(grey[:, ::-1])))
    frame = (grey.shape[1], grey.shape[0])
    header = np.asarray([LAYOUT_MARK, *frame, len(descriptors), len(mirror_descriptors)], dtype=HEADER)
    appearance = cv2.resize(grey, _thumbnail_size(frame, APPEARANCE_SIDE), interpolation=cv2.INTER_AREA)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    colour = np.asarray(rgb.resize(_thumbnail_size(frame, COLOUR_SIDE), Image.BOX))
    return b"".join(part.tobytes() for part in (header, descriptors, points, mirror_descriptors, mirror_points,
                                                appearance, colour))


def _thumbnail_size(frame: tuple[float, float], side: int) -> tuple[int, int]:
    """(width, height) of a thumbnail with long side `side` of a THUMBNAIL_SIDE frame."""
    scale = side / THUMBNAIL_SIDE
    return max(1, round(frame[0] * scale)), max(1, round(frame[1] * scale))


@dataclass(frozen=True)
class LocalFeatures:
    descriptors: np.ndarray  # uint8 (n, 32)
    points: np.ndarray  # float32 (n, 2), thumbnail pixels
    frame: tuple[float, float]  # thumbnail width, height
    appearance: np.ndarray  # float32 (h, w) grey, long side APPEARANCE_SIDE
    colour: np.ndarray | None = None  # uint8 (h, w, 3) HSV, long side COLOUR_SIDE (None: not stored)
    mirror_descriptors: np.ndarray | None = None  # the mirrored thumbnail's keypoints (None: not stored)
    mirror_points: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.descriptors.shape[0])

    def mirrored(self) -> "LocalFeatures | None":
        """The features of the mirrored image (None when the signature holds no mirrored keypoints)."""
        return self._mirror

    # Built once per picture, not once per pair it is verified in: a picture meets up to
    # max_candidates_per_record others, and each pair looks at the mirror and the margins again.
    @cached_property
    def _mirror(self) -> "LocalFeatures | None":
        if self.mirror_descriptors is None:
            return None
        return LocalFeatures(self.mirror_descriptors, self.mirror_points, self.frame,
                             np.ascontiguousarray(self.appearance[:, ::-1]), np.ascontiguousarray(self.colour[:, ::-1]),
                             self.descriptors, self.points)

    @cached_property
    def content(self) -> np.ndarray:
        """Where the appearance thumbnail holds the picture (`_content`): all of it but plain margins."""
        return _content(self.appearance)


def unpack_orb(signature: bytes | None) -> LocalFeatures:
    """The keypoints of `orb_signature` bytes (none for empty bytes: a flat picture)."""
    if not signature:
        return LocalFeatures(np.empty((0, DESCRIPTOR_BYTES), np.uint8), np.empty((0, 2), np.float32), (0.0, 0.0),
                             np.empty((0, 0), np.float32))
    stride = DESCRIPTOR_BYTES + 4
    first_field = int(np.frombuffer(signature, HEADER, 1)[0]) if len(signature) >= HEADER.itemsize else 0
    marked = first_field == LAYOUT_MARK
    if first_field > THUMBNAIL_SIDE and not marked:
        raise ValueError(f"an ORB signature in an unknown layout ({first_field:#x}): rerun the analysis to rebuild the "
                         "local features")
    fields = 5 if marked else 2
    header = fields * HEADER.itemsize
    if len(signature) < header:
        raise ValueError(f"an ORB signature of {len(signature)} bytes is shorter than its header")
    values = [int(v) for v in np.frombuffer(signature, HEADER, fields)]
    width, height = values[-4:-2] if marked else values
    thumb_width, thumb_height = _thumbnail_size((width, height), APPEARANCE_SIDE)
    colour_width, colour_height = _thumbnail_size((width, height), COLOUR_SIDE) if marked else (0, 0)
    keypoint_bytes = len(signature) - header - thumb_width * thumb_height - 3 * colour_width * colour_height
    if marked:
        counts = values[3:]
        if keypoint_bytes != stride * sum(counts):
            raise ValueError(f"an ORB signature of {len(signature)} bytes does not hold the {sum(counts)} keypoints "
                             "its header announces")
    elif not width or keypoint_bytes < 0 or keypoint_bytes % stride:
        raise ValueError(f"an ORB signature of {len(signature)} bytes is not a whole number of keypoints ({stride} bytes each)")
    else:
        counts = [keypoint_bytes // stride]
    offset, parts = header, []
    for count in counts:
        descriptors = np.frombuffer(signature, np.uint8, count * DESCRIPTOR_BYTES, offset=offset).reshape(count, DESCRIPTOR_BYTES)
        offset += count * DESCRIPTOR_BYTES
        points = np.frombuffer(signature, np.float16, count * 2, offset=offset).reshape(count, 2).astype(np.float32)
        offset += count * 4
        parts += [descriptors, points]
    appearance = np.frombuffer(signature, np.uint8, thumb_width * thumb_height, offset=offset).reshape(thumb_height, thumb_width)
    offset += thumb_width * thumb_height
    colour = None
    if marked:
        rgb = np.frombuffer(signature, np.uint8, offset=offset).reshape(colour_height, colour_width, 3)
        colour = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    mirror = parts[2:] if marked else [None, None]
    return LocalFeatures(parts[0], parts[1], (float(width), float(height)), appearance.astype(np.float32), colour, *mirror)


_MATCHER = None


def _matcher():
    global _MATCHER
    if _MATCHER is None:
        _MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING)
    return _MATCHER


@dataclass(frozen=True)
class Verification:
    """How well two keypoint sets agree.

    `inliers`: ratio-test matches that one plausible similarity transform explains (0
    when none does); `overlap`: the fewer of the two sets' keypoints that the transform
    maps inside the other frame, so `inlier_ratio` is the share of the shared view that
    matches.
    """

    matches: int
    inliers: int
    overlap: int
    appearance: float = 0.0  # normalized cross-correlation of the aligned grey thumbnails, -1..1
    hue_conflict: float = 0.0  # share of the aligned overlap coloured in both with hues far apart (0 unknown)
    mirrored: bool = False  # found between the first image and the mirror of the second
    whole_frame: bool = False  # aligned without keypoints: one frame scaled onto the other, or by the thumbnails alone
    aligned_tiles: float | None = None  # aligned by the thumbnails alone: the lower quartile of their tiles' correlations

    @property
    def inlier_ratio(self) -> float:
        return min(1.0, self.inliers / self.overlap) if self.overlap else 0.0


def verify_pair(first: LocalFeatures, second: LocalFeatures, criteria: CopyCriteria | None = None) -> Verification:
    """Match two unpacked ORB signatures and count the matches one similarity transform explains.

    With `criteria`, work that cannot change their verdict is skipped: no transform is
    fitted with fewer ratio-test matches than `min_inliers` (RANSAC costs most on such
    pairs), and the fit is polished for the appearance (`_refined`, which doubles the cost
    of a verification) only when the keypoints pass and the plain fit's appearance does not;
    the better of the two appearances counts.
    """
    min_matches = criteria.min_inliers if criteria else 3
    matches, transform, inliers = _keypoint_fit(first, second, min_matches)
    if transform is None or not MIN_SCALE <= _scale(transform) <= MAX_SCALE:
        return Verification(matches, 0, 0)
    verification = Verification(matches, inliers, _shared_view(first, second, transform),
                                _aligned_correlation(first, second, transform),
                                _hue_conflict(first, second, transform))
    if criteria is not None and (criteria.accepts(verification) or not criteria.accepts(replace(verification, appearance=1.0))):
        return verification
    polished = _polished_correlation(first, second, transform)
    if polished is None or polished <= verification.appearance:
        return verification
    return replace(verification, appearance=polished)


def _keypoint_fit(first: LocalFeatures, second: LocalFeatures,
                  min_matches: int = 3) -> tuple[int, np.ndarray | None, int]:
    """(ratio-test matches, the similarity transform RANSAC fits to them, its inliers); no transform
    when there are fewer than `min_matches` matches or RANSAC finds none."""
    if len(first) < 2 or len(second) < 2:
        return 0, None, 0
    knn = _matcher().knnMatch(first.descriptors, second.descriptors, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance <= MAX_DESCRIPTOR_DISTANCE
            and m[0].distance < MATCH_RATIO * m[1].distance]
    if len(good) < max(3, min_matches):
        return len(good), None, 0
    source = first.points[[m.queryIdx for m in good]]
    target = second.points[[m.trainIdx for m in good]]
    transform, inlier_mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS, maxIters=2000, confidence=0.99)
    if transform is None or inlier_mask is None:
        return len(good), None, 0
    return len(good), transform, int(inlier_mask.sum())


def _scale(transform: np.ndarray) -> float:
    return float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))


def _rotation_degrees(transform: np.ndarray) -> float:
    """How far (absolute degrees) the linear part of `transform` turns the picture."""
    return abs(float(np.degrees(np.arctan2(transform[1, 0], transform[0, 0]))))


def _shared_view(first: LocalFeatures, second: LocalFeatures, transform: np.ndarray) -> int:
    """The fewer of the two sets' keypoints that `transform` maps inside the other frame."""
    return min(_inside(first.points, transform, second.frame),
               _inside(second.points, cv2.invertAffineTransform(transform), first.frame))


@dataclass(frozen=True)
class CopyCriteria:
    """What a verification must reach for the pair to count as a copy (see DedupOptions)."""

    min_inliers: int
    min_inlier_ratio: float
    min_appearance: float
    max_hue_conflict: float = 1.0
    min_frame_appearance: float | None = None
    """Appearance a whole-frame verification must reach (no keypoints back it); None accepts none."""
    min_aligned_appearance: float | None = None
    """Appearance a verification aligned by the thumbnails alone must reach (and MIN_ALIGNED_TILES); None accepts none."""

    @classmethod
    def of(cls, options) -> "CopyCriteria":
        """The criteria a DedupOptions sets (its min_inliers, min_inlier_ratio, min_appearance,
        max_hue_conflict, min_frame_appearance and min_aligned_appearance)."""
        return cls(options.min_inliers, options.min_inlier_ratio, options.min_appearance, options.max_hue_conflict,
                   options.min_frame_appearance, options.min_aligned_appearance)

    def accepts(self, verification: Verification) -> bool:
        if verification.hue_conflict > self.max_hue_conflict:
            return False
        if verification.aligned_tiles is not None:
            return (self.min_aligned_appearance is not None and verification.appearance >= self.min_aligned_appearance
                    and verification.aligned_tiles >= MIN_ALIGNED_TILES)
        if verification.whole_frame:
            return self.min_frame_appearance is not None and verification.appearance >= self.min_frame_appearance
        return (verification.inliers >= self.min_inliers and verification.inlier_ratio >= self.min_inlier_ratio
                and verification.appearance >= self.min_appearance)


def confirm_copy(first: LocalFeatures, second: LocalFeatures, criteria: CopyCriteria,
                 mirror: bool = True) -> Verification | None:
    """The keypoint verification that makes the pair a copy: as is, else (with `mirror`, when
    `second` holds mirrored keypoints) against `second`'s mirror; None if neither does."""
    return _as_is_or_mirrored(first, second, criteria, mirror,
                              lambda one, other: verify_pair(one, other, criteria))


def verify_whole_frame(first: LocalFeatures, second: LocalFeatures) -> Verification | None:
    """Appearance and colours of `first` scaled onto `second`'s frame; None when the frames differ in shape."""
    scaling = _frame_scaling(first.frame, second.frame)
    if scaling is None:
        return None
    return Verification(0, 0, 0, _aligned_correlation(first, second, scaling), _hue_conflict(first, second, scaling),
                        whole_frame=True)


def _frame_scaling(first: tuple[float, float], second: tuple[float, float]) -> np.ndarray | None:
    """The transform that scales the frame `first` onto `second`; None when either is empty or their
    aspect ratios differ by more than FRAME_ASPECT_TOLERANCE."""
    (first_width, first_height), (second_width, second_height) = first, second
    if not (first_width and first_height and second_width and second_height):
        return None
    if abs((first_width / first_height) / (second_width / second_height) - 1) > FRAME_ASPECT_TOLERANCE:
        return None
    return np.array([[second_width / first_width, 0, 0], [0, second_height / first_height, 0]])


def confirm_whole_frame(first: LocalFeatures, second: LocalFeatures, criteria: CopyCriteria,
                        mirror: bool = True) -> Verification | None:
    """The whole-frame verification that makes the pair a copy (as is, else against `second`'s
    mirror when `mirror`); None if neither does."""
    return _as_is_or_mirrored(first, second, criteria, mirror, verify_whole_frame)


def verify_aligned_frame(first: LocalFeatures, second: LocalFeatures) -> Verification | None:
    """Appearance and colours of `first` aligned onto `second` by the thumbnails alone (`_thumbnail_alignment`:
    a crop, pad or small rotation of a picture too plain for keypoints); None when no alignment is plausible."""
    aligned = _thumbnail_alignment(first, second)
    if aligned is None:
        return None
    transform, appearance = aligned
    tiles = _occlusion_tolerant(first.appearance, second.appearance, transform)[1]
    return Verification(0, 0, 0, appearance, _hue_conflict(first, second, transform), whole_frame=True, aligned_tiles=tiles)


def confirm_aligned_frame(first: LocalFeatures, second: LocalFeatures, criteria: CopyCriteria) -> Verification | None:
    """The `verify_aligned_frame` of the pair as is, when it makes the pair a copy (`min_aligned_appearance`,
    MIN_ALIGNED_TILES, colours); None otherwise.  Never against the mirror: with no keypoints to tell,
    a mirrored copy and a mirror-image sibling (openclipart's arrow pointing the other way, recoloured) align alike."""
    verification = verify_aligned_frame(first, second)
    return verification if verification is not None and criteria.accepts(verification) else None


def _thumbnail_alignment(first: LocalFeatures, second: LocalFeatures) -> tuple[np.ndarray, float] | None:
    """The transform (THUMBNAIL_SIDE pixels) that best aligns `first`'s appearance thumbnail onto
    `second`'s by OpenCV's ECC alone (no keypoints), with its `_aligned_correlation`; None when no
    alignment is a plausible copy's.

    Flat graphics (a flag, a chevron, a coloured bar) have too few corners for keypoints, and
    once cropped, padded or rotated their frames differ, so neither the keypoint fit nor the
    whole-frame scaling aligns them.  ECC maximises the very correlation the measures read,
    from three starts (frames scaled onto each other, content boxes within plain margins
    mapped onto each other, centres on each other at one scale), under an affine motion
    that must stay a similarity: scales within [MIN_SCALE, MAX_SCALE] and equal within
    ALIGNMENT_MAX_ANISOTROPY, shear under that too, rotation within ALIGNMENT_MAX_ROTATION degrees."""
    if min(first.appearance.shape + second.appearance.shape) < REFINE_MIN_SIDE:
        return None
    best, best_appearance = None, -np.inf
    for start in _alignment_starts(first, second):
        aligned = [start]
        try:
            # ECC's warp maps the template (`second`) onto the input (`first`): the inverse of ours.
            _, warp = cv2.findTransformECC(second.appearance, first.appearance, cv2.invertAffineTransform(start),
                                           cv2.MOTION_AFFINE, ALIGNMENT_ECC_CRITERIA, None, ALIGNMENT_SMOOTHING)
            aligned.append(cv2.invertAffineTransform(warp))
        except cv2.error:  # did not converge
            pass
        # ECC wanders off along stripes (nothing holds a striped flag's shift along them), so the start itself
        # is a candidate too: mapping content boxes is how a padded copy is aligned.
        for transform in aligned:
            if not _similarity_like(transform[:, :2]):
                continue
            transform = transform.astype(np.float64)
            transform[:, 2] *= THUMBNAIL_SIDE / APPEARANCE_SIDE
            appearance = _aligned_correlation(first, second, transform)
            if appearance > best_appearance:
                best, best_appearance = transform, appearance
    return None if best is None else (best, best_appearance)


def _alignment_starts(first: LocalFeatures, second: LocalFeatures) -> list[np.ndarray]:
    """`_thumbnail_alignment`'s starting transforms, in appearance pixels, repeats left out."""
    (first_height, first_width), (second_height, second_width) = first.appearance.shape, second.appearance.shape
    starts = [np.array([[second_width / first_width, 0, 0], [0, second_height / first_height, 0]], np.float32)]
    (left, top, right, bottom), (to_left, to_top, to_right, to_bottom) = _content_box(first), _content_box(second)
    scale_x, scale_y = (to_right - to_left) / (right - left), (to_bottom - to_top) / (bottom - top)
    starts.append(np.array([[scale_x, 0, to_left - scale_x * left], [0, scale_y, to_top - scale_y * top]], np.float32))
    starts.append(np.array([[1, 0, (second_width - first_width) / 2], [0, 1, (second_height - first_height) / 2]], np.float32))
    unique: list[np.ndarray] = []
    for start in starts:
        if not any(np.allclose(start, seen, atol=0.02) for seen in unique):
            unique.append(start)
    return unique


def _content_box(features: LocalFeatures) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the appearance thumbnail inside its plain margins."""
    rows, columns = np.nonzero(features.content)
    return int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1


def _similarity_like(linear: np.ndarray) -> bool:
    scale_x, scale_y = np.linalg.norm(linear[:, 0]), np.linalg.norm(linear[:, 1])
    if not (MIN_SCALE <= scale_x <= MAX_SCALE and MIN_SCALE <= scale_y <= MAX_SCALE):
        return False
    shear = abs(float(linear[:, 0] @ linear[:, 1])) / (scale_x * scale_y)
    return (abs(scale_x / scale_y - 1) <= ALIGNMENT_MAX_ANISOTROPY and shear <= ALIGNMENT_MAX_ANISOTROPY
            and _rotation_degrees(linear) <= ALIGNMENT_MAX_ROTATION)


def _as_is_or_mirrored(first: LocalFeatures, second: LocalFeatures, criteria: CopyCriteria, mirror: bool,
                       verify: Callable[[LocalFeatures, LocalFeatures], Verification | None]) -> Verification | None:
    """`verify(first, second)` if the criteria accept it, else (with `mirror`, when `second` holds
    a mirror) the same against `second`'s mirror, marked mirrored; None if neither passes.
    The mirror is only built when the pair as is fails."""
    verification = verify(first, second)
    if verification is not None and criteria.accepts(verification):
        return verification
    mirrored_second = second.mirrored() if mirror else None
    if mirrored_second is None:
        return None
    verification = verify(first, mirrored_second)
    if verification is not None and criteria.accepts(verification):
        return replace(verification, mirrored=True)
    return None


def _warp_onto(image: np.ndarray, transform: np.ndarray, side: int, target: np.ndarray,
               interpolation: int, region: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`image` (a thumbnail with long side `side`) warped onto `target`'s grid, and where it (or
    the part of it in `region`, a boolean mask) covers it."""
    scaled = transform.astype(np.float64).copy()
    scaled[:, 2] *= side / THUMBNAIL_SIDE  # same factor on both sides: only the shift changes
    height, width = target.shape[:2]
    warped = cv2.warpAffine(image, scaled, (width, height), flags=interpolation)
    source = np.ones(image.shape[:2], np.uint8) if region is None else region.astype(np.uint8)
    covered = cv2.warpAffine(source, scaled, (width, height), flags=cv2.INTER_NEAREST)
    return warped, cv2.erode(covered, np.ones((3, 3), np.uint8)) > 0


def _content(thumbnail: np.ndarray) -> np.ndarray:
    """Where a grey thumbnail holds its picture: all of it but plain margins (rows or columns at
    its edges of one level, within MARGIN_LEVELS), such as a padded copy's border.

    Two copies padded in different colours, or one padded and one rotated onto a filled
    background, would otherwise be compared on their borders too, which have nothing in common.
    A picture that would keep less than MIN_CONTENT_SHARE (a small drawing on a wide canvas)
    is left whole: a few pixels of it would correlate with any other blob in the same place."""
    height, width = thumbnail.shape
    inside = np.ones((height, width), dtype=bool)
    if min(height, width) < 8:
        return inside
    top, bottom = _margin(thumbnail), _margin(thumbnail[::-1])
    left, right = _margin(thumbnail.T), _margin(thumbnail.T[::-1])
    if max(0, height - top - bottom) * max(0, width - left - right) < MIN_CONTENT_SHARE * height * width:
        return inside  # too little left, or nothing but plain rows
    inside[:top] = inside[height - bottom:] = False
    inside[:, :left] = inside[:, width - right:] = False
    return inside


def _margin(lines: np.ndarray) -> int:
    """How many leading rows of `lines` are plain (of the first row's level)."""
    level = np.median(lines[0])
    plain = (np.abs(lines - level) <= MARGIN_LEVELS).mean(axis=1) >= 0.98
    return len(plain) if plain.all() else int(np.argmin(plain))


def _polished_correlation(first: LocalFeatures, second: LocalFeatures, transform: np.ndarray) -> float | None:
    """`_aligned_correlation` after the transform is polished on the thumbnails themselves
    (`_refined`); None when the polish fails or would move too far."""
    polished = _refined(first.appearance, second.appearance, transform)
    return None if polished is None else _aligned_correlation(first, second, polished)


def _aligned_correlation(first: LocalFeatures, second: LocalFeatures, transform: np.ndarray) -> float:
    """Correlation of `first`'s appearance thumbnail warped onto `second`'s, over their overlap less plain margins.

    Where that leaves the two next to nothing in common, or either of them nothing but plain
    pixels (a striped flag keeps a stripe), the margins were the picture: the whole overlap is
    compared, and where both are plain there too (two blank canvases), only the grey levels."""
    overlap = _overlap(first, second, transform, trim_margins=True)
    if overlap is None or _plain(overlap[0]) or _plain(overlap[1]):
        overlap = _overlap(first, second, transform, trim_margins=False)
    if overlap is None:
        return 0.0
    a, b = overlap
    if _plain(a) and _plain(b):
        return 1.0 if abs(float(a.mean()) - float(b.mean())) <= MARGIN_LEVELS else 0.0
    return _pearson(a, b)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length pixel vectors (0 when either is flat)."""
    a, b = a - a.mean(), b - b.mean()
    spread = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / spread) if spread > 0 else 0.0


def _overlap(first: LocalFeatures, second: LocalFeatures, transform: np.ndarray,
             trim_margins: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """The pixels of `first`'s appearance thumbnail warped onto `second`'s and of `second`'s where both
    cover (less each one's plain margins with `trim_margins`); None when fewer than 16 pixels are left."""
    warped, inside = _warp_onto(first.appearance, transform, APPEARANCE_SIDE, second.appearance, cv2.INTER_LINEAR,
                                first.content if trim_margins else None)
    if trim_margins:
        inside &= second.content
    return (warped[inside], second.appearance[inside]) if np.count_nonzero(inside) >= 16 else None


def _plain(pixels: np.ndarray) -> bool:
    return np.ptp(pixels) <= MARGIN_LEVELS


def _refined(first: np.ndarray, second: np.ndarray, transform: np.ndarray) -> np.ndarray | None:
    """`transform` (THUMBNAIL_SIDE pixels) polished by OpenCV's ECC alignment of the appearance thumbnails,
    or None when ECC fails or moves further than the keypoint fit could be off.

    RANSAC accepts keypoints up to RANSAC_PIXELS off, a pixel of the 64 px thumbnail, and on a
    line drawing a pixel's misalignment costs more correlation than a copy's JPEG or
    recolouring does.  ECC may only move within that tolerance (the shift by RANSAC_PIXELS, the
    linear part by REFINE_LINEAR), so it can perfect a copy's alignment but not bend a
    look-alike onto another."""
    if min(first.shape + second.shape) < REFINE_MIN_SIDE:
        return None
    ratio = APPEARANCE_SIDE / THUMBNAIL_SIDE
    fit = transform.astype(np.float32).copy()
    fit[:, 2] *= ratio
    try:
        # ECC's warp maps the template (`second`) onto the input (`first`): the inverse of ours.
        _, warp = cv2.findTransformECC(second, first, cv2.invertAffineTransform(fit), cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4), None, 1)
    except cv2.error:  # did not converge (a flat overlap, say)
        return None
    polished = cv2.invertAffineTransform(warp)
    if (np.abs(polished[:, :2] - fit[:, :2]).max() > REFINE_LINEAR
            or np.abs(polished[:, 2] - fit[:, 2]).max() > RANSAC_PIXELS * ratio):
        return None
    polished[:, 2] /= ratio
    return polished


def _hue_conflict(first: LocalFeatures, second: LocalFeatures, transform: np.ndarray) -> float:
    """Share of the aligned colour overlap where both are coloured and their hues lie far apart."""
    if first.colour is None or second.colour is None:
        return 0.0
    # Nearest neighbour: interpolating hue across its wrap-around would invent colours.
    warped, inside = _warp_onto(first.colour, transform, COLOUR_SIDE, second.colour, cv2.INTER_NEAREST)
    if not inside.any():
        return 0.0
    a, b = warped[inside].astype(np.int16), second.colour[inside].astype(np.int16)
    coloured = ((a[:, 1] >= MIN_SATURATION) & (a[:, 2] >= MIN_VALUE) & (b[:, 1] >= MIN_SATURATION)
                & (b[:, 2] >= MIN_VALUE))
    difference = np.abs(a[:, 0] - b[:, 0])
    degrees = np.minimum(difference, 256 - difference) * (360.0 / 256)  # OpenCV's full-range hue: 256 steps
    return float(np.count_nonzero(coloured & (degrees > HUE_CONFLICT_DEGREES)) / inside.sum())


def _inside(points: np.ndarray, transform: np.ndarray, frame: tuple[float, float]) -> int:
    mapped = points @ transform[:, :2].T + transform[:, 2]
    width, height = frame
    return int(np.count_nonzero((mapped[:, 0] >= -FRAME_MARGIN) & (mapped[:, 1] >= -FRAME_MARGIN)
                                & (mapped[:, 0] <= width + FRAME_MARGIN) & (mapped[:, 1] <= height + FRAME_MARGIN)))


# ----------------------------------------------------------------------------- measurements of a pair

# What `pair_measurements` reports, per orientation (as is, then against the mirror): the keypoint
# fit in whichever direction explains more matches, then the whole-frame comparison.
KEYPOINT_MEASURES = ("matches", "inliers", "shared_view", "inlier_ratio", "scale", "rotation_degrees", "appearance",
                     "polished_appearance", "hue_conflict", "tile_correlation_median", "tile_correlation_lower_quartile",
                     "agreeing_pixels", "coverage", "outside_worst_band")
FRAME_MEASURES = ("frame_appearance", "frame_hue_conflict", "frame_tile_correlation_median", "frame_agreeing_pixels",
                  "frame_outside_worst_band")
MEASUREMENT_NAMES = (KEYPOINT_MEASURES + FRAME_MEASURES + tuple("mirror_" + name for name in KEYPOINT_MEASURES + FRAME_MEASURES)
                     + ("keypoints_first", "keypoints_second", "plain", "aspect_change"))
# Tiles per side of the appearance thumbnail for the occlusion-tolerant measures (see _occlusion_tolerant).
TILES = 4
MIN_TILE_PIXELS = 12
# Standard scores closer than this count as agreeing pixels.
AGREEING_SPREAD = 0.5
# Share of the thumbnail's rows left out as the worst band (_outside_worst_band): a line of caption
# on a copy is 6-15 % of its height.
BAND_SHARE = 0.2


def pair_measurements(first: LocalFeatures, second: LocalFeatures, mirror: bool = True) -> np.ndarray:
    """Everything the keypoints and thumbnails say about a pair, as MEASUREMENT_NAMES (float32).

    `CopyCriteria` thresholds a few of these one at a time; the learned copy verifier
    (dedupkit.search.copy_model) weighs them all together.  Besides the criteria's own
    (inliers, their share, correlation, hue conflict, whole-frame correlation), it sees
    how the correlation spreads over the picture: the median and lower quartile of the
    correlations of 4x4 tiles of the aligned thumbnails, the share of pixels whose
    standard scores agree, and the correlation without the band of rows where they disagree
    most.  A copy with a caption written over it loses a few tiles, or one band, and keeps
    the rest; a look-alike differs everywhere a little.

    Without `mirror` (or when `second` holds no mirrored keypoints) the mirror_ measurements
    repeat the others: the pair is seen in its own orientation only.
    """
    mirrored = (second.mirrored() if mirror else None) or second
    values: list[float] = []
    for other in (second, mirrored):
        values += _keypoint_measures(first, other) + _frame_measures(first, other)
    plain = not len(first) or not len(second)
    values += [len(first), len(second), float(plain), _aspect_change(first.frame, second.frame)]
    return np.asarray(values, dtype=np.float32)


def _keypoint_measures(first: LocalFeatures, second: LocalFeatures) -> list[float]:
    """KEYPOINT_MEASURES of the fit from whichever end explains more matches (zeros but the match
    count when neither end fits a transform)."""
    fits = [(one, other, *_keypoint_fit(one, other)) for one, other in ((first, second), (second, first))]
    fitted = [fit for fit in fits if fit[3] is not None]
    if not fitted:
        return [float(fits[0][2])] + [0.0] * (len(KEYPOINT_MEASURES) - 1)
    one, other, matches, transform, inliers = max(fitted, key=lambda fit: fit[4])  # the first end on a tie
    shared = _shared_view(one, other, transform)
    appearance = _aligned_correlation(one, other, transform)
    polished = _polished_correlation(one, other, transform)
    return [float(matches), float(inliers), float(shared), min(1.0, inliers / shared) if shared else 0.0,
            _scale(transform), _rotation_degrees(transform),
            appearance, max(appearance, -1.0 if polished is None else polished), _hue_conflict(one, other, transform),
            *_occlusion_tolerant(one.appearance, other.appearance, transform)]


def _frame_measures(first: LocalFeatures, second: LocalFeatures) -> list[float]:
    """FRAME_MEASURES of `first` scaled onto `second`'s frame ((-1, 1, -1, 0, -1) when the frames differ in shape)."""
    scaling = _frame_scaling(first.frame, second.frame)
    if scaling is None:
        return [-1.0, 1.0, -1.0, 0.0, -1.0]
    tiles, _, agreeing, _, outside_band = _occlusion_tolerant(first.appearance, second.appearance, scaling)
    return [_aligned_correlation(first, second, scaling), _hue_conflict(first, second, scaling), tiles, agreeing,
            outside_band]


def _occlusion_tolerant(first: np.ndarray, second: np.ndarray, transform: np.ndarray) -> list[float]:
    """[median tile correlation, its lower quartile, share of agreeing pixels, share of `second` covered,
    correlation outside the worst band] of the grey thumbnail `first` warped onto `second` (zeros when
    they share under 16 pixels).

    Tiles with fewer than MIN_TILE_PIXELS covered pixels are skipped; two plain tiles agree
    when their levels do."""
    warped, inside = _warp_onto(first, transform, APPEARANCE_SIDE, second, cv2.INTER_LINEAR)
    if np.count_nonzero(inside) < 16:
        return [0.0, 0.0, 0.0, 0.0, 0.0]
    first_scores = (warped - warped[inside].mean()) / (warped[inside].std() + 1e-6)
    second_scores = (second - second[inside].mean()) / (second[inside].std() + 1e-6)
    disagreement = np.abs(first_scores - second_scores)
    agreeing = float((disagreement[inside] < AGREEING_SPREAD).mean())
    correlations = _tile_correlations(warped[inside], second[inside], _tiles(second.shape)[inside])
    correlations = np.asarray(correlations or [0.0])
    return [float(np.median(correlations)), float(np.quantile(correlations, 0.25)), agreeing, float(inside.mean()),
            _outside_worst_band(warped, second, inside, disagreement)]


def _outside_worst_band(warped: np.ndarray, second: np.ndarray, inside: np.ndarray, disagreement: np.ndarray) -> float:
    """Correlation of the aligned thumbnails without the band of BAND_SHARE of the rows where they
    disagree most: a caption or a watermark line written across a copy sits in one such band,
    while a look-alike differs everywhere.  Tiles cut a line of text into several tiles."""
    height = second.shape[0]
    band = max(1, round(BAND_SHARE * height))
    squared = np.where(inside, disagreement, 0.0) ** 2
    per_row = squared.sum(axis=1)
    window = np.convolve(per_row, np.ones(band), mode="valid")
    start = int(np.argmax(window))
    kept = inside.copy()
    kept[start:start + band] = False
    if np.count_nonzero(kept) < 16:
        return 0.0
    return _pearson(warped[kept].astype(np.float64), second[kept].astype(np.float64))


@cache  # thumbnails come in few shapes (long side APPEARANCE_SIDE), and every candidate pair asks
def _tiles(shape: tuple[int, int]) -> np.ndarray:
    """The TILES x TILES tile (0..TILES**2 - 1, row-major) of each pixel of a thumbnail, rows and columns
    split as np.array_split splits them (read-only: it is shared)."""
    rows, columns = (np.repeat(np.arange(TILES), [len(part) for part in np.array_split(np.arange(side), TILES)])
                     for side in shape)
    tiles = rows[:, None] * TILES + columns[None, :]
    tiles.flags.writeable = False
    return tiles


def _tile_correlations(a: np.ndarray, b: np.ndarray, tile: np.ndarray) -> list[float]:
    """Per tile with MIN_TILE_PIXELS or more of the pixels `a` and `b` (flat, aligned, `tile` naming each
    one's tile): their correlation, or for two plain tiles whether their levels agree.  One pass of
    bincounts instead of a loop over tiles: this runs for every candidate pair."""
    tiles = TILES * TILES
    a, b = a.astype(np.float64), b.astype(np.float64)
    count = np.bincount(tile, minlength=tiles)
    sums = [np.bincount(tile, weights=values, minlength=tiles) for values in (a, b, a * a, b * b, a * b)]
    low_a, high_a, low_b, high_b = (np.full(tiles, fill) for fill in (np.inf, -np.inf, np.inf, -np.inf))
    np.minimum.at(low_a, tile, a), np.maximum.at(high_a, tile, a)
    np.minimum.at(low_b, tile, b), np.maximum.at(high_b, tile, b)
    correlations = []
    for index in np.flatnonzero(count >= MIN_TILE_PIXELS):
        n = count[index]
        sum_a, sum_b, sum_aa, sum_bb, sum_ab = (total[index] for total in sums)
        spread_a, spread_b = high_a[index] - low_a[index], high_b[index] - low_b[index]
        if spread_a <= MARGIN_LEVELS and spread_b <= MARGIN_LEVELS:
            correlations.append(1.0 if abs(sum_a / n - sum_b / n) <= 2 * MARGIN_LEVELS else 0.0)
        elif spread_a == 0 or spread_b == 0:
            correlations.append(0.0)
        else:
            covariance = sum_ab - sum_a * sum_b / n
            variance = (sum_aa - sum_a * sum_a / n) * (sum_bb - sum_b * sum_b / n)
            correlations.append(float(covariance / np.sqrt(variance)) if variance > 0 else 0.0)
    return correlations


def _aspect_change(first: tuple[float, float], second: tuple[float, float]) -> float:
    """|log| of the ratio of two frames' aspect ratios (0 when a frame is empty)."""
    if min(first + second) <= 0:
        return 0.0
    return abs(float(np.log((first[0] / first[1]) / (second[0] / second[1]))))


@dataclass
class LocalFeatureStage:
    """Adds `record.signatures["orb"]`: packed ORB keypoints of the decoded image (a few KB)."""

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            if record.alive and record.image is not None:
                record.signatures[SIGNATURE_NAME] = orb_signature(record.image)
            yield record
