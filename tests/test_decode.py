"""Every bad or unusual input becomes either canonical pixels or a one-line skip reason."""

import numpy as np
import pytest
from PIL import Image

from dedupkit.decode import DecodeError, DecodeLimits, decode_image, open_image, pixel_digest
from dedupkit.samples import bad_inputs, encode


@pytest.fixture(scope="module")
def cases(real_photo):
    return bad_inputs(real_photo)


@pytest.mark.parametrize(
    "name", ["empty.jpg", "truncated.jpg", "corrupt.png", "notes.txt.jpg", "readme.md", "bomb.png", "speck.png"]
)
def test_bad_input_is_refused_with_its_reason(cases, name):
    data, expected = cases[name]
    with pytest.raises(DecodeError) as caught:
        open_image(data)
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_bomb_is_refused_from_the_header_without_decoding(cases):
    data, _ = cases["bomb.png"]
    with pytest.raises(DecodeError, match="100000x100000|10000000000"):
        open_image(data, DecodeLimits(max_pixels=50_000_000))


def test_cmyk_becomes_rgb_with_similar_colours(cases, real_photo):
    image, fmt = open_image(cases["cmyk.jpg"][0])
    assert (image.mode, fmt) == ("RGB", "JPEG")
    difference = np.abs(np.asarray(image, float) - np.asarray(real_photo, float)).mean()
    assert difference < 40  # naive CMYK conversion, no ICC profile, but the same picture


def test_sixteen_bit_is_scaled_not_clipped(cases, real_photo):
    image, _ = open_image(cases["sixteen_bit.png"][0])
    grey = np.asarray(real_photo.convert("L"), dtype=int)
    assert image.mode == "RGB"
    assert np.abs(np.asarray(image)[..., 0].astype(int) - grey).max() <= 1


def test_palette_alpha_and_animation(cases):
    palette, _ = open_image(cases["palette.png"][0])
    assert palette.mode == "RGB"
    alpha, _ = open_image(cases["alpha.png"][0])
    assert alpha.mode == "RGBA" and np.asarray(alpha)[..., 3].min() < 255
    animated, fmt = open_image(cases["animated.gif"][0])
    assert fmt == "GIF" and animated.mode in ("RGB", "RGBA") and animated.size == (48, 36)


def test_exif_rotation_is_applied(cases, real_photo):
    image, _ = open_image(cases["exif_rotated.jpg"][0])
    assert image.size == real_photo.size
    difference = np.abs(np.asarray(image, float) - np.asarray(real_photo, float)).mean()
    assert difference < 8


def test_same_pixels_in_png_and_bmp_share_a_digest(real_photo):
    as_png, _ = open_image(encode(real_photo, "PNG"))
    as_bmp, _ = open_image(encode(real_photo, "BMP"))
    assert pixel_digest(as_png) == pixel_digest(as_bmp)
    shifted = Image.fromarray(np.roll(np.asarray(real_photo), 1, axis=1))
    assert pixel_digest(open_image(encode(shifted, "PNG"))[0]) != pixel_digest(as_png)


def test_opaque_alpha_channel_does_not_change_identity(real_photo):
    rgba = real_photo.convert("RGBA")
    assert pixel_digest(open_image(encode(rgba, "PNG"))[0]) == pixel_digest(open_image(encode(real_photo, "PNG"))[0])


def test_draft_decode_is_smaller_but_reports_the_declared_size(cases, real_photo):
    big = real_photo.resize((1024, 768))
    decoded = decode_image(encode(big, "JPEG", quality=90), draft_side=192)
    assert decoded.size == (1024, 768)
    assert decoded.image.size == (256, 192)  # libjpeg's 1/4 scale: both sides stay >= draft_side
    assert decode_image(encode(big, "JPEG", quality=90), draft_side=256).image.size == (512, 384)
    assert decode_image(encode(big, "JPEG", quality=90)).image.size == (1024, 768)
    # A PNG has no reduced-scale decode: draft_side leaves it whole.
    assert decode_image(encode(big, "PNG"), draft_side=256).image.size == (1024, 768)


def test_draft_decode_of_a_sideways_jpeg_reports_the_upright_size(real_photo):
    upright = real_photo.resize((1024, 768))
    exif = Image.Exif()
    exif[0x0112] = 8
    data = encode(upright.rotate(-90, expand=True), "JPEG", quality=92, exif=exif)
    decoded = decode_image(data, draft_side=128)
    assert decoded.size == (1024, 768)
    assert decoded.image.size[0] > decoded.image.size[1]
