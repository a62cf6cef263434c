"""Local-feature verification: ORB signatures, geometric agreement of copies, the "local", "thumbnail" and
"verified" decisions."""

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import jpeg, small_drawing
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from dedupkit.records import DROPPED, KEPT, SKIPPED, Record
from dedupkit.search import decide
from dedupkit.search.decide import decide_duplicates
from dedupkit.search.options import DedupOptions
from dedupkit.signatures.local import _aligned_correlation, _polished_correlation  # the polish has no public entry
from dedupkit.signatures.local import (
    APPEARANCE_SIDE,
    COLOUR_SIDE,
    MAX_KEYPOINTS,
    MAX_MIRROR_KEYPOINTS,
    THUMBNAIL_SIDE,
    MIN_ALIGNED_TILES,
    CopyCriteria,
    MEASUREMENT_NAMES,
    LocalFeatureStage,
    confirm_aligned_frame,
    confirm_copy,
    confirm_whole_frame,
    orb_signature,
    pair_measurements,
    unpack_orb,
    verify_aligned_frame,
    verify_pair,
    verify_whole_frame,
)

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    if not OPENCV_DATA.is_dir():
        pytest.skip("opencv-doc example photos are not installed")
    return {name: Image.open(OPENCV_DATA / f"{name}.jpg").convert("RGB") for name in ("fruits", "baboon", "home")}


def edited_copy(image: Image.Image) -> Image.Image:
    """Cropped, rotated, overlaid with text, padded and shrunk: a copy no global hash keeps up with."""
    width, height = image.size
    copy = image.crop((int(0.12 * width), int(0.08 * height), int(0.95 * width), int(0.9 * height)))
    copy = copy.rotate(7, resample=Image.BICUBIC, fillcolor=(255, 255, 255))
    ImageDraw.Draw(copy).text((20, 30), "© stock photo 2024", fill=(255, 255, 255), font_size=28)
    copy = ImageOps.expand(copy, border=24, fill=(0, 0, 0))
    return copy.resize((copy.width * 3 // 4, copy.height * 3 // 4), Image.LANCZOS)


def test_signature_round_trips_and_is_compact(photos):
    signature = orb_signature(photos["fruits"])  # 512 x 480
    features = unpack_orb(signature)
    assert 50 <= len(features) <= MAX_KEYPOINTS and features.points.shape == (len(features), 2)
    assert features.frame == (THUMBNAIL_SIDE, 480) and features.appearance.shape == (60, APPEARANCE_SIDE)
    mirror = features.mirrored()
    assert len(mirror) == MAX_MIRROR_KEYPOINTS and mirror.frame == features.frame
    assert features.colour.shape == (30, COLOUR_SIDE, 3)
    assert len(signature) == 10 + 36 * (len(features) + len(mirror)) + 60 * APPEARANCE_SIDE + 3 * 30 * COLOUR_SIDE
    assert np.array_equal(mirror.appearance, features.appearance[:, ::-1])
    assert np.array_equal(mirror.colour, features.colour[:, ::-1])
    assert np.array_equal(mirror.mirrored().descriptors, features.descriptors)
    assert np.array_equal(mirror.mirrored().colour, features.colour)
    assert features.points.min() >= 0 and features.points[:, 0].max() <= 512 and features.points[:, 1].max() <= 480
    small = unpack_orb(orb_signature(photos["fruits"].resize((64, 60), Image.LANCZOS)))
    assert small.frame == (THUMBNAIL_SIDE, 480) and len(small) > 20  # enlarged to one scale, so ORB finds corners
    plain = unpack_orb(orb_signature(Image.new("RGB", (300, 200), (90, 120, 200))))
    assert len(plain) == 0 and plain.frame == (THUMBNAIL_SIDE, 341) and plain.appearance.shape == (43, APPEARANCE_SIDE)
    assert unpack_orb(b"").descriptors.shape == (0, 32)  # written before plain pictures kept their thumbnails
    with pytest.raises(ValueError, match="keypoints its header announces"):
        unpack_orb(signature[:-1])
    with pytest.raises(ValueError, match="unknown layout"):
        unpack_orb(np.asarray([0xF11F], "<u2").tobytes() + signature[2:])


def test_signatures_without_mirrored_keypoints_still_unpack(photos):
    # The layout before mirrored keypoints: [width, height], keypoints, appearance.
    features = unpack_orb(orb_signature(photos["home"]))
    width, height = (int(v) for v in features.frame)
    old = (np.asarray([width, height], "<u2").tobytes() + features.descriptors.tobytes()
           + features.points.astype(np.float16).tobytes() + features.appearance.astype(np.uint8).tobytes())
    unpacked = unpack_orb(old)
    assert np.array_equal(unpacked.descriptors, features.descriptors) and np.array_equal(unpacked.points, features.points)
    assert np.array_equal(unpacked.appearance, features.appearance) and unpacked.mirrored() is None
    with pytest.raises(ValueError, match="whole number of keypoints"):
        unpack_orb(old[:-1])


def test_mirrored_crop_is_confirmed_through_the_mirror_only(photos):
    fruits = photos["fruits"]
    criteria = CopyCriteria(min_inliers=15, min_inlier_ratio=0.1, min_appearance=0.9)
    original = unpack_orb(orb_signature(fruits))
    flipped = unpack_orb(orb_signature(ImageOps.mirror(fruits.crop((40, 30, 470, 450)))))
    assert not criteria.accepts(verify_pair(original, flipped))  # keypoints do not survive mirroring
    confirmed = confirm_copy(original, flipped, criteria)
    assert confirmed is not None and confirmed.mirrored and confirmed.inliers >= 30 and confirmed.appearance > 0.9
    assert confirm_copy(original, unpack_orb(orb_signature(ImageOps.mirror(photos["home"]))), criteria) is None


def test_edited_copy_agrees_geometrically_and_other_photos_do_not(photos):
    original = unpack_orb(orb_signature(photos["fruits"]))
    copy = verify_pair(original, unpack_orb(orb_signature(edited_copy(photos["fruits"]))))
    assert copy.inliers >= 25 and copy.inlier_ratio > 0.1
    for other in ("baboon", "home"):
        assert verify_pair(original, unpack_orb(orb_signature(photos[other]))).inliers < 12
    flat = verify_pair(original, unpack_orb(b""))
    assert flat.inliers == 0 and flat.inlier_ratio == 0.0


def test_appearance_tells_a_shared_layout_from_a_copy(photos):
    fruits = photos["fruits"]
    original = unpack_orb(orb_signature(fruits))
    half_replaced = fruits.copy()
    half_replaced.paste(photos["home"].resize(fruits.size).crop((256, 0, 512, 480)), (256, 0))
    layout = verify_pair(original, unpack_orb(orb_signature(half_replaced)))
    assert layout.inliers >= 30 and layout.inlier_ratio >= 0.1  # the geometry alone would call it a copy
    assert layout.appearance < 0.8
    padded = verify_pair(original, unpack_orb(orb_signature(ImageOps.expand(fruits, border=40, fill=(0, 0, 0)))))
    assert padded.inliers >= 30 and padded.appearance > 0.95
    # Colour-blind on purpose: greyscale and recoloured copies are copies.
    grey = verify_pair(original, unpack_orb(orb_signature(fruits.convert("L").convert("RGB"))))
    assert grey.appearance > 0.99


def test_appearance_polishes_a_keypoint_fit_only_within_its_tolerance(small_drawings):
    # A line drawing against itself, the fit off by 6 of 512 thumbnail pixels (under RANSAC_PIXELS):
    # less than a pixel of the 64 px thumbnail, yet it costs the correlation a copy must reach.
    rooster = unpack_orb(orb_signature(small_drawings["rooster"].resize((400, 400), Image.LANCZOS)))
    slightly_off = np.array([[1.0, 0.0, 6.0], [0.0, 1.0, -5.0]])
    unpolished = _aligned_correlation(rooster, rooster, slightly_off)
    assert unpolished < 0.95 < _polished_correlation(rooster, rooster, slightly_off)
    # Further off than RANSAC lets a keypoint be, the polish may not rescue the fit.
    far_off = np.array([[1.0, 0.0, 30.0], [0.0, 1.0, -24.0]])
    assert _polished_correlation(rooster, rooster, far_off) is None
    # Another drawing on the same white ground is not bent onto the first.
    bat = unpack_orb(orb_signature(small_drawings["bat"].resize((400, 400), Image.LANCZOS)))
    plain = _aligned_correlation(rooster, bat, np.eye(2, 3))
    best = max(plain, _polished_correlation(rooster, bat, np.eye(2, 3)) or -1.0)
    assert best - plain < 0.05 and best < 0.7


def test_appearance_compares_pictures_not_the_borders_they_were_padded_with(photos):
    fruits = photos["fruits"]
    on_black = ImageOps.expand(fruits, border=60, fill=(0, 0, 0))
    on_white = ImageOps.expand(fruits, border=90, fill=(255, 255, 255)).resize((480, 450), Image.LANCZOS)
    padded = verify_pair(unpack_orb(orb_signature(on_black)), unpack_orb(orb_signature(on_white)))
    assert padded.inliers >= 30 and padded.appearance > 0.95
    # A photo is not trimmed where it is merely dark or bright along an edge.
    half_replaced = fruits.copy()
    half_replaced.paste(photos["home"].resize(fruits.size).crop((256, 0, 512, 480)), (256, 0))
    assert verify_pair(unpack_orb(orb_signature(on_black)), unpack_orb(orb_signature(half_replaced))).appearance < 0.8


def test_stage_signs_alive_records_and_passes_the_rest(photos):
    alive = Record(key="a", source="a", image=photos["home"])
    skipped = Record(key="b", source="b", status=SKIPPED, reason="unreadable")
    out = list(LocalFeatureStage()([alive, skipped]))
    assert out == [alive, skipped]
    assert len(alive.signatures["orb"]) > 0 and "orb" not in skipped.signatures


def _table(images: dict[str, Image.Image], embeddings: np.ndarray) -> pa.Table:
    keys = list(images)
    return pa.table({
        "key": keys,
        "status": [KEPT] * len(keys),
        "reason": [""] * len(keys),
        "sha256": [f"{i:064x}" for i in range(len(keys))],
        "sig_pixels": [f"{i:032x}" for i in range(len(keys))],
        "width": [image.width for image in images.values()],
        "height": [image.height for image in images.values()],
        "sig_embedding": [row.astype("<f2").tobytes() for row in embeddings],
        "sig_orb": [orb_signature(image) for image in images.values()],
    })


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def test_decision_confirms_only_the_geometric_copy_among_loose_candidates(photos):
    # The copy and the other photo both score cosine 0.85 with the original: below
    # min_similarity, above candidate_similarity.  Only local features can tell them apart.
    base, side_a, side_b = np.eye(3)
    vectors = np.stack([_unit(base), _unit(base + 0.62 * side_a), _unit(base + 0.62 * side_b)])
    cosines = vectors @ vectors.T
    assert np.allclose([cosines[0, 1], cosines[0, 2]], 0.85, atol=2e-3) and cosines[1, 2] < 0.75
    images = {"original.png": photos["fruits"], "copy.jpg": edited_copy(photos["fruits"]), "other.jpg": photos["home"]}
    table = _table(images, vectors)

    global_only = decide_duplicates(table, DedupOptions(hash_radius=(), verify_local=False))
    assert global_only.status == [KEPT, KEPT, KEPT]

    # The copy is cropped, then padded: the original's cut-off margin lands on the padding, so
    # its aligned thumbnails correlate poorly; the geometry alone decides here.
    local = dict(hash_radius=(), verify_local=True, min_copy_score=None, min_inliers=20, min_inlier_ratio=0.1,
                 min_appearance=0.0)
    verdicts = decide_duplicates(table, DedupOptions(**local))
    assert verdicts.status == [KEPT, DROPPED, KEPT]
    assert verdicts.dup_kind[1] == "local" and verdicts.keeper_key[1] == "original.png"
    assert 0.0 <= verdicts.distance[1] < 1.0
    assert verdicts.reason[1].startswith("near duplicate of original.png (local features: ")

    for stricter in ({"min_inliers": MAX_KEYPOINTS + 1}, {"min_inlier_ratio": 0.5}, {"candidate_similarity": 0.9},
                     {"min_appearance": 0.95}):
        assert decide_duplicates(table, DedupOptions(**{**local, **stricter})).status == [KEPT, KEPT, KEPT]


def test_verification_without_orb_signatures_says_what_to_do(photos):
    table = _table({"a.png": photos["fruits"], "b.png": photos["home"]}, np.eye(2)[[0, 0]]).drop_columns(["sig_orb"])
    with pytest.raises(ValueError, match="no ORB keypoints"):
        decide_duplicates(table, DedupOptions(hash_radius=(), verify_local=True))


def _hue_shifted(image: Image.Image, degrees: float, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).copy()
    region = hsv[box[1]:box[3], box[0]:box[2]] if box else hsv
    region[..., 0] = (region[..., 0].astype(np.int16) + round(degrees * 256 / 360)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def test_hue_conflict_tells_a_recoloured_part_from_a_recoloured_copy(photos):
    fruits = photos["fruits"]
    criteria = CopyCriteria(min_inliers=15, min_inlier_ratio=0.1, min_appearance=0.9, max_hue_conflict=0.03)
    original = unpack_orb(orb_signature(fruits))
    for copy in (_hue_shifted(fruits, 30), fruits.convert("L").convert("RGB")):
        verification = verify_pair(original, unpack_orb(orb_signature(copy)))
        assert verification.hue_conflict < 0.01 and criteria.accepts(verification)
    # The same picture with the colours of its left half turned around: the grey layout
    # still matches, the colours do not.
    variant = verify_pair(original, unpack_orb(orb_signature(_hue_shifted(fruits, 180, (0, 0, 256, 480)))))
    assert variant.inliers >= 50 and variant.appearance > 0.9
    assert variant.hue_conflict > 0.1 and not criteria.accepts(variant)


@pytest.mark.parametrize("verifier", ["thresholds", "learned"])
def test_decision_confirms_a_mirrored_crop_and_not_a_recoloured_part(photos, verifier):
    fruits = photos["fruits"]
    base, side_a, side_b, side_c = np.eye(4)
    vectors = np.stack([_unit(base), _unit(base + 0.62 * side_a), _unit(base + 0.62 * side_b), _unit(base + 0.62 * side_c)])
    images = {"original.png": fruits, "mirrored.jpg": ImageOps.mirror(fruits.crop((30, 20, 480, 460))),
              "half_recoloured.jpg": _hue_shifted(fruits, 180, (0, 0, 256, 480)), "other.jpg": photos["home"]}
    table = _table(images, vectors)
    options = DedupOptions(hash_radius=(), min_appearance=0.9)
    if verifier == "thresholds":
        options = replace(options, min_copy_score=None)
    verdicts = decide_duplicates(table, options)
    assert verdicts.status == [KEPT, DROPPED, KEPT, KEPT]
    assert verdicts.dup_kind[1] == ("local" if verifier == "thresholds" else "verified")
    assert verdicts.keeper_key[1] == "original.png"
    assert decide_duplicates(table, replace(options, flip=False)).status == [KEPT, KEPT, KEPT, KEPT]
    if verifier == "thresholds":  # the colour check is what keeps the half-recoloured picture apart
        colour_blind = decide_duplicates(table, replace(options, max_hue_conflict=1.0))
        assert colour_blind.status == [KEPT, DROPPED, DROPPED, KEPT]


def _captioned(image: Image.Image, size: int = 80) -> Image.Image:
    """Two lines of large outlined text across the middle, as a stock preview has."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    for line, top in (("© stock photo", image.height // 2 - size), ("SAMPLE 2024", image.height // 2 + 10)):
        draw.text((20, top), line, fill=(255, 255, 255), font_size=size, stroke_width=3, stroke_fill=(0, 0, 0))
    return image


def test_learned_verifier_confirms_a_captioned_copy_that_the_thresholds_miss(photos, monkeypatch):
    """The captions hide a fifth of the photo: its thumbnails correlate under the 0.95 bar, while
    keypoints, the tiles the text leaves alone and the colours all say copy.  The trees weigh
    them together; the other photo scores near zero."""
    fruits = photos["fruits"]
    base, side_a, side_b = np.eye(3)
    vectors = np.stack([_unit(base), _unit(base + 0.62 * side_a), _unit(base + 0.62 * side_b)])
    table = _table({"original.png": fruits, "captioned.jpg": _captioned(fruits), "other.jpg": photos["home"]}, vectors)
    assert decide_duplicates(table, DedupOptions(hash_radius=(), min_copy_score=None)).status == [KEPT, KEPT, KEPT]
    verdicts = decide_duplicates(table, DedupOptions(hash_radius=()))
    assert verdicts.status == [KEPT, DROPPED, KEPT]
    assert verdicts.dup_kind[1] == "verified" and verdicts.keeper_key[1] == "original.png"
    score = 1.0 - verdicts.distance[1]
    assert DedupOptions().min_copy_score <= score <= 1.0
    assert verdicts.reason[1] == f"near duplicate of original.png (keypoints and thumbnails: copy score {score:.3f})"
    # The score is a hard line: just above it, the pair is no copy.
    assert decide_duplicates(table, DedupOptions(hash_radius=(), min_copy_score=score + 1e-6)).status == [KEPT] * 3
    # Candidates are scored in batches; their size changes nothing.
    monkeypatch.setattr(decide, "SCORED_TOGETHER", 1)
    assert decide_duplicates(table, DedupOptions(hash_radius=())).distance == verdicts.distance


def test_a_copy_of_the_original_meets_a_padded_keeper_at_the_keeper_bar():
    """The padded copy has the most pixels and keeps the cluster; the captioned copy is paired with the
    original only (cosine 0.64 with the padded one: no candidate).  Checked against the keeper, caption and
    padding meet, and the verifier scores the pair between the keeper bar (0.4) and the candidates' (0.6)."""
    bat = small_drawing("animals/mammals/contour_bat.png", side=200)
    captioned = bat.copy()
    ImageDraw.Draw(captioned).text((20, bat.height // 2), "© stock photo 2024", fill=(0, 0, 0), stroke_width=1,
                                   font=ImageFont.load_default(size=10), stroke_fill=(128, 128, 128))
    images = {"bat.png": bat, "padded.jpg": ImageOps.expand(bat, border=33, fill=(0, 0, 0)), "captioned.jpg": captioned}
    base, side_a, side_b = np.eye(3)
    vectors = np.stack([_unit(base), _unit(base + 0.75 * side_a), _unit(base + 0.75 * side_b)])
    assert (vectors @ vectors.T)[1, 2] < DedupOptions().candidate_similarity
    table = _table(images, vectors)
    defaults = DedupOptions(hash_radius=())
    verdicts = decide_duplicates(table, defaults)
    assert verdicts.status == [DROPPED, KEPT, DROPPED] and verdicts.keeper_key[2] == "padded.jpg"
    score = 1.0 - verdicts.distance[2]
    assert verdicts.dup_kind[2] == "verified" and defaults.min_keeper_score <= score < defaults.min_copy_score
    # At the candidates' bar, or just above its score, the captioned copy stays: nothing ties it to the keeper.
    for options in (replace(defaults, min_keeper_score=defaults.min_copy_score), replace(defaults, min_keeper_score=score + 1e-6)):
        assert decide_duplicates(table, options).status == [DROPPED, KEPT, KEPT]
    # The lower of the two bars applies: a stricter keeper bar never outbids a looser copy bar.
    looser = decide_duplicates(table, replace(defaults, min_copy_score=score, min_keeper_score=0.9))
    assert looser.status == [DROPPED, KEPT, DROPPED]


def test_pair_measurements_are_named_and_see_the_mirror_only_when_asked(photos):
    fruits = unpack_orb(orb_signature(photos["fruits"]))
    mirrored = unpack_orb(orb_signature(ImageOps.mirror(photos["fruits"])))
    measured = pair_measurements(fruits, mirrored)
    assert measured.dtype == np.float32 and measured.shape == (len(MEASUREMENT_NAMES),)
    value = dict(zip(MEASUREMENT_NAMES, measured.tolist()))
    assert value["mirror_inliers"] >= 50 and value["mirror_polished_appearance"] > 0.95 and value["inliers"] < 20
    assert value["keypoints_first"] == len(fruits) and value["plain"] == 0
    own_orientation = dict(zip(MEASUREMENT_NAMES, pair_measurements(fruits, mirrored, mirror=False).tolist()))
    assert own_orientation["mirror_inliers"] == own_orientation["inliers"] < 20


def test_a_caption_written_across_a_copy_is_left_out_with_the_worst_band(small_drawings):
    """A line of text across a copy spoils the correlation of the whole frames; without the band
    of rows where the two disagree most, the copy correlates again, and a look-alike does not."""
    ant = small_drawings["ant"]
    captioned = ant.copy()
    ImageDraw.Draw(captioned).text((4, ant.height * 0.45), "© stock photo 2024", fill=(0, 0, 0), stroke_width=1,
                                   font=ImageFont.load_default(size=12), stroke_fill=(128, 128, 128))
    original = unpack_orb(orb_signature(ant))
    copy = dict(zip(MEASUREMENT_NAMES, pair_measurements(original, unpack_orb(orb_signature(captioned))).tolist()))
    assert copy["frame_appearance"] < 0.9 and copy["frame_outside_worst_band"] > 0.98
    other = small_drawings["bat"].resize(ant.size, Image.LANCZOS)
    alike = dict(zip(MEASUREMENT_NAMES, pair_measurements(original, unpack_orb(orb_signature(other))).tolist()))
    assert alike["frame_outside_worst_band"] < 0.6


def test_transparent_drawing_matches_its_flattened_copy(photos):
    """Transparent pixels hide a colour (black here) that a flattened copy replaces with white:
    signatures must see the picture as it looks, as the hashes and the embedding do."""
    canvas = Image.new("RGBA", (640, 480), (0, 0, 0, 0))
    canvas.paste(photos["fruits"].resize((320, 240)), (160, 120))
    flattened = Image.new("RGB", canvas.size, (255, 255, 255))
    flattened.paste(canvas, mask=canvas.getchannel("A"))
    criteria = CopyCriteria.of(DedupOptions())
    verification = confirm_copy(unpack_orb(orb_signature(canvas)), unpack_orb(orb_signature(flattened)), criteria)
    assert verification is not None and verification.appearance > 0.99


@pytest.fixture(scope="module")
def small_drawings() -> dict[str, Image.Image]:
    """Real openclipart drawings as small pictures (96 px), flattened on white."""
    files = {"bat": "mammals/contour_bat.png", "echidna": "mammals/echidna_01.png", "ant": "bugs/ant.png",
             "rooster": "birds/gallo_di_profilo_archite_01.png"}
    return {label: small_drawing(f"animals/{name}") for label, name in files.items()}


def _shrunk_jpeg(image: Image.Image, factor: float = 0.4, quality: int = 60) -> Image.Image:
    small = image.resize((round(image.width * factor), round(image.height * factor)), Image.LANCZOS)
    return Image.open(io.BytesIO(jpeg(small, quality))).convert("RGB")


def test_small_copy_without_keypoint_agreement_is_confirmed_whole(small_drawings):
    criteria = replace(CopyCriteria.of(DedupOptions()), min_frame_appearance=0.95)
    for label in ("bat", "echidna"):
        original = unpack_orb(orb_signature(small_drawings[label]))
        copy = unpack_orb(orb_signature(_shrunk_jpeg(small_drawings[label])))
        assert not criteria.accepts(verify_pair(original, copy))  # a 38 px copy: too few keypoints agree
        confirmed = confirm_whole_frame(original, copy, criteria)
        assert confirmed is not None and confirmed.whole_frame and not confirmed.mirrored
        assert confirmed.appearance >= 0.95
        mirrored = confirm_whole_frame(original, unpack_orb(orb_signature(ImageOps.mirror(_shrunk_jpeg(small_drawings[label])))), criteria)
        assert mirrored is not None and mirrored.mirrored
        assert confirm_whole_frame(original, copy, replace(criteria, min_frame_appearance=None)) is None


def test_whole_frame_needs_the_same_shape_the_same_picture_and_its_colours(small_drawings):
    bat = small_drawings["bat"]
    criteria = CopyCriteria(min_inliers=12, min_inlier_ratio=0.08, min_appearance=0.95, max_hue_conflict=0.03,
                            min_frame_appearance=0.95)
    original = unpack_orb(orb_signature(bat))
    cropped = bat.crop((0, 0, bat.width * 3 // 4, bat.height))
    assert verify_whole_frame(original, unpack_orb(orb_signature(cropped))) is None  # another frame shape
    other = small_drawings["ant"].resize(bat.size, Image.LANCZOS)  # another drawing squeezed to the same shape
    assert confirm_whole_frame(original, unpack_orb(orb_signature(other)), criteria) is None
    # A colourful drawing with the colours of its left half turned around: same grey layout, conflicting colours.
    rooster = small_drawings["rooster"]
    recoloured = _hue_shifted(rooster, 180, (0, 0, rooster.width // 2, rooster.height))
    verification = verify_whole_frame(unpack_orb(orb_signature(rooster)), unpack_orb(orb_signature(recoloured)))
    assert verification.appearance > 0.95 and verification.hue_conflict > 0.03
    assert not criteria.accepts(verification)
    flat = unpack_orb(b"")
    assert verify_whole_frame(original, flat) is None and verify_whole_frame(flat, original) is None


def test_flags_too_plain_for_keypoints_are_told_apart_by_their_thumbnails():
    flags = {name: small_drawing(f"signs_and_symbols/flags/europe/{name}.png", side=400)
             for name in ("italy/italy", "france/france", "poland")}
    italy, france, poland = (unpack_orb(orb_signature(flag)) for flag in flags.values())
    assert len(italy) == len(france) == len(poland) == 0  # three stripes: no corners for ORB
    criteria = CopyCriteria.of(DedupOptions())
    original = flags["italy/italy"]
    for copy in (_shrunk_jpeg(original, quality=40), original.convert("L").convert("RGB"),
                 ImageEnhance.Brightness(ImageEnhance.Color(original).enhance(0.6)).enhance(1.2)):
        assert confirm_whole_frame(italy, unpack_orb(orb_signature(copy)), criteria) is not None
    # France shares Italy's layout (and its grey pattern: dark, white, dark), not its colours; Poland neither.
    same_layout = verify_whole_frame(italy, france)
    assert same_layout.appearance > 0.95 and not criteria.accepts(same_layout)
    assert confirm_whole_frame(italy, france, criteria) is None and confirm_whole_frame(italy, poland, criteria) is None
    # Poland is Indonesia upside down: the stripes are compared, not just the levels of what is left.
    assert verify_whole_frame(poland, unpack_orb(orb_signature(ImageOps.flip(flags["poland"])))).appearance < 0


def test_decision_names_whole_frame_copies_and_can_turn_them_off(small_drawings):
    # Cosine 0.85: a loose candidate, confirmed only by the whole-frame check.
    base, side_a, side_b = np.eye(3)
    vectors = np.stack([_unit(base), _unit(base + 0.62 * side_a), _unit(base + 0.62 * side_b)])
    images = {"bat.png": small_drawings["bat"], "bat_small.jpg": _shrunk_jpeg(small_drawings["bat"]),
              "echidna.png": small_drawings["echidna"]}
    table = _table(images, vectors)
    options = DedupOptions(hash_radius=(), min_copy_score=None, min_frame_appearance=0.95)
    verdicts = decide_duplicates(table, options)
    assert verdicts.status == [KEPT, DROPPED, KEPT]
    assert verdicts.dup_kind[1] == "thumbnail" and verdicts.keeper_key[1] == "bat.png"
    assert 0.0 <= verdicts.distance[1] <= 0.05
    assert verdicts.reason[1].startswith("near duplicate of bat.png (same frame: thumbnails correlate at 0.9")
    # Without the whole-frame check the thumbnails still align by themselves; without both, nothing is left.
    assert decide_duplicates(table, replace(options, min_frame_appearance=None)).dup_kind[1] == "aligned"
    assert decide_duplicates(table, replace(options, min_frame_appearance=None, min_aligned_appearance=None)).status == [KEPT] * 3


def test_flat_pictures_turned_or_cropped_are_aligned_by_their_thumbnails_and_look_alikes_are_not():
    flags = {name: small_drawing(f"signs_and_symbols/flags/europe/{name}.png", side=300)
             for name in ("austria", "hungary", "poland", "italy/italy", "france/france")}
    criteria = CopyCriteria.of(DedupOptions())
    for name in ("austria", "hungary"):
        flag = flags[name]
        original = unpack_orb(orb_signature(flag))
        for copy in (flag.rotate(6, resample=Image.BICUBIC, fillcolor=(255, 255, 255)),
                     flag.crop((25, 15, flag.width - 10, flag.height - 20))):
            copy_features = unpack_orb(orb_signature(copy))
            # Neither the keypoints (a handful on three stripes) nor the frame (it changed shape or turned) can tell.
            assert confirm_copy(original, copy_features, criteria) is None
            assert confirm_whole_frame(original, copy_features, criteria) is None
            verification = confirm_aligned_frame(original, copy_features, criteria)
            assert verification is not None and verification.appearance >= 0.99
            assert verification.aligned_tiles >= MIN_ALIGNED_TILES
    italy, france, poland, austria = (unpack_orb(orb_signature(flags[name]))
                                      for name in ("italy/italy", "france/france", "poland", "austria"))
    # France aligns onto Italy in grey (dark, white, dark) but not in colour; Poland is not Austria at all.
    same_layout = verify_aligned_frame(italy, france)
    assert same_layout.appearance > 0.98 and same_layout.hue_conflict > criteria.max_hue_conflict
    assert confirm_aligned_frame(italy, france, criteria) is None
    assert confirm_aligned_frame(poland, austria, criteria) is None
    # Germany's outer stripes read as plain margins, and what is left of the cropped copy is its red stripe
    # alone (plain) while the original keeps some of the edges: the whole overlap is compared (was 0 before).
    germany = small_drawing("signs_and_symbols/flags/europe/germany/germany.png", side=300)
    cropped = germany.crop((25, 15, germany.width - 10, germany.height - 20))
    assert verify_aligned_frame(unpack_orb(orb_signature(germany)), unpack_orb(orb_signature(cropped))).appearance > 0.95
    # The bar is the aligned check's own: off with min_aligned_appearance None, whatever the whole-frame bar.
    turned = unpack_orb(orb_signature(flags["austria"].rotate(6, resample=Image.BICUBIC, fillcolor=(255, 255, 255))))
    assert confirm_aligned_frame(austria, turned, replace(criteria, min_aligned_appearance=None)) is None
    assert confirm_aligned_frame(austria, turned, replace(criteria, min_frame_appearance=None)) is not None


def test_decision_names_aligned_copies_and_can_turn_them_off():
    # A chevron pattern: ORB finds corners on every zigzag, all alike, so keypoints match nothing in particular.
    chevrons = small_drawing("special/patterns/pattern-chevrons-1.png", side=200)
    images = {"chevrons.png": chevrons, "cropped.jpg": chevrons.crop((18, 10, chevrons.width - 6, chevrons.height - 20)),
              "turned.jpg": chevrons.rotate(7, resample=Image.BICUBIC, fillcolor=(255, 255, 255)),
              "other.png": small_drawing("special/patterns/pattern-chevrons-3.png", side=200)}
    # Each at cosine 0.85 with the original: candidates, below min_similarity.
    base = np.eye(4)
    vectors = np.stack([_unit(base[0])] + [_unit(base[0] + 0.62 * base[k]) for k in (1, 2, 3)])
    table = _table(images, vectors)
    for options in (DedupOptions(hash_radius=()), DedupOptions(hash_radius=(), min_copy_score=None)):
        verdicts = decide_duplicates(table, options)
        assert verdicts.status == [KEPT, DROPPED, DROPPED, KEPT]
        assert verdicts.dup_kind[1:3] == ["aligned", "aligned"] and verdicts.keeper_key[1:3] == ["chevrons.png"] * 2
        assert all(0.0 <= distance <= 0.01 for distance in verdicts.distance[1:3])
        assert verdicts.reason[1].startswith("near duplicate of chevrons.png (thumbnails aligned without keypoints "
                                             "correlate at 0.99")
        assert decide_duplicates(table, replace(options, min_aligned_appearance=None)).status == [KEPT] * 4


def test_tile_correlations_match_a_plain_loop_over_the_tiles():
    """The bincount pass gives each tile what a loop over it would: its correlation, or for two
    plain tiles whether their levels agree; tiles with too few covered pixels are left out."""
    from dedupkit.signatures.local import MARGIN_LEVELS, MIN_TILE_PIXELS, TILES, _tile_correlations, _tiles

    rng = np.random.default_rng(3)
    first = rng.uniform(0, 255, (60, 64)).astype(np.float32)
    second = (0.7 * first + rng.normal(0, 30, first.shape)).astype(np.float32)
    first[:15, :16], second[:15, :16] = 200.0, 203.0  # a plain tile in both, levels agreeing
    first[:15, 16:32] = 90.0  # plain in one only: no correlation
    covered = np.ones(first.shape, dtype=bool)
    covered[45:, 48:] = False  # the last tile is not covered at all
    tile = _tiles(first.shape)
    expected = []
    for index in range(TILES * TILES):
        a, b = first[covered & (tile == index)], second[covered & (tile == index)]
        if a.size < MIN_TILE_PIXELS:
            continue
        if np.ptp(a) <= MARGIN_LEVELS and np.ptp(b) <= MARGIN_LEVELS:
            expected.append(1.0 if abs(a.mean() - b.mean()) <= 2 * MARGIN_LEVELS else 0.0)
        else:
            expected.append(float(np.corrcoef(a, b)[0, 1]) if np.ptp(a) and np.ptp(b) else 0.0)
    found = _tile_correlations(first[covered], second[covered], tile[covered])
    assert len(found) == TILES * TILES - 1 and found[0] == 1.0 and found[1] == 0.0
    assert np.allclose(found, expected, atol=1e-6)


def test_decision_reads_each_orb_signature_where_it_lies_and_forgets_unpacked_ones(photos, monkeypatch):
    fruits = photos["fruits"]
    base, side_a, side_b = np.eye(3)
    vectors = np.stack([_unit(base), _unit(base), _unit(base + 0.62 * side_a), _unit(base + 0.62 * side_b)])
    images = {"exact.png": fruits, "original.png": fruits, "mirrored.jpg": ImageOps.mirror(fruits.crop((30, 20, 480, 460))),
              "other.jpg": photos["home"]}
    table = _table(images, vectors)
    # An exact copy first, so that the pictures decided on are not the table's rows; two chunks, as Parquet shards give.
    table = table.set_column(table.schema.get_field_index("sig_pixels"), "sig_pixels", pa.array(["0" * 32] * 2 + ["1" * 32, "2" * 32]))
    table = pa.concat_tables([table.slice(0, 2), table.slice(2)])
    options = DedupOptions(hash_radius=(), min_appearance=0.9, keep="first")
    remembered = decide_duplicates(table, options)
    assert remembered.status == [KEPT, DROPPED, DROPPED, KEPT]
    assert remembered.keeper_key[2] == "exact.png" and remembered.dup_kind[2] == "verified"
    monkeypatch.setattr(decide, "UNPACKED_PICTURES", 1)  # every pair unpacks its pictures again
    forgotten = decide_duplicates(table, options)
    for field in ("status", "reason", "keeper_key", "dup_kind", "distance"):
        assert getattr(forgotten, field) == getattr(remembered, field)
    assert forgotten.cluster_id.tolist() == remembered.cluster_id.tolist()


@pytest.mark.parametrize("verifier", ["thresholds", "learned"])
def test_workers_verify_the_candidates_with_the_same_verdicts(photos, monkeypatch, verifier):
    """Candidates are shared among forked processes, a few pairs each here; the verdicts, kinds and
    distances are those of one process."""
    fruits, baboon = photos["fruits"], photos["baboon"]
    images = {"fruits.png": fruits, "fruits_cropped.jpg": fruits.crop((30, 20, 480, 460)),
              "fruits_mirrored.jpg": ImageOps.mirror(fruits), "half_recoloured.jpg": _hue_shifted(fruits, 180, (0, 0, 256, 480)),
              "home.jpg": photos["home"], "baboon.png": baboon, "baboon_small.jpg": Image.open(io.BytesIO(jpeg(baboon.resize((384, 384)), 60))).convert("RGB")}
    # Every pair a candidate (cosine 0.8): the keypoints and thumbnails decide them all.
    vectors = np.stack([_unit(np.eye(len(images))[k] + 0.5) for k in range(len(images))])
    assert (vectors @ vectors.T).min() > DedupOptions().candidate_similarity
    table = _table(images, vectors)
    options = DedupOptions(hash_radius=(), min_similarity=0.99)
    if verifier == "thresholds":
        options = replace(options, min_copy_score=None)
    alone = decide_duplicates(table, options)
    assert alone.status.count(DROPPED) >= 3

    pools = []

    class CountedPool(decide.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(decide, "ProcessPoolExecutor", CountedPool)
    monkeypatch.setattr(decide, "PAIRS_PER_TASK", 4)
    shared = decide_duplicates(table, options, workers=2)
    assert pools, "the candidates were not verified in worker processes"
    for field in ("status", "reason", "keeper_key", "dup_kind", "distance"):
        assert getattr(shared, field) == getattr(alone, field), field
