"""All pairs of embeddings with cosine similarity at or above a threshold.

- ``flat``: FAISS ``IndexFlatIP.range_search`` on the normalised vectors, exact.
- ``ivf``: an inverted file over k-means cells, vectors stored as float16 (the
  signatures are float16 already, so that storage loses nothing for them); each
  vector probes its ``nprobe`` nearest cells.

HNSW is not offered: its range search aborts inside FAISS 1.15 ("labels == nullptr"
in RangeSearchResult), and IVF both builds faster on a few cores and meets the recall
target (see benchmarks/search_scale.py).

The approximate indexes search a little below the threshold and every candidate
is then rescored exactly from the input vectors, so what comes back is never beyond
the threshold; what they can miss is a pair whose vectors fell in cells that were not
probed.  Both directions of a pair are searched, which recovers most of those.
Queries go in batches so memory stays bounded by the index plus one batch of results.
"""

from __future__ import annotations

import faiss
import numpy as np

from dedupkit.search.pairs import Pairs

FLAT_MAX_VECTORS = 30_000
"""Above this many vectors `auto` switches from exact search to IVF."""
QUERY_BATCH = 8192
_CANDIDATE_MARGIN = 0.01
"""How far below the threshold the approximate indexes look (float16 storage noise)."""


def default_nlist(n: int) -> int:
    """About 2 sqrt(n) cells: ~2,000 at a million vectors, ~500 vectors per cell."""
    return int(max(1, min(n // 39, 2 * round(np.sqrt(n)))))


def cosine_pairs(
    embeddings: np.ndarray,
    min_similarity: float,
    *,
    method: str = "auto",
    nlist: int | None = None,
    nprobe: int = 16,
    train_size: int = 100_000,
    normalize: bool = True,
    kind: str = "embedding",
    seed: int = 0,
) -> Pairs:
    """Pairs (i, j), i < j, with cosine(e_i, e_j) >= `min_similarity`; distance = 1 - cosine.

    `embeddings` is (n, d) float16 or float32, normalised here unless `normalize`
    is False.  `method` is "auto" (flat up to FLAT_MAX_VECTORS, IVF above), "flat"
    or "ivf"; `nlist` (default ~2 sqrt(n)) and `nprobe` tune IVF.
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.dtype.kind != "f":
        raise ValueError(f"embeddings must be a float (n, d) matrix, got {embeddings.dtype} {embeddings.shape}")
    if not -1.0 <= min_similarity <= 1.0:
        raise ValueError(f"cosine similarity threshold must be within [-1, 1], got {min_similarity}")
    n, dim = embeddings.shape
    if n < 2:
        return Pairs.empty(kind)
    if method == "auto":
        method = "flat" if n <= FLAT_MAX_VECTORS else "ivf"

    def batch(start: int) -> np.ndarray:
        rows = np.ascontiguousarray(embeddings[start : start + QUERY_BATCH], dtype=np.float32)
        if normalize:
            faiss.normalize_L2(rows)
        return rows

    if method == "flat":
        index = faiss.IndexFlatIP(dim)
        margin = 0.0
    elif method == "ivf":
        nlist = nlist or default_nlist(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max(train_size, nlist * 39)), replace=False))
        training = np.ascontiguousarray(embeddings[sample], dtype=np.float32)
        if normalize:
            faiss.normalize_L2(training)
        index.cp.niter = 10
        index.train(training)
        del training
        index.nprobe = min(nprobe, nlist)
        margin = _CANDIDATE_MARGIN
    else:
        raise ValueError(f"unknown cosine search method {method!r}: use auto, flat or ivf")

    for start in range(0, n, QUERY_BATCH):
        index.add(batch(start))

    found_i, found_j, found_s = [], [], []
    # FAISS keeps inner products strictly above the radius; the exact check is below.
    radius = float(np.nextafter(np.float32(min_similarity - margin), np.float32(-2)))
    for start in range(0, n, QUERY_BATCH):
        queries = batch(start)
        limits, similarities, labels = index.range_search(queries, radius)
        rows = start + np.repeat(np.arange(queries.shape[0]), np.diff(limits.astype(np.int64)))
        keep = labels != rows if margin else labels > rows
        rows, labels, similarities = rows[keep], labels[keep], similarities[keep]
        if margin:
            similarities = _exact_similarities(embeddings, rows, labels, normalize)
        keep = similarities >= min_similarity
        found_i.append(rows[keep])
        found_j.append(labels[keep])
        found_s.append(similarities[keep])
    similarity = np.concatenate(found_s)
    return Pairs.canonical(np.concatenate(found_i), np.concatenate(found_j), 1.0 - similarity, kind)


def _exact_similarities(embeddings, rows, labels, normalize, chunk=65_536):
    similarities = np.empty(rows.shape[0], dtype=np.float32)
    for start in range(0, rows.shape[0], chunk):
        a = embeddings[rows[start : start + chunk]].astype(np.float32)
        b = embeddings[labels[start : start + chunk]].astype(np.float32)
        dots = np.einsum("ij,ij->i", a, b)
        if normalize:
            dots /= np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        similarities[start : start + chunk] = dots
    return similarities
