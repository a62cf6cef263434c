"""Batch the alive records of a stream for vectorized signature work, keeping order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from dedupkit.records import Record


def alive_batches(records: Iterable[Record], batch_size: int) -> Iterator[tuple[list[Record], list[Record]]]:
    """Group a stream into (batch, pending) pairs.

    `batch` holds up to `batch_size` alive records with pixels; `pending` holds every
    record read since the previous pair, in input order, batch members included.
    Yielding each `pending` after its batch is processed keeps the stream's order:
    records that are not alive wait only until the batch before them is done.
    The last pair may have an empty batch.
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
                yield batch, pending
                pending, batch = [], []
    if pending:
        yield batch, pending


def map_alive_in_batches(
    records: Iterable[Record], process: Callable[[list[Record]], None], batch_size: int
) -> Iterator[Record]:
    """Yield every record in input order after `process` has seen its batch."""
    for batch, pending in alive_batches(records, batch_size):
        if batch:
            process(batch)
        yield from pending
