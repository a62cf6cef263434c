"""Embedders: the offline EfficientNet-Lite0 default, open_clip from a checkpoint, codes, the stage."""

from __future__ import annotations

import io
import json

import huggingface_hub.constants
import numpy as np
import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
import torch
from PIL import Image

from conftest import load_module
from dedupkit.records import Record
from dedupkit.signatures import codes_from_column, embeddings_from_column
from dedupkit.signatures.embedders import (
    EfficientNetLite0Embedder,
    EmbeddingStage,
    MissingWeightsError,
    OpenClipEmbedder,
    binary_codes,
    embedder_from_spec,
)

TINY_CLIP = "dedupkit-test-tiny-vit"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def efficientnet() -> EfficientNetLite0Embedder:
    return EfficientNetLite0Embedder()


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {name: Image.fromarray(getattr(skimage.data, name)()) for name in ("chelsea", "coffee", "astronaut", "rocket")}


def jpeg_copy(image: Image.Image, size: tuple[int, int], quality: int = 60) -> Image.Image:
    buffer = io.BytesIO()
    image.resize(size, Image.BICUBIC).save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_efficientnet_weights_are_the_real_imagenet_ones(efficientnet, photos):
    probabilities = efficientnet.classify([photos["chelsea"], photos["coffee"]])
    assert probabilities[0].argmax() in range(281, 286)  # the domestic cat classes
    assert probabilities[1].argmax() == 967  # espresso
    assert probabilities[1].max() > 0.5


def test_efficientnet_embeddings_are_normalized_and_deterministic(efficientnet, photos):
    images = list(photos.values())
    first = efficientnet.embed(images)
    assert first.shape == (4, efficientnet.dim) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, efficientnet.embed(images))
    alone = efficientnet.embed(images[2:3])
    assert np.allclose(alone[0], first[2], atol=1e-5)  # a record's embedding does not depend on its batch
    assert efficientnet.embed([]).shape == (0, efficientnet.dim)


def test_efficientnet_finds_a_resized_jpeg_copy_and_separates_other_photos(efficientnet, photos):
    cat = photos["chelsea"]
    rgba_cat = cat.convert("RGBA")
    images = [cat, jpeg_copy(cat, (200, 150)), rgba_cat, photos["coffee"], photos["astronaut"], photos["rocket"]]
    embeddings = efficientnet.embed(images)
    cosine = embeddings @ embeddings[0]
    assert cosine[1] > 0.85
    assert cosine[2] > 0.999  # opaque RGBA is the same picture
    assert cosine[3:].max() < 0.4


def test_binary_codes_track_the_angle(efficientnet, photos):
    cat = photos["chelsea"]
    embeddings = efficientnet.embed([cat, jpeg_copy(cat, (300, 225)), photos["coffee"]])
    codes = binary_codes(embeddings)
    assert codes.shape == (3, 32) and codes.dtype == np.uint8
    assert np.array_equal(codes, binary_codes(embeddings))
    distance = [int(np.unpackbits(codes[0] ^ codes[i]).sum()) for i in range(3)]
    assert distance[0] == 0 and distance[1] < 50 < 90 < distance[2]
    assert int(np.unpackbits(codes[0] ^ binary_codes(-embeddings[:1])[0]).sum()) == 256
    # Works below 256 dimensions too (Gaussian hyperplanes instead of a truncated rotation).
    assert binary_codes(embeddings[:, :64]).shape == (3, 32)


def test_embedding_stage_keeps_order_and_round_trips_through_parquet(efficientnet, photos, tmp_path):
    images = list(photos.values()) * 2
    records = [Record(key=f"r{i}", source="test", ordinal=i, image=image) for i, image in enumerate(images)]
    records[2].skip("too small: test")
    records[5].drop("duplicate of r1")
    out = list(EmbeddingStage(efficientnet, batch_size=3)(iter(records)))
    assert [r.key for r in out] == [r.key for r in records]
    assert out[2].signatures == {} and out[5].signatures == {}
    alive = [r for r in out if r.alive]
    expected = efficientnet.embed([r.image for r in alive])

    table = pa.Table.from_pylist([{"key": r.key, **r.signatures} for r in alive])
    pq.write_table(table, tmp_path / "signatures.parquet")
    stored = pq.read_table(tmp_path / "signatures.parquet")
    embeddings = embeddings_from_column(stored["embedding"])
    assert embeddings.shape == (len(alive), efficientnet.dim) and embeddings.dtype == np.float32
    assert np.allclose(embeddings, expected, atol=2e-3)  # float16 storage
    assert np.array_equal(codes_from_column(stored["embedding_code"]), binary_codes(expected))


@pytest.fixture(params=[".pt", ".safetensors"])
def tiny_clip_checkpoint(request, tmp_path):
    config = tmp_path / f"{TINY_CLIP}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config)
    checkpoint = load_module("scripts/save_random_clip_checkpoint.py").save_random_checkpoint(
        TINY_CLIP, tmp_path / f"tiny-random{request.param}", seed=0
    )
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP)  # the same random weights
    return model.eval(), preprocess, checkpoint


def test_open_clip_embedder_loads_a_local_checkpoint(tiny_clip_checkpoint, photos):
    model, preprocess, checkpoint = tiny_clip_checkpoint
    embedder = OpenClipEmbedder(TINY_CLIP, pretrained=str(checkpoint))
    images = [photos["astronaut"], photos["coffee"]]
    embeddings = embedder.embed(images)
    assert embeddings.shape == (2, 32) and embedder.dim == 32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    # Same weights as saved, and our fused crop+resize matches open_clip's own transform.
    with torch.inference_mode():
        reference = model.encode_image(torch.stack([preprocess(image) for image in images]))
    reference = torch.nn.functional.normalize(reference, dim=1).numpy()
    assert np.all(np.sum(embeddings * reference, axis=1) > 0.999)


def test_open_clip_missing_weights_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import
    with pytest.raises(MissingWeightsError) as caught:
        OpenClipEmbedder("RN50", pretrained="openai", cache_dir=str(tmp_path / "empty-cache"))
    message = str(caught.value)
    assert "\n" not in message
    assert "'RN50'" in message and "'openai'" in message
    assert "pre-download" in message and "pretrained=/path/to/checkpoint" in message

    with pytest.raises(MissingWeightsError, match="not found at"):
        OpenClipEmbedder("RN50", pretrained=str(tmp_path / "missing.safetensors"))
    with pytest.raises(MissingWeightsError, match="no pretrained tag 'not-a-tag'"):
        OpenClipEmbedder("RN50", pretrained="not-a-tag")


def test_embedder_spec_builds_open_clip_from_a_checkpoint_and_rejects_unknown_specs(tiny_clip_checkpoint):
    _, _, checkpoint = tiny_clip_checkpoint
    embedder = embedder_from_spec(f"open_clip:{TINY_CLIP}:{checkpoint}")
    assert isinstance(embedder, OpenClipEmbedder) and embedder.dim == 32
    with pytest.raises(ValueError, match="open_clip:MODEL:TAG_OR_CHECKPOINT_PATH"):
        embedder_from_spec("clip-large")
