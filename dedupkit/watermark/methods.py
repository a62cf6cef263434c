"""Watermark methods behind one interface: embed bits into RGB pixels, read them back.

- `dwtDct`, `dwtDctSvd`, `rivaGan`: invisible-watermark (imwatermark), images >= 256x256.
- `ssDct`: this project's keyed spread-spectrum mark in the 8x8 block DCT of the
  luminance, for any image from 32x32 up (see `SpreadSpectrumDct`).

Every method reads a soft score per bit (positive means 1); `bits = scores > 0`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import lru_cache

import numpy as np
import scipy.fft

from dedupkit.watermark.payload import PayloadLayout, derive_seed


class WatermarkMethod(ABC):
    name: str
    min_side: int
    """Shorter image side below which the method cannot embed (or read) reliably."""
    layout: PayloadLayout
    """The payload bit budget that fits this method's capacity."""
    keyed_positions: bool = False
    """True when the key also chooses where bits go (not only the whitening of the payload)."""
    soft_scores: bool = False
    """True when extract() gives graded confidences (used for soft-decision decoding)."""

    def accepts(self, width: int, height: int) -> bool:
        return min(width, height) >= self.min_side

    @abstractmethod
    def embed(self, rgb: np.ndarray, bits: np.ndarray, key: bytes) -> np.ndarray:
        """Marked copy of `rgb` (uint8 HxWx3) carrying `bits` (uint8 0/1, layout.codeword_bits)."""

    @abstractmethod
    def extract(self, rgb: np.ndarray, key: bytes) -> np.ndarray:
        """Soft score per bit (float, > 0 reads as 1)."""

    def read_bits(self, rgb: np.ndarray, key: bytes) -> np.ndarray:
        return (self.extract(rgb, key) > 0).astype(np.uint8)


class ImWatermarkMethod(WatermarkMethod):
    """One of invisible-watermark's methods (BGR pixels, at least 256x256 = 65,536 pixels)."""

    min_side = 256

    def __init__(self, name: str, layout: PayloadLayout):
        self.name = name
        self.layout = layout

    def accepts(self, width: int, height: int) -> bool:
        # imwatermark's own rule is on the area; we also need both sides for its 4x4 blocks.
        return width * height >= 256 * 256 and min(width, height) >= 64

    def _prepare(self) -> None:
        if self.name == "rivaGan":
            from imwatermark import WatermarkEncoder

            try:
                WatermarkEncoder.loadModel()
            except ImportError as exc:
                raise RuntimeError(
                    "the rivaGan watermark needs onnxruntime: pip install onnxruntime"
                ) from exc

    def embed(self, rgb: np.ndarray, bits: np.ndarray, key: bytes) -> np.ndarray:
        from imwatermark import WatermarkEncoder

        self._prepare()
        encoder = WatermarkEncoder()
        encoder.set_watermark("bits", [int(b) for b in bits])
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        marked_bgr = encoder.encode(bgr, self.name)
        return np.ascontiguousarray(np.clip(marked_bgr, 0, 255).astype(np.uint8)[..., ::-1])

    def extract(self, rgb: np.ndarray, key: bytes) -> np.ndarray:
        from imwatermark import WatermarkDecoder

        self._prepare()
        decoder = WatermarkDecoder("bits", self.layout.codeword_bits)
        bits = np.asarray(decoder.decode(np.ascontiguousarray(rgb[..., ::-1]), self.name), dtype=np.float64)
        # imwatermark only gives hard decisions; report them as unit-confidence scores.
        return bits * 2.0 - 1.0


# ---------------------------------------------------------------------------------
# Keyed spread spectrum in the block DCT (the project's own method, 32 px and up)

BLOCK = 8
# The lowest AC frequencies, u, v <= 2: JPEG quantizes them finest and a half-size
# resize keeps them.  Measured against u, v <= 3 and u + v <= 3 (same PSNR): this band
# keeps more marks through JPEG 50 and resizing at 32 and 64 px.
BAND = [(u, v) for u in range(3) for v in range(3) if (u, v) != (0, 0)]
# One tile of TILE x TILE blocks carries each bit a balanced number of times, so even a
# 32x32 image (exactly one tile) has every bit spread over the same number of coefficients.
TILE = 4
SLOTS_PER_TILE = TILE * TILE * len(BAND)


@lru_cache(maxsize=None)
def _dct_matrix() -> np.ndarray:
    """Orthonormal 8-point DCT-II matrix C: block coefficients are C @ block @ C.T (JPEG's own transform)."""
    return scipy.fft.dct(np.eye(BLOCK), norm="ortho", axis=0)


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _blocks(plane: np.ndarray) -> np.ndarray:
    """(rows, cols, 8, 8) view of the top-left area that whole blocks cover."""
    rows, cols = plane.shape[0] // BLOCK, plane.shape[1] // BLOCK
    return plane[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).swapaxes(1, 2)


def _band_coefficients(luma: np.ndarray) -> np.ndarray:
    """(rows, cols, len(BAND)) DCT coefficients of the band, per 8x8 block."""
    c = _dct_matrix()
    coefficients = c @ _blocks(luma) @ c.T
    us, vs = zip(*BAND)
    return coefficients[:, :, list(us), list(vs)]


def _band_to_pixels(band: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixel-domain image of band coefficients (everything else zero), full `shape`."""
    c = _dct_matrix()
    rows, cols = band.shape[:2]
    full = np.zeros((rows, cols, BLOCK, BLOCK))
    us, vs = zip(*BAND)
    full[:, :, list(us), list(vs)] = band
    pixels = (c.T @ full @ c).swapaxes(1, 2).reshape(rows * BLOCK, cols * BLOCK)
    out = np.zeros(shape)
    out[: rows * BLOCK, : cols * BLOCK] = pixels
    return out


def _splitmix64(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))



def _tile_matmul(tiled: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(ty, tx, slots) @ (slots, k) as one contiguous 2-D BLAS product (stacked matmul is far slower)."""
    ty, tx, slots = tiled.shape
    flat = np.ascontiguousarray(tiled.reshape(ty * tx, slots))
    return (flat @ matrix).reshape(ty, tx, matrix.shape[1])


def _uniform(hashes: np.ndarray) -> np.ndarray:
    return (hashes >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class SpreadTransformDct(WatermarkMethod):
    """Keyed spread-transform dither modulation (STDM) over 8x8 block-DCT luminance.

    Why not plain additive spread spectrum: a 32x32 image has only 128 usable
    coefficients, under 2 per payload bit, and blind correlation then drowns in the
    image's own content (host interference), which costs far more than a 40 dB budget to cancel.  STDM
    keeps the keyed spreading but quantizes the correlation instead of adding to it,
    so its cost no longer depends on the image.

    Layout: the image is cut into tiles of 4x4 blocks (32x32 px).  In every tile a
    key-seeded permutation gives each payload bit 1-2 of its 128 band coefficients, and a
    key-seeded +/-1 chip per coefficient (hashed from its absolute position) spreads it.
    Bit i of tile t is carried by the chip correlation P = sum(chip * coeff) / sqrt(N),
    moved to the nearest point of the lattice step*Z + dither + bit*step/2 (a key-seeded
    dither per tile and bit).  Reading a tile gives a soft score -cos(2 pi (P - dither) /
    step) per bit (+1 means 1); the tiles' scores add up, so bigger images read more
    reliably, and a crop that keeps the top-left corner keeps every whole tile in sync.
    With a wrong key or no mark, the chips and dither make each read bit a fair coin
    over textured content; an exactly flat block (a black background) always reads the
    key's dither, so images with large flat areas share bits and the analytic
    false-alarm bound is optimistic for them (measured: 1 of 5,000 Fashion-MNIST items).

    The change is shaped by local texture (busy blocks take more), added equally to R, G
    and B (chroma untouched), and re-measured after rounding and clipping to uint8.
    A global gain (brightness) rescales P, so reading also tries a few gains
    (`GAINS`); detection counts each as a separate test.
    """

    name = "stdmDct"
    min_side = TILE * BLOCK
    keyed_positions = True
    soft_scores = True
    GAINS = (1.0, 0.8, 1.2, 0.9, 1.1)

    def __init__(self, layout: PayloadLayout, step: float = 32.0, passes: int = 3):
        self.layout = layout
        self.step = step
        self.passes = passes

    def _tiled(self, band: np.ndarray) -> np.ndarray:
        """(tiles_y, tiles_x, SLOTS_PER_TILE) view of the band over whole tiles only."""
        ty, tx = band.shape[0] // TILE, band.shape[1] // TILE
        tiles = band[: ty * TILE, : tx * TILE].reshape(ty, TILE, tx, TILE, len(BAND)).swapaxes(1, 2)
        return tiles.reshape(ty, tx, SLOTS_PER_TILE)

    def _untile(self, tiled: np.ndarray, rows: int, cols: int) -> np.ndarray:
        ty, tx = tiled.shape[:2]
        band = np.zeros((rows, cols, len(BAND)))
        blocks = tiled.reshape(ty, tx, TILE, TILE, len(BAND)).swapaxes(1, 2).reshape(ty * TILE, tx * TILE, len(BAND))
        band[: ty * TILE, : tx * TILE] = blocks
        return band

    def _keyed(self, key: bytes, ty: int, tx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Slot-to-bit map, one-hot (slots x bits) / sqrt(N), chips and dithers for a tile grid."""
        n_bits = self.layout.codeword_bits
        generator = np.random.Generator(np.random.PCG64(derive_seed(key, "dedupkit/stdmDct/permutation")))
        slot_bit = generator.permutation(SLOTS_PER_TILE) % n_bits
        counts = np.bincount(slot_bit, minlength=n_bits).astype(np.float64)
        spread = np.zeros((SLOTS_PER_TILE, n_bits))
        spread[np.arange(SLOTS_PER_TILE), slot_bit] = 1.0 / np.sqrt(counts[slot_bit])
        ys, xs = np.meshgrid(np.arange(ty, dtype=np.uint64), np.arange(tx, dtype=np.uint64), indexing="ij")
        tile_id = (ys << np.uint64(32)) | xs
        chip_seed = np.uint64(derive_seed(key, "dedupkit/stdmDct/chips"))
        slot_ids = np.arange(SLOTS_PER_TILE, dtype=np.uint64)
        chips = np.where(_splitmix64((tile_id[..., None] << np.uint64(12)) ^ slot_ids ^ chip_seed) >> np.uint64(63), 1.0, -1.0)
        dither_seed = np.uint64(derive_seed(key, "dedupkit/stdmDct/dither"))
        bit_ids = np.arange(n_bits, dtype=np.uint64)
        dithers = _uniform(_splitmix64((tile_id[..., None] << np.uint64(12)) ^ bit_ids ^ dither_seed)) * self.step
        return slot_bit, spread, chips, dithers

    def _projections(self, rgb: np.ndarray, spread: np.ndarray, chips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        luma = _luma(rgb)
        band = _band_coefficients(luma)
        return _tile_matmul(self._tiled(band) * chips, spread), luma

    def accepts(self, width: int, height: int) -> bool:
        return min(width, height) >= self.min_side

    def embed(self, rgb: np.ndarray, bits: np.ndarray, key: bytes) -> np.ndarray:
        height, width = rgb.shape[:2]
        if not self.accepts(width, height):
            raise ValueError(f"{self.name} needs at least {self.min_side}x{self.min_side} pixels, got {width}x{height}")
        rows, cols = height // BLOCK, width // BLOCK
        ty, tx = rows // TILE, cols // TILE
        slot_bit, spread, chips, dithers = self._keyed(key, ty, tx)
        offsets = dithers + np.asarray(bits, dtype=np.float64) * (self.step / 2)

        projections, luma = self._projections(rgb, spread, chips)
        weights = self._tiled(np.broadcast_to(self._masking_weights(luma), (rows, cols, len(BAND))))
        # Raising P of bit i by 1 with the least weighted energy moves slot j by
        # chip_j * w_j * sqrt(N_i) / sum_{k in i} w_k.
        membership = (spread > 0).astype(np.float64)
        weight_sums = _tile_matmul(weights, membership)
        counts = membership.sum(axis=0)
        per_unit = chips * weights * np.sqrt(counts)[slot_bit] / weight_sums[..., slot_bit]

        added = np.zeros_like(weights)
        marked = rgb
        for _ in range(self.passes):
            targets = np.round((projections - offsets) / self.step) * self.step + offsets
            moves = targets - projections
            if np.abs(moves).max() < 0.05 * self.step:
                break
            added += per_unit * moves[..., slot_bit]
            delta = _band_to_pixels(self._untile(added, rows, cols), (height, width))
            marked = np.clip(np.rint(rgb.astype(np.float64) + delta[..., None]), 0, 255).astype(np.uint8)
            projections, _ = self._projections(marked, spread, chips)
        return marked

    @staticmethod
    def _masking_weights(luma: np.ndarray) -> np.ndarray:
        """Per-block visibility weight, (rows, cols, 1): texture masks the change, flat areas show it."""
        blocks = _blocks(luma)
        activity = blocks.std(axis=(2, 3))
        reference = max(float(np.median(activity)), 2.0)
        return np.clip(np.sqrt(activity / reference), 0.5, 2.0)[..., None]

    def extract_candidates(self, rgb: np.ndarray, key: bytes) -> list[np.ndarray]:
        """Soft scores per bit under each gain hypothesis in GAINS (the first is no gain)."""
        height, width = rgb.shape[:2]
        ty, tx = height // BLOCK // TILE, width // BLOCK // TILE
        n_bits = self.layout.codeword_bits
        if ty == 0 or tx == 0:
            return [np.zeros(n_bits)]
        _, spread, chips, dithers = self._keyed(key, ty, tx)
        projections, _ = self._projections(rgb, spread, chips)
        candidates = []
        for gain in self.GAINS:
            phase = 2 * np.pi * (projections / gain - dithers) / self.step
            candidates.append(-np.cos(phase).reshape(-1, n_bits).sum(axis=0) / np.sqrt(ty * tx))
        return candidates

    def extract(self, rgb: np.ndarray, key: bytes) -> np.ndarray:
        return self.extract_candidates(rgb, key)[0]


# Bit budgets.  Default: 76 bits = 16-bit dataset id + 32-bit record index + BCH(t=4)
# parity; an unmarked image passes for a marked one with probability 7.8e-8.
STANDARD_LAYOUT = PayloadLayout(dataset_bits=16, index_bits=32, correctable=4)
# rivaGan's network carries exactly 32 bits: 14-bit dataset id + 12-bit index (the
# registry resolves index mod 4096 to candidates) + 6 parity bits correcting 1 flip.
RIVAGAN_LAYOUT = PayloadLayout(dataset_bits=14, index_bits=12, correctable=1, min_field_order=6)

METHOD_NAMES = ("stdmDct", "dwtDct", "dwtDctSvd", "rivaGan")  # cheapest first: detection stops at a hit
SMALL_IMAGE_METHOD = "stdmDct"
DEFAULT_LARGE_METHOD = "stdmDct"
"""Chosen from benchmarks/watermark_robustness.py (see benchmarks/results/watermark_robustness.json)."""


@lru_cache(maxsize=None)
def get_method(name: str) -> WatermarkMethod:
    if name == "stdmDct":
        return SpreadTransformDct(STANDARD_LAYOUT)
    if name in ("dwtDct", "dwtDctSvd"):
        return ImWatermarkMethod(name, STANDARD_LAYOUT)
    if name == "rivaGan":
        return ImWatermarkMethod(name, RIVAGAN_LAYOUT)
    raise ValueError(f"unknown watermark method {name!r}: choose one of {', '.join(METHOD_NAMES)} or auto")


def choose_method(name: str, width: int, height: int) -> WatermarkMethod | None:
    """The method to embed with ('auto': the default at 256 px and up, stdmDct below); None if too small."""
    if name == "auto":
        large = get_method(DEFAULT_LARGE_METHOD)
        method = large if large.accepts(width, height) else get_method(SMALL_IMAGE_METHOD)
    else:
        method = get_method(name)
    return method if method.accepts(width, height) else None
