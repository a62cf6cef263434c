"""Clusters: chaining guard, keep policies, evidence and distances per copy."""

import numpy as np
import pytest

from dedupkit.search import NO_CLUSTER, Pairs, cluster_pairs, hamming_pairs, keeper_rank
from dedupkit.search.pairs import describe_match


def hash_pairs(edges, distances=None):
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    distances = np.arange(1, len(edges) + 1) if distances is None else np.asarray(distances)
    return Pairs.canonical(edges[:, 0], edges[:, 1], distances, "hash")


def test_chain_does_not_drop_the_far_end():
    # A~B and B~C, but A and C are far apart: C must survive, never a copy of A.
    a, b, c = 0, 1, 2
    clusters = cluster_pairs(3, [hash_pairs([(a, b), (b, c)], [4, 6])], pixels=np.array([300, 200, 100]))
    assert clusters.keeper.tolist() == [a, a, c]
    assert clusters.cluster_id[a] == clusters.cluster_id[b] != NO_CLUSTER
    assert clusters.cluster_id[c] == NO_CLUSTER
    assert clusters.dup_kind.tolist() == ["", "hash", ""]
    assert clusters.distance[b] == 4 and np.isnan(clusters.distance[[a, c]]).all()


def test_split_off_members_form_their_own_cluster_around_a_new_keeper():
    # Chain 0-1-2-3-4 with 0 the largest: 1 goes to 0; 2..4 regroup, 2 keeps, 3 is its copy;
    # 4 is only near 3, which is already a copy, so 4 stays on its own.
    clusters = cluster_pairs(5, [hash_pairs([(0, 1), (1, 2), (2, 3), (3, 4)])], pixels=np.array([500, 400, 300, 200, 100]))
    assert clusters.keeper.tolist() == [0, 0, 2, 2, 4]
    assert clusters.cluster_id[0] == clusters.cluster_id[1]
    assert clusters.cluster_id[2] == clusters.cluster_id[3] != clusters.cluster_id[0]
    assert clusters.cluster_id[4] == NO_CLUSTER
    # Nothing disappears: every record is either kept or tied to a kept record it is paired with.
    kept = ~clusters.is_copy
    assert kept[clusters.keeper].all()


def test_a_copy_of_a_copy_joins_the_keeper_only_when_checked_against_it():
    # 0 (an upscaled copy, kept) ~ 1 (the original) ~ 2 (a crop of the original) ~ 3 (its greyscale twin).
    # 2 and 3 were never paired with 0; the direct check decides, and each record is asked once.
    pairs = [hash_pairs([(0, 1), (1, 2), (2, 3)])]
    pixels = np.array([400, 300, 200, 100])
    asked = []

    def keeper_agrees_with(accepted):
        def confirm(record, keeper):
            asked.append((record, keeper))
            return ("local", 0.25) if record in accepted else None
        return confirm

    clusters = cluster_pairs(4, pairs, pixels=pixels, confirm_with_keeper=keeper_agrees_with({2, 3}))
    assert clusters.keeper.tolist() == [0, 0, 0, 0]
    assert clusters.dup_kind.tolist() == ["", "hash", "local", "local"] and clusters.distance[2] == 0.25
    assert asked == [(2, 0), (3, 0)]  # 3 is reached through 2 once 2 is a copy

    asked.clear()
    refused = cluster_pairs(4, pairs, pixels=pixels, confirm_with_keeper=keeper_agrees_with(set()))
    assert refused.keeper.tolist() == [0, 0, 2, 2]  # as without the check: 2 and 3 regroup on their own
    assert asked == [(2, 0)]  # 3 is paired with no copy of 0
    assert refused.keeper.tolist() == cluster_pairs(4, pairs, pixels=pixels).keeper.tolist()


def test_every_copy_is_paired_with_its_keeper_on_random_graphs():
    rng = np.random.default_rng(5)
    n = 400
    hashes = rng.integers(0, 2**63, size=n, dtype=np.int64).view(np.uint64)
    # Build chains of hashes, each a few bits from the one before, so chaining is rife.
    for start in range(0, n, 8):
        for k in range(start + 1, start + 8):
            hashes[k] = hashes[k - 1] ^ (np.uint64(1) << np.uint64(rng.integers(0, 64))) ^ (np.uint64(1) << np.uint64(rng.integers(0, 64)))
    pairs = hamming_pairs(hashes, 4)
    clusters = cluster_pairs(n, [pairs], pixels=rng.integers(1, 10_000, size=n))
    copies = np.flatnonzero(clusters.is_copy)
    assert copies.size > 50
    keepers = clusters.keeper[copies]
    true_distance = np.bitwise_count(hashes[copies] ^ hashes[keepers])
    assert np.all(true_distance <= 4)
    assert np.array_equal(true_distance, clusters.distance[copies])
    assert not clusters.is_copy[keepers].any()
    assert np.all(clusters.cluster_id[copies] == clusters.cluster_id[keepers])


@pytest.mark.parametrize(
    ("keep", "expected_keeper"),
    [("largest", 2), ("first", 0)],
)
def test_keep_policies(keep, expected_keeper):
    pairs = hash_pairs([(0, 1), (0, 2), (1, 2)])
    clusters = cluster_pairs(3, [pairs], keep=keep, pixels=np.array([100, 100, 400]))
    assert clusters.keeper.tolist() == [expected_keeper] * 3


def test_largest_breaks_ties_by_input_order():
    clusters = cluster_pairs(3, [hash_pairs([(0, 1), (1, 2), (0, 2)])], pixels=np.array([50, 80, 80]))
    assert clusters.keeper.tolist() == [1, 1, 1]


def test_largest_prefers_a_lossless_record_among_as_many_pixels():
    pairs = hash_pairs([(0, 1), (1, 2), (0, 2)])
    lossy = np.array([True, True, False])
    assert cluster_pairs(3, [pairs], pixels=np.array([80, 80, 80]), lossy=lossy).keeper.tolist() == [2, 2, 2]
    # More pixels still win, lossy or not; among lossy records of one size, input order.
    assert cluster_pairs(3, [pairs], pixels=np.array([90, 80, 80]), lossy=lossy).keeper.tolist() == [0, 0, 0]
    assert cluster_pairs(3, [pairs], pixels=np.array([80, 80, 70]), lossy=lossy).keeper.tolist() == [0, 0, 0]
    marked = np.array([False, False, True])
    ranked = keeper_rank(3, "prefer-unmarked", pixels=np.array([80, 80, 80]), copyright_marked=marked, lossy=lossy)
    assert ranked.tolist() == [0, 1, 2]
    assert keeper_rank(3, "first", lossy=lossy).tolist() == [0, 1, 2]


def test_prefer_unmarked_keeps_an_unmarked_copy_even_when_smaller():
    pairs = hash_pairs([(0, 1), (0, 2), (1, 2)])
    pixels = np.array([900, 100, 400])
    marked = np.array([True, False, False])
    clusters = cluster_pairs(3, [pairs], keep="prefer-unmarked", pixels=pixels, copyright_marked=marked)
    assert clusters.keeper.tolist() == [2, 2, 2]
    all_marked = cluster_pairs(3, [pairs], keep="prefer-unmarked", pixels=pixels, copyright_marked=np.ones(3, bool))
    assert all_marked.keeper.tolist() == [0, 0, 0]


def test_keep_policy_errors_say_what_is_missing():
    with pytest.raises(ValueError, match="pixel"):
        keeper_rank(3, "largest")
    with pytest.raises(ValueError, match="copyright"):
        keeper_rank(3, "prefer-unmarked")
    with pytest.raises(ValueError, match="keep policy"):
        keeper_rank(3, "random")


def test_several_signatures_and_the_evidence_that_ties_each_copy():
    exact = Pairs.canonical([0], [1], [0], "exact")
    hashes = hash_pairs([(0, 1), (0, 2), (3, 4)], [2, 5, 3])
    embeddings = Pairs.canonical([0, 5, 4], [2, 0, 3], [0.03, 0.01, 0.02], "embedding")
    clusters = cluster_pairs(7, [exact, hashes, embeddings], keep="first")
    assert clusters.keeper.tolist() == [0, 0, 0, 3, 3, 0, 6]
    assert clusters.dup_kind.tolist() == ["", "exact", "hash", "", "hash", "embedding", ""]
    assert clusters.distance[[1, 2, 4]].tolist() == [0, 5, 3]
    assert clusters.distance[5] == pytest.approx(0.01)
    assert clusters.cluster_id[6] == NO_CLUSTER
    assert len({clusters.cluster_id[0], clusters.cluster_id[3]}) == 2
    columns = clusters.manifest_columns([f"k{r}" for r in range(7)])
    assert columns["keeper_key"] == ["k0", "k0", "k0", "k3", "k3", "k0", "k6"]


def test_no_pairs_means_no_clusters():
    clusters = cluster_pairs(4, [Pairs.empty("hash")], keep="first")
    assert clusters.cluster_id.tolist() == [NO_CLUSTER] * 4
    assert clusters.keeper.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="pair rows"):
        cluster_pairs(2, [hash_pairs([(0, 5)])], keep="first")


def test_a_match_is_described_in_its_kind_s_unit():
    assert describe_match("exact", 0.0) == "exact copy"
    assert describe_match("hash", 6.0) == "perceptual hash within 6 bits"
    assert describe_match("embedding", 0.0314) == "embedding cosine 0.969"
    assert describe_match("local", 0.25) == "local features: 75% of the shared keypoints in one geometric transform"
    assert describe_match("thumbnail", 0.012) == "same frame: thumbnails correlate at 0.988"
    assert describe_match("verified", 0.125) == "keypoints and thumbnails: copy score 0.875"
    assert describe_match("aligned", 0.004) == "thumbnails aligned without keypoints correlate at 0.996"
    assert describe_match("hash", None) == "hash"
