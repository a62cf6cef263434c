"""All pairs of embeddings with cosine similarity at or above a threshold.

Both methods compare vectors in dense blocks with one matrix product each (BLAS),
then keep the entries at or above the threshold; working memory stays bounded by one
block.  With `max_per_record` only each record's nearest are kept, as running lists
(n x k) updated block by block, so a loose threshold cannot flood memory with pairs.

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
    max_per_record: int | None = None,
) -> Pairs:
    """Pairs (i, j), i < j, with cosine(e_i, e_j) >= `min_similarity`; distance = 1 - cosine.

    `embeddings` is (n, d) float16 or float32, normalised here unless `normalize`
    is False.  `method` is "auto" (flat up to FLAT_MAX_VECTORS, IVF above), "flat"
    or "ivf"; `nlist` (default ~sqrt(n)) and `nprobe` tune IVF.

    With `max_per_record`, a pair is kept only when one end is among the other's
    `max_per_record` most similar records: a loose threshold then costs at most that many
    pairs per record, held as running nearest lists while the blocks are scanned (the
    pairs over a loose threshold grow with the square of the set: at cosine 0.7, five per
    record among 2,460 pictures, thousands per record at a million).
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

    if max_per_record is not None and max_per_record < 1:
        raise ValueError(f"the limit of pairs per record must be at least 1, got {max_per_record}")
    collect = _AboveThreshold(min_similarity) if max_per_record is None else _Nearest(n, max_per_record, min_similarity)
    if method == "flat":
        everything = np.arange(n)
        # A nearest list needs every other record, not only those after it.
        _scan_blocks(unit, everything, everything, collect, upper_triangle=max_per_record is None)
    else:
        home, visits = _inverted_file(unit, n, nlist or default_nlist(n), nprobe, train_size, seed)
        residents = _group_by_cell(home)
        visitors = _group_by_cell(visits.ravel(), rows=np.repeat(np.arange(n), visits.shape[1]))
        for cell, living in residents.items():
            _scan_blocks(unit, visitors.get(cell, living), living, collect, upper_triangle=False)
    i, j, similarity = collect.result()
    if i.size == 0:
        return Pairs.empty(kind)
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


def _scan_blocks(unit, query_rows, target_rows, collect, *, upper_triangle):
    """Hand `collect` the similarities of queries against targets, one matrix product per block.

    Both row lists ascend.  With `upper_triangle` they are the same rows and only blocks on or
    above the diagonal are computed; the collector keeps query < target there, and never a
    record paired with itself.
    """
    for t_start in range(0, target_rows.shape[0], BLOCK_COLUMNS):
        targets = target_rows[t_start : t_start + BLOCK_COLUMNS]
        target_vectors = unit(targets)
        q_stop = t_start + targets.shape[0] if upper_triangle else query_rows.shape[0]
        for q_start in range(0, q_stop, BLOCK_ROWS):
            queries = query_rows[q_start : min(q_stop, q_start + BLOCK_ROWS)]
            collect.add(queries, targets, unit(queries) @ target_vectors.T, upper_triangle)


def _hit_rows(similarity: np.ndarray, min_similarity: float) -> np.ndarray:
    """Rows with any entry at the threshold (near-duplicates are rare: most rows have none)."""
    return np.flatnonzero(similarity.max(axis=1) >= min_similarity)


class _AboveThreshold:
    """Every (query, target) pair at or above the threshold."""

    def __init__(self, min_similarity: float) -> None:
        self.min_similarity = min_similarity
        self.found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, queries, targets, similarity, upper_triangle) -> None:
        hit_rows = _hit_rows(similarity, self.min_similarity)
        q, t = np.nonzero(similarity[hit_rows] >= self.min_similarity)
        q = hit_rows[q]
        keep = queries[q] < targets[t] if upper_triangle else queries[q] != targets[t]
        q, t = q[keep], t[keep]
        if q.size:
            self.found.append((queries[q], targets[t], similarity[q, t]))

    def result(self):
        if not self.found:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
        return tuple(np.concatenate(parts) for parts in zip(*self.found))


class _Nearest:
    """Each record's `limit` most similar others at or above the threshold, updated block by block."""

    def __init__(self, n: int, limit: int, min_similarity: float) -> None:
        self.min_similarity = min_similarity
        self.similarity = np.full((n, limit), -np.inf, dtype=np.float32)
        self.neighbour = np.full((n, limit), -1, dtype=np.int64)

    def add(self, queries, targets, similarity, upper_triangle) -> None:
        hit_rows = _hit_rows(similarity, self.min_similarity)
        if hit_rows.size == 0:
            return
        queries, similarity = queries[hit_rows], similarity[hit_rows]
        position = np.minimum(np.searchsorted(targets, queries), targets.shape[0] - 1)
        itself = np.flatnonzero(targets[position] == queries)
        similarity[itself, position[itself]] = -np.inf
        limit = self.similarity.shape[1]
        if similarity.shape[1] > limit:
            best = np.argpartition(-similarity, limit - 1, axis=1)[:, :limit]
            similarity, neighbour = np.take_along_axis(similarity, best, axis=1), targets[best]
        else:
            neighbour = np.broadcast_to(targets, similarity.shape)
        merged = np.concatenate([self.similarity[queries], similarity], axis=1)
        merged_neighbour = np.concatenate([self.neighbour[queries], neighbour], axis=1)
        best = np.argpartition(-merged, limit - 1, axis=1)[:, :limit]
        self.similarity[queries] = np.take_along_axis(merged, best, axis=1)
        self.neighbour[queries] = np.take_along_axis(merged_neighbour, best, axis=1)

    def result(self):
        record, slot = np.nonzero(self.similarity >= self.min_similarity)
        return record, self.neighbour[record, slot], self.similarity[record, slot]
