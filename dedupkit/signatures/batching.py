"""Batch the alive records of a stream for vectorized signature work, keeping order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from dedupkit.records import Record


def map_alive_in_batches(
    records: Iterable[Record], process: Callable[[list[Record]], None], batch_size: int
) -> Iterator[Record]:
    """Yield every record in input order; `process` sees alive records with pixels, `batch_size` at a time.

    Records that are not alive (or carry no decoded image) are held back only
    until the batch before them is processed, so the output order is the input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    pending: list[Record] = []
    batch: list[Record] = []
    for record in records:
        pending.append(record)
        if record.alive and record.image is not None:
            batch.append(record)
            if len(batch) == batch_size:
                process(batch)
                yield from pending
                pending, batch = [], []
    if batch:
        process(batch)
    yield from pending
