"""Watermarks: payload coding, every method's round trip, the stage, the registry, detection."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from dedupkit.decode import decode_record
from dedupkit.records import Record
from dedupkit.watermark import (
    KEY_FILE_NAME,
    PayloadCodec,
    PayloadLayout,
    Registry,
    RegistryWriter,
    WatermarkKeyError,
    WatermarkStage,
    dataset_fingerprint,
    detect_image,
    detect_paths,
    detect_pixels,
    false_alarm_probability,
    finalize_registry,
    get_method,
    load_or_create_key,
)
from dedupkit.watermark.embed import codec_for
from dedupkit.watermark.payload import chase_decode
from dedupkit.watermark.methods import RIVAGAN_LAYOUT, STANDARD_LAYOUT

PHOTOS = Path("/usr/share/doc/opencv-doc/examples/data")
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="opencv-doc example photos are not installed")


def photo(name: str, size: int | tuple[int, int]) -> np.ndarray:
    width, height = (size, size) if isinstance(size, int) else size
    with Image.open(PHOTOS / name) as image:
        return np.asarray(image.convert("RGB").resize((width, height), Image.LANCZOS))


def encoded(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


def record_of(data: bytes, ordinal: int, ext: str) -> Record:
    return decode_record(Record(key=f"img-{ordinal}.{ext}", source="test", ordinal=ordinal, data=data, ext=ext))


# ------------------------------------------------------------------ payload


@pytest.mark.parametrize("layout", [STANDARD_LAYOUT, RIVAGAN_LAYOUT], ids=["standard", "rivagan"])
def test_payload_round_trip_and_ecc_corrects_up_to_t_flips(layout):
    codec = PayloadCodec(KEY, layout, "test")
    rng = np.random.default_rng(0)
    for index in (0, 1, 4095, layout.index_modulus - 1):
        word = codec.encode(index)
        assert word.shape == (layout.codeword_bits,)
        damaged = word.copy()
        damaged[rng.choice(layout.codeword_bits, layout.correctable, replace=False)] ^= 1
        decoded = codec.decode(damaged)
        assert decoded is not None and decoded.record_index == index
        assert decoded.flipped == layout.correctable
        assert np.array_equal(decoded.codeword, word)


def test_payload_beyond_correction_radius_is_not_read_as_the_same_record():
    codec = PayloadCodec(KEY, STANDARD_LAYOUT, "test")
    word = codec.encode(123)
    damaged = word.copy()
    damaged[: STANDARD_LAYOUT.correctable + 8] ^= 1
    decoded = codec.decode(damaged)
    assert decoded is None or decoded.record_index != 123


def test_soft_decoding_corrects_more_than_t_flips_when_they_are_the_least_reliable():
    codec = PayloadCodec(KEY, STANDARD_LAYOUT, "test")
    word = codec.encode(31337)
    scores = np.where(word > 0, 1.0, -1.0) * np.linspace(1.0, 2.0, word.size)
    flipped = np.argsort(np.abs(scores))[: STANDARD_LAYOUT.correctable + 3]
    scores[flipped] *= -0.1  # wrong, but with low confidence
    assert codec.decode((scores > 0).astype(np.uint8)) is None or codec.decode(
        (scores > 0).astype(np.uint8)).record_index != 31337
    decoded = chase_decode(codec, scores, 6)
    assert decoded is not None and decoded.record_index == 31337
    assert decoded.flipped == STANDARD_LAYOUT.correctable + 3


def test_wrong_key_does_not_decode_the_payload():
    word = PayloadCodec(KEY, STANDARD_LAYOUT, "test").encode(7)
    assert PayloadCodec(OTHER_KEY, STANDARD_LAYOUT, "test").decode(word) is None


def test_false_alarm_probability_is_exact_ball_count_and_meets_target():
    layout = PayloadLayout(dataset_bits=16, index_bits=32, correctable=4)
    assert layout.codeword_bits == 76
    expected = sum(math.comb(76, i) for i in range(5)) * 2.0 ** (32 - 76)
    assert false_alarm_probability(layout) == pytest.approx(expected)
    assert false_alarm_probability(layout, 0) == pytest.approx(2.0 ** (32 - 76))
    for used in (STANDARD_LAYOUT, RIVAGAN_LAYOUT):
        assert false_alarm_probability(used) <= 1e-4


def test_random_words_rarely_decode():
    codec = PayloadCodec(KEY, STANDARD_LAYOUT, "test")
    rng = np.random.default_rng(1)
    words = rng.integers(0, 2, size=(3000, STANDARD_LAYOUT.codeword_bits), dtype=np.uint8)
    assert sum(codec.decode(word) is not None for word in words) == 0


def test_key_is_created_saved_and_reloaded(tmp_path):
    created = load_or_create_key(tmp_path)
    assert len(created) == 32 and (tmp_path / KEY_FILE_NAME).is_file()
    assert load_or_create_key(tmp_path) == created
    assert load_or_create_key(tmp_path, created.hex()) == created
    with pytest.raises(WatermarkKeyError, match="different watermark key"):
        load_or_create_key(tmp_path, "another passphrase")


# ------------------------------------------------------------------ methods


@pytest.mark.parametrize(
    ("method", "size"),
    [("stdmDct", 32), ("stdmDct", 64), ("stdmDct", 256), ("stdmDct", (300, 200)),
     ("dwtDct", 256), ("dwtDctSvd", 256), ("dwtDctSvd", (384, 256))],
)
def test_method_round_trip(method, size):
    rgb = photo("fruits.jpg", size)
    chosen = get_method(method)
    codec = codec_for(chosen, KEY)
    bits = codec.encode(4242)
    marked = chosen.embed(rgb, bits, KEY)
    assert marked.shape == rgb.shape and marked.dtype == np.uint8
    assert not np.array_equal(marked, rgb)
    detection = detect_pixels(marked, KEY, [method])
    assert detection.marked and detection.method == method
    assert detection.record_index == 4242
    assert detection.bit_accuracy >= 0.95
    assert detection.p_value < 1e-4
    assert not detect_pixels(marked, OTHER_KEY, [method]).marked


@pytest.mark.slow
def test_rivagan_round_trip():
    pytest.importorskip("onnxruntime")
    rgb = photo("fruits.jpg", 256)
    chosen = get_method("rivaGan")
    bits = codec_for(chosen, KEY).encode(77)
    detection = detect_pixels(chosen.embed(rgb, bits, KEY), KEY, ["rivaGan"])
    assert detection.marked and detection.record_index == 77
    assert not detect_pixels(rgb, KEY, ["rivaGan"]).marked


def test_small_image_method_survives_jpeg_75_and_brightness_at_64px():
    rgb = photo("baboon.jpg", 64)
    chosen = get_method("stdmDct")
    marked = chosen.embed(rgb, codec_for(chosen, KEY).encode(9), KEY)
    jpeg = np.asarray(Image.open(io.BytesIO(encoded(marked, "JPEG", quality=75))).convert("RGB"))
    assert detect_pixels(jpeg, KEY, ["stdmDct"]).record_index == 9
    darker = np.clip(marked.astype(np.float64) * 0.8, 0, 255).round().astype(np.uint8)
    assert detect_pixels(darker, KEY, ["stdmDct"]).record_index == 9


def test_too_small_images_are_refused():
    with pytest.raises(ValueError, match="at least 32x32"):
        get_method("stdmDct").embed(photo("fruits.jpg", 24), np.zeros(STANDARD_LAYOUT.codeword_bits, np.uint8), KEY)
    assert not get_method("dwtDctSvd").accepts(200, 200)


def test_unmarked_real_images_are_not_flagged():
    names = sorted(p.name for p in PHOTOS.glob("*.jpg"))[:6]
    for name in names:
        with Image.open(PHOTOS / name) as image:
            full = np.asarray(image.convert("RGB"))
        assert not detect_pixels(full, KEY, ["stdmDct", "dwtDct", "dwtDctSvd"]).marked, name
        for y in range(0, full.shape[0] - 64, 150):
            assert not detect_pixels(full[y : y + 64, :64], KEY, ["stdmDct"]).marked, name


# ------------------------------------------------------------------ stage, encoding, registry


def test_stage_rewrites_bytes_that_still_detect_and_registry_traces_records(tmp_path):
    jpeg_source = encoded(photo("baboon.jpg", 320), "JPEG", quality=92)
    png_source = encoded(photo("fruits.jpg", 48), "PNG")
    gif_source = encoded(photo("HappyFish.jpg", 64), "GIF")
    records = [record_of(jpeg_source, 10, "jpg"), record_of(png_source, 11, "png"),
               record_of(gif_source, 12, "gif"), record_of(png_source, 13, "png").drop("duplicate")]
    stage = WatermarkStage(KEY, registry=RegistryWriter(tmp_path, "part-00000"))
    out = list(stage(iter(records)))
    assert [r.ordinal for r in out] == [10, 11, 12, 13]
    finalize_registry(tmp_path)
    registry = Registry(tmp_path / "watermarks.parquet")
    assert len(registry) == 3

    assert out[0].ext == "jpg" and out[0].data[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(out[0].data)) as written:
        assert written.format == "JPEG" and JpegImagePlugin.get_sampling(written) == 0  # 4:4:4
    assert out[1].ext == "png" and out[2].ext == "png"  # a palette would destroy the mark
    assert out[3].data == png_source and "watermark" not in out[3].columns

    (tmp_path / KEY_FILE_NAME).write_text(KEY.hex())  # detection finds the key beside the registry
    for record in out[:3]:
        assert record.columns["watermark"].startswith("stdmDct:")
        assert record.columns["watermark_verified"] is True
        path = tmp_path / f"{record.ordinal}.{record.ext}"
        path.write_bytes(record.data)
        detection = detect_image(path, registry=tmp_path)
        assert detection.marked and detection.dataset_match
        assert detection.record_key == record.key and detection.record_index == record.ordinal
    assert registry.lookup(dataset_fingerprint(KEY), "stdmDct", 11)[0].record_key == out[1].key

    rerun = RegistryWriter(tmp_path, "part-00000")  # the same shard marked again replaces its rows
    WatermarkStage(KEY, registry=rerun).mark(record_of(png_source, 11, "png"))
    rerun.close()
    finalize_registry(tmp_path)
    assert len(Registry(tmp_path)) == 3


def test_alpha_is_kept_untouched(tmp_path):
    rgba = np.dstack([photo("fruits.jpg", 64), np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))])
    record = record_of(encoded(rgba, "PNG"), 5, "png")
    assert record.image.mode == "RGBA"
    WatermarkStage(KEY).mark(record)
    with Image.open(io.BytesIO(record.data)) as written:
        out = np.asarray(written)
    assert written.mode == "RGBA" and np.array_equal(out[..., 3], rgba[..., 3])
    assert detect_image(Image.fromarray(out, "RGBA"), key=KEY).record_index == 5


def test_images_below_every_method_keep_their_bytes():
    tiny = encoded(photo("fruits.jpg", 24), "PNG")
    record = record_of(tiny, 1, "png")
    WatermarkStage(KEY).mark(record)
    assert record.data == tiny and record.columns["watermark"] == ""


def test_detect_paths_reports_unreadable_files_and_traces_the_rest(tmp_path):
    marked = get_method("stdmDct").embed(photo("fruits.jpg", 64), codec_for(get_method("stdmDct"), KEY).encode(3), KEY)
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(encoded(marked, "PNG"))
    bad.write_bytes(b"not an image")
    first, second = detect_paths([good, bad], key=KEY.hex())
    assert first.marked and first.record_index == 3 and first.error is None
    assert not second.marked and "not an image" in second.error
    assert first.table_row()["marked"] == "yes" and second.table_row()["marked"] == "error"


def test_detect_without_any_key_says_what_to_do(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encoded(photo("fruits.jpg", 64), "PNG"))
    with pytest.raises(WatermarkKeyError, match="pass --key"):
        detect_image(path)
