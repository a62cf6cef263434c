"""Signatures for near-duplicate search: perceptual hashes, embeddings, binary codes."""

from dedupkit.signatures.columns import codes_from_column, embeddings_from_column, hashes_from_column
from dedupkit.signatures.hashes import HASH_KINDS, HashStage, hash_images, hash_to_hex

__all__ = [
    "HASH_KINDS",
    "HashStage",
    "codes_from_column",
    "embeddings_from_column",
    "hash_images",
    "hash_to_hex",
    "hashes_from_column",
]
