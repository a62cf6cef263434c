"""The pipeline stage: mark every kept image, rewrite its bytes, register the payload."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from dedupkit.records import Record
from dedupkit.watermark.embed import mark_image
from dedupkit.watermark.payload import dataset_fingerprint, parse_key
from dedupkit.watermark.registry import RegistryEntry, RegistryWriter


class WatermarkStage:
    """Embeds the key's mark into each alive record with pixels.

    For a marked record: `record.data` holds the re-encoded bytes (`record.ext` follows
    when the format changed, e.g. GIF -> PNG), and the manifest gets
    `watermark` ("method:payload hex"), `watermark_index` (the record index the payload
    carries), `watermark_verified` (re-decoding the written bytes reads it back) and
    `watermark_psnr`.  Images too small for any method keep their bytes and get an
    empty `watermark`.  The record index is `index_of(record)`: the pipeline passes the
    record's row in the manifest (dense, unique over the input, fits the payload's 32
    bits); the default is `record.ordinal`.  With a `registry` writer, one row per marked record is added and the part is
    written when the stream ends.
    """

    name = "watermark"

    def __init__(
        self,
        key: bytes | str,
        method: str = "auto",
        registry: RegistryWriter | None = None,
        index_of: Callable[[Record], int] = lambda record: record.ordinal,
    ):
        self.key = parse_key(key)
        self.method = method
        self.registry = registry
        self.index_of = index_of
        self.dataset = dataset_fingerprint(self.key)

    def __call__(self, records: Iterator[Record]) -> Iterator[Record]:
        for record in records:
            if record.alive and record.image is not None:
                self.mark(record)
            yield record
        if self.registry is not None:
            self.registry.close()

    def mark(self, record: Record) -> Record:
        record_index = self.index_of(record)
        marked = mark_image(record.image, self.key, record_index, record.image_format, self.method)
        if marked is None:
            record.columns["watermark"] = ""
            record.columns["watermark_verified"] = False
            return record
        record.data = marked.encoded.data
        if marked.encoded.format != (record.image_format or "").upper() or not record.ext:
            record.ext = marked.encoded.ext
        record.image_format = marked.encoded.format
        record.columns["watermark"] = f"{marked.method}:{marked.payload_hex}"
        record.columns["watermark_index"] = marked.payload_index
        record.columns["watermark_verified"] = marked.verified
        record.columns["watermark_psnr"] = round(float(marked.psnr), 2)
        if self.registry is not None:
            self.registry.add(RegistryEntry(
                dataset=self.dataset, method=marked.method, payload_index=marked.payload_index,
                record_index=record_index, record_key=record.key, source=record.source,
                payload_hex=marked.payload_hex,
            ))
        return record
