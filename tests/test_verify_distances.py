"""Carlini et al.'s distance, the nearest-neighbour search and the replica criteria on known pairs."""

import numpy as np
import pytest
import torch

from dedupkit.verify.datasets import FASHION_MNIST_ROOT, load_fashion_mnist
from dedupkit.verify.distances import (
    default_tile_grid,
    nearest_neighbours,
    paired_distance,
    pairwise_distances,
)
from dedupkit.verify.metrics import ReplicationCriterion

needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").exists(), reason="dataset-fashion-mnist not installed"
)


@pytest.fixture(scope="module")
def fashion():
    train, train_labels = load_fashion_mnist("train")
    test, test_labels = load_fashion_mnist("test")
    return train[:2000], train_labels[:2000], test[:500], test_labels[:500]


def test_identical_images_are_at_distance_zero():
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    assert torch.all(paired_distance(images, images) == 0)
    matrix = pairwise_distances(images, images)
    assert torch.allclose(matrix.diagonal(), torch.zeros(5, dtype=torch.float64), atol=1e-6)
    assert matrix.shape == (5, 5)


def test_distance_is_rms_of_the_unit_scaled_difference():
    black = np.zeros((1, 1, 8, 8), np.uint8)
    white = np.full((1, 1, 8, 8), 255, np.uint8)
    half = np.zeros((1, 1, 8, 8), np.uint8)
    half[..., :4] = 255
    assert paired_distance(black, white).item() == pytest.approx(1.0)
    assert paired_distance(black, half).item() == pytest.approx(np.sqrt(0.5))
    # The tiled distance is the worst tile: the right half differs completely.
    assert paired_distance(black, half, tile_grid=2).item() == pytest.approx(1.0)


@needs_fashion_mnist
def test_unrelated_images_are_far_apart(fashion):
    train, labels, _, _ = fashion
    trouser = train[np.flatnonzero(labels == 1)[0]][None]
    bag = train[np.flatnonzero(labels == 8)[0]][None]
    assert paired_distance(trouser, bag).item() > 0.25


@needs_fashion_mnist
def test_tiling_rejects_a_copy_that_differs_in_one_place_and_keeps_a_faithful_copy(fashion):
    train, _, _, _ = fashion
    # A 4 x 4 mosaic of real images stands for a 128 px picture.
    mosaic = np.block([[np.pad(train[4 * r + c], 2) for c in range(4)] for r in range(4)])[None, None]
    assert mosaic.shape[-1] == 128 and default_tile_grid(128) == 4
    altered = mosaic.copy()
    altered[..., :32, :32] = np.pad(train[100], 2)  # one tile replaced by another garment
    faithful = np.clip(mosaic.astype(int) + np.random.default_rng(1).integers(-4, 5, mosaic.shape), 0, 255).astype(np.uint8)
    carlini_threshold = 0.15
    whole, tiled = paired_distance(mosaic, altered).item(), paired_distance(mosaic, altered, tile_grid=4).item()
    assert whole < carlini_threshold < tiled
    assert paired_distance(mosaic, faithful, tile_grid=4).item() < 0.02


def test_nearest_neighbours_match_the_full_matrix_when_streamed_in_chunks():
    rng = np.random.default_rng(2)
    references = rng.integers(0, 256, (300, 1, 16, 16), dtype=np.uint8)
    queries = rng.integers(0, 256, (7, 1, 16, 16), dtype=np.uint8)
    queries[3] = references[123]
    full = pairwise_distances(queries, references, tile_grid=2).numpy()
    streamed = nearest_neighbours(queries, references, n_neighbours=10, tile_grid=2, max_elements=1000)
    assert np.array_equal(streamed.index, np.argsort(full, axis=1, kind="stable")[:, :10])
    assert np.allclose(streamed.distance, np.sort(full, axis=1)[:, :10], atol=1e-6)
    assert streamed.nearest_index[3] == 123 and streamed.nearest_distance[3] == pytest.approx(0, abs=1e-6)


@needs_fashion_mnist
def test_relative_criterion_flags_a_near_duplicate_but_not_another_item_of_the_same_class(fashion):
    train, labels, test, test_labels = fashion
    references = train[:1000]
    shirt = int(np.flatnonzero(labels[:1000] == 6)[0])
    rng = np.random.default_rng(3)
    near_duplicate = np.clip(references[shirt] * 0.95 + rng.normal(0, 3, (28, 28)), 0, 255).astype(np.uint8)
    other_shirt = test[np.flatnonzero(test_labels == 6)[0]]
    neighbours = nearest_neighbours(np.stack([near_duplicate, other_shirt]), references, n_neighbours=50)
    flags = ReplicationCriterion(mode="relative", alpha=0.5).flags(neighbours)
    assert neighbours.nearest_index[0] == shirt
    assert flags.tolist() == [True, False]


def test_calibration_tightens_until_no_control_image_is_flagged_and_never_loosens():
    rng = np.random.default_rng(4)
    references = rng.integers(0, 256, (60, 1, 8, 8), dtype=np.uint8)
    control = np.clip(references[:5].astype(int) + rng.integers(-6, 7, (5, 1, 8, 8)), 0, 255).astype(np.uint8)
    control_neighbours = nearest_neighbours(control, references, n_neighbours=20)
    loose = ReplicationCriterion(mode="both", max_distance=0.5, alpha=0.9, n_neighbours=20)
    assert loose.flags(control_neighbours).any()
    tightened = loose.calibrate(control_neighbours)
    assert not tightened.flags(control_neighbours).any()
    assert tightened.max_distance <= loose.max_distance and tightened.alpha <= loose.alpha
    strict = ReplicationCriterion(max_distance=1e-4)
    assert strict.calibrate(control_neighbours) is strict
