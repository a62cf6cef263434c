"""Exact duplicates: identical decoded pixels, with a fast path on identical bytes.

The decode stage here is the pipeline's one decode per record: it fills
`record.image` and the `pixels` signature.  A record whose bytes were seen a moment
ago reuses that decode instead of decoding again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa

from dedupkit.decode import DecodeLimits, decode_record, pixel_digest
from dedupkit.records import KEPT, Record

PIXELS = "pixels"


class DecodeStage:
    """Decode each record once; byte-identical records share the earlier decode.

    `draft_side`: JPEGs are decoded at a reduced scale that keeps both sides at least
    this long (see decode.decode_image); None decodes every pixel.  The pixel digest
    then identifies the picture at that scale, the same for identical files.
    """

    def __init__(self, limits: DecodeLimits = DecodeLimits(), recent: int = 64, draft_side: int | None = None):
        self.limits = limits
        self.recent = recent
        self.draft_side = draft_side
        self._by_bytes: OrderedDict[str, tuple] = OrderedDict()

    def __call__(self, records: Iterator[Record]) -> Iterator[Record]:
        for record in records:
            if record.alive and record.data is not None:
                self._decode(record)
            yield record

    def _decode(self, record: Record) -> None:
        digest_of_bytes = record.sha256
        seen = self._by_bytes.get(digest_of_bytes)
        if seen is not None:
            self._by_bytes.move_to_end(digest_of_bytes)
            record.image, record.image_format, record.width, record.height, record.signatures[PIXELS] = seen
            return
        decode_record(record, self.limits, self.draft_side)
        if not record.alive:
            return
        record.signatures[PIXELS] = pixel_digest(record.image)
        self._by_bytes[digest_of_bytes] = (
            record.image, record.image_format, record.width, record.height, record.signatures[PIXELS]
        )
        if len(self._by_bytes) > self.recent:
            self._by_bytes.popitem(last=False)


@dataclass(frozen=True)
class ExactDecision:
    """For each input row: the row index of its keeper (itself when kept) and how it matched."""

    keeper: np.ndarray
    same_bytes: np.ndarray


def find_exact_duplicates(table: pa.Table, keeper_rank: np.ndarray | None = None) -> ExactDecision:
    """Group alive rows by pixel digest; the keeper is the lowest `keeper_rank` (default: input order).

    `table` needs `status`, `sha256` and `sig_pixels`; rows not kept keep themselves.
    """
    count = table.num_rows
    keeper = np.arange(count)
    same_bytes = np.zeros(count, dtype=bool)
    alive = np.asarray(table.column("status").to_pylist(), dtype=object) == KEPT
    if count == 0 or not alive.any():
        return ExactDecision(keeper, same_bytes)
    rows = np.flatnonzero(alive)
    digests = np.asarray(table.column("sig_" + PIXELS).to_pylist(), dtype=object)[rows].astype(str)
    rank = np.arange(count) if keeper_rank is None else np.asarray(keeper_rank)
    _, group = np.unique(digests, return_inverse=True)
    order = np.lexsort((rank[rows], group))  # by group, then best rank first
    first_of_group = np.ones(len(order), dtype=bool)
    first_of_group[1:] = group[order][1:] != group[order][:-1]
    keeper_of_group = np.empty(group.max() + 1, dtype=np.int64)
    keeper_of_group[group[order][first_of_group]] = rows[order][first_of_group]
    keeper[rows] = keeper_of_group[group]
    sha = np.asarray(table.column("sha256").to_pylist(), dtype=object)
    same_bytes[rows] = sha[rows] == sha[keeper[rows]]
    return ExactDecision(keeper, same_bytes)
