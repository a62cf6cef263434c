"""A folder of images, read recursively; img2dataset-style sidecars carried along.

Every file is a record (so a stray PDF is accounted for as skipped, not ignored),
except `NAME.txt` / `NAME.json` lying next to an image `NAME.<image ext>`: those are
the image's caption and metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from dedupkit.records import IMAGE_EXTENSIONS, Record
from dedupkit.sources.base import SourceError, Unit, ordinal

SIDECAR_EXTENSIONS = ("txt", "json")


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


class FolderSource:
    kind = "folder"

    def __init__(self, root: str | os.PathLike, files_per_unit: int = 1000):
        self.root = Path(root)
        self.spec = str(root)
        if not self.root.is_dir():
            raise SourceError(f"{root}: not a folder")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise SourceError(f"{root}: folder is not readable (permission denied)")
        self.files_per_unit = files_per_unit

    def _relative_files(self) -> list[str]:
        found = []
        for directory, subdirectories, files in os.walk(self.root):
            subdirectories.sort()
            base = Path(directory).relative_to(self.root)
            for name in sorted(files):
                found.append((base / name).as_posix())
        return found

    def units(self) -> list[Unit]:
        files = self._relative_files()
        image_stems = {_stem(f) for f in files if _extension(f) in IMAGE_EXTENSIONS}
        records = [
            f for f in files if not (_extension(f) in SIDECAR_EXTENSIONS and _stem(f) in image_stems)
        ]
        if not records:
            raise SourceError(f"{self.root}: folder holds no files")
        chunks = [records[i : i + self.files_per_unit] for i in range(0, len(records), self.files_per_unit)]
        return [
            Unit(index=i, name=f"files-{i:05d}", location=str(self.root), params=tuple(chunk))
            for i, chunk in enumerate(chunks)
        ]

    def read(self, unit: Unit) -> Iterator[Record]:
        for position, relative in enumerate(unit.params):
            path = self.root / relative
            record = Record(key=relative, source=relative, ordinal=ordinal(unit, position), ext=_extension(relative))
            try:
                record.data = path.read_bytes()
            except OSError as exc:
                yield record.skip(f"unreadable file: {exc.strerror or exc}")
                continue
            if record.ext in IMAGE_EXTENSIONS:
                _attach_sidecars(record, path)
            yield record


def _attach_sidecars(record: Record, path: Path) -> None:
    caption_path = path.with_suffix(".txt")
    if caption_path.is_file():
        record.caption = caption_path.read_text(encoding="utf-8", errors="replace").strip()
    metadata_path = path.with_suffix(".json")
    if metadata_path.is_file():
        try:
            metadata = json.loads(metadata_path.read_text(encoding="utf-8", errors="replace"))
        except ValueError:
            record.columns["source_note"] = f"unparseable sidecar {metadata_path.name}"
            return
        if isinstance(metadata, dict):
            record.metadata = metadata
            url = metadata.get("url")
            record.url = url if isinstance(url, str) else None
