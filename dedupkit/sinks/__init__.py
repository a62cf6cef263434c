"""Writers for kept records: folder, WebDataset tar shards, Parquet; all atomic and deterministic.

Each output file is written under a temporary name and renamed when complete, so a
killed run never leaves a half shard under a final name.  Bytes are a pure function
of the records (fixed tar header fields, fixed Parquet settings): a resumed run
produces the same files as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import re
import tarfile
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from dedupkit.records import Record

OUTPUT_FORMATS = ("folder", "webdataset", "parquet")
TEMPORARY_SUFFIX = ".tmp"


def _temporary_twin(path: Path) -> Path:
    """A temporary name beside PATH that no other writer uses: two processes may write the same
    file at once (report workers making the thumbnail that byte-identical twins share), and with
    one shared temporary name the second rename found the first writer had already taken it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}{TEMPORARY_SUFFIX}")


@contextlib.contextmanager
def atomic_file(path: Path):
    """Open PATH's temporary twin for writing; rename it to PATH only if the block completes."""
    temporary = _temporary_twin(path)
    with open(temporary, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_table(path: Path, table: pa.Table, row_group_size: int | None = None) -> None:
    temporary = _temporary_twin(path)
    pq.write_table(table, temporary, row_group_size=row_group_size, compression="zstd")
    os.replace(temporary, path)


def remove_temporaries(folder: Path) -> None:
    if folder.exists():
        for leftover in folder.rglob("*" + TEMPORARY_SUFFIX):
            leftover.unlink(missing_ok=True)


def safe_relative_path(key: str) -> str:
    """A key as a relative path that cannot leave the output folder."""
    parts = [p for p in posixpath.normpath(key.replace("\\", "/")).split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "_"


def webdataset_key(key: str) -> str:
    """WebDataset keys end at the first dot of the file name; keep dots out of them."""
    path = safe_relative_path(key)
    directory, _, name = path.rpartition("/")
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", name)
    return f"{directory}/{name}" if directory else name


def output_extension(record: Record) -> str:
    return record.ext or (record.image_format or "bin").lower().replace("jpeg", "jpg")


def _sidecar_json(record: Record) -> bytes | None:
    metadata = dict(record.metadata)
    if record.url and "url" not in metadata:
        metadata["url"] = record.url
    if not metadata:
        return None
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False).encode()


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class ShardWriter:
    """Writes one unit's kept records as shards named `{unit:05d}-{part:04d}.EXT`."""

    format = ""
    extension = ""

    def __init__(self, folder: Path, shard_size: int = 1000):
        self.folder = Path(folder)
        self.shard_size = shard_size

    def write_unit(self, unit_index: int, records: Iterable[Record]) -> list[str]:
        written = []
        for part, chunk in enumerate(_chunks(records, self.shard_size)):
            path = self.folder / f"{unit_index:05d}-{part:04d}.{self.extension}"
            self._write_shard(path, chunk)
            written.append(path.name)
        return written

    def _write_shard(self, path: Path, records: list[Record]) -> None:
        raise NotImplementedError


class WebDatasetWriter(ShardWriter):
    format = "webdataset"
    extension = "tar"

    def _write_shard(self, path: Path, records: list[Record]) -> None:
        with atomic_file(path) as handle, tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for record in records:
                key = webdataset_key(record.key)
                members = [(output_extension(record), record.data or b"")]
                if record.caption is not None:
                    members.append(("txt", record.caption.encode()))
                metadata = _sidecar_json(record) or b"{}"
                if webdataset_key(record.key) != record.key:
                    loaded = json.loads(metadata)
                    loaded.setdefault("key", record.key)
                    metadata = json.dumps(loaded, sort_keys=True, ensure_ascii=False).encode()
                if metadata != b"{}":
                    members.append(("json", metadata))
                for extension, payload in members:
                    info = tarfile.TarInfo(f"{key}.{extension}")
                    info.size, info.mtime, info.mode = len(payload), 0, 0o644
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    archive.addfile(info, io.BytesIO(payload))


class ParquetWriter(ShardWriter):
    format = "parquet"
    extension = "parquet"
    schema = pa.schema(
        [
            ("key", pa.string()),
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("caption", pa.string()),
            ("url", pa.string()),
            ("metadata", pa.string()),
        ]
    )

    def _write_shard(self, path: Path, records: list[Record]) -> None:
        rows = {
            "key": [r.key for r in records],
            "image": [{"bytes": r.data, "path": f"{webdataset_key(r.key)}.{output_extension(r)}"} for r in records],
            "caption": [r.caption for r in records],
            "url": [r.url for r in records],
            "metadata": [(_sidecar_json(r) or b"").decode() or None for r in records],
        }
        atomic_write_table(path, pa.table(rows, schema=self.schema))


class FolderWriter(ShardWriter):
    """Mirrors the record keys as a folder tree; sidecars as img2dataset writes them."""

    format = "folder"

    def write_unit(self, unit_index: int, records: Iterable[Record]) -> list[str]:
        written = []
        for record in records:
            relative = safe_relative_path(record.key)
            extension = output_extension(record)
            if not relative.lower().endswith("." + extension):
                relative = f"{relative}.{extension}"
            path = self.folder / relative
            atomic_write_bytes(path, record.data or b"")
            stem = path.with_suffix("")
            if record.caption is not None:
                atomic_write_bytes(stem.with_name(stem.name + ".txt"), record.caption.encode())
            metadata = _sidecar_json(record)
            if metadata:
                atomic_write_bytes(stem.with_name(stem.name + ".json"), metadata)
            written.append(relative)
        return written


WRITERS = {w.format: w for w in (FolderWriter, WebDatasetWriter, ParquetWriter)}


def make_writer(output_format: str, folder: Path, shard_size: int) -> ShardWriter:
    return WRITERS[output_format](folder, shard_size)
