"""What every reader shares: units of work, errors, and key safety."""

from __future__ import annotations

import posixpath
import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import braceexpand

from dedupkit.records import Record

#: Ordinals are unit * UNIT_STRIDE + position, so the input order is total and stable
#: whatever the number of workers.
UNIT_STRIDE = 1 << 32


class SourceError(RuntimeError):
    """The source cannot be opened at all; the message is one line telling the user why."""


@dataclass(frozen=True)
class Unit:
    """A slice of the input that one worker reads start to end (a shard, a chunk of files)."""

    index: int
    name: str
    location: str
    """What the reader needs to find it again: a tar path, a Parquet path, a chunk id."""
    params: tuple = field(default=())
    """Reader-specific extras (file lists, row-group ids), picklable."""


class Source(Protocol):
    kind: str
    """folder | webdataset | parquet | hf: also the default output format."""
    spec: str

    def units(self) -> list[Unit]: ...

    def read(self, unit: Unit) -> Iterator[Record]: ...


def ordinal(unit: Unit, position: int) -> int:
    return unit.index * UNIT_STRIDE + position


def unsafe_member_reason(name: str) -> str | None:
    """Why a member path from an archive must not be trusted, or None when it is safe."""
    if not name:
        return "empty member name"
    if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        return f"unsafe member path (absolute): {name!r}"
    parts = posixpath.normpath(name.replace("\\", "/")).split("/")
    if ".." in name.replace("\\", "/").split("/") or ".." in parts:
        return f"unsafe member path (parent traversal): {name!r}"
    return None


def expand_files(spec: str, suffix: str, what: str) -> list[str]:
    """A file, a folder of `*suffix` files (recursive), or a brace / glob pattern, in sorted order."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*" + suffix))
        if not files:
            raise SourceError(f"{spec}: folder holds no {suffix} {what}")
        return files
    if path.is_file():
        return [spec]
    files: list[str] = []
    for pattern in braceexpand.braceexpand(spec):
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        files.extend(m for m in matches if Path(m).is_file())
    if not files:
        raise SourceError(f"{spec}: no {what} matches")
    return files
