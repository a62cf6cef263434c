"""A Hugging Face dataset, `hf:NAME_OR_PATH[:split]`, read with `datasets` in streaming mode.

The image column is cast to `Image(decode=False)` so the stored bytes flow through
unchanged and the one decode happens in dedupkit, with its safety checks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from dedupkit.records import Record
from dedupkit.sources.base import SourceError, Unit, ordinal
from dedupkit.sources.parquet import CAPTION_COLUMN_NAMES, KEY_COLUMN_NAMES, URL_COLUMN_NAMES, ParquetColumns


def parse_hf_spec(spec: str) -> tuple[str, str]:
    """`hf:org/name:test` -> (`org/name`, `test`); the split defaults to `train`."""
    body = spec[len("hf:") :]
    if not body:
        raise SourceError("hf: needs a dataset name or path, e.g. hf:cifar10:train")
    name, _, split = body.rpartition(":")
    if not name or not split or Path(body).exists():  # no split given, or a saved dataset whose path has a colon
        return body.strip(":"), "train"
    return name, split


class HuggingFaceSource:
    kind = "hf"

    def __init__(self, spec: str, columns: ParquetColumns = ParquetColumns()):
        self.spec = spec
        self.name, self.split = parse_hf_spec(spec)
        self.given_columns = columns
        dataset = self._open()
        self.num_shards = max(getattr(dataset, "num_shards", 1) or 1, 1)
        self.columns = self._detect(dataset)

    def _open(self):
        import datasets

        try:
            folder = Path(self.name)
            saved_to_disk = folder.is_dir() and any(
                (folder / marker).exists() for marker in ("state.json", "dataset_dict.json")
            )
            if saved_to_disk:
                loaded = datasets.load_from_disk(self.name)
                if isinstance(loaded, datasets.DatasetDict):
                    if self.split not in loaded:
                        raise SourceError(f"{self.name}: no split {self.split!r}; splits are {', '.join(loaded)}")
                    loaded = loaded[self.split]
                return loaded.to_iterable_dataset()
            return datasets.load_dataset(self.name, split=self.split, streaming=True)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(_explain_hf_failure(self.name, self.split, exc)) from None

    def _detect(self, dataset) -> ParquetColumns:
        import datasets

        features = dataset.features or {}
        image = self.given_columns.image or next(
            (name for name, feature in features.items() if isinstance(feature, datasets.Image)), None
        )
        if image is None or image not in features:
            raise SourceError(
                f"hf:{self.name}: no image column among {', '.join(features) or 'its columns'}; "
                "name one with --image-column"
            )

        def pick(explicit, candidates):
            return explicit or next((c for c in candidates if c in features), None)

        return ParquetColumns(
            image=image,
            caption=pick(self.given_columns.caption, CAPTION_COLUMN_NAMES),
            url=pick(self.given_columns.url, URL_COLUMN_NAMES),
            key=pick(self.given_columns.key, KEY_COLUMN_NAMES),
        )

    def units(self) -> list[Unit]:
        return [Unit(index=i, name=f"hf-shard-{i:05d}", location=self.spec, params=(i,)) for i in range(self.num_shards)]

    def read(self, unit: Unit) -> Iterator[Record]:
        import datasets

        from dedupkit.sources.parquet import _fill_from_row

        (shard,) = unit.params
        dataset = self._open()
        if self.num_shards > 1:
            dataset = dataset.shard(num_shards=self.num_shards, index=shard)
        dataset = dataset.cast_column(self.columns.image, datasets.Image(decode=False))
        extra = [n for n in (dataset.features or {}) if n not in {self.columns.image, self.columns.caption, self.columns.url, self.columns.key}]
        position = 0
        iterator = iter(dataset)
        while True:
            record = Record(key="", source=f"{self.name}:{self.split}#{shard}:{position}", ordinal=ordinal(unit, position))
            try:
                row = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                record.key = f"{unit.name}#rest"
                yield record.skip(f"unreadable rows, rest of shard lost: {' '.join(str(exc).split())[:200]}")
                return
            yield _fill_from_row(record, row, self.columns, extra, f"{self.split}:{shard}:{position}")
            position += 1


def _explain_hf_failure(name: str, split: str, exc: Exception) -> str:
    text = " ".join(str(exc).split())
    offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
    network_words = ("offline", "connection", "resolve", "internet", "network", "couldn't reach", "timed out", "name or service")
    if offline or any(word in text.lower() for word in network_words):
        return (
            f"hf:{name}: not in the local Hugging Face cache and the hub cannot be reached "
            "(offline); download it on a connected machine (datasets.load_dataset) into HF_HOME, "
            "or point hf: at a local folder"
        )
    if "split" in text.lower() and split:
        return f"hf:{name}: split {split!r} not found ({text[:200]})"
    return f"hf:{name}: cannot be opened ({type(exc).__name__}: {text[:200]})"
