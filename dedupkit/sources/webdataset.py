"""WebDataset tar shards in img2dataset's layout: KEY.jpg|png|webp, KEY.txt, KEY.json.

Shards are streamed member by member (tar stream mode), samples grouped by key as
WebDataset does: the key is the member path up to the first dot of its file name.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Iterator

from dedupkit.records import IMAGE_EXTENSIONS, Record
from dedupkit.sources.base import SourceError, Unit, expand_files, ordinal, unsafe_member_reason


def split_member_name(name: str) -> tuple[str, str]:
    """`dir/000123.jpg` -> (`dir/000123`, `jpg`); `a.seg.png` -> (`a`, `seg.png`)."""
    directory, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    key = f"{directory}/{stem}" if directory else stem
    return key, extension.lower() if dot else ""


class WebDatasetSource:
    kind = "webdataset"

    def __init__(self, spec: str):
        self.spec = spec
        self.shards = expand_files(spec, ".tar", "tar shards")
        if len(self.shards) == 1:
            _check_is_tar(self.shards[0])

    def units(self) -> list[Unit]:
        return [Unit(index=i, name=Path(s).name, location=s) for i, s in enumerate(self.shards)]

    def read(self, unit: Unit) -> Iterator[Record]:
        shard_name = Path(unit.location).name
        position = 0

        def new_record(key: str, member: str, **fields) -> Record:
            nonlocal position
            record = Record(key=key, source=f"{shard_name}#{position}:{member}", ordinal=ordinal(unit, position), **fields)
            position += 1
            return record

        try:
            archive = tarfile.open(unit.location, mode="r|*")
        except (tarfile.TarError, OSError) as exc:
            yield new_record(shard_name, shard_name).skip(f"unreadable tar shard: {exc}")
            return

        current_key: str | None = None
        parts: dict[str, bytes] = {}
        first_member = ""
        try:
            with archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    unsafe = unsafe_member_reason(member.name)
                    key, extension = split_member_name(member.name)
                    if current_key is not None and (unsafe or key != current_key):
                        yield self._sample(new_record(current_key, first_member), parts)
                        current_key = None
                    if unsafe:
                        yield new_record(member.name, member.name).skip(unsafe)
                        continue
                    if current_key is None:
                        current_key, parts, first_member = key, {}, member.name
                    handle = archive.extractfile(member)
                    parts[extension] = handle.read() if handle else b""
        except (tarfile.TarError, OSError, EOFError) as exc:
            if current_key is not None:
                yield self._sample(new_record(current_key, first_member), parts, incomplete=True)
                current_key = None
            yield new_record(f"{shard_name}#rest", shard_name).skip(
                f"malformed tar shard, rest unreadable after {position} samples: {exc}"
            )
        if current_key is not None:
            yield self._sample(new_record(current_key, first_member), parts)

    @staticmethod
    def _sample(record: Record, parts: dict[str, bytes], incomplete: bool = False) -> Record:
        image_extension = next((e for e in parts if e in IMAGE_EXTENSIONS), None)
        if "txt" in parts:
            record.caption = parts["txt"].decode("utf-8", errors="replace").strip()
        if "json" in parts:
            try:
                metadata = json.loads(parts["json"].decode("utf-8", errors="replace"))
                if isinstance(metadata, dict):
                    record.metadata = metadata
                    url = metadata.get("url")
                    record.url = url if isinstance(url, str) else None
            except ValueError:
                record.columns["source_note"] = "unparseable .json sidecar"
        if image_extension is None:
            found = ", ".join(sorted(parts)) or "nothing"
            return record.skip(f"no image in sample (found {found})")
        record.ext = image_extension
        record.data = parts[image_extension]
        if incomplete:
            record.columns["source_note"] = "sample cut short by a malformed shard"
        return record


def _check_is_tar(path: str) -> None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise SourceError(f"{path}: empty file, not a tar shard")
    try:
        with tarfile.open(path, mode="r|*") as archive:
            next(iter(archive), None)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SourceError(f"{path}: not a readable tar shard ({exc})") from None
