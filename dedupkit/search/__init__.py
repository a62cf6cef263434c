"""Global near-duplicate search over compact signatures, and the clusters it implies.

Numpy in, numpy out: the pipeline hands in hashes, binary codes or embeddings read
from the signature shards and gets back pairs, then per-record cluster decisions.
The names below load on first use (PEP 562), so importing `dedupkit.search.options`
for its defaults does not pull in FAISS and numba.
"""

import importlib

_EXPORTS = {
    "KEEP_POLICIES": "options",
    "DedupOptions": "options",
    "NO_CLUSTER": "clusters",
    "Clusters": "clusters",
    "cluster_pairs": "clusters",
    "keeper_rank": "clusters",
    "cosine_pairs": "cosine",
    "as_code_words": "hamming",
    "hamming_pairs": "hamming",
    "Pairs": "pairs",
    "decide_duplicates": "decide",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
