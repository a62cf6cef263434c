"""The pipeline end to end: every record accounted for, same decisions in every format, resumable."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import jpeg, png, write_folder, write_parquet, write_tar
from dedupkit.decode import pixel_digest
from dedupkit.pipeline import CleanOptions, RunError, run_clean
from dedupkit.search.decide import DedupOptions
from dedupkit.sinks import atomic_write_bytes
from dedupkit.samples import bad_inputs, build_sample_dataset, encode, load_rgb, real_images
from dedupkit.sources import open_source

CLI = [sys.executable, "-m", "dedupkit.cli"]
# Pipeline tests switch off the stages they do not test (copyright tags, watermarks):
# those have their own tests, and the records here must stay byte-identical.
PLAIN = {"copyright": None, "watermark_method": None}
EXACT_ONLY = CleanOptions(dedup=None, **PLAIN)
HASHES_ONLY = DedupOptions(embedder=None)


def manifest(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


@pytest.fixture(scope="session")
def thousand_images(tmp_path_factory) -> dict[str, bytes]:
    """1,000 records from real images: 900 distinct pictures, 60 byte copies, 40 same pixels re-encoded."""
    records: dict[str, bytes] = {}
    pictures = []
    seen = set()
    for path in real_images(1100, min_side=32):
        image = load_rgb(path)
        image.thumbnail((48, 48), Image.Resampling.BILINEAR)
        if min(image.size) < 24 or pixel_digest(image) in seen:  # openclipart repeats drawings under other names
            continue
        seen.add(pixel_digest(image))
        records[f"{len(pictures):06d}"] = encode(image, "PNG")
        pictures.append(image)
        if len(pictures) == 900:
            break
    assert len(pictures) == 900, "install Debian's openclipart-png and opencv-doc (make setup does)"
    for copy in range(60):
        records[f"{900 + copy:06d}"] = records[f"{copy * 7:06d}"]
    for copy in range(40):
        records[f"{960 + copy:06d}"] = encode(pictures[copy * 11 + 3], "BMP")
    return records


def as_folder(records: dict[str, bytes], root: Path) -> str:
    write_folder(root, {f"{key}.{'bmp' if data[:2] == b'BM' else 'png'}": data for key, data in records.items()})
    return str(root)


def as_webdataset(records: dict[str, bytes], root: Path, per_shard: int = 250) -> str:
    keys = sorted(records)
    for shard in range(0, len(keys), per_shard):
        members = [(f"{k}.{'bmp' if records[k][:2] == b'BM' else 'png'}", records[k]) for k in keys[shard : shard + per_shard]]
        write_tar(root / f"{shard // per_shard:05d}.tar", members)
    return str(root / "{00000..00003}.tar")


def as_parquet(records: dict[str, bytes], root: Path) -> str:
    rows = [{"key": key, "bytes": data} for key, data in sorted(records.items())]
    write_parquet(root / "a.parquet", rows[:500], row_group_size=200)
    write_parquet(root / "b.parquet", rows[500:], row_group_size=200)
    return str(root)


def decisions_by_stem(out: Path) -> dict[str, tuple]:
    def stem(key):
        return Path(key).stem if key else key

    return {stem(r["key"]): (r["status"], stem(r["keeper_key"]), r["dup_kind"]) for r in manifest(out)}


def test_same_decisions_from_folder_webdataset_and_parquet(tmp_path, thousand_images):
    outcomes = {}
    for name, build in (("folder", as_folder), ("webdataset", as_webdataset), ("parquet", as_parquet)):
        src = build(thousand_images, tmp_path / f"src-{name}")
        summary = run_clean(src, tmp_path / f"out-{name}", CleanOptions(shard_size=300, dedup=HASHES_ONLY, **PLAIN))
        assert summary["records"] == 1000 and summary["source_format"] == name
        outcomes[name] = decisions_by_stem(tmp_path / f"out-{name}")
    assert outcomes["folder"] == outcomes["webdataset"] == outcomes["parquet"]
    planted = {k: v for k, v in outcomes["folder"].items() if int(k) >= 900}
    assert all(status == "dropped" and int(keeper) < 900 for status, keeper, _ in planted.values())
    assert sum(kind == "exact" for _, _, kind in planted.values()) >= 95  # the rest follow a near-duplicate picture
    # Near-duplicate quality (look-alike drawings merged or not) is measured by
    # benchmarks/neardup_quality.py and tests/test_neardup*.py; here only agreement counts.
    near = [k for k, v in outcomes["folder"].items() if v[0] == "dropped" and int(k) < 900]
    # kept records are written back in the source's format, and nothing else
    reread = open_source(str(tmp_path / "out-webdataset" / "data"))
    kept = [r for unit in reread.units() for r in reread.read(unit)]
    assert len(kept) == 900 - len(near) and reread.kind == "webdataset"
    assert len(kept) == sum(v[0] == "kept" for v in outcomes["folder"].values())


def test_every_input_record_is_in_the_manifest_exactly_once(tmp_path, real_photo, real_thumbnails):
    files = {f"odd/{name}": data for name, (data, _) in bad_inputs(real_photo).items()}
    files.update({f"good/{i}.jpg": jpeg(image) for i, image in enumerate(real_thumbnails[:10])})
    files["good/again.jpg"] = files["good/3.jpg"]
    src = write_folder(tmp_path / "src", files)
    before = {p: p.read_bytes() for p in src.rglob("*")if p.is_file()}
    summary = run_clean(str(src), tmp_path / "out", CleanOptions(shard_size=4, dedup=None, **PLAIN))
    rows = manifest(tmp_path / "out")
    assert sorted(r["key"] for r in rows) == sorted(files)
    by_key = {r["key"]: r for r in rows}
    for name, (_, expected) in bad_inputs(real_photo).items():
        row = by_key[f"odd/{name}"]
        if expected is None:
            assert row["status"] == "kept", (name, row["reason"])
        else:
            assert row["status"] == "skipped" and row["reason"].startswith(expected), (name, row["reason"])
    again = by_key["good/again.jpg"]
    assert again["status"] == "dropped" and "good/3.jpg" in again["reason"] and "identical bytes" in again["reason"]
    assert summary["skipped"] == 7 and summary["records"] == len(files)
    assert all(r["sha256"] == hashlib.sha256(files[r["key"]]).hexdigest() for r in rows)
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # the source is never modified
    written = sorted(p.relative_to(tmp_path / "out" / "data").as_posix() for p in (tmp_path / "out" / "data").rglob("*") if p.is_file())
    assert written == sorted(k for k, r in by_key.items() if r["status"] == "kept")


def test_png_and_bmp_of_the_same_picture_are_one_image(tmp_path, real_thumbnails):
    src = write_folder(tmp_path / "src", {"a.png": png(real_thumbnails[0]), "b.bmp": encode(real_thumbnails[0], "BMP")})
    run_clean(str(src), tmp_path / "out", CleanOptions(dedup=HASHES_ONLY, **PLAIN))
    rows = {r["key"]: r for r in manifest(tmp_path / "out")}
    assert rows["b.bmp"]["status"] == "dropped" and rows["b.bmp"]["keeper_key"] == "a.png"
    assert "identical pixels" in rows["b.bmp"]["reason"]
    assert rows["a.png"]["cluster_id"] == rows["b.bmp"]["cluster_id"] >= 0


def test_tar_members_never_escape_the_output(tmp_path, real_thumbnails):
    shard = write_tar(
        tmp_path / "in" / "s.tar",
        [("ok.jpg", jpeg(real_thumbnails[0])), ("../../escape.jpg", jpeg(real_thumbnails[1])), ("/tmp/abs.jpg", jpeg(real_thumbnails[2]))],
    )
    out = tmp_path / "deep" / "out"
    summary = run_clean(str(shard), out, CleanOptions(output_format="folder", dedup=None, **PLAIN))
    assert summary["kept"] == 1 and summary["skipped"] == 2
    everything = [p for p in tmp_path.rglob("*") if p.is_file() and "in" not in p.relative_to(tmp_path).parts[:1]]
    assert all(out in p.parents for p in everything)
    assert not (tmp_path / "escape.jpg").exists()


def test_output_formats_carry_captions_and_metadata(tmp_path, real_thumbnails):
    src = write_folder(
        tmp_path / "src",
        {"x/a.jpg": jpeg(real_thumbnails[0]), "x/a.txt": b"a cat", "x/a.json": b'{"url": "https://e.org/a.jpg", "w": 1}'},
    )
    for output_format in ("webdataset", "parquet", "folder"):
        out = tmp_path / f"out-{output_format}"
        run_clean(str(src), out, CleanOptions(output_format=output_format, dedup=None, **PLAIN))
        reread = open_source(str(out / "data"))
        (record,) = [r for unit in reread.units() for r in reread.read(unit)]
        assert record.caption == "a cat" and record.url == "https://e.org/a.jpg"
        assert record.data == (src / "x/a.jpg").read_bytes()


def test_workers_give_the_same_output_as_one_process(tmp_path, thousand_images):
    subset = dict(list(sorted(thousand_images.items()))[:200] + list(sorted(thousand_images.items()))[900:930])
    src = as_folder(subset, tmp_path / "src")
    run_clean(src, tmp_path / "one", CleanOptions(shard_size=40, dedup=HASHES_ONLY, **PLAIN))
    run_clean(src, tmp_path / "two", CleanOptions(shard_size=40, workers=2, dedup=HASHES_ONLY, **PLAIN))
    assert_same_output(tmp_path / "one", tmp_path / "two")


def assert_same_output(left: Path, right: Path) -> None:
    def files(root):
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "summary.json")

    assert files(left) == files(right)
    mismatched = [f for f in files(left) if not filecmp.cmp(left / f, right / f, shallow=False)]
    assert not mismatched, mismatched


def test_killed_run_resumes_to_identical_output(tmp_path):
    src = tmp_path / "src"
    for index, path in enumerate(real_images(240, min_side=32)):
        image = load_rgb(path)
        image.thumbnail((160, 160))
        (src / f"{index % 6}").mkdir(parents=True, exist_ok=True)
        (src / f"{index % 6}" / f"{index:04d}.png").write_bytes(encode(image, "PNG"))
    command = CLI + ["clean", str(src), "--shard-size", "20", "--format", "webdataset", "--embedder", "none",
                     "--copyright", "off", "--watermark", "none"]
    subprocess.run(command + [str(tmp_path / "reference")], check=True, capture_output=True)

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(command + [str(interrupted)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((interrupted / "data").glob("*.tar"))) < 3:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "manifest.parquet").exists(), "the run finished before it could be killed"
    assert len(list((interrupted / "data").glob("*.tar"))) >= 3

    finished = subprocess.run(command + [str(interrupted)], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert_same_output(tmp_path / "reference", interrupted)
    assert not list(interrupted.rglob("*.tmp"))


def test_unopenable_source_writes_nothing_and_fails_in_one_line(tmp_path):
    (tmp_path / "broken.tar").write_bytes(os.urandom(4096))
    for src in (tmp_path / "missing", tmp_path / "broken.tar"):
        out = tmp_path / "out"
        result = subprocess.run(CLI + ["clean", str(src), str(out)], capture_output=True, text=True)
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert not out.exists()


def test_output_folder_guards(tmp_path, real_thumbnails):
    src = write_folder(tmp_path / "src", {"a.jpg": jpeg(real_thumbnails[0])})
    with pytest.raises(RunError, match="inside SRC"):
        run_clean(str(src), src / "out", EXACT_ONLY)
    run_clean(str(src), tmp_path / "out", EXACT_ONLY)
    with pytest.raises(RunError, match="other settings"):
        run_clean(str(src), tmp_path / "out", CleanOptions(shard_size=7, dedup=None, **PLAIN))
    summary = run_clean(str(src), tmp_path / "out", CleanOptions(shard_size=7, dedup=None, **PLAIN), overwrite=True)
    assert summary["kept"] == 1
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.pdf").write_bytes(b"%PDF")
    with pytest.raises(RunError, match="not empty"):
        run_clean(str(src), tmp_path / "busy", EXACT_ONLY)
    assert (tmp_path / "busy" / "thesis.pdf").exists()


def test_rerun_after_the_source_files_changed_does_not_resume_stale_results(tmp_path, real_thumbnails):
    src = write_folder(tmp_path / "src", {"a.jpg": jpeg(real_thumbnails[0]), "b.jpg": jpeg(real_thumbnails[0])})
    assert run_clean(str(src), tmp_path / "out", EXACT_ONLY)["kept"] == 1
    (src / "b.jpg").write_bytes(jpeg(real_thumbnails[1]))  # same path, new picture
    with pytest.raises(RunError, match="source files changed"):
        run_clean(str(src), tmp_path / "out", EXACT_ONLY)
    assert run_clean(str(src), tmp_path / "out", EXACT_ONLY, overwrite=True)["kept"] == 2


def test_local_features_stored_by_another_revision_are_not_resumed(tmp_path, real_thumbnails, monkeypatch):
    import dedupkit.signatures.local

    src = write_folder(tmp_path / "src", {"a.jpg": jpeg(real_thumbnails[0])})
    source = open_source(str(src), CleanOptions().source)
    with_local_features = CleanOptions(**PLAIN).fingerprint(source, source.units())
    monkeypatch.setattr(dedupkit.signatures.local, "SIGNATURE_REVISION", dedupkit.signatures.local.SIGNATURE_REVISION + 1)
    assert CleanOptions(**PLAIN).fingerprint(source, source.units()) != with_local_features
    assert "local_features" not in EXACT_ONLY.fingerprint(source, source.units())  # nothing stored depends on it


def test_sample_dataset_demo_through_the_cli(tmp_path):
    planted = build_sample_dataset(tmp_path / "sample", originals=24)
    result = subprocess.run(CLI + ["clean", str(tmp_path / "sample"), str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "kept" in result.stdout and "records/s" in result.stdout
    rows = {r["key"]: r for r in manifest(tmp_path / "out")}
    files = [p.relative_to(tmp_path / "sample").as_posix() for p in (tmp_path / "sample").rglob("*") if p.is_file()]
    sidecars = [f for f in files if f.endswith(".txt") and f.replace(".txt", ".jpg") in files]
    assert sorted(rows) == sorted(set(files) - set(sidecars))
    for exact in planted["exact"]:
        pair = {rows[exact["copy"]]["status"], rows[exact["of"]]["status"]}
        assert "dropped" in pair, exact
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped"] == sum(1 for reason in planted["bad"].values() if reason)


@pytest.mark.parametrize("command", [[], ["clean"], ["dedup"], ["report"]])
def test_help_is_complete(command):
    result = subprocess.run(CLI + command + ["--help"], capture_output=True, text=True)
    assert result.returncode == 0
    if command in (["clean"], ["dedup"]):
        for option in ("--workers", "--shard-size", "--min-side", "--max-pixels", "--image-column", "--overwrite"):
            assert option in result.stdout
    elif not command:
        assert "clean" in result.stdout and "dedup" in result.stdout


def test_reduced_scale_analysis_keeps_declared_sizes_and_decisions(tmp_path, real_photo):
    large = real_photo.resize((1536, 1152), Image.Resampling.LANCZOS)
    src = write_folder(
        tmp_path / "src",
        {"a_small.jpg": jpeg(large.resize((640, 480)), quality=90), "b_large.jpg": jpeg(large, quality=90),
         "c_other.png": png(real_photo.rotate(90, expand=True))},
    )
    options = CleanOptions(dedup=DedupOptions(embedder=None, hash_radius=(("phash", 6),)), **PLAIN)
    run_clean(str(src), tmp_path / "fast", options)
    run_clean(str(src), tmp_path / "full", CleanOptions(dedup=options.dedup, fast_decode=False, **PLAIN))
    fast, full = ({row["key"]: row for row in manifest(tmp_path / run)} for run in ("fast", "full"))
    for rows in (fast, full):
        assert (rows["b_large.jpg"]["width"], rows["b_large.jpg"]["height"]) == (1536, 1152)
        assert (rows["a_small.jpg"]["width"], rows["a_small.jpg"]["height"]) == (640, 480)
        assert rows["b_large.jpg"]["status"] == "kept" and rows["c_other.png"]["status"] == "kept"
        assert rows["a_small.jpg"]["status"] == "dropped" and rows["a_small.jpg"]["keeper_key"] == "b_large.jpg"
    # The written copy is the original file, whatever scale the analysis decoded at.
    assert (tmp_path / "fast" / "data" / "b_large.jpg").read_bytes() == (src / "b_large.jpg").read_bytes()


def test_writers_of_the_same_file_at_once_do_not_trip_over_each_other(tmp_path):
    """Report workers make the thumbnail that byte-identical twins share at the same time; each
    writer needs its own temporary name, or one rename finds the file already moved away."""
    target = tmp_path / "thumbs" / "shared.jpg"

    def write(number: int) -> None:
        for _ in range(50):
            atomic_write_bytes(target, bytes([number]) * 4096)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))  # re-raises the first failure
    assert len(target.read_bytes()) == 4096 and not list(target.parent.glob("*.tmp"))


def test_decision_over_shards_reads_the_orb_signatures_memory_mapped_and_removes_them(tmp_path):
    from dedupkit.search.decide import decide_duplicates
    from dedupkit.sinks.manifest import concat
    from dedupkit.sources import SourceOptions

    build_sample_dataset(tmp_path / "sample", originals=12)
    options = CleanOptions(dedup=DedupOptions(), source=SourceOptions(files_per_unit=16), write_output=False, **PLAIN)
    run_clean(str(tmp_path / "sample"), tmp_path / "out", options)
    shards = sorted((tmp_path / "out" / "signatures").glob("*.parquet"))
    assert len(shards) > 2
    assert not list((tmp_path / "out").rglob("*.arrow"))  # the mapped copy lives only while deciding
    in_memory = decide_duplicates(concat(pq.read_table(shard) for shard in shards), options.dedup)
    rows = manifest(tmp_path / "out")
    assert "dropped" in {row["status"] for row in rows}
    assert [row["status"] for row in rows] == in_memory.status
    assert [row["keeper_key"] for row in rows] == in_memory.keeper_key
