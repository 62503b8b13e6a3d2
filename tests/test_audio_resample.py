"""μ-law 8 kHz ⇄ PCM16 24 kHz: exact frame sizes, flush, clear, tone fidelity."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.audio import mulaw
from bridge.audio.resample import (
    PCM_FRAME_BYTES,
    PCM_RATE,
    ULAW_FRAME_BYTES,
    Downsampler,
    Reframer,
    Upsampler,
)


def _tone(freq: float, rate: int, ms: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def _pcm(samples: np.ndarray) -> bytes:
    return np.round(samples * 32767).astype("<i2").tobytes()


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def test_reframer_emits_exact_frames_and_pads_the_tail() -> None:
    reframer = Reframer(4, 0xFF)
    assert reframer.push(b"abc") == []
    assert reframer.push(b"defghi") == [b"abcd", b"efgh"]
    assert reframer.flush() == [b"i\xff\xff\xff"]
    assert reframer.flush() == []
    reframer.push(b"xy")
    reframer.clear()
    assert reframer.push(b"1234") == [b"1234"]


def test_upsampler_gives_fixed_chunks_and_conserves_duration() -> None:
    up = Upsampler()
    ulaw = mulaw.encode_float(_tone(1000.0, mulaw.SAMPLE_RATE, 1000))
    chunks = [c for i in range(0, len(ulaw), 160) for c in up.push(ulaw[i : i + 160])]
    chunks += up.flush()
    assert {len(c) for c in chunks} == {PCM_FRAME_BYTES}
    # 1 s in, 1 s out: 50 chunks of 20 ms (the last one padded).
    assert len(chunks) == 50
    pcm = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float64) / 32768
    assert _dominant_hz(pcm[2400:21600], PCM_RATE) == pytest.approx(1000.0, abs=5.0)


def test_upsampler_output_is_bursty_but_bounded_in_latency() -> None:
    up = Upsampler()
    produced = [len(up.push(mulaw.silence(20))) for _ in range(10)]
    assert sum(produced) >= 7  # LQ holds back at most ~40 ms (2-3 chunks)
    assert max(produced) <= 2


def test_downsampler_gives_160_byte_ulaw_frames_of_the_same_tone() -> None:
    down = Downsampler()
    pcm = _pcm(_tone(1000.0, PCM_RATE, 1000))
    frames = [f for i in range(0, len(pcm), PCM_FRAME_BYTES) for f in down.push(pcm[i : i + 960])]
    frames += down.flush()
    assert {len(f) for f in frames} == {ULAW_FRAME_BYTES}
    assert len(frames) == 50
    decoded = mulaw.decode_float(b"".join(frames)).astype(np.float64)
    assert _dominant_hz(decoded[800:7200], mulaw.SAMPLE_RATE) == pytest.approx(1000.0, abs=5.0)


def test_downsampler_rejects_tones_above_the_8_khz_nyquist() -> None:
    down = Downsampler()
    pcm = _pcm(_tone(6000.0, PCM_RATE, 500, amplitude=0.5))
    frames = down.push(pcm) + down.flush()
    decoded = mulaw.decode_float(b"".join(frames)).astype(np.float64)
    level_db = 10 * np.log10(np.mean(decoded[800:-800] ** 2) + 1e-20)
    assert level_db < -60.0  # the input is at -9 dBFS; μ-law's smallest step is ~-94 dBFS


def test_downsampler_accepts_odd_length_chunks() -> None:
    pcm = _pcm(_tone(500.0, PCM_RATE, 200))
    whole, split = Downsampler(), Downsampler()
    expected = b"".join(whole.push(pcm) + whole.flush())
    got: list[bytes] = []
    for i in range(0, len(pcm), 333):
        got += split.push(pcm[i : i + 333])
    joined = b"".join(got + split.flush())
    assert len(joined) == len(expected)
    # soxr's rounding depends a little on chunk boundaries: a sample can land one μ-law
    # step away (steps are ~6 % of the magnitude, 8 near zero).
    np.testing.assert_allclose(
        mulaw.decode(joined).astype(float), mulaw.decode(expected), rtol=0.07, atol=16
    )


def _peak_after(side: Upsampler | Downsampler, *, clear: bool) -> int:
    """Peak int16 magnitude out of ``side`` fed silence after a loud tone."""
    if isinstance(side, Upsampler):
        loud, quiet = mulaw.encode_float(_tone(1000.0, 8000, 100)), mulaw.silence(100)
    else:
        loud, quiet = _pcm(_tone(1000.0, PCM_RATE, 100)), bytes(2 * PCM_RATE // 10)
    side.push(loud)
    if clear:
        side.clear()
    out = b"".join(side.push(quiet) + side.flush())
    samples = mulaw.decode(out) if isinstance(side, Downsampler) else np.frombuffer(out, "<i2")
    return int(np.abs(samples.astype(np.int32)).max())


@pytest.mark.parametrize("converter", [Upsampler, Downsampler])
def test_clear_discards_the_filter_tail_of_earlier_audio(
    converter: type[Upsampler] | type[Downsampler],
) -> None:
    assert _peak_after(converter(), clear=False) > 1000  # the tone's tail leaks without it
    assert _peak_after(converter(), clear=True) <= 8  # at most rounding residue (-72 dBFS)


def test_flush_leaves_the_converter_ready_for_the_next_stream() -> None:
    up = Upsampler()
    first = up.push(mulaw.silence(100)) + up.flush()
    second = up.push(mulaw.silence(100)) + up.flush()
    assert len(first) == len(second) == 5
