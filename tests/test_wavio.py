"""WAV read/write, mixdown and resampling."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from bridge.audio import mulaw
from bridge.audio.synth import speech_like
from bridge.audio.wavio import (
    WavFormatError,
    read_wav,
    read_wav_ulaw,
    resample,
    write_ulaw_wav,
    write_wav,
)


def _tone(rate: int, hz: float = 440.0, seconds: float = 0.25, level: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def _riff(fmt_tag: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd chunk, padded
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_round_trip_keeps_samples_and_rate(tmp_path: Path, rate: int) -> None:
    samples = _tone(rate)
    path = tmp_path / "tone.wav"
    write_wav(path, samples, rate)
    back, back_rate = read_wav(path)
    assert back_rate == rate
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, samples, atol=1 / 32768)


def test_write_clips_instead_of_wrapping(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    write_wav(path, np.array([2.0, -2.0], dtype=np.float32), 8000)
    back, _ = read_wav(path)
    assert back[0] == pytest.approx(32767 / 32768)
    assert back[1] == -1.0


def test_stereo_is_mixed_down(tmp_path: Path) -> None:
    left = np.full(100, 8000, dtype="<i2")
    right = np.full(100, -4000, dtype="<i2")
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(np.column_stack([left, right]).tobytes())
    mono, rate = read_wav(path)
    assert rate == 16000
    np.testing.assert_allclose(mono, 2000 / 32768)


@pytest.mark.parametrize(
    ("fmt_tag", "bits", "data", "expected"),
    [
        (1, 8, bytes([128, 192, 64]), [0.0, 0.5, -0.5]),
        (1, 24, b"\x00\x00\x40" + b"\x00\x00\xc0", [0.5, -0.5]),
        (1, 32, np.array([2**30, -(2**30)], dtype="<i4").tobytes(), [0.5, -0.5]),
        (3, 32, np.array([0.25, -0.75], dtype="<f4").tobytes(), [0.25, -0.75]),
        (3, 64, np.array([0.25, -0.75], dtype="<f8").tobytes(), [0.25, -0.75]),
    ],
)
def test_integer_and_float_encodings(
    tmp_path: Path, fmt_tag: int, bits: int, data: bytes, expected: list[float]
) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(_riff(fmt_tag, 1, 22050, bits, data))
    samples, rate = read_wav(path)
    assert rate == 22050
    np.testing.assert_allclose(samples, expected, atol=1e-6)


def test_extensible_float_stereo(tmp_path: Path) -> None:
    frames = np.array([[0.5, 0.25], [-0.5, -0.25]], dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 0xFFFE, 2, 48000, 48000 * 8, 8, 32)
    fmt += struct.pack("<HHI", 22, 32, 3) + struct.pack("<H", 3) + b"\x00" * 14
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(frames)) + frames
    path = tmp_path / "ext.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    samples, rate = read_wav(path)
    assert rate == 48000
    np.testing.assert_allclose(samples, [0.375, -0.375])


def test_not_a_wav_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"ID3 not a wav file at all")
    with pytest.raises(WavFormatError):
        read_wav(path)
    path.write_bytes(_riff(2, 1, 8000, 4, b"\x00\x00"))  # ADPCM
    with pytest.raises(WavFormatError, match="0x0002"):
        read_wav(path)


@pytest.mark.parametrize(("from_rate", "to_rate"), [(44100, 8000), (8000, 16000), (24000, 8000)])
def test_resample_keeps_duration_and_pitch(from_rate: int, to_rate: int) -> None:
    tone = _tone(from_rate, hz=440.0, seconds=1.0)
    out = resample(tone, from_rate, to_rate)
    assert out.dtype == np.float32
    assert len(out) == to_rate
    assert _dominant_hz(out, to_rate) == pytest.approx(440.0, abs=2.0)


def test_ulaw_helpers_round_trip_through_any_rate(tmp_path: Path) -> None:
    payload = mulaw.encode_float(speech_like(500, seed=3))
    path = tmp_path / "heard.wav"
    write_ulaw_wav(path, payload, rate=16000)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.getnframes() == 2 * len(payload)
    back = read_wav_ulaw(path)
    assert len(back) == len(payload)
    original = mulaw.decode_float(payload)
    again = mulaw.decode_float(back)
    # Two resamplings and two μ-law quantisations: close, not bit-exact.
    assert float(np.sqrt(np.mean((original - again) ** 2))) < 0.01
