"""Settings of the near-duplicate decision; light to import (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass

KEEP_POLICIES = ("largest", "first", "prefer-unmarked")

@dataclass(frozen=True)
class DedupOptions:
    """Which signatures decide near duplicates, and how close is a copy.

    Defaults calibrated by benchmarks/neardup_quality.py on real images with planted
    copies (see its JSON under benchmarks/results/).
    """

    hash_radius: tuple[tuple[str, int], ...] = (("phash", 8),)
    """Perceptual hash kinds and the Hamming radius (of 64 bits) under which two images are copies."""
    flip: bool = True
    """Also match mirrored copies (hash of the mirrored image against the others)."""
    embedder: str | None = "efficientnet-lite0"
    """Embedding model spec, or None for hashes only."""
    min_similarity: float = 0.93
    """Cosine similarity of embeddings at or above which two images are copies."""
    keep: str = "largest"
    """Keeper of a cluster: largest (most pixels), first (input order), prefer-unmarked."""
    search_method: str = "auto"

    @property
    def hash_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self.hash_radius)
