"""Optional CLIP zero-shot visible-mark score, when open_clip weights are available.

The image is embedded by the signatures' OpenClipEmbedder and compared with text
prompts describing watermarked and clean pictures; the score is the softmax mass
on the watermark prompts.  It is uncalibrated, so it is reported in its own
column and never marks an image by itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

MARK_PROMPTS = (
    "a photo with a watermark",
    "an image with a copyright notice written on it",
    "a stock photo covered with a semi-transparent watermark",
    "a picture with a photographer's logo in the corner",
)
CLEAN_PROMPTS = (
    "a photo",
    "a clean photo without any watermark or text",
    "a drawing",
)


class ClipZeroShotMarkScorer:
    """`model_name` and `pretrained` as for OpenClipEmbedder (a tag in the HF cache or a checkpoint path).

    Raises MissingWeightsError (from dedupkit.signatures.embedders) when the weights are absent.
    """

    def __init__(self, model_name: str, pretrained: str, batch_size: int = 16) -> None:
        import open_clip

        from dedupkit.signatures.embedders import OpenClipEmbedder

        self.embedder = OpenClipEmbedder(model_name, pretrained)
        tokenizer = open_clip.get_tokenizer(model_name)
        with torch.inference_mode():
            text = self.embedder.model.encode_text(tokenizer(list(MARK_PROMPTS + CLEAN_PROMPTS)))
            self.text = torch.nn.functional.normalize(text.float(), dim=1)
            self.logit_scale = float(self.embedder.model.logit_scale.exp())
        self.batch_size = batch_size

    def score(self, images: Sequence[Image.Image]) -> np.ndarray:
        scores = []
        for start in range(0, len(images), self.batch_size):
            embedded = torch.from_numpy(self.embedder.embed(images[start : start + self.batch_size]))
            probabilities = (self.logit_scale * embedded @ self.text.T).softmax(dim=1)
            scores.append(probabilities[:, : len(MARK_PROMPTS)].sum(dim=1).numpy())
        return np.concatenate(scores) if scores else np.zeros(0, np.float32)
