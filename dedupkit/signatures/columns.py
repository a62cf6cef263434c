"""Turn stored signature columns back into the arrays the search works on.

Each function takes a pyarrow Array or ChunkedArray (a Parquet column), a NumPy
array or a Python list, with no nulls: filter the table to rows that have the
signature first, e.g. `table.filter(pyarrow.compute.is_valid(table["phash"]))`,
so row i of the result is row i of the filtered table.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def _as_arrow(column) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    elif not isinstance(column, pa.Array):
        column = pa.array(column)
    if column.null_count:
        raise ValueError(
            f"signature column has {column.null_count} nulls (records without the signature): "
            "filter the table to valid rows first"
        )
    return column


def hashes_from_column(column) -> np.ndarray:
    """64-bit hashes stored as int64 (or uint64) -> (n,) uint64."""
    if isinstance(column, np.ndarray):
        return column.view(np.uint64) if column.dtype == np.int64 else column.astype(np.uint64)
    array = _as_arrow(column)
    if array.type == pa.uint64():
        return array.to_numpy(zero_copy_only=False)
    return array.cast(pa.int64()).to_numpy(zero_copy_only=False).view(np.uint64)


def _bytes_matrix(column, dtype: np.dtype) -> np.ndarray:
    """Equal-length binary values -> (n, width) array of `dtype`, without a Python loop."""
    array = _as_arrow(column)
    if len(array) == 0:
        return np.zeros((0, 0), dtype=dtype)
    if pa.types.is_fixed_size_binary(array.type):
        width = array.type.byte_width
        data = array.buffers()[1]
        start = array.offset * width
        raw = np.frombuffer(data, dtype=np.uint8)[start : start + len(array) * width]
    else:
        if pa.types.is_binary(array.type):
            offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)
        elif pa.types.is_large_binary(array.type):
            offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)
        else:
            raise TypeError(f"expected a binary column, got {array.type}")
        offsets = offsets[array.offset : array.offset + len(array) + 1]
        lengths = np.diff(offsets)
        if lengths.min() != lengths.max():
            raise ValueError("signature values differ in length: the column mixes different models or settings")
        width = int(lengths[0])
        raw = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    item = np.dtype(dtype).itemsize
    return raw.view(dtype).reshape(len(array), width // item)


def embeddings_from_column(column) -> np.ndarray:
    """float16 embedding bytes -> (n, dim) float32."""
    return _bytes_matrix(column, np.dtype("<f2")).astype(np.float32)


def codes_from_column(column) -> np.ndarray:
    """Packed binary codes -> (n, bytes) uint8, ready for a FAISS binary index."""
    return _bytes_matrix(column, np.dtype(np.uint8)).copy()
