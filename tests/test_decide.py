"""The global decision: exact copies follow their picture, keeper policies, reasons name the keeper."""

import pytest
from PIL import Image

from conftest import jpeg, png, write_folder
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
