"""The reference DDPM: deterministic training, resumable checkpoints, sampling."""

import numpy as np
import pytest
import torch

from dedupkit.verify.images import ImageSet
from dedupkit.verify.model import ModelConfig, TrainConfig, sample, train_model

TINY_MODEL = ModelConfig(resolution=16, channels=1, block_out_channels=(8, 16))


def tiny_images(count: int = 6) -> ImageSet:
    pixels = np.random.default_rng(0).integers(0, 256, (count, 1, 16, 16), dtype=np.uint8)
    return ImageSet(pixels, [f"img{i}" for i in range(count)])


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and far faster on a CPU shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Interrupted(Exception):
    pass


def test_resuming_from_a_checkpoint_ends_at_the_weights_of_an_uninterrupted_run(tmp_path):
    config = TrainConfig(steps=6, batch_size=4, warmup_steps=2, checkpoint_every=3, seed=7, device="cpu")
    uninterrupted = train_model(tiny_images(), TINY_MODEL, config, tmp_path / "straight")

    def stop_at_step_four(report):
        if report.step == 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        train_model(tiny_images(), TINY_MODEL, config, tmp_path / "interrupted", stop_at_step_four, progress_every=1)
    assert torch.load(tmp_path / "interrupted" / "checkpoint.pt", weights_only=False)["step"] == 3
    resumed = train_model(tiny_images(), TINY_MODEL, config, tmp_path / "interrupted")

    assert resumed.losses == uninterrupted.losses
    for name, weight in uninterrupted.unet.state_dict().items():
        assert torch.equal(weight, resumed.unet.state_dict()[name]), name
    assert uninterrupted.trained_on == resumed.trained_on == "cpu"


def test_a_finished_run_loaded_elsewhere_says_where_it_was_trained(tmp_path):
    config = TrainConfig(steps=2, batch_size=2, warmup_steps=1, device="cpu")
    train_model(tiny_images(), TINY_MODEL, config, tmp_path)
    checkpoint = tmp_path / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=False)
    torch.save(state | {"trained_on": ["cuda (NVIDIA H200)"]}, checkpoint)  # as a GPU machine writes it
    assert train_model(tiny_images(), TINY_MODEL, config, tmp_path).trained_on == "cuda (NVIDIA H200)"
    del state["trained_on"]  # a checkpoint from before the label: the configured device
    torch.save(state | {"train_config": state["train_config"] | {"device": "cuda"}}, checkpoint)
    assert train_model(tiny_images(), TINY_MODEL, config, tmp_path).trained_on == "cuda"


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    config = TrainConfig(steps=2, batch_size=2, warmup_steps=1, device="cpu")
    train_model(tiny_images(), TINY_MODEL, config, tmp_path)
    with pytest.raises(ValueError, match="another run"):
        train_model(tiny_images(), TINY_MODEL, TrainConfig(steps=2, batch_size=2, warmup_steps=1, seed=1), tmp_path)


def test_training_reports_progress_and_sampling_is_deterministic():
    reports = []
    config = TrainConfig(steps=4, batch_size=4, warmup_steps=1, device="cpu")
    model = train_model(tiny_images(), TINY_MODEL, config, progress=reports.append, progress_every=2)
    assert [r.step for r in reports] == [2, 4]
    assert reports[-1].seconds_left == 0 and reports[0].steps_per_second > 0
    first = sample(model, 3, seed=5, inference_steps=2)
    assert first.shape == (3, 1, 16, 16) and first.dtype == np.uint8
    assert np.array_equal(first, sample(model, 3, seed=5, inference_steps=2))


def test_class_conditional_model_trains_and_samples_each_class():
    images = tiny_images()
    images.labels = np.array([0, 1, 2, 0, 1, 2])
    model = train_model(
        images,
        ModelConfig(resolution=16, channels=1, block_out_channels=(8, 16), num_classes=3),
        TrainConfig(steps=2, batch_size=4, warmup_steps=1, device="cpu"),
    )
    assert sample(model, 3, inference_steps=2).shape == (3, 1, 16, 16)


def test_model_resolution_must_match_the_images():
    with pytest.raises(ValueError, match="load_images"):
        train_model(tiny_images(), ModelConfig(resolution=32), TrainConfig(steps=1))
