"""G.711 μ-law codec against a scalar transcription of the reference routine."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.audio import mulaw

_BIAS = 0x84
_CLIP = 32635
# exp_lut[256] of the Reese/Campbell routine: the position of the top bit of (sample >> 7).
_EXP_LUT = [0, 0, 1, 1, 2, 2, 2, 2] + [3] * 8 + [4] * 16 + [5] * 32 + [6] * 64 + [7] * 128
_DECODE_EXP_LUT = [0, 132, 396, 924, 1980, 4092, 8316, 16764]


def reference_linear2ulaw(sample: int) -> int:
    """``linear2ulaw`` (Craig Reese / Joe Campbell, as in SoX and audioop), no ZEROTRAP."""
    sign = (sample >> 8) & 0x80
    if sign:
        sample = -sample
    sample = min(sample, _CLIP)
    sample += _BIAS
    exponent = _EXP_LUT[(sample >> 7) & 0xFF]
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def reference_ulaw2linear(code: int) -> int:
    """``ulaw2linear`` of the same reference."""
    code = ~code & 0xFF
    sign = code & 0x80
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    sample = _DECODE_EXP_LUT[exponent] + (mantissa << (exponent + 3))
    return -sample if sign else sample


ALL_CODES = bytes(range(256))


def test_encode_matches_reference_for_all_int16_inputs() -> None:
    samples = np.arange(-32768, 32768, dtype=np.int32)
    expected = bytes(reference_linear2ulaw(int(s)) for s in samples)
    assert mulaw.encode(samples) == expected


def test_decode_matches_reference_for_all_codes() -> None:
    expected = [reference_ulaw2linear(c) for c in range(256)]
    assert mulaw.decode(ALL_CODES).tolist() == expected


def test_float_path_round_trips_all_256_codes() -> None:
    assert mulaw.encode_float(mulaw.decode_float(ALL_CODES)) == ALL_CODES


def test_int16_path_round_trips_all_codes_but_negative_zero() -> None:
    round_trip = mulaw.encode(mulaw.decode(ALL_CODES))
    differing = [c for c in range(256) if round_trip[c] != c]
    assert differing == [0x7F]
    assert round_trip[0x7F] == mulaw.SILENCE_BYTE  # −0 has no int16 form: it becomes +0


def test_negative_zero_keeps_its_sign_on_the_float_path() -> None:
    value = mulaw.decode_float(b"\x7f")[0]
    assert value == 0.0
    assert np.signbit(value)
    assert mulaw.encode_float(np.array([-0.0])) == b"\x7f"


def test_encode_clips_beyond_int16() -> None:
    assert mulaw.encode(np.array([40000, -40000])) == mulaw.encode(np.array([32767, -32768]))


@pytest.mark.parametrize("duration_ms", [0, 1, 20, 37])
def test_silence_is_0xff_at_8_bytes_per_ms(duration_ms: int) -> None:
    payload = mulaw.silence(duration_ms)
    assert payload == b"\xff" * (8 * duration_ms)
    assert mulaw.duration_ms(len(payload)) == duration_ms
    assert not mulaw.decode(payload).any()
