"""Carlini et al.'s image distance and nearest-neighbour search, vectorized in torch.

The distance between two images scaled to [0, 1] is the normalized l2,
sqrt(mean squared difference).  For larger images it is the maximum over a grid of
tiles of the per-tile normalized l2 (Carlini et al. 2023 use 4 x 4 tiles at 512 px):
a generation only counts as a copy when it matches its training image everywhere,
not just on average over a mostly-empty background.

Pairwise distances are computed as |a|^2 + |b|^2 - 2 a.b per tile with one matrix
product per tile, in float64 so that identical images come out at 0 rather than at
the square root of a rounding error, and in chunks so that a large training set never
needs a full queries x references x tiles tensor in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

TILED_ABOVE_RESOLUTION = 64
"""Images larger than this are compared tile by tile by default."""
CARLINI_TILE_GRID = 4


def default_tile_grid(resolution: int) -> int:
    """1 (whole image) for small images, Carlini's 4 x 4 grid for larger ones."""
    return 1 if resolution <= TILED_ABOVE_RESOLUTION else CARLINI_TILE_GRID


def as_unit_tensor(images) -> torch.Tensor:
    """Images as a float64 tensor (N, C, H, W) in [0, 1].

    Accepts uint8 arrays/tensors (0..255) in NCHW or NHWC (channels last when the
    last axis has 1, 3 or 4 entries and the second does not), or floats already in [0, 1].
    """
    tensor = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    if tensor.ndim != 4:
        raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(tensor.shape)}")
    if tensor.shape[-1] in (1, 3, 4) and tensor.shape[1] not in (1, 3, 4):
        tensor = tensor.permute(0, 3, 1, 2)
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float64) / 255.0
    return tensor.to(torch.float64)


def _tile_bounds(size: int, grid: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    return [(int(start), int(stop)) for start, stop in zip(edges[:-1], edges[1:]) if stop > start]


def _tiles(images: torch.Tensor, grid: int) -> list[torch.Tensor]:
    """Flattened tiles, each (N, pixels in tile); uneven sizes when the grid does not divide."""
    _, _, height, width = images.shape
    return [
        images[:, :, top:bottom, left:right].reshape(images.shape[0], -1)
        for top, bottom in _tile_bounds(height, grid)
        for left, right in _tile_bounds(width, grid)
    ]


def paired_distance(a, b, tile_grid: int = 1) -> torch.Tensor:
    """Distance between a[i] and b[i] for every i (same shapes)."""
    a, b = as_unit_tensor(a), as_unit_tensor(b)
    if a.shape != b.shape:
        raise ValueError(f"paired images must have the same shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    per_tile = [
        (tile_a - tile_b).pow(2).mean(dim=1) for tile_a, tile_b in zip(_tiles(a, tile_grid), _tiles(b, tile_grid))
    ]
    return torch.stack(per_tile, dim=1).amax(dim=1).sqrt()


def pairwise_distances(queries, references, tile_grid: int = 1) -> torch.Tensor:
    """Matrix (Q, R) of distances between every query and every reference."""
    queries, references = as_unit_tensor(queries), as_unit_tensor(references)
    if queries.shape[1:] != references.shape[1:]:
        raise ValueError(
            f"queries {tuple(queries.shape[1:])} and references {tuple(references.shape[1:])} "
            "must have the same channels and size; resize them to one resolution first"
        )
    worst = None
    for query_tile, reference_tile in zip(_tiles(queries, tile_grid), _tiles(references, tile_grid)):
        squared = (
            query_tile.pow(2).sum(1, keepdim=True)
            + reference_tile.pow(2).sum(1).unsqueeze(0)
            - 2.0 * query_tile @ reference_tile.T
        ) / query_tile.shape[1]
        worst = squared if worst is None else torch.maximum(worst, squared)
    return worst.clamp_min_(0.0).sqrt_()


@dataclass
class Neighbours:
    """The n nearest references of every query, nearest first."""

    index: np.ndarray
    """(Q, n) reference indices."""
    distance: np.ndarray
    """(Q, n) distances."""

    @property
    def nearest_index(self) -> np.ndarray:
        return self.index[:, 0]

    @property
    def nearest_distance(self) -> np.ndarray:
        return self.distance[:, 0]

    @property
    def relative_score(self) -> np.ndarray:
        """Carlini's ratio: nearest distance / mean distance to the n nearest."""
        mean = self.distance.mean(axis=1)
        return np.divide(self.nearest_distance, mean, out=np.zeros_like(mean), where=mean > 0)


def nearest_neighbours(
    queries,
    references,
    n_neighbours: int = 50,
    tile_grid: int = 1,
    max_elements: int = 20_000_000,
) -> Neighbours:
    """The `n_neighbours` nearest references of every query, streaming over reference chunks."""
    queries, references = as_unit_tensor(queries), as_unit_tensor(references)
    if len(references) == 0:
        raise ValueError("no reference (training) images to search")
    keep = min(n_neighbours, len(references))
    tiles = tile_grid * tile_grid
    query_chunk = max(1, min(len(queries), max_elements // (tiles * 64)))
    indices, distances = [], []
    for query_start in range(0, len(queries), query_chunk):
        query_block = queries[query_start : query_start + query_chunk]
        reference_chunk = max(keep, max_elements // max(1, len(query_block) * tiles))
        best_distance = best_index = None
        for reference_start in range(0, len(references), reference_chunk):
            block = pairwise_distances(query_block, references[reference_start : reference_start + reference_chunk], tile_grid)
            block_index = torch.arange(reference_start, reference_start + block.shape[1]).expand_as(block)
            if best_distance is not None:
                block = torch.cat([best_distance, block], dim=1)
                block_index = torch.cat([best_index, block_index], dim=1)
            best_distance, order = block.topk(min(keep, block.shape[1]), dim=1, largest=False, sorted=True)
            best_index = block_index.gather(1, order)
        indices.append(best_index)
        distances.append(best_distance)
    return Neighbours(index=torch.cat(indices).numpy(), distance=torch.cat(distances).numpy())


def cosine_nearest(query_embeddings, reference_embeddings) -> tuple[np.ndarray, np.ndarray]:
    """For every query embedding: the most cosine-similar reference and that similarity."""
    queries = torch.nn.functional.normalize(torch.as_tensor(np.asarray(query_embeddings), dtype=torch.float32), dim=1)
    references = torch.nn.functional.normalize(
        torch.as_tensor(np.asarray(reference_embeddings), dtype=torch.float32), dim=1
    )
    similarity, index = (queries @ references.T).max(dim=1)
    return index.numpy(), similarity.numpy()
