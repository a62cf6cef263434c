"""All pairs of embeddings with cosine similarity at or above a threshold.

Both methods compare vectors in dense blocks with one matrix product each (BLAS),
then keep the entries at or above the threshold; memory stays bounded by one block.

- ``flat``: every pair, exact (the upper triangle of the similarity matrix).
- ``ivf``: an inverted file.  FAISS k-means (spherical) cuts the set into cells; each
  vector lives in its nearest cell and visits its ``nprobe`` nearest cells, where
  it is compared with every vector living there.  A pair is found when either end
  visits the other's cell, which for near-duplicates (far closer to each other than
  to any cell boundary) almost always happens; the benchmark measures the recall.

Why not FAISS's own ``IndexIVF*.range_search`` or ``IndexFlatIP.range_search``: they
scan one query at a time (about 3 GFLOP/s here); IVF range search over 200,000 x 512
float16 vectors took 290 s on this shared machine.  A matrix product per block runs
at BLAS speed.  FAISS's HNSW range search aborts ("labels == nullptr" in
RangeSearchResult) in 1.15.
"""

from __future__ import annotations

import faiss
import numpy as np

from dedupkit.search.pairs import Pairs

FLAT_MAX_VECTORS = 30_000
"""Above this many vectors `auto` switches from exact search to IVF."""
BLOCK_ROWS = 1024
BLOCK_COLUMNS = 8192
"""A similarity block is at most BLOCK_ROWS x BLOCK_COLUMNS float32 (32 MiB)."""


def default_nlist(n: int) -> int:
    """About sqrt(n) cells: 1,000 cells of ~1,000 vectors at a million."""
    return int(max(1, round(np.sqrt(n))))


def cosine_pairs(
    embeddings: np.ndarray,
    min_similarity: float,
    *,
    method: str = "auto",
    nlist: int | None = None,
    nprobe: int = 4,
    train_size: int = 100_000,
    normalize: bool = True,
    kind: str = "embedding",
    seed: int = 0,
) -> Pairs:
    """Pairs (i, j), i < j, with cosine(e_i, e_j) >= `min_similarity`; distance = 1 - cosine.

    `embeddings` is (n, d) float16 or float32, normalised here unless `normalize`
    is False.  `method` is "auto" (flat up to FLAT_MAX_VECTORS, IVF above), "flat"
    or "ivf"; `nlist` (default ~sqrt(n)) and `nprobe` tune IVF.
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.dtype.kind != "f":
        raise ValueError(f"embeddings must be a float (n, d) matrix, got {embeddings.dtype} {embeddings.shape}")
    if not -1.0 <= min_similarity <= 1.0:
        raise ValueError(f"cosine similarity threshold must be within [-1, 1], got {min_similarity}")
    if method == "auto":
        method = "flat" if embeddings.shape[0] <= FLAT_MAX_VECTORS else "ivf"
    if method not in ("flat", "ivf"):
        raise ValueError(f"unknown cosine search method {method!r}: use auto, flat or ivf")
    n = embeddings.shape[0]
    if n < 2:
        return Pairs.empty(kind)

    def unit(rows) -> np.ndarray:
        vectors = np.array(embeddings[rows], dtype=np.float32)
        if normalize:
            faiss.normalize_L2(vectors)
        return vectors

    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if method == "flat":
        everything = np.arange(n)
        _join_blocks(unit, everything, everything, min_similarity, found, upper_triangle=True)
    else:
        home, visits = _inverted_file(unit, n, nlist or default_nlist(n), nprobe, train_size, seed)
        residents = _group_by_cell(home)
        visitors = _group_by_cell(visits.ravel(), rows=np.repeat(np.arange(n), visits.shape[1]))
        for cell, living in residents.items():
            _join_blocks(unit, visitors.get(cell, living), living, min_similarity, found, upper_triangle=False)
    if not found:
        return Pairs.empty(kind)
    i, j, similarity = (np.concatenate(parts) for parts in zip(*found))
    return Pairs.canonical(i, j, 1.0 - similarity, kind)


def _inverted_file(unit, n, nlist, nprobe, train_size, seed):
    """Each vector's home cell and the `nprobe` cells it visits (home first)."""
    nlist = min(nlist, n)
    sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max(train_size, 30 * nlist)), replace=False))
    training = unit(sample)
    kmeans = faiss.Kmeans(training.shape[1], nlist, niter=10, spherical=True, seed=seed, max_points_per_centroid=256)
    kmeans.train(training)
    del training
    centroids = faiss.IndexFlatIP(kmeans.centroids.shape[1])
    centroids.add(kmeans.centroids)
    nprobe = min(nprobe, nlist)
    visits = np.empty((n, nprobe), dtype=np.int64)
    for start in range(0, n, 65_536):
        rows = np.arange(start, min(n, start + 65_536))
        visits[rows] = centroids.search(unit(rows), nprobe)[1]
    return visits[:, 0].copy(), visits


def _group_by_cell(cells, rows=None):
    rows = np.arange(cells.shape[0]) if rows is None else rows
    order = np.argsort(cells, kind="stable")
    cells, rows = cells[order], rows[order]
    bounds = np.flatnonzero(np.diff(cells)) + 1
    return {int(group_cells[0]): group_rows for group_cells, group_rows in zip(np.split(cells, bounds), np.split(rows, bounds))}


def _join_blocks(unit, query_rows, target_rows, min_similarity, found, *, upper_triangle):
    """Pairs (query, target) with similarity >= threshold, one matrix product per block.

    With `upper_triangle` both lists are the same ascending rows and only query < target is kept.
    """
    for t_start in range(0, target_rows.shape[0], BLOCK_COLUMNS):
        targets = target_rows[t_start : t_start + BLOCK_COLUMNS]
        target_vectors = unit(targets)
        q_stop = t_start + targets.shape[0] if upper_triangle else query_rows.shape[0]
        for q_start in range(0, q_stop, BLOCK_ROWS):
            queries = query_rows[q_start : min(q_stop, q_start + BLOCK_ROWS)]
            similarity = unit(queries) @ target_vectors.T
            # Near-duplicates are rare: find the rows that have any before the entries.
            hit_rows = np.flatnonzero(similarity.max(axis=1) >= min_similarity)
            q, t = np.nonzero(similarity[hit_rows] >= min_similarity)
            q = hit_rows[q]
            keep = queries[q] < targets[t] if upper_triangle else queries[q] != targets[t]
            q, t = q[keep], t[keep]
            if q.size:
                found.append((queries[q], targets[t], similarity[q, t]))
