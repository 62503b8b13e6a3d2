"""Per-frame level in dBFS: silence, known tones, frame-size independence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.audio import level, mulaw, synth


def _sine(dbfs: float, ms: int, freq: float = 1000.0) -> bytes:
    t = np.arange(ms * 8) / mulaw.SAMPLE_RATE
    amplitude = np.sqrt(2.0) * 10 ** (dbfs / 20.0)
    return mulaw.encode_float(amplitude * np.sin(2 * np.pi * freq * t))


@given(st.integers(min_value=1, max_value=4000))
def test_silence_reads_the_silence_floor_at_any_length(n_bytes: int) -> None:
    payload = b"\xff" * n_bytes
    assert level.level_dbfs(payload) == level.SILENCE_DBFS
    assert all(p == 0.0 for p in level.block_powers(payload))


def test_empty_payload() -> None:
    assert level.frame_power(b"") == 0.0
    assert level.level_dbfs(b"") == level.SILENCE_DBFS
    with pytest.raises(ValueError, match="at least one byte"):
        level.block_powers(b"")


@pytest.mark.parametrize("dbfs", [-6.0, -10.0, -20.0, -40.0])
def test_sine_level_is_its_rms_in_dbfs(dbfs: float) -> None:
    # μ-law keeps about 38 dB of SNR per sample, so the level is exact within 0.1 dB
    # (a full-scale sine, -3 dBFS, would clip: the largest code is 32124/32768).
    assert level.level_dbfs(_sine(dbfs, 200)) == pytest.approx(dbfs, abs=0.1)


@pytest.mark.parametrize("frame_bytes", [80, 100, 160, 320, 1000])
def test_level_does_not_depend_on_frame_size(frame_bytes: int) -> None:
    payload = mulaw.encode_float(synth.line_noise(2000, seed=3, level_dbfs=-42.0))
    powers = [
        level.frame_power(payload[i : i + frame_bytes])
        for i in range(0, len(payload) - frame_bytes + 1, frame_bytes)
    ]
    assert level.power_to_dbfs(float(np.mean(powers))) == pytest.approx(-42.0, abs=0.3)


@given(st.binary(min_size=1, max_size=1500))
def test_block_powers_are_means_over_10_ms_blocks(payload: bytes) -> None:
    squares = mulaw.decode_float(payload).astype(np.float64) ** 2
    expected = [squares[i : i + 80].mean() for i in range(0, len(payload), 80)]
    np.testing.assert_allclose(level.block_powers(payload), expected, rtol=1e-12, atol=1e-18)
    durations = level.block_durations_ms(len(payload))
    assert len(durations) == len(expected)
    assert sum(durations) == pytest.approx(len(payload) / mulaw.BYTES_PER_MS)


def test_a_100_byte_frame_has_a_short_last_block() -> None:
    assert level.block_durations_ms(100) == (10.0, 2.5)
    assert level.block_durations_ms(160) == (10.0, 10.0)


@given(st.floats(min_value=-99.0, max_value=0.0))
def test_dbfs_power_round_trip(dbfs: float) -> None:
    assert level.power_to_dbfs(level.dbfs_to_power(dbfs)) == pytest.approx(dbfs, abs=1e-9)
