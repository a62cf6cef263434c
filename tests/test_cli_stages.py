"""The stages as a user drives them: tag, watermark, detect, and copyright policies in clean."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pyarrow.parquet as pq
from PIL import Image

from conftest import jpeg, write_folder
from dedupkit.pipeline import CleanOptions, run_clean
from dedupkit.search.options import DedupOptions

CLI = [sys.executable, "-m", "dedupkit.cli"]


def dedupkit(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(CLI + list(args), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def dedupkit_refused(*args: str, **run) -> str:
    """Runs a command the CLI must refuse (exit code 2); returns what it wrote to stderr."""
    result = subprocess.run(CLI + list(args), capture_output=True, text=True, **run)
    assert result.returncode == 2, result.stdout + result.stderr
    return result.stderr


def rows(out) -> dict[str, dict]:
    return {row["key"]: row for row in pq.read_table(out / "manifest.parquet").to_pylist()}


def with_exif_copyright(image: Image.Image, holder: str) -> bytes:
    exif = Image.Exif()
    exif[0x8298] = f"(c) 2024 {holder}"
    exif[0x013B] = holder
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def test_watermark_then_detect_traces_each_image_to_its_record(tmp_path, real_thumbnails):
    src = write_folder(tmp_path / "src", {f"img{i}.jpg": jpeg(real_thumbnails[i], 95) for i in range(4)})
    out = tmp_path / "out"
    dedupkit("watermark", str(src), str(out), "--key", "our-secret-dataset-key")
    manifest = rows(out)
    assert all(row["status"] == "kept" and row["watermark_verified"] for row in manifest.values())
    registry = out / "watermarks.parquet"
    assert pq.read_table(registry).num_rows == 4

    marked = dedupkit("detect", str(out / "data"), "--registry", str(registry), "--json")
    found = [json.loads(line) for line in marked.stdout.splitlines()]
    assert len(found) == 4
    assert all(d["marked"] and d["dataset_match"] for d in found)
    assert sorted(d["record_key"] for d in found) == sorted(manifest)

    unmarked = dedupkit("detect", str(src / "img0.jpg"), "--registry", str(registry))
    assert "0 of 1 marked" in unmarked.stdout
    wrong_key = dedupkit("detect", str(out / "data" / "img1.jpg"), "--key", "somebody-elses-key-entirely")
    assert "0 of 1 marked" in wrong_key.stdout


def test_tag_reads_rights_metadata_without_dropping_anything(tmp_path, real_thumbnails):
    src = write_folder(
        tmp_path / "src",
        {"marked.jpg": with_exif_copyright(real_thumbnails[0], "Jane Photographer"), "plain.jpg": jpeg(real_thumbnails[1])},
    )
    dedupkit("tag", str(src), str(tmp_path / "out"), "--no-visible-marks")
    manifest = rows(tmp_path / "out")
    assert all(row["status"] == "kept" for row in manifest.values())
    assert manifest["marked.jpg"]["copyright_marked"] and "Jane Photographer" in manifest["marked.jpg"]["rights_holder"]
    assert "exif" in manifest["marked.jpg"]["copyright_evidence"].lower()
    assert not manifest["plain.jpg"]["copyright_marked"]
    assert not (tmp_path / "out" / "data").exists()


def test_copyright_drop_and_prefer_unmarked(tmp_path, real_photo, real_thumbnails):
    large_marked = with_exif_copyright(real_photo, "Stock Agency Ltd")
    small_plain = jpeg(real_photo.resize((192, 144)), 90)
    src = write_folder(
        tmp_path / "src", {"a_marked_large.jpg": large_marked, "b_plain_small.jpg": small_plain, "c_other.jpg": jpeg(real_thumbnails[7])}
    )
    common = dict(visible_marks=False, watermark_method=None, dedup=DedupOptions(embedder=None))

    run_clean(str(src), tmp_path / "largest", CleanOptions(copyright="tag", **common))
    assert rows(tmp_path / "largest")["a_marked_large.jpg"]["status"] == "kept"

    run_clean(str(src), tmp_path / "prefer", CleanOptions(copyright="prefer-unmarked", **common))
    prefer = rows(tmp_path / "prefer")
    assert prefer["b_plain_small.jpg"]["status"] == "kept"
    assert prefer["a_marked_large.jpg"]["status"] == "dropped" and prefer["a_marked_large.jpg"]["keeper_key"] == "b_plain_small.jpg"

    run_clean(str(src), tmp_path / "drop", CleanOptions(copyright="drop", **common))
    drop = rows(tmp_path / "drop")
    assert drop["a_marked_large.jpg"]["status"] == "dropped"
    assert drop["a_marked_large.jpg"]["reason"].startswith("copyright-marked:")
    assert "Stock Agency" in drop["a_marked_large.jpg"]["reason"]
    assert drop["c_other.jpg"]["status"] == "kept"


def test_clean_marks_kept_images_and_reuses_the_saved_key(tmp_path, real_thumbnails):
    src = write_folder(tmp_path / "src", {f"{i}.png": jpeg(real_thumbnails[i + 10]) for i in range(3)})
    options = CleanOptions(copyright=None, dedup=None)
    run_clean(str(src), tmp_path / "out", options)
    key = (tmp_path / "out" / "watermark.key").read_text()
    assert key.strip()
    run_clean(str(src), tmp_path / "out", options)  # resumes with the saved key
    assert (tmp_path / "out" / "watermark.key").read_text() == key
    manifest = rows(tmp_path / "out")
    assert all(row["watermark"].startswith("stdmDct:") for row in manifest.values())
    assert sorted(row["record_index"] for row in manifest.values()) == [0, 1, 2]


def test_missing_clip_weights_is_one_line_and_writes_nothing(tmp_path, real_thumbnails, monkeypatch):
    src = write_folder(tmp_path / "src", {"a.jpg": jpeg(real_thumbnails[0])})
    env = dict(__import__("os").environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf"))
    stderr = dedupkit_refused("clean", str(src), str(tmp_path / "out"), "--embedder", "open_clip:ViT-B-32:laion2b_s34b_b79k",
                              env=env)
    assert len(stderr.strip().splitlines()) == 1 and "ViT-B-32" in stderr
    assert not (tmp_path / "out").exists()


def test_dedup_command_options_reach_the_run(tmp_path, real_photo, real_thumbnails):
    src = write_folder(
        tmp_path / "src",
        {"a_marked_large.jpg": with_exif_copyright(real_photo, "Stock Agency Ltd"),
         "b_plain_small.jpg": jpeg(real_photo.resize((192, 144)), 90), "c_other.jpg": jpeg(real_thumbnails[7])},
    )
    out = tmp_path / "out"
    dedupkit("dedup", str(src), str(out), "--embedder", "none", "--hash", "phash:4", "--keep", "prefer-unmarked",
             "--max-hue-conflict", "0.5", "--max-candidates", "7", "--min-frame-appearance", "2",
             "--min-aligned-appearance", "0.995", "--min-keeper-score", "0.45", "--shard-size", "2",
             "--visible-mark-threshold", "0.999")
    settings = json.loads((out / ".dedupkit" / "run.json").read_text())["settings"]
    assert settings["visible_mark_threshold"] == 0.999
    assert settings["shard_size"] == 2
    assert settings["dedup"]["hash_radius"] == [["phash", 4]]
    assert (settings["dedup"]["max_hue_conflict"], settings["dedup"]["max_candidates_per_record"]) == (0.5, 7)
    assert settings["dedup"]["min_frame_appearance"] is None  # above 1: the whole-frame check is off
    assert settings["dedup"]["min_aligned_appearance"] == 0.995
    assert settings["dedup"]["min_keeper_score"] == 0.45
    assert settings["copyright"] == "tag"  # prefer-unmarked needs the copyright tags
    manifest = rows(out)
    assert manifest["b_plain_small.jpg"]["status"] == "kept"
    assert manifest["a_marked_large.jpg"]["keeper_key"] == "b_plain_small.jpg"
    assert not (out / "data").exists()

    assert "prefer-unmarked" in dedupkit_refused("dedup", str(src), str(tmp_path / "refused"), "--visible-mark-threshold", "0.9")


def test_visible_mark_threshold_lets_the_score_mark_and_drop(tmp_path, real_thumbnails):
    import random

    from dedupkit.copyright.synthetic_marks import draw_visible_mark

    stamped, _ = draw_visible_mark(random.Random(3), real_thumbnails[2].resize((320, 240)), "train", {"banner": 1.0})
    src = write_folder(tmp_path / "src", {"plain0.jpg": jpeg(real_thumbnails[0]), "plain1.jpg": jpeg(real_thumbnails[1]),
                                          "stamped.jpg": jpeg(stamped, 95)})
    dedupkit("tag", str(src), str(tmp_path / "reported"))
    reported = rows(tmp_path / "reported")
    assert not any(row["copyright_marked"] for row in reported.values())  # by default the score is only reported
    scores = {key: row["visible_mark_score"] for key, row in reported.items()}
    threshold = max(scores.values())
    top = [key for key, score in scores.items() if score >= threshold]

    dedupkit("tag", str(src), str(tmp_path / "marked"), "--visible-mark-threshold", str(threshold))
    marked = rows(tmp_path / "marked")
    assert [key for key, row in marked.items() if row["copyright_marked"]] == top
    assert all("mark_score" in marked[key]["copyright_evidence"] for key in top)

    dedupkit("clean", str(src), str(tmp_path / "cleaned"), "--copyright", "drop", "--visible-mark-threshold",
             str(threshold), "--watermark", "none", "--exact-only")
    cleaned = rows(tmp_path / "cleaned")
    assert sorted(key for key, row in cleaned.items() if row["status"] == "dropped") == top
    assert all(cleaned[key]["reason"].startswith("copyright-marked:") for key in top)

    for bad, message in ((["--visible-mark-threshold", "1.5"], "between 0 and 1"),
                         (["--visible-mark-threshold", "0.9", "--no-visible-marks"], "--no-visible-marks")):
        assert message in dedupkit_refused("tag", str(src), str(tmp_path / "refused"), *bad)
