"""Mark one image: choose the method, build the payload, embed, encode once, verify."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from dedupkit.watermark.encoding import EncodedImage, decode_rgb, encode_marked
from dedupkit.watermark.methods import WatermarkMethod, choose_method
from dedupkit.watermark.payload import PayloadCodec


def codec_for(method: WatermarkMethod, key: bytes) -> PayloadCodec:
    return PayloadCodec(key, method.layout, purpose=method.name)


def codeword_hex(bits: np.ndarray) -> str:
    return np.packbits(bits).tobytes().hex()


@dataclass(frozen=True)
class MarkedImage:
    method: str
    payload_index: int
    payload_hex: str
    encoded: EncodedImage
    verified: bool
    """Re-decoding the written bytes reads the same payload back."""
    psnr: float


def split_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB pixels and the untouched alpha channel (None for RGB images)."""
    if image.mode == "RGBA":
        array = np.asarray(image)
        return np.ascontiguousarray(array[..., :3]), np.ascontiguousarray(array[..., 3])
    return np.asarray(image.convert("RGB")), None


def verify_encoded(data: bytes, method: WatermarkMethod, codec: PayloadCodec, record_index: int) -> bool:
    read = method.read_bits(decode_rgb(data), codec.key)
    decoded = codec.decode(read)
    return decoded is not None and decoded.record_index == record_index % codec.layout.index_modulus


def mark_image(image: Image.Image, key: bytes, record_index: int, source_format: str | None,
               method: str = "auto") -> MarkedImage | None:
    """Embed the payload (key's dataset id, record_index) and encode; None when the image is too small.

    The written bytes are decoded and read back; when a lossy format loses the mark,
    the same marked pixels are written losslessly (PNG) instead: the image is still
    encoded once from the marked pixels, never re-encoded from lossy output.
    """
    width, height = image.size
    chosen = choose_method(method, width, height)
    if chosen is None:
        return None
    codec = codec_for(chosen, key)
    bits = codec.encode(record_index)
    rgb, alpha = split_alpha(image)
    marked = chosen.embed(rgb, bits, key)
    encoded = encode_marked(marked, alpha, source_format)
    verified = verify_encoded(encoded.data, chosen, codec, record_index)
    if not verified and encoded.format != "PNG":
        encoded = encode_marked(marked, alpha, source_format, lossless=True)
        verified = verify_encoded(encoded.data, chosen, codec, record_index)
    return MarkedImage(
        method=chosen.name,
        payload_index=record_index % codec.layout.index_modulus,
        payload_hex=codeword_hex(bits),
        encoded=encoded,
        verified=verified,
        psnr=psnr(rgb, marked),
    )


def psnr(original: np.ndarray, marked: np.ndarray) -> float:
    mse = float(np.mean((original.astype(np.float64) - marked.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
