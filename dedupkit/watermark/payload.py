"""What a watermark says, and how it survives a few flipped bits.

Payload = dataset identity (derived from the user's secret key) + record index into
the registry, protected by a BCH code (bchlib, the Linux kernel BCH library) and
XOR-whitened with a key-derived mask.

Whitening makes the bits read from an *unmarked* image look like fair coin flips to
the decoder of any key, whatever the image content, which is what lets us state the
false-alarm probability exactly: an unmarked image is reported as marked only when
its n read bits fall within the code's correction radius of one of the 2**index_bits
codewords carrying this key's dataset identity (see `false_alarm_probability`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import bchlib
import numpy as np

KEY_FILE_NAME = "watermark.key"


class WatermarkKeyError(ValueError):
    """A key the user gave (or the file holding it) is unusable; the message says what to do."""


def parse_key(key: str | bytes) -> bytes:
    """The secret key as bytes: hex text (what we generate and save) or any other passphrase."""
    if isinstance(key, bytes):
        if not key:
            raise WatermarkKeyError("watermark key is empty: pass --key or a key file")
        return key
    text = key.strip()
    if not text:
        raise WatermarkKeyError("watermark key is empty: pass --key or a key file")
    try:
        return bytes.fromhex(text) if len(text) % 2 == 0 and len(text) >= 32 else text.encode()
    except ValueError:
        return text.encode()


def load_or_create_key(out_dir: str | Path, key: str | bytes | None = None) -> bytes:
    """The key to mark an output with; generated and saved to OUT/watermark.key when not given.

    A given key is also saved (when the file does not exist yet), so whoever holds the
    output directory can later run detection against it; an existing key file that
    disagrees with the given key is an error rather than a silent overwrite.
    """
    path = Path(out_dir) / KEY_FILE_NAME
    if key is not None:
        given = parse_key(key)
        if path.exists() and load_key(path) != given:
            raise WatermarkKeyError(
                f"{path} holds a different watermark key: use that key or a new output directory"
            )
        if not path.exists():
            _write_key(path, given)
        return given
    if path.exists():
        return load_key(path)
    created = secrets.token_bytes(32)
    _write_key(path, created)
    return created


def load_key(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise WatermarkKeyError(f"no watermark key at {path}: pass --key or the output directory's {KEY_FILE_NAME}")
    return parse_key(path.read_text())


def _write_key(path: Path, key: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(key.hex() + "\n")
    temporary.chmod(0o600)
    temporary.replace(path)


def derive_bits(key: bytes, purpose: str, count: int) -> np.ndarray:
    """`count` pseudo-random bits (uint8 0/1) from HMAC-SHA256(key, purpose), as long as needed."""
    stream = b""
    counter = 0
    while len(stream) * 8 < count:
        stream += hmac.new(key, f"{purpose}#{counter}".encode(), hashlib.sha256).digest()
        counter += 1
    return np.unpackbits(np.frombuffer(stream, np.uint8))[:count]


def derive_seed(key: bytes, purpose: str) -> int:
    return int.from_bytes(hmac.new(key, purpose.encode(), hashlib.sha256).digest()[:8], "little")


def dataset_id(key: bytes, bits: int) -> int:
    """The dataset identity a key stands for: HMAC-SHA256(key, 'dataset-id') truncated to `bits`."""
    return int("".join(map(str, derive_bits(key, "dedupkit/dataset-id", bits))), 2)


def dataset_fingerprint(key: bytes) -> str:
    """A 64-bit public name of the dataset a key marks (stored in the registry, never the key)."""
    return hmac.new(key, b"dedupkit/dataset-fingerprint", hashlib.sha256).hexdigest()[:16]


@lru_cache(maxsize=None)
def _bch(t: int, m: int) -> bchlib.BCH:
    return bchlib.BCH(t, m=m)


def _int_to_bits(value: int, count: int) -> np.ndarray:
    return np.array([(value >> (count - 1 - i)) & 1 for i in range(count)], dtype=np.uint8)


def _bits_to_int(bits: np.ndarray) -> int:
    return int("".join(str(int(b)) for b in bits), 2) if len(bits) else 0


@dataclass(frozen=True)
class PayloadLayout:
    """Bit budget of one method's payload: message = dataset id | record index, plus BCH parity."""

    dataset_bits: int
    index_bits: int
    correctable: int
    """t: the BCH code corrects up to this many flipped bits anywhere in the codeword."""
    min_field_order: int = 5
    """Raise to get t*m parity bits that exactly fill a fixed capacity (rivaGan's 32 bits)."""

    @property
    def message_bits(self) -> int:
        return self.dataset_bits + self.index_bits

    @property
    def field_order(self) -> int:
        """m of GF(2**m): the smallest that fits the message and t*m parity bits (a shortened code)."""
        for m in range(max(5, self.min_field_order), 16):
            if self.message_bits + self.correctable * m <= 2**m - 1:
                return m
        raise ValueError(f"no BCH code fits {self.message_bits} message bits with t={self.correctable}")

    @property
    def parity_bits(self) -> int:
        return self.correctable * self.field_order

    @property
    def codeword_bits(self) -> int:
        return self.message_bits + self.parity_bits

    @property
    def index_modulus(self) -> int:
        return 2**self.index_bits

    def describe(self) -> str:
        return (
            f"{self.codeword_bits} bits = {self.dataset_bits} dataset + {self.index_bits} index "
            f"+ {self.parity_bits} BCH parity (m={self.field_order}, corrects {self.correctable})"
        )


@dataclass(frozen=True)
class DecodedPayload:
    dataset_id: int
    record_index: int
    """The record index modulo 2**index_bits (what fits in the mark)."""
    codeword: np.ndarray
    """The corrected codeword, whitened, as it was embedded: compare read bits against it."""
    flipped: int
    """Bits the code corrected."""


class PayloadCodec:
    """Turns (key, record index) into the whitened codeword a method embeds, and back."""

    def __init__(self, key: bytes, layout: PayloadLayout, purpose: str):
        self.key = key
        self.layout = layout
        self.dataset_id = dataset_id(key, layout.dataset_bits)
        self._bch = _bch(layout.correctable, layout.field_order)
        self._data_bytes = math.ceil(layout.message_bits / 8)
        self._pad = self._data_bytes * 8 - layout.message_bits
        self._mask = derive_bits(key, f"dedupkit/whiten/{purpose}", layout.codeword_bits)

    def encode(self, record_index: int) -> np.ndarray:
        layout = self.layout
        message = np.concatenate([
            _int_to_bits(self.dataset_id, layout.dataset_bits),
            _int_to_bits(record_index % layout.index_modulus, layout.index_bits),
        ])
        # Leading zero padding shortens the code: fixed, known bits that are never sent.
        data = bytearray(np.packbits(np.concatenate([np.zeros(self._pad, np.uint8), message])).tobytes())
        parity = np.unpackbits(np.frombuffer(bytes(self._bch.encode(data)), np.uint8))[: layout.parity_bits]
        return np.concatenate([message, parity]) ^ self._mask

    def decode(self, bits: np.ndarray) -> DecodedPayload | None:
        """The payload within t flips of `bits` if its dataset id is this key's, else None."""
        layout = self.layout
        bits = np.asarray(bits, dtype=np.uint8)
        if bits.shape != (layout.codeword_bits,):
            raise ValueError(f"expected {layout.codeword_bits} bits, got {bits.shape}")
        plain = bits ^ self._mask
        message, parity = plain[: layout.message_bits], plain[layout.message_bits :]
        data = bytearray(np.packbits(np.concatenate([np.zeros(self._pad, np.uint8), message])).tobytes())
        parity_padded = np.concatenate([parity, np.zeros(self._bch.ecc_bytes * 8 - len(parity), np.uint8)])
        ecc = bytearray(np.packbits(parity_padded).tobytes())
        flipped = self._bch.decode(data, ecc)
        if flipped < 0:
            return None
        self._bch.correct(data, ecc)
        corrected = np.unpackbits(np.frombuffer(bytes(data), np.uint8))
        if corrected[: self._pad].any():
            return None  # the correction landed on a bit that is never sent: not a codeword of ours
        corrected_message = corrected[self._pad :]
        found_dataset = _bits_to_int(corrected_message[: layout.dataset_bits])
        if found_dataset != self.dataset_id:
            return None
        codeword = self.encode(_bits_to_int(corrected_message[layout.dataset_bits :]))
        return DecodedPayload(
            dataset_id=found_dataset,
            record_index=_bits_to_int(corrected_message[layout.dataset_bits :]),
            codeword=codeword,
            flipped=int(np.count_nonzero(codeword != bits)),
        )


def chase_decode(codec: PayloadCodec, scores: np.ndarray, unreliable: int) -> DecodedPayload | None:
    """Soft-decision (Chase-II) decoding: also try every flip pattern of the least reliable bits.

    Returns the decoded payload whose codeword disagrees least with the soft scores
    (sum of |score| over disagreeing bits).  Each of the 2**unreliable patterns is one
    more chance for noise to decode, so `chase_trials` counts them for the false-alarm bound.
    """
    scores = np.asarray(scores, dtype=np.float64)
    hard = (scores > 0).astype(np.uint8)
    weakest = np.argsort(np.abs(scores))[:unreliable]
    best, best_cost = None, np.inf
    for pattern in range(2**unreliable):
        trial = hard.copy()
        for position, bit in enumerate(weakest):
            if pattern >> position & 1:
                trial[bit] ^= 1
        decoded = codec.decode(trial)
        if decoded is None:
            continue
        cost = float(np.abs(scores)[decoded.codeword != hard].sum())
        if cost < best_cost:
            best, best_cost = decoded, cost
    if best is None:
        return None
    return DecodedPayload(best.dataset_id, best.record_index, best.codeword,
                          int(np.count_nonzero(best.codeword != hard)))


def chase_trials(unreliable: int) -> int:
    return 2**unreliable


def false_alarm_probability(layout: PayloadLayout, mismatches: int | None = None) -> float:
    """Probability that n fair coin flips land within `mismatches` (default t) of a codeword of this key.

    Hamming balls of radius <= t around distinct codewords are disjoint, so this is exact:
    2**index_bits codewords carry the key's dataset id, each with sum_{i<=r} C(n, i) words.
    """
    radius = layout.correctable if mismatches is None else min(mismatches, layout.correctable)
    n = layout.codeword_bits
    ball = sum(math.comb(n, i) for i in range(radius + 1))
    return min(1.0, ball * 2.0 ** (layout.index_bits - n))
