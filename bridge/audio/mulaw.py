"""G.711 μ-law codec as numpy lookup tables.

Telephony audio on both legs is G.711 μ-law, 8000 samples/s, one byte per sample, so
**1 ms = 8 bytes** and a 20 ms frame is 160 bytes. Durations in this package are always
derived as ``len(payload) / 8`` ms, never assumed from a frame size.

Two sample representations are offered:

* ``int16`` (:func:`decode`, :func:`encode`): the Reese/Campbell routine (BIAS 0x84,
  CLIP 32635) as shipped in SoX and CPython's ``audioop``. Two's-complement int16 has
  no negative zero, so code ``0x7F`` ("−0") decodes to 0 and re-encodes as ``0xFF``
  ("+0"); every other code round-trips.
* ``float32`` in [-1, 1) (:func:`decode_float`, :func:`encode_float`): G.711 is
  sign-magnitude, and so is IEEE 754, so ``0x7F`` decodes to ``-0.0`` and the encoder
  honours the sign bit of zero. All 256 codes round-trip exactly on this path.

Digital silence is ``0xFF`` (:data:`SILENCE_BYTE`), the encoding of linear 0.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

BYTES_PER_MS: Final = 8
"""μ-law at 8 kHz: one byte per sample, 8 samples per millisecond."""

SAMPLE_RATE: Final = 8000
SILENCE_BYTE: Final = 0xFF
_BIAS: Final = 0x84
_CLIP: Final = 32635

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]


def _build_decode_table() -> Int16Array:
    codes = np.arange(256, dtype=np.int32)
    inverted = ~codes & 0xFF
    magnitude = (((inverted & 0x0F) << 3) + _BIAS) << ((inverted & 0x70) >> 4)
    linear = np.where(inverted & 0x80, _BIAS - magnitude, magnitude - _BIAS)
    return linear.astype(np.int16)


def _encode_int32(samples: npt.NDArray[np.int32], negative: npt.NDArray[np.bool_]) -> bytes:
    """Encode linear values with an explicit sign mask (so −0 can be expressed)."""
    magnitude = np.minimum(np.abs(samples), _CLIP) + _BIAS
    # Exponent = position of the highest set bit among bits 7..14, minus 7.
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    sign = np.where(negative, 0x80, 0)
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes())


_DECODE_TABLE: Final[Int16Array] = _build_decode_table()
_DECODE_FLOAT_TABLE: Final[Float32Array] = (_DECODE_TABLE.astype(np.float32) / 32768.0).astype(
    np.float32
)
_DECODE_FLOAT_TABLE[0x7F] = np.float32(-0.0)
_ENCODE_TABLE: Final[npt.NDArray[np.uint8]] = np.frombuffer(
    _encode_int32(
        np.arange(-32768, 32768, dtype=np.int32), np.arange(-32768, 32768, dtype=np.int32) < 0
    ),
    dtype=np.uint8,
).copy()


def decode(payload: bytes) -> Int16Array:
    """μ-law bytes to int16 samples (one sample per byte)."""
    return _DECODE_TABLE[np.frombuffer(payload, dtype=np.uint8)]


def encode(samples: npt.NDArray[np.integer]) -> bytes:
    """int16-range samples to μ-law bytes. Values outside int16 are clipped first."""
    clipped = np.clip(np.asarray(samples, dtype=np.int32), -32768, 32767)
    return _ENCODE_TABLE[clipped + 32768].tobytes()


def decode_float(payload: bytes) -> Float32Array:
    """μ-law bytes to float32 samples in [-1, 1); ``0x7F`` becomes ``-0.0``."""
    return _DECODE_FLOAT_TABLE[np.frombuffer(payload, dtype=np.uint8)]


def encode_float(samples: npt.NDArray[np.floating]) -> bytes:
    """float samples in [-1, 1) to μ-law bytes; the sign of zero is kept (−0.0 → 0x7F)."""
    values = np.asarray(samples, dtype=np.float64)
    scaled = np.clip(np.round(values * 32768.0), -32768, 32767).astype(np.int32)
    return _encode_int32(scaled, np.signbit(values))


def silence(duration_ms: int) -> bytes:
    """μ-law digital silence of ``duration_ms`` milliseconds (8 bytes per ms)."""
    return bytes([SILENCE_BYTE]) * (duration_ms * BYTES_PER_MS)


def duration_ms(payload_len: int) -> float:
    """Duration in ms of ``payload_len`` μ-law bytes."""
    return payload_len / BYTES_PER_MS
