"""OUT/watermarks.parquet: which record each embedded payload stands for.

Each shard worker appends to its own part (`OUT/watermarks.parts/<shard>.parquet`,
written with an atomic rename, so a rerun can skip finished shards); `finalize_registry`
merges the parts into `OUT/watermarks.parquet`.  The registry holds the dataset's
public fingerprint, never the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dedupkit.sinks import atomic_write_table

REGISTRY_FILE_NAME = "watermarks.parquet"
PARTS_DIR_NAME = "watermarks.parts"

SCHEMA = pa.schema([
    ("dataset", pa.string()),
    ("method", pa.string()),
    ("payload_index", pa.int64()),
    ("record_index", pa.int64()),
    ("record_key", pa.string()),
    ("source", pa.string()),
    ("payload_hex", pa.string()),
])


@dataclass(frozen=True)
class RegistryEntry:
    dataset: str
    method: str
    payload_index: int
    """The record index as it fits in the mark (record_index mod 2**index_bits)."""
    record_index: int
    record_key: str
    source: str
    payload_hex: str


class RegistryWriter:
    """Collects one shard's registry rows; `close()` writes them atomically."""

    def __init__(self, out_dir: str | Path, shard: str = "part-00000"):
        self.path = Path(out_dir) / PARTS_DIR_NAME / f"{shard}.parquet"
        self._rows: list[RegistryEntry] = []

    def add(self, entry: RegistryEntry) -> None:
        self._rows.append(entry)

    def close(self) -> Path:
        atomic_write_table(self.path, pa.Table.from_pylist([vars(row) for row in self._rows], schema=SCHEMA))
        return self.path

    def __enter__(self) -> "RegistryWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


def finalize_registry(out_dir: str | Path, remove_parts: bool = True) -> Path:
    """Merge every shard part (and an existing registry) into OUT/watermarks.parquet."""
    out_dir = Path(out_dir)
    target = out_dir / REGISTRY_FILE_NAME
    parts = sorted((out_dir / PARTS_DIR_NAME).glob("*.parquet"))
    tables = [pq.read_table(path, schema=SCHEMA) for path in parts]
    if target.exists():
        tables.insert(0, pq.read_table(target, schema=SCHEMA))
    table = _latest_per_record(pa.concat_tables(tables)) if tables else SCHEMA.empty_table()
    table = table.sort_by([("dataset", "ascending"), ("method", "ascending"), ("record_index", "ascending")])
    atomic_write_table(target, table)
    if remove_parts:
        for path in parts:
            path.unlink()
        if (out_dir / PARTS_DIR_NAME).exists() and not any((out_dir / PARTS_DIR_NAME).iterdir()):
            (out_dir / PARTS_DIR_NAME).rmdir()
    return target


def _latest_per_record(table: pa.Table) -> pa.Table:
    """One row per (dataset, method, record_index): a shard marked again replaces its old rows."""
    keys = ["dataset", "method", "record_index"]
    others = [name for name in SCHEMA.names if name not in keys]
    latest = table.group_by(keys, use_threads=False).aggregate([(name, "last") for name in others])
    return latest.rename_columns([name.removesuffix("_last") for name in latest.column_names]).select(SCHEMA.names)


class Registry:
    """Read side: payload -> record."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir():
            path = path / REGISTRY_FILE_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no watermark registry at {path}: pass OUT/{REGISTRY_FILE_NAME} of a watermarked output")
        self.path = path
        self.table = pq.read_table(path, schema=SCHEMA)

    def __len__(self) -> int:
        return self.table.num_rows

    def lookup(self, dataset: str, method: str, payload_index: int) -> list[RegistryEntry]:
        """Every record of this dataset marked with `method` whose payload index is `payload_index`."""
        mask = pc.and_(
            pc.and_(pc.equal(self.table["dataset"], dataset), pc.equal(self.table["method"], method)),
            pc.equal(self.table["payload_index"], payload_index),
        )
        return [RegistryEntry(**row) for row in self.table.filter(mask).to_pylist()]
