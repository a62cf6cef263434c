"""Verify that cleaning worked: retrain a reference diffusion model on raw and cleaned
data, sample it, and measure how many training images its generations replicate."""

from dedupkit.verify.distances import (
    Neighbours,
    cosine_nearest,
    default_tile_grid,
    nearest_neighbours,
    paired_distance,
    pairwise_distances,
)
from dedupkit.verify.images import ImageSet, load_images
from dedupkit.verify.measure import Reference, measure_replication
from dedupkit.verify.metrics import ReplicationCriterion, wilson_interval
from dedupkit.verify.model import (
    ModelConfig,
    TrainConfig,
    TrainedModel,
    TrainProgress,
    build_unet,
    rich_progress,
    sample,
    train_model,
)
from dedupkit.verify.run import VerifyOptions, compare_arms, verify_arms, verify_generations

__all__ = [
    "ImageSet",
    "ModelConfig",
    "Neighbours",
    "Reference",
    "ReplicationCriterion",
    "TrainConfig",
    "TrainProgress",
    "TrainedModel",
    "VerifyOptions",
    "build_unet",
    "compare_arms",
    "cosine_nearest",
    "default_tile_grid",
    "load_images",
    "measure_replication",
    "nearest_neighbours",
    "paired_distance",
    "pairwise_distances",
    "rich_progress",
    "sample",
    "train_model",
    "verify_arms",
    "verify_generations",
    "wilson_interval",
]
