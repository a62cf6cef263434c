"""The mitigation benchmark: its planted duplication (fast), and the full run (about an hour on
2 free cores: slow, run with -m slow)."""

import json

import numpy as np
import pytest
from imagededup.methods import PHash

from conftest import REPOSITORY, load_module
from dedupkit.verify.measure import NEARER_THAN_MOST_REAL


def kept_share(left: str) -> float:
    kept, total = left.split("/")
    return int(kept) / int(total)


@pytest.mark.slow
def test_dedupkit_cleaning_cuts_replication_by_ninety_percent_and_keeps_the_distinct_images():
    # The reframed planting: copies a perceptual hash misses but the model sees unchanged.
    benchmark = load_module("benchmarks/mitigation.py")
    assert benchmark.main(["--config", "cpu-reframed", "--threads", "2"]) == 0
    report = json.loads((REPOSITORY / "benchmarks" / "results" / "mitigation_cpu-reframed.json").read_text())
    arms = {name: arm["distinct_groups_replicated"] for name, arm in report["arms"].items()}
    assert report["control"]["replicated"]["count"] == 0
    assert arms["raw"] > 0
    assert arms["dedupkit"] <= 0.1 * arms["raw"]
    assert arms["dedupkit"] <= arms["imagededup"]
    nearer = {name: arm[NEARER_THAN_MOST_REAL]["replicated"] for name, arm in report["arms"].items()}
    assert nearer["dedupkit"]["high"] < nearer["imagededup"]["low"]  # intervals apart
    singles = {name: kept_share(cleaning["left_by_kind"]["single"]) for name, cleaning in report["benchmark"]["cleaning"].items()}
    assert singles["dedupkit"] >= 0.98
    assert singles["dedupkit"] > singles["imagededup"]


def test_reframed_copies_train_as_the_original_but_escape_a_perceptual_hash():
    benchmark = load_module("benchmarks/mitigation.py")
    planting = benchmark.Planting(distinct=5, duplicated=2, min_copies=20, max_copies=20, variant_share=1.0,
                                  variant_edits=("reframe",), holdout=5)
    data = benchmark.plant(planting)
    phash = PHash(verbose=False)
    beyond_ten_bits = []
    for family in data.duplicated_families:
        members = np.flatnonzero(data.groups == family)
        original = members[data.kind[members] == "original"][0]
        for member in members[data.kind[members] == "variant"]:
            published = data.published[member]
            assert published.shape != (28, 28) and min(published.shape) == 28
            # The training view (centre crop to a square) is the original, pixel for pixel.
            assert np.array_equal(data.images[member], data.images[original])
            bits = bin(int(phash.encode_image(image_array=published), 16)
                       ^ int(phash.encode_image(image_array=data.published[original]), 16)).count("1")
            beyond_ten_bits.append(bits > 10)
    assert np.mean(beyond_ten_bits) > 0.5
