"""The global duplicate decision: signatures of every record in, one verdict per record out.

Exact duplicates (identical pixels) are collapsed first, so the near-duplicate search
runs once per distinct picture; then each configured signature gives its own pairs
(perceptual hashes by Hamming radius, mirrored hashes for flips, embeddings by
cosine), and `cluster_pairs` turns them into clusters with one keeper each, guarded
against chaining.  An exact copy follows its picture: if the picture is dropped as a
near duplicate, so are its copies, in favour of the same keeper.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dedupkit.decode import LOSSY_FORMATS
from dedupkit.records import DROPPED, KEPT
from dedupkit.search.clusters import NO_CLUSTER, cluster_pairs, keeper_rank
from dedupkit.search.cosine import cosine_pairs
from dedupkit.search.hamming import hamming_pairs
from dedupkit.search.options import DedupOptions
from dedupkit.search.pairs import Pairs, describe_match
from dedupkit.signatures.columns import embeddings_from_column, hashes_from_column
from dedupkit.signatures.exact import find_exact_duplicates
from dedupkit.sinks.manifest import SIGNATURE_PREFIX

FLIP_SUFFIX = "_flip"
EMBEDDING_COLUMN = SIGNATURE_PREFIX + "embedding"


@dataclass(frozen=True)
class Verdicts:
    """Aligned with the input table's rows."""

    status: list
    reason: list
    cluster_id: np.ndarray
    keeper_key: list
    dup_kind: list
    distance: list

    def as_table(self, ordinal: pa.ChunkedArray | pa.Array) -> pa.Table:
        return pa.table(
            {
                "ordinal": ordinal,
                "status": pa.array(self.status, pa.string()),
                "reason": pa.array(self.reason, pa.string()),
                "cluster_id": pa.array(self.cluster_id, pa.int64()),
                "keeper_key": pa.array(self.keeper_key, pa.string()),
                "dup_kind": pa.array(self.dup_kind, pa.string()),
                "distance": pa.array(self.distance, pa.float64()),
            }
        )


def decide_duplicates(table: pa.Table, options: DedupOptions | None, workers: int = 1) -> Verdicts:
    """Verdicts for every row of an analysis table (needs status, key, sha256, width, height, sig_*).

    `workers` processes verify the embedding candidates (`ThumbnailCheck.verified_candidates`); the
    verdicts do not depend on their number."""
    count = table.num_rows
    keys = np.asarray(table.column("key").to_pylist(), dtype=object)
    status = np.asarray(table.column("status").to_pylist(), dtype=object)
    reason = np.asarray(table.column("reason").to_pylist(), dtype=object)
    alive = status == KEPT
    pixels = _column_or(table, "width", 0) * _column_or(table, "height", 0)
    marked = _marked(table)
    lossy = _stored_lossily(table)
    policy = options.keep if options else "first"
    # Identical pixels are the same picture whatever file holds them: the lossless preference
    # only orders different pixels (in the clusters), so a PNG re-save does not displace its JPEG.
    exact = find_exact_duplicates(table, keeper_rank(count, policy, pixels=pixels, copyright_marked=marked))

    final_keeper = exact.keeper.copy()
    near_kind = np.full(count, "", dtype=object)
    near_distance = np.full(count, np.nan)
    pictures = np.flatnonzero(alive & (exact.keeper == np.arange(count)))
    if options is not None and pictures.size > 1:
        orb = OrbSignatures.of(table, pictures) if options.embedder and options.verify_local else None
        # The ORB signatures (~18 KiB a picture) are read in place, row by row, not copied with the rest.
        picture_table = (table if orb is None else table.drop_columns([orb.name])).take(pictures)
        thumbnails = None
        if orb is not None:
            thumbnails = ThumbnailCheck(picture_table, options, orb=orb, workers=workers)
            picture_table = picture_table.drop_columns([EMBEDDING_COLUMN])  # the check holds them as unit rows
        clusters = cluster_pairs(
            pictures.size,
            near_pair_sets(picture_table, options, thumbnails),
            keep=policy,
            pixels=pixels[pictures],
            copyright_marked=None if marked is None else marked[pictures],
            lossy=None if lossy is None else lossy[pictures],
            confirm_with_keeper=None if thumbnails is None else thumbnails.confirm_with_keeper,
        )
        final_keeper[pictures] = pictures[clusters.keeper]
        near_kind[pictures] = clusters.dup_kind
        near_distance[pictures] = clusters.distance
    # An exact copy goes wherever its picture goes.
    copies = alive & (exact.keeper != np.arange(count))
    final_keeper[copies] = final_keeper[exact.keeper[copies]]

    dropped = alive & (final_keeper != np.arange(count))
    group_size = np.bincount(final_keeper[alive], minlength=count)
    in_cluster = alive & (group_size[final_keeper] > 1)
    cluster_id = np.full(count, NO_CLUSTER, dtype=np.int64)
    cluster_id[in_cluster] = np.unique(final_keeper[in_cluster], return_inverse=True)[1]

    dup_kind = np.full(count, None, dtype=object)
    distance = np.full(count, None, dtype=object)
    for row in np.flatnonzero(dropped):
        picture, keeper = exact.keeper[row], final_keeper[row]
        how = "identical bytes" if exact.same_bytes[row] else "identical pixels"
        if picture == keeper:
            dup_kind[row], distance[row] = "exact", 0.0
            reason[row] = f"exact duplicate of {keys[keeper]} ({how})"
        else:
            dup_kind[row], distance[row] = near_kind[picture], float(near_distance[picture])
            detail = describe_match(near_kind[picture], near_distance[picture])
            via = "" if picture == row else f" (via its exact copy {keys[picture]}, {how})"
            reason[row] = f"near duplicate of {keys[keeper]} ({detail}){via}"
    status[dropped] = DROPPED
    keeper_key = np.where(in_cluster, keys[final_keeper], None)
    return Verdicts(status.tolist(), reason.tolist(), cluster_id, keeper_key.tolist(), dup_kind.tolist(), distance.tolist())


def near_pair_sets(pictures: pa.Table, options: DedupOptions, thumbnails: "ThumbnailCheck | None" = None) -> list[Pairs]:
    """Pairs among the distinct pictures from each configured signature, strongest evidence first.

    With `thumbnails` (built by `decide_duplicates` when there is an embedder and
    `verify_local` is on: the analysis then stores ORB signatures), a hash pair must also
    be confirmed by the stored thumbnails (keypoints or the whole frame, as in
    `ThumbnailCheck.confirm`): the perceptual hash of a nearly blank picture (a small
    drawing on a large white canvas) says little, and two such pictures collide at 0 bits.
    """
    pair_sets = []
    for kind, radius in options.hash_radius:
        column = SIGNATURE_PREFIX + kind
        if column not in pictures.column_names:
            raise ValueError(f"the signatures hold no {kind!r} hashes; rerun the analysis with that hash enabled")
        hashes = hashes_from_column(pictures.column(column))
        pairs = hamming_pairs(hashes, radius, method=options.search_method, kind="hash")
        if options.flip and (column + FLIP_SUFFIX) in pictures.column_names:
            mirrored = hashes_from_column(pictures.column(column + FLIP_SUFFIX))
            flipped = hamming_pairs(hashes, radius, queries=mirrored, method=options.search_method, kind="hash")
            pairs = Pairs.canonical(
                np.concatenate([pairs.i, flipped.i]),
                np.concatenate([pairs.j, flipped.j]),
                np.concatenate([pairs.distance, flipped.distance]),
                "hash",
            )
        if thumbnails is not None:
            agree = np.asarray([thumbnails.agree(i, j) for i, j in zip(pairs.i.tolist(), pairs.j.tolist())], dtype=bool)
            pairs = Pairs(pairs.i[agree], pairs.j[agree], pairs.distance[agree], pairs.kind)
        pair_sets.append(pairs)
    if options.embedder:
        embeddings = thumbnails.unit_embeddings if thumbnails is not None else _embeddings(pictures)
        pair_sets.append(cosine_pairs(embeddings, options.min_similarity, kind="embedding"))
        if thumbnails is not None:
            pair_sets.extend(thumbnails.verified_candidates())
    return pair_sets


_NOT_MATCHED = object()
# Candidate pairs measured and scored by the learned verifier at a time.
SCORED_TOGETHER = 8192
# Pictures whose unpacked features (keypoints, thumbnails, their mirror and margins: ~55 KiB) are
# kept between pairs.  Unpacking again costs ~0.2 ms against ~3.4 ms to measure a pair, so the
# bound costs little where candidates are scattered, and keeps a million pictures in bounds.
UNPACKED_PICTURES = 4096
# Candidate pairs a verifying worker process takes at a time, at most: small enough that the workers
# share the pairs evenly, large enough that the verdicts coming back cost little.
PAIRS_PER_TASK = 1024


@dataclass(frozen=True)
class OrbSignatures:
    """The ORB signature bytes of the pictures, read one at a time from where the table keeps them
    (a memory-mapped file when the pipeline decides), so that the decision holds no copy of them all."""

    name: str
    column: pa.ChunkedArray
    rows: np.ndarray  # picture -> row of `column`

    @classmethod
    def of(cls, table: pa.Table, rows: np.ndarray | None = None) -> "OrbSignatures":
        from dedupkit.signatures.local import SIGNATURE_NAME  # OpenCV: only when asked

        name = SIGNATURE_PREFIX + SIGNATURE_NAME
        if name not in table.column_names:
            raise ValueError("the signatures hold no ORB keypoints; rerun the analysis with local verification on")
        return cls(name, table.column(name), np.arange(table.num_rows) if rows is None else np.asarray(rows))

    def __getitem__(self, picture: int) -> bytes | None:
        return self.column[int(self.rows[picture])].as_py()

    def unpacked(self, picture: int):
        """The picture's `LocalFeatures`."""
        from dedupkit.signatures.local import unpack_orb

        return unpack_orb(self[picture])


class ThumbnailCheck:
    """Confirms candidate pairs with the ORB signatures (keypoints and thumbnails) of the pictures.

    With `min_copy_score` set, an embedding candidate is a copy when the learned verifier
    (dedupkit.search.copy_model) scores its measurements at that or more (a record and the
    keeper of a copy it is paired with: at `min_keeper_score`, when lower); otherwise, and
    for hash pairs always, when the thresholds of `CopyCriteria` accept it.  An embedding
    candidate that neither accepts is still a copy when its thumbnails, aligned by
    themselves, pass `min_aligned_appearance` (a flat picture cropped, padded or turned:
    `_aligned`).
    """

    def __init__(self, pictures: pa.Table, options: DedupOptions, orb: OrbSignatures | None = None,
                 workers: int = 1) -> None:
        """`orb`: the pictures' ORB signatures, when `pictures` does not hold them itself; `workers`: processes
        that verify the candidates (`verified_candidates`)."""
        from dedupkit.signatures.local import CopyCriteria  # OpenCV: only when asked

        self.signatures = orb if orb is not None else OrbSignatures.of(pictures)
        self.options = options
        self.criteria = CopyCriteria.of(options)
        # A hash pair already agrees globally: its whole frames need only the keypoint path's appearance bar.
        self.hash_criteria = replace(self.criteria, min_frame_appearance=options.min_appearance)
        self.model = None
        if options.min_copy_score is not None:
            from dedupkit.search.copy_model import load_copy_model

            self.model = load_copy_model()
        # Only the unit rows are kept: at a million 1,280-wide embeddings each float32 copy is 5 GB.
        self.unit_embeddings = _unit_rows(_embeddings(pictures))
        # The picture's `LocalFeatures`, the latest UNPACKED_PICTURES kept.
        self.features = lru_cache(maxsize=UNPACKED_PICTURES)(self.signatures.unpacked)
        self._hash_pair_keypoints: dict = {}
        self.workers = workers

    def pair_features(self, i: int, j: int) -> np.ndarray:
        """What the learned verifier reads about a pair (copy_model.FEATURE_NAMES): the keypoint and
        thumbnail measurements, then the embedding cosine."""
        from dedupkit.signatures.local import pair_measurements

        cosine = float(self.unit_embeddings[i] @ self.unit_embeddings[j])
        measurements = pair_measurements(self.features(i), self.features(j), mirror=self.options.flip)
        return np.append(measurements, np.float32(cosine))

    def confirm_with_keeper(self, record: int, keeper: int) -> tuple[str, float] | None:
        """`confirm` for a record paired with one of the keeper's copies but not with the keeper: as a
        candidate, with the learned verifier at `min_keeper_score` when that is the lower bar."""
        if self.model is None:
            return self.confirm(record, keeper)
        return self.confirm(record, keeper, min_score=min(self.options.min_copy_score, self.options.min_keeper_score))

    def confirm(self, i: int, j: int, criteria=None, *, min_score: float | None = None) -> tuple[str, float] | None:
        """How the pair is confirmed as a copy, or None: ("verified", 1 - the learned verifier's
        score) with `min_copy_score`, else ("local", 1 - inlier ratio) when keypoints confirm it,
        ("thumbnail", 1 - correlation) when the whole frames do; failing those, an embedding
        candidate may still be ("aligned", 1 - correlation) (`_aligned`).  `criteria` sets the whole-frame
        bar of the thresholds (the embedding candidates' by default; passing any criteria asks for
        the thresholds, as hash pairs do); keypoints are always held to the configured criteria.
        `min_score` replaces `min_copy_score` as the learned verifier's bar.

        Keypoint matching is not symmetric (ratio test from one side, appearance warped one
        way), so a pair is checked from both ends, and with `flip` against each end's mirror.
        """
        candidate = criteria is None
        if candidate and self.model is not None:
            features = self.pair_features(i, j)
            score = float(self.model.score(features)[0])
            return ("verified", 1.0 - score) if self._copies(features, score, min_score)[0] else self._aligned(i, j)
        from dedupkit.signatures.local import confirm_copy, confirm_whole_frame

        criteria = criteria or self.criteria
        first, second, mirror = self.features(i), self.features(j), self.options.flip
        # Hash pairs are mostly embedding candidates too: their keypoints are matched once and kept
        # until the pair comes back as a candidate (the two criteria differ only in the whole-frame
        # bar).  Only hash pairs are kept, so the memory is theirs, not every candidate's.
        verification = self._hash_pair_keypoints.pop((i, j), _NOT_MATCHED)
        if verification is _NOT_MATCHED:
            verification = (confirm_copy(first, second, self.criteria, mirror=mirror)
                            or confirm_copy(second, first, self.criteria, mirror=mirror))
            if criteria is self.hash_criteria:
                self._hash_pair_keypoints[(i, j)] = verification
        if verification is not None:
            return "local", 1.0 - verification.inlier_ratio
        verification = confirm_whole_frame(first, second, criteria, mirror=mirror)
        if verification is not None:
            return "thumbnail", 1.0 - verification.appearance
        return self._aligned(i, j) if candidate else None

    def _aligned(self, i: int, j: int) -> tuple[str, float] | None:
        """("aligned", 1 - correlation) when the thumbnails, aligned by themselves (no keypoints: a flat
        picture cropped, padded or turned), pass `min_aligned_appearance`; else None.  Embedding candidates only."""
        if self.options.min_aligned_appearance is None:
            return None
        from dedupkit.signatures.local import confirm_aligned_frame

        verification = confirm_aligned_frame(self.features(i), self.features(j), self.criteria)
        return None if verification is None else ("aligned", 1.0 - verification.appearance)

    def _copies(self, features: np.ndarray, scores, min_score: float | None = None) -> np.ndarray:
        """Which scored pairs the learned verifier makes copies: at `min_score` (`min_copy_score` by default),
        colours not in conflict."""
        from dedupkit.search.copy_model import aligned_hue_conflict

        bar = self.options.min_copy_score if min_score is None else min_score
        return (np.asarray(scores) >= bar) & (
            aligned_hue_conflict(features) <= self.options.max_hue_conflict)

    def agree(self, i: int, j: int) -> bool:
        """Whether the thumbnails confirm a hash pair; two signatures without thumbnails (plain pictures
        analysed before 2026-11-26 were stored as empty bytes) cannot tell."""
        if not self.features(i).appearance.size and not self.features(j).appearance.size:
            return True
        return self.confirm(i, j, self.hash_criteria) is not None

    def candidates(self) -> Pairs:
        """Embedding pairs at the loose `candidate_similarity`, each record's `max_candidates_per_record`
        nearest only: the loose search bounds the work (in crowds of look-alikes, flags or
        playing cards, a record has hundreds of candidates)."""
        return cosine_pairs(self.unit_embeddings, self.options.candidate_similarity, kind="local",
                            max_per_record=self.options.max_candidates_per_record)

    def candidate_features(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """`pair_features` of the pairs (first[k], second[k]), one row each (float32; zero rows for none)."""
        from dedupkit.search.copy_model import FEATURE_NAMES

        rows = [self.pair_features(i, j) for i, j in zip(first.tolist(), second.tolist())]
        return np.stack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)), np.float32)

    def verified_candidates(self) -> list[Pairs]:
        """The `candidates` that are copies, one pair set per way of confirming.

        With the learned verifier, "verified" (distance 1 - its score).  By the thresholds:
        "local" (ORB keypoints under one geometric transform; distance 1 - the share of the
        keypoints in the shared view that match) and "thumbnail" (a picture too small or plain
        for keypoints whose frame has the other's shape, one grey thumbnail scaled onto the
        other; distance 1 - their correlation).  Either way, last, "aligned": candidates left
        unconfirmed whose thumbnails align by themselves (distance 1 - their correlation).

        Each pair is verified on its own (~4 ms), so with `workers` above 1 the pairs are shared
        among that many processes forked from this one: they read the signatures where this
        process holds them (memory-mapped when the pipeline decides), and send back only each
        pair's kind and distance.  Where processes cannot be forked, the pairs are verified here.
        """
        candidates = self.candidates()
        kinds = ("verified", "aligned") if self.model is not None else ("local", "thumbnail", "aligned")
        kind, distance = self._verify_in_workers(candidates, kinds) if self._forks(len(candidates)) else \
            self.verify_range(candidates, kinds, 0, len(candidates))
        return [Pairs(candidates.i[kind == code], candidates.j[kind == code], distance[kind == code], name)
                for code, name in enumerate(kinds)]

    def verify_range(self, candidates: Pairs, kinds: tuple[str, ...], start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(the index in `kinds` of how each candidate start..stop is confirmed, -1 for none; float32 distances)."""
        count = stop - start
        kind, distance = np.full(count, -1, dtype=np.int8), np.zeros(count, dtype=np.float32)
        unconfirmed = range(count)
        if self.model is not None:
            for offset in range(0, count, SCORED_TOGETHER):  # bounds the features' and the walk's memory
                part = slice(start + offset, min(stop, start + offset + SCORED_TOGETHER))
                features = self.candidate_features(candidates.i[part], candidates.j[part])
                scores = self.model.score(features)
                kept = self._copies(features, scores)
                local = np.arange(offset, offset + len(scores))
                kind[local[kept]], distance[local[kept]] = kinds.index("verified"), 1.0 - scores[kept]
            unconfirmed = np.flatnonzero(kind < 0).tolist()
        for index in unconfirmed:
            i, j = int(candidates.i[start + index]), int(candidates.j[start + index])
            found = self._aligned(i, j) if self.model is not None else self.confirm(i, j)
            if found is not None:
                kind[index], distance[index] = kinds.index(found[0]), found[1]
        return kind, distance

    def _forks(self, pairs: int) -> bool:
        return self.workers > 1 and pairs > PAIRS_PER_TASK // 4 and "fork" in multiprocessing.get_all_start_methods()

    def _verify_in_workers(self, candidates: Pairs, kinds: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """`verify_range` of every candidate, in `workers` forked processes (see `verified_candidates`)."""
        global _FORKED_WORK
        size = max(1, min(PAIRS_PER_TASK, -(-len(candidates) // (4 * self.workers))))
        bounds = [(start, min(start + size, len(candidates))) for start in range(0, len(candidates), size)]
        _FORKED_WORK = (self, candidates, kinds)
        try:
            # Forked, not spawned: the workers inherit the signatures, the embeddings and the verifier.
            with ProcessPoolExecutor(min(self.workers, len(bounds)), mp_context=multiprocessing.get_context("fork")) as pool:
                parts = list(pool.map(_verify_forked_range, bounds))
        finally:
            _FORKED_WORK = None
        return np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])


# What the forked verifying workers read (set only while they run; see ThumbnailCheck._verify_in_workers).
_FORKED_WORK: tuple | None = None


def _verify_forked_range(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    check, candidates, kinds = _FORKED_WORK
    return check.verify_range(candidates, kinds, *bounds)


def _embeddings(pictures: pa.Table) -> np.ndarray:
    if EMBEDDING_COLUMN not in pictures.column_names:
        raise ValueError("the signatures hold no embeddings; rerun the analysis with an embedder")
    return embeddings_from_column(pictures.column(EMBEDDING_COLUMN))


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _column_or(table: pa.Table, name: str, default) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, default, dtype=np.int64)
    return np.asarray(pc.fill_null(table.column(name), default).to_numpy(zero_copy_only=False), dtype=np.int64)


def _stored_lossily(table: pa.Table) -> np.ndarray | None:
    if "format" not in table.column_names:
        return None
    formats = pc.fill_null(table.column("format"), "")
    return np.asarray(pc.is_in(formats, pa.array(sorted(LOSSY_FORMATS))).to_numpy(zero_copy_only=False), dtype=bool)


def _marked(table: pa.Table) -> np.ndarray | None:
    if "copyright_marked" not in table.column_names:
        return None
    return np.asarray(pc.fill_null(table.column("copyright_marked"), False).to_numpy(zero_copy_only=False), dtype=bool)
