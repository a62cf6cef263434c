"""The manifest: one row per input record, exactly once, as Parquet."""

from __future__ import annotations

import json
from typing import Any, Iterable

import pyarrow as pa

from dedupkit.records import Record

#: Columns every manifest has, in this order; stages append their own after them.
BASE_COLUMNS = {
    "ordinal": pa.int64(),
    "key": pa.string(),
    "source": pa.string(),
    "status": pa.string(),
    "reason": pa.string(),
    "sha256": pa.string(),
    "width": pa.int32(),
    "height": pa.int32(),
    "format": pa.string(),
}
SIGNATURE_PREFIX = "sig_"
#: Types of the columns stages add, so a shard where a column happens to be all empty
#: still agrees with the others; an unknown all-empty column is written as text.
STAGE_COLUMNS = {
    "cluster_id": pa.int64(),
    "keeper_key": pa.string(),
    "dup_kind": pa.string(),
    "distance": pa.float64(),
    "record_index": pa.int64(),
    "source_note": pa.string(),
    "copyright_marked": pa.bool_(),
    "training_prohibited": pa.bool_(),
    "rights_holder": pa.string(),
    "copyright_evidence": pa.string(),
    "copyright_notes": pa.string(),
    "visible_mark_score": pa.float64(),
    "visible_mark_clip_score": pa.float64(),
    "watermark": pa.string(),
    "watermark_index": pa.int64(),
    "watermark_verified": pa.bool_(),
    "watermark_psnr": pa.float64(),
}


def record_row(record: Record) -> dict[str, Any]:
    """Everything the analysis pass learned about a record, flat, for a Parquet row."""
    row: dict[str, Any] = {
        "ordinal": record.ordinal,
        "key": record.key,
        "source": record.source,
        "status": record.status,
        "reason": record.reason or None,
        "sha256": record.sha256,
        "width": record.width,
        "height": record.height,
        "format": record.image_format,
    }
    for name, value in record.signatures.items():
        if name != "sha256":
            row[SIGNATURE_PREFIX + name] = value
    for name, value in record.columns.items():
        row[name] = _flat(value)
    return row


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    names = list(BASE_COLUMNS)
    for row in rows:
        names.extend(n for n in row if n not in names)
    arrays = {}
    for name in names:
        values = [row.get(name) for row in rows]
        known = BASE_COLUMNS.get(name) or STAGE_COLUMNS.get(name)
        arrays[name] = pa.array(values, type=known) if known is not None else _infer(values)
    return pa.table(arrays)


def _infer(values: list[Any]) -> pa.Array:
    try:
        array = pa.array(values)
        return array.cast(pa.string()) if pa.types.is_null(array.type) else array
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _flat(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return value


def manifest_view(table: pa.Table) -> pa.Table:
    """The manifest columns of an analysis table: signatures are for the search, not for people."""
    keep = [n for n in table.column_names if not n.startswith(SIGNATURE_PREFIX)]
    return table.select(keep)


def column_or_nones(table: pa.Table, name: str) -> list:
    """A column as a list, or Nones when the run wrote no such column (an optional stage was off)."""
    return table[name].to_pylist() if name in table.column_names else [None] * table.num_rows


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t is not None]
    if not tables:
        return pa.table({name: pa.array([], type=kind) for name, kind in BASE_COLUMNS.items()})
    return pa.concat_tables(tables, promote_options="permissive")
