"""Pair searches against brute force on small sets: exact methods equal it, IVF recalls it."""

import numpy as np
import pytest

from dedupkit.search import Pairs, as_code_words, cosine_pairs, hamming_pairs


def planted_hashes(rng, n, near, max_bits):
    """Random 64-bit hashes where `near` rows are copies of others with 0..max_bits flipped."""
    hashes = rng.integers(0, 2**63, size=n, dtype=np.int64).view(np.uint64) * np.uint64(2) + rng.integers(0, 2, size=n).astype(np.uint64)
    sources, copies = rng.choice(n, size=(2, near), replace=False)
    flips = rng.random((near, 64)).argsort(axis=1) < rng.integers(0, max_bits + 1, size=(near, 1))
    hashes[copies] = hashes[sources] ^ np.packbits(flips, axis=1, bitorder="little").view(np.uint64).ravel()
    return hashes


def brute_force_hamming(codes, radius, queries=None):
    words = as_code_words(codes)
    query_words = words if queries is None else as_code_words(queries)
    distances = np.bitwise_count(query_words[:, None, :] ^ words[None, :, :]).sum(axis=2)
    i, j = np.nonzero(distances <= radius)
    if queries is None:
        keep = i < j
        i, j = i[keep], j[keep]
    return set(zip(i.tolist(), j.tolist(), distances[i, j].tolist()))


def as_set(pairs: Pairs):
    return set(zip(pairs.i.tolist(), pairs.j.tolist(), pairs.distance.tolist()))


@pytest.mark.parametrize("method", ["flat", "mih"])
@pytest.mark.parametrize("radius", [0, 2, 5, 10, 13])
def test_hash_pairs_equal_brute_force(method, radius):
    rng = np.random.default_rng(radius)
    hashes = planted_hashes(rng, 1500, near=400, max_bits=14)
    found = hamming_pairs(hashes, radius, method=method)
    assert as_set(found) == brute_force_hamming(hashes, radius)
    assert np.all(found.i < found.j)
    assert found.distance.max(initial=0) <= radius
    assert len(found) > 20  # the planted copies make this a real check, not an empty set


@pytest.mark.parametrize("method", ["flat", "mih"])
def test_binary_code_pairs_equal_brute_force(method):
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, size=(1200, 32), dtype=np.uint8)
    sources, copies = rng.choice(1200, size=(2, 300), replace=False)
    codes[copies] = codes[sources]
    codes[copies, :5] ^= rng.integers(0, 256, size=(300, 5), dtype=np.uint8)
    found = hamming_pairs(codes, 24, method=method)
    assert as_set(found) == brute_force_hamming(codes, 24)
    assert len(found) > 100


@pytest.mark.parametrize("method", ["flat", "mih"])
def test_hash_queries_against_other_codes(method):
    rng = np.random.default_rng(3)
    hashes = planted_hashes(rng, 800, near=0, max_bits=0)
    mirrored = hashes.copy()
    mirrored[:200] ^= np.uint64(0b1011)  # near the originals, like a flip-aware hash would be
    found = hamming_pairs(hashes, 4, queries=mirrored, method=method)
    assert as_set(found) == brute_force_hamming(hashes, 4, queries=mirrored)
    assert len(found) == 800


def test_hamming_pairs_accept_int64_and_reject_wrong_dtype():
    rng = np.random.default_rng(1)
    hashes = planted_hashes(rng, 300, near=50, max_bits=3)
    assert as_set(hamming_pairs(hashes.view(np.int64), 3)) == as_set(hamming_pairs(hashes, 3))
    with pytest.raises(ValueError, match="uint8"):
        hamming_pairs(hashes.astype(np.float64), 3)


@pytest.mark.parametrize("method", ["flat", "mih"])
def test_empty_and_single_code_sets(method):
    assert len(hamming_pairs(np.empty(0, dtype=np.uint64), 10, method=method)) == 0
    assert len(hamming_pairs(np.array([7], dtype=np.uint64), 10, method=method)) == 0
    with pytest.raises(ValueError, match="method"):
        hamming_pairs(np.array([7], dtype=np.uint64), 10, method="bktree")


def test_mih_reports_dense_duplicate_groups_completely():
    # 1,000 copies of one hash: far more pairs than a scan chunk holds at first.
    copies = 1000
    hashes = np.concatenate([np.full(copies, 0x0123456789ABCDEF, dtype=np.uint64), np.arange(100, dtype=np.uint64) << np.uint64(40)])
    found = hamming_pairs(hashes, 0, method="mih")
    assert len(found) == copies * (copies - 1) // 2
    assert np.unique(found.i * len(hashes) + found.j).shape[0] == len(found)
    assert found.j.max() < copies


def clustered_embeddings(rng, n, dim, copies):
    centres = rng.normal(size=(max(2, n // 50), dim))
    vectors = centres[rng.integers(0, centres.shape[0], n)] + 0.7 * rng.normal(size=(n, dim))
    sources, targets = rng.choice(n, size=(2, copies), replace=False)
    vectors[targets] = vectors[sources] + rng.uniform(0.02, 0.2, size=(copies, 1)) * rng.normal(size=(copies, dim)) / np.sqrt(dim) * np.linalg.norm(vectors[sources], axis=1, keepdims=True)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)


def unit_rows(vectors):
    x = vectors.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force_cosine(vectors, threshold, rows_per_block=2000):
    x = unit_rows(vectors)
    pairs = set()
    for start in range(0, x.shape[0], rows_per_block):
        i, j = np.nonzero(x[start : start + rows_per_block] @ x.T >= threshold)
        i += start
        pairs.update(zip(i[i < j].tolist(), j[i < j].tolist()))
    return pairs


def pair_similarity(vectors, i, j):
    x = unit_rows(vectors)
    return np.einsum("ij,ij->i", x[i], x[j])


def test_flat_cosine_pairs_equal_brute_force():
    rng = np.random.default_rng(0)
    vectors = clustered_embeddings(rng, 2000, 48, copies=300)
    expected = brute_force_cosine(vectors, 0.95)
    found = cosine_pairs(vectors, 0.95, method="flat")
    got = set(zip(found.i.tolist(), found.j.tolist()))
    # float32 search against float64 truth: only pairs on the threshold itself may differ.
    disagree = np.array(sorted(got ^ expected), dtype=np.int64).reshape(-1, 2)
    assert np.all(np.abs(pair_similarity(vectors, disagree[:, 0], disagree[:, 1]) - 0.95) < 1e-5)
    assert len(expected) > 100
    assert np.allclose(found.distance, 1 - pair_similarity(vectors, found.i, found.j), atol=1e-5)
    assert np.all(found.i < found.j)


def test_ivf_cosine_recall_and_threshold():
    rng = np.random.default_rng(1)
    vectors = clustered_embeddings(rng, 6_000, 64, copies=1000)
    expected = brute_force_cosine(vectors, 0.9)
    found = cosine_pairs(vectors, 0.9, method="ivf", nlist=40, nprobe=3)
    got = set(zip(found.i.tolist(), found.j.tolist()))
    assert len(expected) > 500
    assert len(got & expected) / len(expected) >= 0.95
    # Rescored exactly: nothing below the threshold comes back.
    assert np.all(pair_similarity(vectors, found.i, found.j) >= 0.9 - 1e-5)


def test_cosine_pairs_reject_bad_input():
    with pytest.raises(ValueError, match="float"):
        cosine_pairs(np.zeros((4, 8), dtype=np.int32), 0.9)
    with pytest.raises(ValueError, match="threshold"):
        cosine_pairs(np.zeros((4, 8), dtype=np.float32), 1.5)
    with pytest.raises(ValueError, match="method"):
        cosine_pairs(np.ones((4, 8), dtype=np.float32), 0.9, method="annoy")


@pytest.mark.parametrize("method", ["flat", "ivf"])
def test_max_per_record_keeps_each_records_nearest_pairs_against_brute_force(method, monkeypatch):
    # Small blocks, so that a record's nearest list is merged across many of them.
    monkeypatch.setattr("dedupkit.search.cosine.BLOCK_ROWS", 7)
    monkeypatch.setattr("dedupkit.search.cosine.BLOCK_COLUMNS", 11)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(60, 4)).astype(np.float32)
    everything = cosine_pairs(vectors, 0.3, method="flat")
    assert len(everything) > 300  # a crowd: many records have far more than `limit` candidates
    for limit in (1, 3, 10):
        expected = set()
        for record in range(60):
            mine = [(d, k) for k, (i, j, d) in enumerate(zip(everything.i, everything.j, everything.distance))
                    if record in (i, j)]
            expected |= {(int(everything.i[k]), int(everything.j[k])) for _, k in sorted(mine)[:limit]}
        # One IVF cell visited by all: the same comparisons as flat, through the cell code.
        capped = cosine_pairs(vectors, 0.3, method=method, nlist=1, max_per_record=limit, kind="local")
        assert set(zip(capped.i.tolist(), capped.j.tolist())) == expected
        assert np.allclose(capped.distance, 1 - pair_similarity(vectors, capped.i, capped.j), atol=1e-5)
        assert capped.kind == "local" and np.all(capped.i < capped.j)
    with pytest.raises(ValueError, match="at least 1"):
        cosine_pairs(vectors, 0.3, max_per_record=0)


def test_max_per_record_bounds_the_pairs_of_a_crowd():
    crowd = np.ones((500, 8), dtype=np.float32) + np.random.default_rng(0).normal(scale=1e-3, size=(500, 8))
    assert len(cosine_pairs(crowd, 0.9, max_per_record=5)) <= 500 * 5
