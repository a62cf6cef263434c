"""End to end: verify_arms trains, samples and writes the report; verify_generations
measures an outside model's outputs; Wilson intervals and duplicate accounting."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dedupkit.verify import (
    ImageSet,
    ModelConfig,
    ReplicationCriterion,
    TrainConfig,
    VerifyOptions,
    load_images,
    verify_arms,
    verify_generations,
    wilson_interval,
)
from dedupkit.verify.measure import NEARER_THAN_MOST_REAL, Reference


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_pngs(folder, pixels, prefix="img"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, chw in enumerate(pixels):
        Image.fromarray(chw[0], "L").save(folder / f"{prefix}{i:03d}.png")
    return folder


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_reference_collapses_exact_copies_and_counts_them():
    pixels = np.random.default_rng(0).integers(0, 256, (4, 1, 8, 8), dtype=np.uint8)
    raw = ImageSet(np.concatenate([pixels, pixels[[1, 1, 1]]]), [f"k{i}" for i in range(7)])
    reference = Reference.from_training(raw)
    assert len(reference.images) == 4
    assert sorted(reference.copy_counts.values()) == [1, 1, 1, 4]


def test_verify_generations_finds_the_copies_among_outside_generations(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (40, 1, 16, 16), dtype=np.uint8)
    train[30:] = train[0]  # one picture duplicated ten times
    # Real unseen images resemble training images, but none is a copy (RMS difference ~0.07).
    unseen = np.clip(train[10:20].astype(int) + rng.integers(-30, 31, (10, 1, 16, 16)), 0, 255).astype(np.uint8)
    copies = np.clip(train[[0, 0, 5]].astype(int) + rng.integers(-2, 3, (3, 1, 16, 16)), 0, 255).astype(np.uint8)
    generations = np.concatenate([copies, rng.integers(0, 256, (5, 1, 16, 16), dtype=np.uint8)])
    report = verify_generations(
        write_pngs(tmp_path / "generations", generations),
        write_pngs(tmp_path / "train", train),
        tmp_path / "report",
        holdout=write_pngs(tmp_path / "holdout", unseen),
        grayscale=True,
        criterion=ReplicationCriterion(n_neighbours=10),
    )
    arm = report["arms"]["generations"]
    assert arm["replicated"]["count"] == 3
    assert arm["distinct_training_images_replicated"] == 2
    assert arm["distinct_groups_replicated_that_were_duplicated"] == 1
    assert report["control"]["replicated"]["count"] == 0
    assert arm["closer_than_any_held_out"]["count"] == 3
    nearer = arm[NEARER_THAN_MOST_REAL]
    assert nearer["replicated"]["count"] == 3 and nearer["distinct_groups_replicated_that_were_duplicated"] == 1
    assert report["control"][NEARER_THAN_MOST_REAL]["replicated"]["count"] <= 1  # its nearest 1 % (of 10)
    assert report["settings"]["resolution"] == 16
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["arms"]["generations"]["replicated"] == arm["replicated"]
    assert (tmp_path / "report" / report["plots"]["replicas_generations"]).exists()


def test_tiny_verify_arms_writes_report_json_and_html(tmp_path):
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, (10, 1, 16, 16), dtype=np.uint8)
    raw[6:] = raw[0]
    cleaned = raw[:6]
    holdout = rng.integers(0, 256, (6, 1, 16, 16), dtype=np.uint8)
    watermark_calls = []

    def detector(image):
        watermark_calls.append(image.size)
        return None

    options = VerifyOptions(
        model=ModelConfig(resolution=16, channels=1, block_out_channels=(8, 16)),
        train=TrainConfig(steps=3, batch_size=4, warmup_steps=1, checkpoint_every=2, device="cpu"),
        samples=6,
        inference_steps=2,
        criterion=ReplicationCriterion(n_neighbours=5),
    )
    report = verify_arms(
        write_pngs(tmp_path / "raw", raw),
        write_pngs(tmp_path / "cleaned", cleaned),
        tmp_path / "out",
        holdout=ImageSet(holdout, [f"h{i}" for i in range(6)]),
        options=options,
        embed=lambda images: np.stack([np.asarray(i.convert("L"), np.float32).ravel() for i in images]),
        watermark_detector=detector,
    )
    assert set(report["arms"]) == {"raw", "cleaned"}
    assert report["arms"]["raw"]["training"]["training_images"] == 10
    assert report["arms"]["cleaned"]["training"]["training_images"] == 6
    assert report["arms"]["raw"]["generations"] == 6
    assert report["reference"] == {"distinct_training_images": 6, "raw_training_images": 10, "duplicated_groups": 1}
    assert "above_control_max" in report["arms"]["cleaned"]["embedding"]
    assert report["arms"]["raw"]["watermark"]["marked"]["count"] == 0 and len(watermark_calls) == 12
    assert len(list((tmp_path / "out" / "checkpoints").glob("raw-*/checkpoint.pt"))) == 1
    page = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/png;base64," in page and "cleaned" in page
    assert json.loads((tmp_path / "out" / "report.json").read_text())["mode"] == "arms"


def test_load_images_reads_arrays_and_fits_them_to_the_resolution():
    images = load_images(np.zeros((3, 28, 28), np.uint8), resolution=16, grayscale=True)
    assert images.pixels.shape == (3, 1, 16, 16)
    with pytest.raises(FileNotFoundError, match="folder"):
        load_images("/nonexistent/folder", 16)
