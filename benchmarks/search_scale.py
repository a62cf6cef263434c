"""Scale of the global near-duplicate search, against imagededup measured in the same run.

(a) Hashes: n random 64-bit hashes of which a tenth are planted copies of others with
    0..10 bits flipped (groups of 2 to 5, like resized / recompressed copies), all
    pairs within Hamming 10 with `hamming_pairs` (exact).  Checked: every planted
    pair is found, and the pairs of 1,000 sampled rows equal brute force.
    imagededup's `PHash().find_duplicates(encoding_map=..., max_distance_threshold=10)`
    is timed at 5k, 10k and 20k hashes, with dedupkit on the same sets, and its time
    extrapolated to n with the power law fitted to those three points.
(b) Embeddings: n x 512 float16 unit vectors in topic clusters (within-topic cosine
    ~0.3-0.5, like CLIP features of one subject) of which a tenth are planted
    near-duplicates (cosine ~0.93-0.999 to their source), all pairs at cosine >= 0.95
    with `cosine_pairs` (IVF above 30k vectors).  Recall of the exact pairs is measured
    on sampled query rows (half uniform, half planted copies) against brute force.
(c) Candidates: the same embeddings searched the way local verification asks for its
    candidates (`DedupOptions.candidate_similarity`, each record's
    `max_candidates_per_record` nearest): the loose search that bounds the keypoint checks.
    Recall: of each sampled query's exact nearest list (brute force), the share found.

Each part runs in its own process so its peak memory (ru_maxrss) is its own; the big
search runs before imagededup so that the peak is dedupkit's.
The machine is shared with other workers (2 cores): wall times depend on their load,
so CPU seconds and the load average are recorded beside them.

    .venv/bin/python benchmarks/search_scale.py [--n 1000000] [--dim 512] [--part all]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "search_scale.json"
HASH_RADIUS = 10
MIN_COSINE = 0.95
IMAGEDEDUP_SIZES = (5_000, 10_000, 20_000)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def planted_groups(rng, n, share=0.1):
    """(source, copy) rows: `share` of the rows become copies, in groups of 2-5 per source."""
    copies_wanted = int(n * share)
    group_sizes = rng.integers(1, 5, size=copies_wanted)  # copies per source
    group_sizes = group_sizes[: np.searchsorted(np.cumsum(group_sizes), copies_wanted) + 1]
    rows = rng.permutation(n)
    sources = rows[: group_sizes.shape[0]]
    copies = rows[group_sizes.shape[0] : group_sizes.shape[0] + group_sizes.sum()]
    return np.repeat(sources, group_sizes), copies


def make_hashes(rng, n):
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    sources, copies = planted_groups(rng, n)
    flipped = rng.integers(0, HASH_RADIUS + 1, size=copies.shape[0])
    noise = np.zeros(copies.shape[0], dtype=np.uint64)
    for bit_count in range(1, HASH_RADIUS + 1):
        rows = np.flatnonzero(flipped >= bit_count)
        noise[rows] |= np.uint64(1) << rng.integers(0, 64, size=rows.shape[0]).astype(np.uint64)
    hashes[copies] = hashes[sources] ^ noise
    return hashes, sources, copies


def imagededup_pairs(hashes) -> tuple[int, float, float]:
    from imagededup.methods import PHash

    encoding_map = {f"img{row}": f"{value:016x}" for row, value in enumerate(hashes.tolist())}
    duplicates, wall, cpu = timed(
        PHash(verbose=False).find_duplicates, encoding_map=encoding_map, max_distance_threshold=HASH_RADIUS
    )
    return sum(len(found) for found in duplicates.values()) // 2, wall, cpu


def hash_part(n: int, seed: int) -> dict:
    from dedupkit.search import hamming_pairs

    rng = np.random.default_rng(seed)
    _, compile_wall, _ = timed(hamming_pairs, make_hashes(rng, 25_000)[0], HASH_RADIUS, method="mih")

    hashes, sources, copies = make_hashes(rng, n)
    rss_before = peak_rss_mib()
    pairs, wall, cpu = timed(hamming_pairs, hashes, HASH_RADIUS)
    peak_after_search = peak_rss_mib()
    found = set((pairs.i * n + pairs.j).tolist())
    planted = np.bitwise_count(hashes[sources] ^ hashes[copies]) <= HASH_RADIUS
    lo, hi = np.minimum(sources, copies)[planted], np.maximum(sources, copies)[planted]
    planted_found = float(np.mean([key in found for key in (lo * n + hi).tolist()]))

    sample = rng.choice(n, size=1000, replace=False)
    expected = set()
    for row in sample.tolist():
        near = np.flatnonzero(np.bitwise_count(hashes ^ hashes[row]) <= HASH_RADIUS)
        expected.update(min(row, other) * n + max(row, other) for other in near.tolist() if other != row)
    in_sample = np.isin(pairs.i, sample) | np.isin(pairs.j, sample)
    got = set((pairs.i[in_sample] * n + pairs.j[in_sample]).tolist())
    small = []
    for size in IMAGEDEDUP_SIZES:
        hashes = make_hashes(rng, size)[0]
        ours, ours_wall, ours_cpu = timed(hamming_pairs, hashes, HASH_RADIUS)
        theirs, theirs_wall, theirs_cpu = imagededup_pairs(hashes)
        small.append({
            "n": size, "pairs_dedupkit": len(ours), "pairs_imagededup": theirs,
            "dedupkit_wall_s": ours_wall, "dedupkit_cpu_s": ours_cpu,
            "imagededup_wall_s": theirs_wall, "imagededup_cpu_s": theirs_cpu,
        })
        print(f"  n={size:>6}: dedupkit {ours_wall:7.3f} s, imagededup {theirs_wall:7.2f} s, "
              f"pairs {len(ours)} / {theirs}", flush=True)
    exponent, log_scale = np.polyfit(np.log([s["n"] for s in small]), np.log([s["imagededup_wall_s"] for s in small]), 1)
    imagededup_at_n = float(np.exp(log_scale) * n**exponent)

    return {
        "n": n, "radius": HASH_RADIUS, "method": "mih" if n > 20_000 else "flat",
        "pairs": len(pairs), "wall_s": wall, "cpu_s": cpu, "numba_compile_wall_s": compile_wall,
        "planted_pairs_found": planted_found,
        "sample_rows": int(sample.shape[0]), "sample_exact_pairs": len(expected),
        "sample_matches_brute_force": got == expected,
        "peak_rss_mib": peak_after_search, "peak_rss_before_search_mib": rss_before,
        "imagededup_small_sets": small, "imagededup_fitted_exponent": float(exponent),
        "imagededup_extrapolated_wall_s": imagededup_at_n,
        "speedup_vs_imagededup_extrapolated": imagededup_at_n / wall,
        "target_wall_s": 60,
    }


def make_embeddings(rng, n, dim, block=100_000):
    topics = rng.normal(size=(max(10, n // 1000), dim)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    embeddings = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, block):
        rows = min(block, n - start)
        vectors = topics[rng.integers(0, topics.shape[0], rows)] * 0.6 + rng.normal(size=(rows, dim)).astype(np.float32) / np.sqrt(dim)
        embeddings[start : start + rows] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sources, copies = planted_groups(rng, n)
    for start in range(0, copies.shape[0], block):
        src, dst = sources[start : start + block], copies[start : start + block]
        noise = rng.normal(size=(dst.shape[0], dim)).astype(np.float32) / np.sqrt(dim)
        vectors = embeddings[src].astype(np.float32) + rng.uniform(0.05, 0.4, size=(dst.shape[0], 1)).astype(np.float32) * noise
        embeddings[dst] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return embeddings, copies


def timed_embedding_search(n: int, dim: int, seed: int, nprobe: int, recall_queries: int, min_cosine: float,
                           max_per_record: int | None = None) -> tuple[dict, np.ndarray, np.ndarray, object]:
    """`cosine_pairs` over n planted embeddings, timed: its numbers, the embeddings and sampled
    query rows for the recall (half uniform, half planted copies)."""
    from dedupkit.search import cosine_pairs
    from dedupkit.search.cosine import FLAT_MAX_VECTORS, default_nlist

    rng = np.random.default_rng(seed)
    embeddings, copies = make_embeddings(rng, n, dim)
    rss_before = peak_rss_mib()
    pairs, wall, cpu = timed(cosine_pairs, embeddings, min_cosine, nprobe=nprobe, max_per_record=max_per_record)
    peak_after_search = peak_rss_mib()
    half = recall_queries // 2
    sample = np.unique(np.concatenate([rng.choice(n, size=half, replace=False), rng.choice(copies, size=half, replace=False)]))
    numbers = {
        "n": n, "dim": dim, "min_cosine": min_cosine, "storage": "float16",
        "method": "flat" if n <= FLAT_MAX_VECTORS else "ivf", "nlist": default_nlist(n), "nprobe": nprobe,
        "pairs": len(pairs), "wall_s": wall, "cpu_s": cpu, "sample_queries": int(sample.shape[0]),
        "peak_rss_mib": peak_after_search, "peak_rss_before_search_mib": rss_before,
    }
    return numbers, embeddings, sample, pairs


def embedding_part(n: int, dim: int, seed: int, nprobe: int, recall_queries: int) -> dict:
    numbers, embeddings, sample, pairs = timed_embedding_search(n, dim, seed, nprobe, recall_queries, MIN_COSINE)
    queries = embeddings[sample].astype(np.float32)
    expected = set()
    for start in range(0, n, 50_000):
        block = embeddings[start : start + 50_000].astype(np.float32)
        q, other = np.nonzero(queries @ block.T >= MIN_COSINE)
        rows, other = sample[q], other + start
        expected.update((np.minimum(rows, other) * n + np.maximum(rows, other))[rows != other].tolist())
    in_sample = np.isin(pairs.i, sample) | np.isin(pairs.j, sample)
    got = set((pairs.i[in_sample] * n + pairs.j[in_sample]).tolist())
    recall = len(got & expected) / max(1, len(expected))
    return {
        **numbers,
        "max_distance": float(pairs.distance.max(initial=0)),
        "sample_exact_pairs": len(expected),
        "recall_on_sample": recall, "false_pairs_on_sample": len(got - expected),
        "target_wall_s": 600, "target_recall": 0.95,
    }


def candidate_part(n: int, dim: int, seed: int, nprobe: int, recall_queries: int) -> dict:
    from dedupkit.search.options import DedupOptions

    defaults = DedupOptions()
    threshold, per_record = defaults.candidate_similarity, defaults.max_candidates_per_record
    numbers, embeddings, sample, pairs = timed_embedding_search(n, dim, seed, nprobe, recall_queries, threshold,
                                                               max_per_record=per_record)
    queries = embeddings[sample].astype(np.float32)
    best_similarity = np.full((sample.shape[0], per_record), -np.inf, dtype=np.float32)
    best_row = np.full((sample.shape[0], per_record), -1, dtype=np.int64)
    for start in range(0, n, 50_000):
        similarity = queries @ embeddings[start : start + 50_000].astype(np.float32).T
        similarity[sample[:, None] == np.arange(start, start + similarity.shape[1])[None, :]] = -np.inf
        merged_similarity = np.concatenate([best_similarity, similarity], axis=1)
        merged_row = np.concatenate([best_row, np.broadcast_to(np.arange(start, start + similarity.shape[1]), similarity.shape)], axis=1)
        keep = np.argpartition(-merged_similarity, per_record - 1, axis=1)[:, :per_record]
        best_similarity = np.take_along_axis(merged_similarity, keep, axis=1)
        best_row = np.take_along_axis(merged_row, keep, axis=1)
    expected = {(int(q), int(other)) for q, others, similarities in zip(sample, best_row, best_similarity)
                for other, similarity in zip(others, similarities) if similarity >= threshold}
    found = set(zip(pairs.i.tolist(), pairs.j.tolist()))
    hits = sum(1 for q, other in expected if (min(q, other), max(q, other)) in found)
    return {
        **numbers, "max_per_record": per_record,
        "sample_nearest_expected": len(expected), "recall_on_sample": hits / max(1, len(expected)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="hashes and embeddings to search")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--nprobe", type=int, default=4)
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--part", choices=("all", "hash", "embedding", "candidates"), default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_json:
        if args.part == "hash":
            result = hash_part(args.n, args.seed)
        elif args.part == "candidates":
            result = candidate_part(args.n, args.dim, args.seed, args.nprobe, args.recall_queries)
        else:
            result = embedding_part(args.n, args.dim, args.seed, args.nprobe, args.recall_queries)
        args.child_json.write_text(json.dumps(result))
        return

    report = {
        "conditions": {
            "cpus": len(os.sched_getaffinity(0)),
            "shared_machine": "2 cores shared with other workers' jobs; see load averages",
            "load_average_at_start": os.getloadavg(),
        }
    }
    for part in ("embedding", "candidates", "hash") if args.part == "all" else (args.part,):
        print(f"{part} search, n={args.n:,}", flush=True)
        child_json = args.out.with_suffix(f".{part}.partial.json")
        subprocess.run(
            [sys.executable, __file__, "--part", part, "--n", str(args.n), "--dim", str(args.dim),
             "--nprobe", str(args.nprobe), "--recall-queries", str(args.recall_queries),
             "--seed", str(args.seed), "--child-json", str(child_json)],
            check=True,
        )
        report[part] = json.loads(child_json.read_text())
        child_json.unlink()
        report[part]["load_average_after"] = os.getloadavg()
        summarize(part, report[part])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def summarize(part: str, result: dict) -> None:
    if part == "hash":
        print(f"  dedupkit: {result['pairs']:,} pairs within {result['radius']} bits in {result['wall_s']:.1f} s wall "
              f"({result['cpu_s']:.1f} s CPU), target {result['target_wall_s']} s; peak {result['peak_rss_mib']:.0f} MiB")
        print(f"  planted pairs found: {result['planted_pairs_found']:.4f}; "
              f"sample of {result['sample_rows']} rows equals brute force: {result['sample_matches_brute_force']}")
        print(f"  imagededup extrapolated to n: {result['imagededup_extrapolated_wall_s']:.0f} s "
              f"(time ~ n^{result['imagededup_fitted_exponent']:.2f}); "
              f"dedupkit is {result['speedup_vs_imagededup_extrapolated']:.0f}x faster")
    elif part == "candidates":
        print(f"  dedupkit ({result['method']}, nprobe {result['nprobe']}): {result['pairs']:,} candidate pairs "
              f"(cosine >= {result['min_cosine']}, each record's {result['max_per_record']} nearest) in "
              f"{result['wall_s']:.1f} s wall ({result['cpu_s']:.1f} s CPU); peak {result['peak_rss_mib']:.0f} MiB")
        print(f"  recall of the exact nearest lists of {result['sample_queries']} sampled queries "
              f"({result['sample_nearest_expected']} neighbours): {result['recall_on_sample']:.4f}")
    else:
        print(f"  dedupkit ({result['method']}, nprobe {result['nprobe']}): {result['pairs']:,} pairs at cosine >= "
              f"{result['min_cosine']} in {result['wall_s']:.1f} s wall ({result['cpu_s']:.1f} s CPU), target "
              f"{result['target_wall_s']} s; peak {result['peak_rss_mib']:.0f} MiB")
        print(f"  recall on {result['sample_queries']} sampled queries ({result['sample_exact_pairs']} exact pairs): "
              f"{result['recall_on_sample']:.4f} (target {result['target_recall']})")


if __name__ == "__main__":
    main()
