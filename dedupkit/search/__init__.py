"""Global near-duplicate search over compact signatures, and the clusters it implies.

Numpy in, numpy out: the pipeline hands in hashes, binary codes or embeddings read
from the signature shards and gets back pairs, then per-record cluster decisions.
"""

from dedupkit.search.clusters import KEEP_POLICIES, NO_CLUSTER, Clusters, cluster_pairs, keeper_rank
from dedupkit.search.cosine import cosine_pairs
from dedupkit.search.hamming import as_code_words, hamming_pairs
from dedupkit.search.pairs import Pairs

__all__ = [
    "KEEP_POLICIES",
    "NO_CLUSTER",
    "Clusters",
    "Pairs",
    "as_code_words",
    "cluster_pairs",
    "cosine_pairs",
    "hamming_pairs",
    "keeper_rank",
]
