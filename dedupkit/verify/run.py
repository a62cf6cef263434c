"""The two verify modes: retrain-and-compare (`verify_arms`) and outside generations
(`verify_generations`).  Each does all the work and writes report.json + report.html;
the CLI only parses options into these arguments.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np
from PIL import Image

from dedupkit.verify.images import ImageSet, list_image_files, load_images
from dedupkit.verify.measure import Embedder, Reference, WatermarkDetector, measure_replication
from dedupkit.verify.metrics import ReplicationCriterion
from dedupkit.verify.model import (
    ModelConfig,
    TrainConfig,
    TrainProgress,
    pick_device,
    run_fingerprint,
    sample,
    train_model,
)
from dedupkit.verify.report import write_report

ArmProgress = Callable[[str, TrainProgress], None]
"""Called with the arm's name and its training progress."""


@dataclass(frozen=True)
class VerifyOptions:
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    samples: int = 500
    """Generations sampled from each arm's model."""
    inference_steps: int = 50
    """DDIM steps per generation."""
    sample_seed: int = 1
    criterion: ReplicationCriterion = ReplicationCriterion()
    calibrate: bool = True
    """Tighten the criterion until it flags none of the held-out real images."""

    @property
    def grayscale(self) -> bool:
        return self.model.channels == 1


@dataclass
class ArmResult:
    name: str
    training_images: int
    parameters: int
    train_seconds: float
    trained_on: str
    final_loss: float
    sample_seconds: float
    generations: ImageSet = field(repr=False)


def train_and_sample(
    name: str,
    training: ImageSet,
    options: VerifyOptions,
    checkpoint_dir: Path | None,
    progress: ArmProgress | None = None,
) -> ArmResult:
    """Train the reference model on one arm's data and sample its generations."""
    callback = (lambda report: progress(name, report)) if progress else None
    trained = train_model(training, options.model, options.train, checkpoint_dir, callback)
    started = time.perf_counter()
    pixels = sample(trained, options.samples, options.sample_seed, options.inference_steps)
    keys = [f"{name}/{i:05d}" for i in range(len(pixels))]
    tail = trained.losses[-100:]
    return ArmResult(
        name=name,
        training_images=len(training),
        parameters=trained.parameters,
        train_seconds=trained.seconds,
        trained_on=trained.trained_on,
        final_loss=float(np.mean(tail)) if tail else float("nan"),
        sample_seconds=time.perf_counter() - started,
        generations=ImageSet(pixels, keys),
    )


def compare_arms(
    arms: Mapping[str, object],
    reference,
    out_dir: str | Path,
    *,
    holdout=None,
    options: VerifyOptions = VerifyOptions(),
    groups: Sequence[Hashable] | None = None,
    embed: Embedder | None = None,
    watermark_detector: WatermarkDetector | None = None,
    progress: ArmProgress | None = None,
    extra_report: dict | None = None,
    work_dir: str | Path | None = None,
) -> dict:
    """Train the same model with the same budget and seed on every arm, sample each, and
    measure replication of `reference` (the raw training data) in their generations.

    `arms` maps a name to training data (anything `load_images` reads); the first arm is
    the baseline the others' reductions are computed against.  `groups[i]` is the
    duplicate group of reference image i (default: exact pixel copies).  Checkpoints and
    generations go to `work_dir` (default out_dir), one checkpoint folder per arm and
    training run, so an interrupted run resumes where it stopped and a changed arm
    starts afresh.
    """
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out
    resolution, grayscale = options.model.resolution, options.grayscale
    reference_set = Reference.from_training(load_images(reference, resolution, grayscale), groups)
    holdout_set = load_images(holdout, resolution, grayscale) if holdout is not None else None
    results = {}
    for name, data in arms.items():
        training = load_images(data, resolution, grayscale)
        checkpoints = work / "checkpoints" / f"{name}-{run_fingerprint(training, options.model, options.train)}"
        results[name] = train_and_sample(name, training, options, checkpoints, progress)
    measurement = measure_replication(
        {name: result.generations for name, result in results.items()},
        reference_set,
        holdout_set,
        options.criterion,
        options.calibrate,
        embed,
        watermark_detector,
    )
    for name, result in results.items():
        measurement.sets[name].summary["training"] = {
            k: v for k, v in dataclasses.asdict(result).items() if k not in ("name", "generations")
        }
        np.savez_compressed(work / f"generations_{name}.npz", pixels=result.generations.pixels)
    settings = {
        "model": dataclasses.asdict(options.model),
        "train": dataclasses.asdict(options.train) | {"device": str(pick_device(options.train.device))},
        "samples": options.samples,
        "inference_steps": options.inference_steps,
        "sample_seed": options.sample_seed,
        "holdout_images": len(holdout_set) if holdout_set is not None else 0,
    }
    extra = {"mode": "arms", "settings": settings} | _control_warning(holdout_set) | (extra_report or {})
    return write_report(measurement, out, extra)


def _control_warning(holdout_set: ImageSet | None) -> dict:
    if holdout_set is not None:
        return {}
    return {"warning": "no held-out real images given: the replica criterion was not checked against a control"}


def verify_arms(raw, cleaned, out_dir: str | Path, **settings) -> dict:
    """`dedupkit verify --raw SRC --cleaned OUT`: train on both, measure copies of the raw data.

    `settings` are compare_arms' keyword arguments (holdout, options, groups, embed, ...).
    """
    return compare_arms({"raw": raw, "cleaned": cleaned}, raw, out_dir, **settings)


def verify_generations(
    generations,
    train,
    out_dir: str | Path,
    *,
    holdout=None,
    resolution: int | None = None,
    grayscale: bool = False,
    criterion: ReplicationCriterion = ReplicationCriterion(),
    calibrate: bool = True,
    groups: Sequence[Hashable] | None = None,
    embed: Embedder | None = None,
    watermark_detector: WatermarkDetector | None = None,
    name: str = "generations",
) -> dict:
    """`dedupkit verify --generations DIR --train SRC`: measure an outside model's outputs.

    Everything is compared at `resolution` (default: the generations' own size, read
    from the first generation).
    """
    if resolution is None:
        resolution = _native_resolution(generations)
    generation_set = load_images(generations, resolution, grayscale)
    reference_set = Reference.from_training(load_images(train, resolution, grayscale), groups)
    holdout_set = load_images(holdout, resolution, grayscale) if holdout is not None else None
    measurement = measure_replication(
        {name: generation_set}, reference_set, holdout_set, criterion, calibrate, embed, watermark_detector
    )
    settings = {"resolution": resolution, "grayscale": grayscale, "holdout_images": len(holdout_set) if holdout_set else 0}
    extra = {"mode": "generations", "settings": settings} | _control_warning(holdout_set)
    return write_report(measurement, out_dir, extra)


def _native_resolution(source) -> int:
    """Shorter side of the first generation (generations of one model share one size)."""
    if isinstance(source, ImageSet):
        return source.resolution
    if isinstance(source, (str, Path)):
        files = list_image_files(Path(source))
        if not files:
            raise FileNotFoundError(f"no image files in {source}; pass the folder that holds the generations")
        with Image.open(files[0]) as first:
            return min(first.size)
    raise ValueError("pass resolution= when the generations are not a folder or an ImageSet")
