"""Duplicate clusters from pairs, one keeper each, guarded against chaining.

Plain union-find over near-duplicate pairs chains look-alikes: A~B and B~C put A and
C in one cluster even when A and C are far apart, and removing all but one of them
loses distinct images.  Here a record is only ever dropped as a copy of a keeper it
is itself paired with (by at least one signature, within that signature's threshold).

Each round takes the records not yet decided, finds the connected components of the
pairs among them (scipy's csgraph), picks each component's keeper by the keep policy
and ties to it every record directly paired with it.  With `confirm_with_keeper`, a
record paired only with a copy (a crop of the original when an upscaled copy is kept)
is then checked directly against the keeper: the two need not have been paired (their
embeddings may lie too far apart to be candidates), but they are compared themselves
(by `ThumbnailCheck.confirm_with_keeper` in decide), so nothing is dropped for a keeper
it was not compared with.  The records
still left over go to the next round and form clusters of their own around new
keepers; a record with no pair left is a singleton and is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dedupkit.search.options import KEEP_POLICIES
from dedupkit.search.pairs import Pairs

NO_CLUSTER = -1


@dataclass(frozen=True)
class Clusters:
    """Per record decisions, aligned with the input rows.

    - `cluster_id`: shared by a keeper and its copies, numbered from 0;
      NO_CLUSTER (-1) for a record with no duplicate.
    - `keeper`: row of the record kept in its place (its own row when kept).
    - `dup_kind`: the `kind` of the pair that tied a copy to its keeper
      ("exact", "hash", "embedding", "verified", "local", "thumbnail", "aligned"); "" for kept records.
    - `distance`: that pair's distance in its kind's unit (see `Pairs`); NaN when kept.
    """

    cluster_id: np.ndarray
    keeper: np.ndarray
    dup_kind: np.ndarray
    distance: np.ndarray

    @property
    def is_copy(self) -> np.ndarray:
        return self.keeper != np.arange(self.keeper.shape[0])

    def manifest_columns(self, keys: Sequence[str]) -> dict[str, list]:
        """The manifest's duplicate columns, keyed by record key rather than row."""
        keys = np.asarray(keys, dtype=object)
        return {
            "cluster_id": self.cluster_id.tolist(),
            "keeper_key": keys[self.keeper].tolist(),
            "dup_kind": self.dup_kind.tolist(),
            "distance": self.distance.tolist(),
        }


def keeper_rank(
    n: int,
    keep: str = "largest",
    *,
    pixels: np.ndarray | None = None,
    copyright_marked: np.ndarray | None = None,
    lossy: np.ndarray | None = None,
) -> np.ndarray:
    """Rank of each record as a keeper, 0 best, ties broken by input order.

    - largest: most pixels first; among as many pixels, when `lossy` is given, records
      not stored in a lossy format (dedupkit.decode.LOSSY_FORMATS) first: the PNG a JPEG
      copy was saved from, not the copy.
    - first: input order.
    - prefer-unmarked: records not copyright-marked first, then as `largest` when
      `pixels` is given.
    """
    order = np.arange(n)
    if keep == "first":
        sort_keys = [order]
    elif keep == "largest":
        if pixels is None:
            raise ValueError("keep policy 'largest' needs each record's pixel count (width * height)")
        sort_keys = [order, *_lossless_first(lossy), -np.asarray(pixels, dtype=np.int64)]
    elif keep == "prefer-unmarked":
        if copyright_marked is None:
            raise ValueError("keep policy 'prefer-unmarked' needs the copyright_marked column: run the copyright tagging stage first")
        sort_keys = [order]
        if pixels is not None:
            sort_keys += [*_lossless_first(lossy), -np.asarray(pixels, dtype=np.int64)]
        sort_keys.append(np.asarray(copyright_marked, dtype=bool))
    else:
        raise ValueError(f"unknown keep policy {keep!r}: use one of {', '.join(KEEP_POLICIES)}")
    if any(key.shape[0] != n for key in sort_keys):
        raise ValueError(f"keep policy {keep!r}: pixels / copyright_marked must have one value per record ({n})")
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort(sort_keys)] = order
    return rank


def _lossless_first(lossy: np.ndarray | None) -> list[np.ndarray]:
    """The sort key (lexsort: False first) that puts records not stored lossily ahead, if known."""
    return [] if lossy is None else [np.asarray(lossy, dtype=bool)]


def cluster_pairs(
    n: int,
    pair_sets: Sequence[Pairs],
    *,
    keep: str = "largest",
    pixels: np.ndarray | None = None,
    copyright_marked: np.ndarray | None = None,
    lossy: np.ndarray | None = None,
    confirm_with_keeper: Callable[[int, int], tuple[str, float] | None] | None = None,
) -> Clusters:
    """Clusters over `n` records from pairs of several signatures.

    Each `Pairs` is already cut at its own signature's threshold.  When several
    pairs tie a copy to its keeper, the one from the earliest pair set in
    `pair_sets` names `dup_kind` (so pass the strongest evidence first: exact,
    then hashes, then embeddings), and the smallest distance of that set wins.
    `confirm_with_keeper(record, keeper)` returns the (kind, distance) of a direct
    check, or None: it is asked only about records paired with a copy of that keeper.
    """
    rank = keeper_rank(n, keep, pixels=pixels, copyright_marked=copyright_marked, lossy=lossy)
    kinds = [pairs.kind for pairs in pair_sets]
    u = np.concatenate([pairs.i for pairs in pair_sets] + [np.empty(0, np.int64)]).astype(np.int64)
    v = np.concatenate([pairs.j for pairs in pair_sets] + [np.empty(0, np.int64)]).astype(np.int64)
    if u.size and (min(u.min(), v.min()) < 0 or max(u.max(), v.max()) >= n):
        raise ValueError(f"pair rows must lie in [0, {n})")
    evidence = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(pair_sets)] + [np.empty(0, np.int64)])
    distance = np.concatenate([p.distance.astype(np.float64) for p in pair_sets] + [np.empty(0)])

    cluster_id = np.full(n, NO_CLUSTER, dtype=np.int64)
    keeper = np.arange(n, dtype=np.int64)
    copy_evidence = np.full(n, -1, dtype=np.int64)
    copy_distance = np.full(n, np.nan)
    undecided = np.ones(n, dtype=bool)
    clusters_made = 0
    while True:
        live = undecided[u] & undecided[v]
        if not live.any():
            break
        u, v, evidence, distance = u[live], v[live], evidence[live], distance[live]
        graph = coo_matrix((np.ones(u.shape[0], dtype=np.int8), (u, v)), shape=(n, n))
        _, component = connected_components(graph, directed=False)

        members = np.unique(np.concatenate([u, v]))
        by_rank = members[np.lexsort((rank[members], component[members]))]
        is_best = np.ones(by_rank.shape[0], dtype=bool)
        is_best[1:] = component[by_rank[1:]] != component[by_rank[:-1]]
        keepers = by_rank[is_best]
        keeper_of = np.full(n, -1, dtype=np.int64)
        keeper_of[component[keepers]] = keepers

        # A pair ties its other end to a keeper only when one end *is* the keeper.
        copy = np.concatenate([v[keeper_of[component[u]] == u], u[keeper_of[component[v]] == v]])
        copy_kind = np.concatenate([evidence[keeper_of[component[u]] == u], evidence[keeper_of[component[v]] == v]])
        copy_dist = np.concatenate([distance[keeper_of[component[u]] == u], distance[keeper_of[component[v]] == v]])
        best = np.lexsort((copy_dist, copy_kind, copy))
        first = np.ones(best.shape[0], dtype=bool)
        first[1:] = copy[best[1:]] != copy[best[:-1]]
        best = best[first]
        copy, copy_kind, copy_dist = copy[best], copy_kind[best], copy_dist[best]
        if confirm_with_keeper is not None:
            copy, copy_kind, copy_dist = _through_copies(u, v, component, keeper_of, keepers, copy, copy_kind, copy_dist,
                                                         confirm_with_keeper, kinds)

        new_ids = clusters_made + np.arange(keepers.shape[0])
        clusters_made += keepers.shape[0]
        cluster_id[keepers] = new_ids
        cluster_id[copy] = cluster_id[keeper_of[component[copy]]]
        keeper[copy] = keeper_of[component[copy]]
        copy_evidence[copy] = copy_kind
        copy_distance[copy] = copy_dist
        undecided[keepers] = False
        undecided[copy] = False

    dup_kind = np.array([""] + kinds, dtype=object)[copy_evidence + 1]
    return Clusters(cluster_id, keeper, dup_kind, copy_distance)


def _through_copies(u, v, component, keeper_of, keepers, copy, copy_kind, copy_dist, confirm_with_keeper, kinds):
    """This round's copies, plus the records reached from them through pairs that the keeper
    confirms directly (each record asked about once; a record it confirms is a copy too and
    leads on to its own partners)."""
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(u.tolist(), v.tolist()):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    decided = set(copy.tolist()) | set(keepers.tolist())
    asked: set[int] = set()
    frontier = copy.tolist()
    added: list[tuple[int, int, float]] = []
    while frontier:
        reached = []
        for tied in frontier:
            for record in neighbours.get(tied, ()):
                if record in decided or record in asked:
                    continue
                asked.add(record)
                found = confirm_with_keeper(record, int(keeper_of[component[record]]))
                if found is None:
                    continue
                kind, distance = found
                if kind not in kinds:
                    kinds.append(kind)
                added.append((record, kinds.index(kind), distance))
                decided.add(record)
                reached.append(record)
        frontier = reached
    if not added:
        return copy, copy_kind, copy_dist
    records, kind_rows, distances = (np.asarray(column) for column in zip(*added))
    return (np.concatenate([copy, records.astype(np.int64)]), np.concatenate([copy_kind, kind_rows.astype(np.int64)]),
            np.concatenate([copy_dist, distances.astype(np.float64)]))
