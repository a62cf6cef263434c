"""Readers: every input form becomes units of work that stream Records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dedupkit.sources.base import Source, SourceError, Unit
from dedupkit.sources.folder import FolderSource
from dedupkit.sources.parquet import ParquetColumns, ParquetSource
from dedupkit.sources.webdataset import WebDatasetSource

__all__ = ["Source", "SourceError", "Unit", "SourceOptions", "open_source", "SOURCE_KINDS"]

SOURCE_KINDS = ("folder", "webdataset", "parquet", "hf")


@dataclass(frozen=True)
class SourceOptions:
    files_per_unit: int = 1000
    columns: ParquetColumns = ParquetColumns()


def open_source(spec: str, options: SourceOptions = SourceOptions()) -> Source:
    """Pick the reader by the form of SPEC; raise SourceError with one line if it cannot be read."""
    spec = str(spec)
    if spec.startswith("hf:"):
        from dedupkit.sources.hf import HuggingFaceSource

        return HuggingFaceSource(spec, options.columns)
    path = Path(spec)
    if path.is_dir():
        contents = list(path.rglob("*"))
        tars = [p for p in contents if p.suffix == ".tar"]
        parquets = [p for p in contents if p.suffix == ".parquet"]
        if tars and len(tars) == sum(p.is_file() for p in contents):
            return WebDatasetSource(spec)
        if parquets and len(parquets) == sum(p.is_file() for p in contents):
            return ParquetSource(spec, options.columns)
        return FolderSource(spec, options.files_per_unit)
    lowered = spec.lower()
    if lowered.endswith(".parquet") or ".parquet" in lowered and any(c in spec for c in "*?{"):
        return ParquetSource(spec, options.columns)
    if lowered.endswith(".tar") or any(c in spec for c in "*?{"):
        return WebDatasetSource(spec)
    if path.exists():
        raise SourceError(f"{spec}: not a folder, a .tar shard, a .parquet file or hf:NAME")
    raise SourceError(f"{spec}: no such file or folder")
