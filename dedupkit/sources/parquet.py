"""Parquet files with image bytes, streamed one row group at a time.

The image column is either `struct<bytes: binary, path: string>` (what `datasets`
writes for an Image feature) or plain binary.  Columns are detected by type and
name and can be overridden.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from dedupkit.records import Record
from dedupkit.sources.base import SourceError, Unit, expand_files, ordinal

IMAGE_COLUMN_NAMES = ("image", "img", "jpg", "jpeg", "png", "webp", "image_bytes", "bytes")
CAPTION_COLUMN_NAMES = ("caption", "text", "txt", "TEXT", "alt", "alt_text", "prompt")
URL_COLUMN_NAMES = ("url", "URL", "image_url", "source_url")
KEY_COLUMN_NAMES = ("key", "__key__", "id", "image_id")


@dataclass(frozen=True)
class ParquetColumns:
    image: str | None = None
    caption: str | None = None
    url: str | None = None
    key: str | None = None


def _is_image_type(field: pa.Field) -> bool:
    if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
        return True
    return pa.types.is_struct(field.type) and field.type.get_field_index("bytes") >= 0


def detect_columns(schema: pa.Schema, given: ParquetColumns) -> ParquetColumns:
    names = schema.names

    def pick(explicit: str | None, candidates: tuple[str, ...], what: str, check=None) -> str | None:
        if explicit:
            if explicit not in names:
                raise SourceError(f"no column {explicit!r} for the {what}; columns are: {', '.join(names)}")
            return explicit
        for name in candidates:
            if name in names and (check is None or check(schema.field(name))):
                return name
        return None

    image = pick(given.image, IMAGE_COLUMN_NAMES, "image", _is_image_type)
    if image is None:
        image = next((f.name for f in schema if _is_image_type(f)), None)
    if image is None:
        raise SourceError(
            "no image column found (a struct<bytes,path> or binary column); "
            f"columns are: {', '.join(names)}; name one with --image-column"
        )
    if given.image and not _is_image_type(schema.field(image)):
        raise SourceError(f"column {image!r} holds {schema.field(image).type}, not image bytes")
    return ParquetColumns(
        image=image,
        caption=pick(given.caption, CAPTION_COLUMN_NAMES, "caption"),
        url=pick(given.url, URL_COLUMN_NAMES, "url"),
        key=pick(given.key, KEY_COLUMN_NAMES, "key"),
    )


class ParquetSource:
    kind = "parquet"

    def __init__(self, spec: str, columns: ParquetColumns = ParquetColumns()):
        self.spec = spec
        self.files = expand_files(spec, ".parquet", "Parquet files")
        self.given_columns = columns
        try:
            schema = pq.read_schema(self.files[0])
        except (pa.ArrowException, OSError) as exc:
            if len(self.files) == 1:
                raise SourceError(f"{self.files[0]}: not a readable Parquet file ({exc})") from None
            schema = None
        self.columns = detect_columns(schema, columns) if schema is not None else columns

    def units(self) -> list[Unit]:
        units = []
        for path in self.files:
            try:
                row_groups = pq.ParquetFile(path).num_row_groups
            except (pa.ArrowException, OSError):
                row_groups = 0  # read() turns the unreadable file into one skipped record
            for group in range(max(row_groups, 1)):
                units.append(Unit(index=len(units), name=f"{Path(path).name}#rg{group}", location=path, params=(group,)))
        return units

    def read(self, unit: Unit) -> Iterator[Record]:
        file_name = Path(unit.location).name
        (group,) = unit.params
        try:
            parquet = pq.ParquetFile(unit.location)
            columns = detect_columns(parquet.schema_arrow, self.given_columns)
            table = parquet.read_row_group(group) if parquet.num_row_groups else None
        except (pa.ArrowException, OSError, SourceError) as exc:
            yield Record(key=unit.name, source=unit.name, ordinal=ordinal(unit, 0)).skip(
                f"unreadable Parquet shard: {' '.join(str(exc).split())[:200]}"
            )
            return
        if table is None:
            return
        first_row = sum(parquet.metadata.row_group(g).num_rows for g in range(group))
        named = {columns.image, columns.caption, columns.url, columns.key}
        extra_columns = [n for n in table.column_names if n not in named]
        position = 0
        for batch in table.to_batches(max_chunksize=256):
            for row in batch.to_pylist():
                record = Record(
                    key="", source=f"{file_name}#{first_row + position}", ordinal=ordinal(unit, position)
                )
                yield _fill_from_row(record, row, columns, extra_columns, f"{file_name}:{first_row + position}")
                position += 1


def _fill_from_row(record: Record, row: dict, columns: ParquetColumns, extra_columns, fallback_key: str) -> Record:
    key_value = row.get(columns.key) if columns.key else None
    record.key = str(key_value) if key_value not in (None, "") else fallback_key
    if columns.caption and isinstance(row.get(columns.caption), str):
        record.caption = row[columns.caption]
    if columns.url and isinstance(row.get(columns.url), str):
        record.url = row[columns.url]
    record.metadata = {name: _jsonable(row.get(name)) for name in extra_columns}
    value = row.get(columns.image)
    stored_path = None
    if isinstance(value, dict):
        stored_path = value.get("path")
        value = value.get("bytes")
    if not value:
        return record.skip("no image bytes in row" + (f" (path {stored_path!r} only)" if stored_path else ""))
    record.data = bytes(value)
    if stored_path and "." in stored_path:
        record.ext = stored_path.rsplit(".", 1)[-1].lower()
    return record


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)
