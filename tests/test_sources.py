"""Readers: every input record comes out exactly once, bad ones already skipped with a reason."""

import json

import pytest

from conftest import jpeg, png, write_folder, write_parquet, write_tar
from dedupkit.records import SKIPPED
from dedupkit.sources import SourceError, SourceOptions, open_source
from dedupkit.sources.parquet import ParquetColumns
from dedupkit.sources.webdataset import split_member_name


def read_all(source):
    return [record for unit in source.units() for record in source.read(unit)]


def test_folder_reads_recursively_with_sidecars(tmp_path, real_thumbnails):
    root = write_folder(
        tmp_path / "src",
        {
            "a/one.jpg": jpeg(real_thumbnails[0]),
            "a/one.txt": b"a caption",
            "a/one.json": json.dumps({"url": "https://example.org/one.jpg", "license": "cc0"}).encode(),
            "b/two.png": png(real_thumbnails[1]),
            "b/stray.json": b"{}",  # no image named stray: a record of its own
        },
    )
    source = open_source(str(root), SourceOptions(files_per_unit=2))
    assert source.kind == "folder" and len(source.units()) == 2
    records = {r.key: r for r in read_all(source)}
    assert sorted(records) == ["a/one.jpg", "b/stray.json", "b/two.png"]
    one = records["a/one.jpg"]
    assert one.caption == "a caption" and one.url == "https://example.org/one.jpg"
    assert one.metadata["license"] == "cc0"
    ordinals = [r.ordinal for r in read_all(source)]
    assert ordinals == sorted(ordinals) and len(set(ordinals)) == 3


def test_webdataset_groups_members_and_refuses_unsafe_paths(tmp_path, real_thumbnails):
    shard = write_tar(
        tmp_path / "shard-000.tar",
        [
            ("000001.jpg", jpeg(real_thumbnails[0])),
            ("000001.txt", b"first"),
            ("000001.json", json.dumps({"url": "https://example.org/1.jpg"}).encode()),
            ("000002.png", png(real_thumbnails[1])),
            ("/etc/evil.jpg", jpeg(real_thumbnails[2])),
            ("../escape.jpg", jpeg(real_thumbnails[3])),
            ("000003.txt", b"caption without image"),
        ],
    )
    source = open_source(str(shard))
    assert source.kind == "webdataset"
    records = read_all(source)
    assert [r.key for r in records] == ["000001", "000002", "/etc/evil.jpg", "../escape.jpg", "000003"]
    first, second, absolute, parent, orphan = records
    assert (first.ext, first.caption, first.url) == ("jpg", "first", "https://example.org/1.jpg")
    assert second.ext == "png" and second.alive
    assert absolute.status == SKIPPED and "absolute" in absolute.reason
    assert parent.status == SKIPPED and "parent traversal" in parent.reason
    assert orphan.status == SKIPPED and orphan.reason.startswith("no image in sample")


def test_webdataset_brace_pattern_and_truncated_shard(tmp_path, real_thumbnails):
    for index in range(3):
        write_tar(tmp_path / f"s-{index:05d}.tar", [(f"{index}{k}.jpg", jpeg(real_thumbnails[index * 3 + k])) for k in range(3)])
    whole = (tmp_path / "s-00002.tar").read_bytes()
    (tmp_path / "s-00002.tar").write_bytes(whole[: len(whole) // 2])
    source = open_source(str(tmp_path / "s-{00000..00002}.tar"))
    records = read_all(source)
    assert len(source.units()) == 3
    assert sum(r.alive for r in records[:6]) == 6
    tail = records[6:]
    assert tail[-1].status == SKIPPED and tail[-1].reason.startswith("malformed tar shard")


@pytest.mark.parametrize("struct_images", [True, False])
def test_parquet_detects_columns_and_skips_empty_rows(tmp_path, real_thumbnails, struct_images):
    rows = [{"key": f"k{i}", "bytes": png(real_thumbnails[i]), "caption": f"c{i}", "url": f"https://x.org/{i}"} for i in range(5)]
    rows[2]["bytes"] = None
    path = write_parquet(tmp_path / "part.parquet", rows, struct_images=struct_images, row_group_size=2)
    source = open_source(str(path))
    assert source.kind == "parquet" and len(source.units()) == 3
    records = read_all(source)
    assert [r.key for r in records] == ["k0", "k1", "k2", "k3", "k4"]
    assert records[2].status == SKIPPED and records[2].reason.startswith("no image bytes")
    assert records[4].caption == "c4" and records[4].url == "https://x.org/4"
    assert records[4].source == "part.parquet#4"


def test_parquet_column_override_and_clear_error(tmp_path, real_thumbnails):
    path = write_parquet(tmp_path / "p.parquet", [{"key": "a", "bytes": png(real_thumbnails[0])}])
    with pytest.raises(SourceError, match="no column 'pixels'"):
        open_source(str(path), SourceOptions(columns=ParquetColumns(image="pixels")))
    with pytest.raises(SourceError, match="not image bytes"):
        open_source(str(path), SourceOptions(columns=ParquetColumns(image="caption")))


def test_malformed_parquet_shard_among_good_ones_is_one_skipped_record(tmp_path, real_thumbnails):
    write_parquet(tmp_path / "src" / "a.parquet", [{"key": "a", "bytes": png(real_thumbnails[0])}])
    (tmp_path / "src" / "b.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    records = read_all(open_source(str(tmp_path / "src")))
    assert [r.status for r in records] == ["kept", SKIPPED]
    assert records[1].reason.startswith("unreadable Parquet shard")


def test_unopenable_sources_raise_one_line(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        open_source(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no files"):
        open_source(str(tmp_path / "empty")).units()
    (tmp_path / "junk.tar").write_bytes(b"x" * 2000)
    with pytest.raises(SourceError, match="not a readable tar shard"):
        open_source(str(tmp_path / "junk.tar"))
    (tmp_path / "junk.parquet").write_bytes(b"nope")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        open_source(str(tmp_path / "junk.parquet"))


def test_hugging_face_local_dataset_streams_image_bytes(tmp_path, real_thumbnails):
    import datasets

    images = [real_thumbnails[i] for i in range(4)]
    dataset = datasets.Dataset.from_dict(
        {"image": images, "caption": [f"caption {i}" for i in range(4)]},
        features=datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")}),
    )
    dataset.save_to_disk(str(tmp_path / "saved"))
    source = open_source(f"hf:{tmp_path / 'saved'}")
    records = read_all(source)
    assert len(records) == 4 and all(r.alive and r.data for r in records)
    assert records[3].caption == "caption 3"


def test_hugging_face_spec_names_dataset_and_split(tmp_path):
    from dedupkit.sources.hf import parse_hf_spec

    assert parse_hf_spec("hf:cifar10") == ("cifar10", "train")
    assert parse_hf_spec("hf:org/name:test") == ("org/name", "test")
    assert parse_hf_spec("hf:org/name:") == ("org/name", "train")
    saved = tmp_path / "a:b"
    saved.mkdir()
    assert parse_hf_spec(f"hf:{saved}") == (str(saved), "train")
    with pytest.raises(SourceError):
        parse_hf_spec("hf:")


def test_hugging_face_offline_and_not_cached_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(SourceError) as caught:
        open_source("hf:someone/no-such-dataset-here:train")
    message = str(caught.value)
    assert "offline" in message and "\n" not in message


def test_member_name_split_follows_webdataset():
    assert split_member_name("dir/000123.jpg") == ("dir/000123", "jpg")
    assert split_member_name("a.seg.png") == ("a", "seg.png")
