"""Perceptual hashes: bit-for-bit equal to imagededup's on real images, batched, flip-aware."""

from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
from imagededup.methods import AHash, DHash, PHash, WHash
from PIL import Image

from dedupkit.decode import flatten_alpha, open_image
from dedupkit.records import Record
from dedupkit.samples import encode, openclipart_drawings, opencv_photos
from dedupkit.pipeline import HASH_DECODE_SIDE
from dedupkit.signatures import HASH_KINDS, HashStage, hash_images, hash_to_hex, hashes_from_column
from dedupkit.signatures.hashes import gray_thumbnail, haar_low_pass

IMAGEDEDUP = {"phash": PHash, "dhash": DHash, "whash": WHash, "ahash": AHash}


def imagededup_hash(kind: str, image: Image.Image) -> str:
    return IMAGEDEDUP[kind](verbose=False).encode_image(image_array=np.asarray(image))


def hamming(a: int, b: int) -> int:
    return bin((int(a) ^ int(b)) & 0xFFFF_FFFF_FFFF_FFFF).count("1")


@pytest.fixture(scope="module")
def photo_files():
    """Real opaque photos at their stored sizes: colour and grey JPEG and PNG, 256 to 1282 px."""
    photos = []
    for path in opencv_photos():
        with Image.open(path) as image:
            if image.mode in ("RGB", "L") and max(image.size) <= 1300:
                photos.append(path)
    assert len(photos) >= 8
    return photos[:: len(photos) // 8][:8]


@pytest.fixture(scope="module")
def transparent_drawings():
    drawings = []
    for path in openclipart_drawings(200):
        image, _ = open_image(path.read_bytes())
        if image.mode == "RGBA" and np.asarray(image)[..., 3].min() < 255:
            drawings.append(image)
        if len(drawings) == 8:
            break
    assert len(drawings) == 8, "expected openclipart PNGs with transparency"
    return drawings


@pytest.mark.parametrize("kind", HASH_KINDS)
def test_hash_equals_imagededup_reading_the_same_file(kind, photo_files):
    ours = hash_images([open_image(path.read_bytes())[0] for path in photo_files], [kind])[kind]
    encoder = IMAGEDEDUP[kind](verbose=False)
    theirs = [encoder.encode_image(image_file=str(path)) for path in photo_files]
    assert [hash_to_hex(value) for value in ours] == theirs


@pytest.mark.parametrize("kind", HASH_KINDS)
def test_hash_equals_imagededup_on_flattened_transparent_drawings(kind, transparent_drawings):
    ours = hash_images(transparent_drawings, [kind])[kind]
    theirs = [imagededup_hash(kind, flatten_alpha(image)) for image in transparent_drawings]
    assert [hash_to_hex(value) for value in ours] == theirs


@pytest.fixture(scope="module")
def files_in_other_modes_and_sizes(tmp_path_factory):
    """Stored files in the modes and shapes users have: grey, palette, tiny, thin, large."""
    camera = Image.fromarray(skimage.data.camera())  # 8-bit greyscale
    coffee = Image.fromarray(skimage.data.coffee())
    files = {
        "grey.png": encode(camera, "PNG"),
        "grey.jpg": encode(camera, "JPEG", quality=85),
        "palette.png": encode(coffee.quantize(64), "PNG"),
        "tiny.png": encode(coffee.resize((17, 16), Image.BICUBIC), "PNG"),
        "thin.jpg": encode(coffee.crop((0, 100, 600, 140)), "JPEG"),
        "large.jpg": encode(coffee.resize((1500, 1000), Image.BICUBIC), "JPEG", quality=92),
    }
    folder = tmp_path_factory.mktemp("modes")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [(folder / name, open_image(data)[0]) for name, data in files.items()]


@pytest.mark.parametrize("kind", HASH_KINDS)
def test_hash_equals_imagededup_across_modes_and_sizes(kind, files_in_other_modes_and_sizes):
    ours = hash_images([image for _, image in files_in_other_modes_and_sizes], [kind])[kind]
    encoder = IMAGEDEDUP[kind](verbose=False)
    theirs = [encoder.encode_image(image_file=str(path)) for path, _ in files_in_other_modes_and_sizes]
    assert [hash_to_hex(value) for value in ours] == theirs


def test_wavelet_low_pass_equals_pywt_to_the_last_bit(photo_files, transparent_drawings):
    """A value one ulp off could flip a wHash bit where two blocks tie (flat drawings
    tie often), so the floats themselves must equal pywt's, not just the hashes."""
    import pywt

    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (16, 256, 256), dtype=np.uint8)
    thumbnails = np.concatenate([
        np.stack([gray_thumbnail(open_image(path.read_bytes())[0].convert("RGB"), "whash") for path in photo_files]),
        np.stack([gray_thumbnail(flatten_alpha(image).convert("RGB"), "whash") for image in transparent_drawings]),
        noise,
        (noise // 85) * 85,  # few levels: many equal block sums reached by different pixels
    ])
    ours = haar_low_pass(thumbnails)
    assert ours.shape == (len(thumbnails), 8, 8)
    assert np.array_equal(ours, pywt.wavedec2(thumbnails / 255, "haar", level=5, axes=(1, 2))[0])
    assert all(np.array_equal(ours[i], pywt.wavedec2(thumbnails[i] / 255, "haar", level=5)[0]) for i in range(len(thumbnails)))


def test_flip_hash_is_the_hash_of_the_mirrored_image(photo_files):
    photos = [open_image(path.read_bytes())[0] for path in photo_files]
    mirrored = [image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for image in photos]
    hashes = hash_images(photos, HASH_KINDS, flip=True)
    for kind in HASH_KINDS:
        assert [hash_to_hex(v) for v in hashes[kind + "_flip"]] == [imagededup_hash(kind, m) for m in mirrored]
    # Mirroring moves a photo far in plain pHash space; the flip hash brings the copy back.
    mirrored_phash = hash_images(mirrored, ["phash"])["phash"]
    plain = [hamming(a, b) for a, b in zip(hashes["phash"], mirrored_phash)]
    assert np.median(plain) > 16
    assert list(hashes["phash_flip"]) == list(mirrored_phash)


def test_pipeline_draft_decode_is_smaller_and_close_to_exact():
    coffee = Image.fromarray(skimage.data.coffee()).resize((1600, 1000), Image.BICUBIC)
    data = encode(coffee, "JPEG", quality=90)
    draft = open_image(data, draft_side=HASH_DECODE_SIDE)[0]
    assert draft.size == (400, 250)  # 1/4 scale: 1/8 would make the short side 125 < 128
    exact = hash_images([open_image(data)[0]], HASH_KINDS)
    approximate = hash_images([draft], HASH_KINDS)
    for kind in HASH_KINDS:
        assert hamming(exact[kind][0], approximate[kind][0]) <= 6


def test_unknown_kind_names_the_choices():
    with pytest.raises(ValueError, match="phash, dhash, whash, ahash"):
        HashStage(kinds=("md5",))


def records_with_a_skipped_one(images: list[Image.Image]) -> list[Record]:
    records = []
    for index, image in enumerate(images):
        record = Record(key=f"r{index}", source="test", ordinal=index, image=image)
        records.append(record)
    records[3].skip("corrupt image data: test")
    return records


def test_stage_keeps_order_passes_skipped_records_and_round_trips_through_parquet(tmp_path, photo_files):
    images = [open_image(path.read_bytes())[0] for path in photo_files]
    records = records_with_a_skipped_one(images)
    stage = HashStage(kinds=("phash", "dhash"), flip=True, batch_size=3)
    out = list(stage(iter(records)))
    assert [r.key for r in out] == [r.key for r in records]
    assert out[3].signatures == {}
    alive = [r for r in out if r.alive]
    expected = hash_images([r.image for r in alive], ("phash", "dhash"), flip=True)
    assert set(stage.signature_names) == set(expected)
    for name, values in expected.items():
        assert [r.signatures[name] for r in alive] == values.view(np.int64).tolist()

    table = pa.Table.from_pylist([{"key": r.key, **r.signatures} for r in alive])
    pq.write_table(table, tmp_path / "signatures.parquet")
    column = pq.read_table(tmp_path / "signatures.parquet")["phash"]
    assert np.array_equal(hashes_from_column(column), expected["phash"])
    assert hash_to_hex(hashes_from_column(column)[0]) == imagededup_hash("phash", alive[0].image)


def test_hex_round_trip_keeps_all_64_bits():
    from dedupkit.signatures.hashes import hex_to_hash

    for value in (0, 1, 2**63, 2**64 - 1, 0x8F3A_0000_0000_00FF):
        assert hex_to_hash(hash_to_hex(value)) == value
    assert hash_to_hex(-1) == "f" * 16  # the signed int64 form of the same bits


def test_stage_passes_records_without_pixels_untouched(photo_files):
    image = open_image(photo_files[0].read_bytes())[0]
    released = Record(key="released", source="test", image=None)
    skipped = Record(key="skipped", source="test").skip("not an image (no format Pillow can read)")
    alive = Record(key="alive", source="test", image=image)
    out = list(HashStage(batch_size=2)(iter([skipped, released, alive, skipped])))
    assert [r.key for r in out] == ["skipped", "released", "alive", "skipped"]
    assert out[0].signatures == {} and out[1].signatures == {}
    assert hash_to_hex(out[2].signatures["phash"]) == imagededup_hash("phash", image)
    assert list(HashStage()(iter([]))) == []
