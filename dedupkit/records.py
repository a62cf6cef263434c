"""The Record that flows through every stage.

A reader creates one Record per input record (a file, a tar sample, a Parquet row,
a Hugging Face example).  Stages enrich it: `decode_image` fills `image`, signature
stages add to `signatures`, tagging stages add manifest columns to `columns`.  The
status says what happens to it; a record is never silently dropped from the stream:
readers yield unreadable records too, already `skipped`, so the manifest can account
for every input record exactly once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

KEPT = "kept"
DROPPED = "dropped"
SKIPPED = "skipped"

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")


@dataclass
class Record:
    key: str
    """Stable identity in the source: a relative path, a WebDataset key, a row key."""
    source: str
    """Where it came from, human readable: a file, or `shard.tar#12`, or `part.parquet#3`."""
    ordinal: int = 0
    """Position in the whole input (unit index and position in unit), for stable ordering."""
    data: bytes | None = None
    """The stored image bytes, exactly as read."""
    ext: str = ""
    """Extension of the stored bytes as named in the source (lower case, no dot)."""
    caption: str | None = None
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """Sidecar metadata (WebDataset .json, extra Parquet columns), carried to the output."""

    status: str = KEPT
    reason: str = ""

    image: Image.Image | None = None
    """Decoded pixels: RGB or RGBA, EXIF orientation applied, first frame of an animation."""
    width: int | None = None
    height: int | None = None
    image_format: str | None = None
    """The format Pillow found in the bytes (JPEG, PNG, ...), which may differ from `ext`."""

    signatures: dict[str, Any] = field(default_factory=dict)
    """Compact per-record signatures for the global search (sha256, pixel hash, phash...)."""
    columns: dict[str, Any] = field(default_factory=dict)
    """Extra manifest columns added by stages (copyright tags, watermark, cluster...)."""

    @property
    def sha256(self) -> str | None:
        if "sha256" not in self.signatures and self.data is not None:
            self.signatures["sha256"] = hashlib.sha256(self.data).hexdigest()
        return self.signatures.get("sha256")

    @property
    def alive(self) -> bool:
        """Still a candidate for the output (neither skipped nor dropped)."""
        return self.status == KEPT

    def skip(self, reason: str) -> "Record":
        self.status = SKIPPED
        self.reason = reason
        self.image = None
        return self

    def drop(self, reason: str) -> "Record":
        self.status = DROPPED
        self.reason = reason
        return self

    def release_pixels(self) -> None:
        """Let go of the decoded image once the stages that need pixels are done.

        Not closed: a byte-identical twin may share the same decoded image object.
        """
        self.image = None
