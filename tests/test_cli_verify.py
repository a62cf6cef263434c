"""`dedupkit verify` as a user runs it: a tiny budget, both modes, real Fashion-MNIST-like data."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import png, write_folder

CLI = [sys.executable, "-m", "dedupkit.cli"]


def folder_of(images, root):
    return write_folder(root, {f"{i:03d}.png": png(image) for i, image in enumerate(images)})


def test_verify_arms_and_generations_write_reports(tmp_path, real_thumbnails):
    pictures = [image.convert("L").resize((16, 16)).convert("RGB") for image in real_thumbnails[:12]]
    raw = folder_of(pictures + pictures[:3] * 4, tmp_path / "raw")
    cleaned = folder_of(pictures, tmp_path / "cleaned")
    holdout = folder_of([image.convert("L").resize((16, 16)).convert("RGB") for image in real_thumbnails[20:26]], tmp_path / "holdout")
    tiny = ["--steps", "3", "--batch-size", "8", "--samples", "4", "--inference-steps", "2", "--embedder", "none"]
    result = subprocess.run(
        CLI + ["verify", "--raw", str(raw), "--cleaned", str(cleaned), "--holdout", str(holdout), "--out", str(tmp_path / "v")] + tiny,
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    assert set(report["arms"]) == {"raw", "cleaned"}
    assert report["reference"]["raw_training_images"] == 24 and report["reference"]["distinct_training_images"] == 12
    assert (tmp_path / "v" / "report.html").exists() and "replication" in result.stdout

    # Outside generations: exact copies of training images must be flagged, unseen ones not.
    generations = folder_of(pictures[:2] + [Image.fromarray(np.full((16, 16, 3), 128, np.uint8))], tmp_path / "gen")
    result = subprocess.run(
        CLI + ["verify", "--generations", str(generations), "--train", str(raw), "--out", str(tmp_path / "g"), "--embedder", "none"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads((tmp_path / "g" / "report.json").read_text())
    (arm,) = measured["arms"].values()
    assert arm["replicated"]["count"] == 2 and arm["distinct_groups_replicated"] == 2


def test_verify_refuses_incomplete_arguments(tmp_path):
    result = subprocess.run(CLI + ["verify", "--raw", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "--cleaned" in result.stderr
