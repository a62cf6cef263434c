"""The reference diffusion model: a small diffusers DDPM trained from scratch, sampled with DDIM.

Training is deterministic for a given seed on a given device: the model is initialised
under the seed, and every random draw of the loop (batch indices, noise, timesteps)
comes from one dedicated generator whose state is saved in each checkpoint along with
the model, optimizer and learning-rate schedule.  Resuming from a checkpoint therefore
continues the exact sequence of an uninterrupted run and ends at the same weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup

from dedupkit.verify.images import ImageSet

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"


@dataclass(frozen=True)
class ModelConfig:
    resolution: int = 16
    channels: int = 3
    """3 for RGB, 1 for grayscale data such as Fashion-MNIST."""
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    attention: bool = False
    """Self-attention in the lowest-resolution blocks (off for the tiny CPU models)."""
    num_classes: int | None = None
    """Class-conditional when set: labels 0..num_classes-1 are embedded."""
    train_timesteps: int = 1000

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        downsamplings = len(self.block_out_channels) - 1
        if self.resolution % (2**downsamplings):
            raise ValueError(
                f"resolution {self.resolution} must be divisible by {2**downsamplings} "
                f"for {len(self.block_out_channels)} UNet levels"
            )


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2500
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    seed: int = 0
    checkpoint_every: int = 250
    """Save a resumable checkpoint every this many steps (and at the end)."""
    device: str | None = None
    """'cpu', 'cuda', ...; None picks CUDA when present."""
    horizontal_flip: bool = False
    """Augment with random flips (off by default: a copy detector should see plain training)."""


@dataclass(frozen=True)
class TrainProgress:
    step: int
    total_steps: int
    loss: float
    steps_per_second: float
    seconds_left: float


ProgressCallback = Callable[[TrainProgress], None]


@dataclass
class TrainedModel:
    unet: UNet2DModel
    model_config: ModelConfig
    train_config: TrainConfig
    losses: list[float]
    seconds: float
    """Wall time of all training steps, summed over the interrupted and resumed parts."""
    trained_on: str = ""
    """Where the steps ran ("cpu", "cuda (NVIDIA H200)"; parts joined by " then "), read from
    the checkpoint when a finished run is loaded on another machine."""

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def build_unet(config: ModelConfig) -> UNet2DModel:
    levels = len(config.block_out_channels)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if config.attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=config.resolution,
        in_channels=config.channels,
        out_channels=config.channels,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=min(8, config.block_out_channels[0]),
        num_class_embeds=config.num_classes,
        add_attention=config.attention,
    )


def noise_scheduler(config: ModelConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=config.train_timesteps, beta_schedule="linear")


def run_fingerprint(images: ImageSet, model_config: ModelConfig, train_config: TrainConfig) -> str:
    """Identity of a training run: a checkpoint only resumes the run it was written by."""
    hasher = hashlib.sha256()
    hasher.update(np.ascontiguousarray(images.pixels).tobytes())
    if images.labels is not None:
        hasher.update(np.ascontiguousarray(images.labels).tobytes())
    settings = dataclasses.asdict(train_config)
    for key in ("steps", "checkpoint_every", "device"):
        settings.pop(key)  # extending or re-checkpointing a run is still the same run
    hasher.update(json.dumps([dataclasses.asdict(model_config), settings], sort_keys=True).encode())
    return hasher.hexdigest()[:16]


def train_model(
    images: ImageSet,
    model_config: ModelConfig,
    train_config: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    progress_every: int = 10,
) -> TrainedModel:
    """Train the reference DDPM on `images` (uint8 at the model resolution).

    With `checkpoint_dir`, a checkpoint is written every `checkpoint_every` steps and a
    rerun resumes from the latest one.
    """
    if images.resolution != model_config.resolution or images.channels != model_config.channels:
        raise ValueError(
            f"training images are {images.channels}x{images.resolution}px but the model expects "
            f"{model_config.channels}x{model_config.resolution}px; load them with load_images(resolution=...)"
        )
    if model_config.num_classes is not None and images.labels is None:
        raise ValueError("a class-conditional model needs labels for its training images")
    device = pick_device(train_config.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        unet = build_unet(model_config)
    unet.to(device)
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay
    )
    schedule = get_cosine_schedule_with_warmup(optimizer, train_config.warmup_steps, train_config.steps)
    scheduler = noise_scheduler(model_config)
    generator = torch.Generator().manual_seed(train_config.seed)
    fingerprint = run_fingerprint(images, model_config, train_config)
    losses: list[float] = []
    step = 0
    earlier_seconds = 0.0
    trained_on: list[str] = []

    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    if checkpoint_path is not None and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if state["fingerprint"] != fingerprint:
            raise ValueError(
                f"{checkpoint_path} belongs to another run (different data or settings); "
                "use a fresh checkpoint folder or delete it"
            )
        unet.load_state_dict(state["unet"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        losses, step = state["losses"], state["step"]
        earlier_seconds = state.get("seconds", 0.0)
        # Checkpoints written before the label existed name only the configured device.
        trained_on = state.get("trained_on") or [state["train_config"].get("device") or "unknown"]

    pixels = torch.from_numpy(images.pixels)
    labels = None if images.labels is None else torch.from_numpy(images.labels)
    unet.train()
    started, first_step = time.perf_counter(), step
    here = device_label(device)
    if step < train_config.steps and trained_on[-1:] != [here]:
        trained_on.append(here)
    while step < train_config.steps:
        batch_index = torch.randint(0, len(pixels), (train_config.batch_size,), generator=generator)
        clean = pixels[batch_index].float().div_(127.5).sub_(1.0)
        if train_config.horizontal_flip:
            flip = torch.rand(len(clean), generator=generator) < 0.5
            clean[flip] = clean[flip].flip(-1)
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, model_config.train_timesteps, (len(clean),), generator=generator)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        class_labels = None if labels is None else labels[batch_index].to(device)
        prediction = unet(noisy.to(device), timesteps.to(device), class_labels=class_labels).sample
        loss = torch.nn.functional.mse_loss(prediction, noise.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        losses.append(float(loss.detach()))

        if checkpoint_path is not None and (step % train_config.checkpoint_every == 0 or step == train_config.steps):
            _save_atomically(
                {
                    "fingerprint": fingerprint,
                    "step": step,
                    "unet": unet.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "generator": generator.get_state(),
                    "losses": losses,
                    "seconds": earlier_seconds + time.perf_counter() - started,
                    "trained_on": trained_on,
                    "model_config": dataclasses.asdict(model_config),
                    "train_config": dataclasses.asdict(train_config),
                },
                checkpoint_path,
            )
        if progress is not None and (step % progress_every == 0 or step == train_config.steps):
            elapsed = time.perf_counter() - started
            rate = (step - first_step) / elapsed if elapsed > 0 else 0.0
            recent = losses[-progress_every:]
            progress(
                TrainProgress(
                    step=step,
                    total_steps=train_config.steps,
                    loss=sum(recent) / len(recent),
                    steps_per_second=rate,
                    seconds_left=(train_config.steps - step) / rate if rate > 0 else math.inf,
                )
            )
    unet.eval()
    return TrainedModel(unet, model_config, train_config, losses, earlier_seconds + time.perf_counter() - started,
                        " then ".join(trained_on))


def _save_atomically(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


@torch.no_grad()
def sample(
    model: TrainedModel,
    count: int,
    seed: int = 0,
    inference_steps: int = 50,
    batch_size: int = 256,
    class_labels=None,
) -> np.ndarray:
    """`count` generations as uint8 (N, C, H, W), DDIM with eta 0 (deterministic for a seed).

    A class-conditional model samples the classes in `class_labels` (default: cycling
    through all classes).
    """
    config = model.model_config
    unet = model.unet.eval()
    device = next(unet.parameters()).device
    ddim = DDIMScheduler.from_config(noise_scheduler(config).config)
    ddim.set_timesteps(inference_steps)
    generator = torch.Generator().manual_seed(seed)
    if config.num_classes is not None:
        class_labels = (
            torch.arange(count) % config.num_classes
            if class_labels is None
            else torch.as_tensor(np.asarray(class_labels), dtype=torch.int64)
        )
    outputs = []
    for start in range(0, count, batch_size):
        size = min(batch_size, count - start)
        latents = torch.randn((size, config.channels, config.resolution, config.resolution), generator=generator)
        latents = latents.to(device)
        labels = None if class_labels is None else class_labels[start : start + size].to(device)
        for timestep in ddim.timesteps:
            predicted_noise = unet(latents, timestep, class_labels=labels).sample
            latents = ddim.step(predicted_noise, timestep, latents, eta=0.0).prev_sample
        outputs.append(((latents.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    return torch.cat(outputs).numpy()


def rich_progress():
    """A context manager yielding `update(name, TrainProgress)`: one rich progress bar per
    named training run (loss, steps/s, time left)."""
    from contextlib import contextmanager

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    @contextmanager
    def bars():
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:.2f} steps/s"),
            TimeRemainingColumn(),
        ) as progress_bars:
            tasks = {}

            def update(name: str, report: TrainProgress) -> None:
                if name not in tasks:
                    tasks[name] = progress_bars.add_task(name, total=report.total_steps, loss=report.loss, rate=0.0)
                progress_bars.update(
                    tasks[name], completed=report.step, loss=report.loss, rate=report.steps_per_second
                )

            yield update

    return bars()
