"""The global decision: exact copies follow their picture, keeper policies, reasons name the keeper."""

import pytest
from PIL import Image

from conftest import jpeg, png, small_drawing, write_folder
from dedupkit.pipeline import CleanOptions, run_clean
from dedupkit.search.decide import DedupOptions
from test_pipeline import PLAIN, manifest


@pytest.fixture()
def family(tmp_path, real_photo, real_thumbnails):
    small = real_photo.resize((128, 96), Image.Resampling.LANCZOS)
    return write_folder(
        tmp_path / "src",
        {
            "a_small.png": png(small),
            "b_small_copy.png": png(small),
            "c_large.jpg": jpeg(real_photo, 95),
            "d_other.jpg": jpeg(real_thumbnails[5]),
        },
    )


def test_exact_copy_follows_its_picture_to_the_largest_keeper(tmp_path, family):
    run_clean(str(family), tmp_path / "out", CleanOptions(dedup=DedupOptions(embedder=None, keep="largest"), **PLAIN))
    rows = {r["key"]: r for r in manifest(tmp_path / "out")}
    assert rows["c_large.jpg"]["status"] == "kept"
    assert rows["d_other.jpg"]["status"] == "kept" and rows["d_other.jpg"]["cluster_id"] == -1
    for key in ("a_small.png", "b_small_copy.png"):
        assert rows[key]["status"] == "dropped" and rows[key]["keeper_key"] == "c_large.jpg"
        assert rows[key]["dup_kind"] == "hash" and rows[key]["reason"].startswith("near duplicate of c_large.jpg")
    assert "via its exact copy a_small.png" in rows["b_small_copy.png"]["reason"]
    assert len({rows[k]["cluster_id"] for k in ("a_small.png", "b_small_copy.png", "c_large.jpg")}) == 1


def test_keep_first_keeps_input_order(tmp_path, family):
    run_clean(str(family), tmp_path / "out", CleanOptions(dedup=DedupOptions(embedder=None, keep="first"), **PLAIN))
    rows = {r["key"]: r for r in manifest(tmp_path / "out")}
    assert rows["a_small.png"]["status"] == "kept"
    assert rows["b_small_copy.png"]["dup_kind"] == "exact" and rows["c_large.jpg"]["dup_kind"] == "hash"


def test_largest_keeps_the_png_a_same_size_jpeg_was_saved_from(tmp_path, real_photo):
    src = write_folder(tmp_path / "src", {"a_saved_again.jpg": jpeg(real_photo, 90), "b_source.png": png(real_photo)})
    options = DedupOptions(embedder=None, hash_radius=(("phash", 8),))
    run_clean(str(src), tmp_path / "out", CleanOptions(dedup=options, **PLAIN))
    rows = {r["key"]: r for r in manifest(tmp_path / "out")}
    assert rows["b_source.png"]["status"] == "kept"
    assert rows["a_saved_again.jpg"]["status"] == "dropped" and rows["a_saved_again.jpg"]["keeper_key"] == "b_source.png"


def test_a_png_resave_with_identical_pixels_does_not_displace_its_jpeg(tmp_path, real_photo):
    import io

    first = jpeg(real_photo, 90)
    src = write_folder(tmp_path / "src", {"a_upload.jpg": first, "b_resaved.png": png(Image.open(io.BytesIO(first)))})
    run_clean(str(src), tmp_path / "out", CleanOptions(dedup=DedupOptions(embedder=None), **PLAIN))
    rows = {r["key"]: r for r in manifest(tmp_path / "out")}
    assert rows["a_upload.jpg"]["status"] == "kept"
    assert rows["b_resaved.png"]["dup_kind"] == "exact" and rows["b_resaved.png"]["keeper_key"] == "a_upload.jpg"


def test_hash_radius_is_respected(tmp_path, family):
    run_clean(str(family), tmp_path / "out", CleanOptions(dedup=DedupOptions(embedder=None, hash_radius=(("phash", 8),)), **PLAIN))
    for row in manifest(tmp_path / "out"):
        if row["dup_kind"] == "hash":
            assert 0 <= row["distance"] <= 8


def test_mirrored_copy_needs_flip(tmp_path, real_photo):
    from PIL import ImageOps

    src = write_folder(tmp_path / "src", {"a.png": png(real_photo), "b.png": png(ImageOps.mirror(real_photo))})
    run_clean(str(src), tmp_path / "flip", CleanOptions(dedup=DedupOptions(embedder=None, flip=True), **PLAIN))
    run_clean(str(src), tmp_path / "noflip", CleanOptions(dedup=DedupOptions(embedder=None, flip=False), **PLAIN))
    assert {r["key"]: r["status"] for r in manifest(tmp_path / "flip")}["b.png"] == "dropped"
    assert {r["key"]: r["status"] for r in manifest(tmp_path / "noflip")}["b.png"] == "kept"


def test_nearly_blank_pictures_colliding_in_phash_are_not_copies(tmp_path):
    """Small drawings on a wide white canvas: their pHash is that of the blank canvas, the same
    at 0 bits for all four; the thumbnails tell them apart (with an embedder and local verification)."""
    from pathlib import Path

    animals = Path("/usr/share/openclipart/png/animals")
    names = ("bugs/ant.png", "mammals/contour_bat.png", "birds/gallo_di_profilo_archite_01.png", "mammals/echidna_01.png")
    if not all((animals / name).exists() for name in names):
        pytest.skip("openclipart-png is not installed")
    files = {}
    for name in names:
        drawing = Image.open(animals / name).convert("RGBA")
        drawing.thumbnail((40, 40))
        canvas = Image.new("RGB", (640, 480), "white")
        canvas.paste(drawing, (100, 100), drawing)
        files[Path(name).stem + ".png"] = png(canvas)
    src = write_folder(tmp_path / "src", files)
    run_clean(str(src), tmp_path / "hash_only", CleanOptions(dedup=DedupOptions(embedder=None), **PLAIN))
    hash_only = manifest(tmp_path / "hash_only")
    assert sum(row["status"] == "dropped" for row in hash_only) == 3  # the collision itself
    assert {row["distance"] for row in hash_only if row["status"] == "dropped"} == {0.0}
    run_clean(str(src), tmp_path / "verified", CleanOptions(dedup=DedupOptions(), **PLAIN))
    assert [row["status"] for row in manifest(tmp_path / "verified")] == ["kept"] * 4


def test_small_hash_copy_passes_the_thumbnail_check(tmp_path):
    """A 96 px drawing and its 38 px JPEG: the same pHash, too small for keypoints, thumbnails
    correlating at 0.986 (under the whole-frame bar of a loose embedding candidate): the whole
    frames decide at the keypoint path's appearance bar, because the hash already agrees."""
    drawing = small_drawing("animals/mammals/a_simple_pig_01.png")
    small = drawing.resize((drawing.width * 2 // 5, drawing.height * 2 // 5), Image.Resampling.LANCZOS)
    src = write_folder(tmp_path / "src", {"pig.png": png(drawing), "pig_small.jpg": jpeg(small, 60)})
    run_clean(str(src), tmp_path / "out", CleanOptions(dedup=DedupOptions(), **PLAIN))
    rows = {row["key"]: row for row in manifest(tmp_path / "out")}
    assert rows["pig_small.jpg"]["status"] == "dropped" and rows["pig_small.jpg"]["dup_kind"] == "hash"
    assert rows["pig_small.jpg"]["keeper_key"] == "pig.png" and rows["pig_small.jpg"]["distance"] == 0.0
