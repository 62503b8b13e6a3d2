"""WAV files in and out of the simulators, and sample-rate conversion.

:func:`read_wav` accepts what people actually have lying around: PCM 8/16/24/32-bit
integer or IEEE float 32/64-bit, plain or ``WAVE_FORMAT_EXTENSIBLE``, any channel count
(mixed down to mono by averaging) and any sample rate. The RIFF chunks are parsed here
because the stdlib :mod:`wave` module rejects float files. :func:`write_wav` always
writes 16-bit PCM mono through :mod:`wave`.

Samples are float32 in [-1, 1). Resampling uses soxr ``HQ``: this module is for files,
not for the real-time path, so its filter delay does not matter.

Failure modes: :class:`WavFormatError` (a :class:`ValueError`) for anything that is not
a readable RIFF/WAVE file; :class:`OSError` from the filesystem as usual.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from bridge.audio import mulaw

Float32Array = npt.NDArray[np.float32]

_FORMAT_PCM: Final = 0x0001
_FORMAT_FLOAT: Final = 0x0003
_FORMAT_EXTENSIBLE: Final = 0xFFFE


class WavFormatError(ValueError):
    """The file is not a RIFF/WAVE file this module can decode."""


def _decode_samples(data: bytes, format_tag: int, bits: int) -> npt.NDArray[np.float64]:
    """Interleaved sample bytes to float64 in [-1, 1)."""
    if format_tag == _FORMAT_FLOAT:
        if bits == 32:
            return np.frombuffer(data, dtype="<f4").astype(np.float64)
        if bits == 64:
            return np.frombuffer(data, dtype="<f8").copy()
        raise WavFormatError(f"unsupported float sample size: {bits} bits")
    if bits == 8:  # 8-bit WAV is unsigned, centred on 128
        return (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if bits == 16:
        return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0
    if bits == 24:
        triplets = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3)
        widened = np.zeros((len(triplets), 4), dtype=np.uint8)
        widened[:, 1:] = triplets  # the low byte stays 0: a 24-bit value scaled by 256
        return widened.view("<i4").reshape(-1).astype(np.float64) / 2.0**31
    if bits == 32:
        return np.frombuffer(data, dtype="<i4").astype(np.float64) / 2.0**31
    raise WavFormatError(f"unsupported PCM sample size: {bits} bits")


def read_wav(path: Path) -> tuple[Float32Array, int]:
    """Read ``path`` as float32 mono samples in [-1, 1) and its sample rate (Hz).

    Raises:
        WavFormatError: not RIFF/WAVE, no ``fmt``/``data`` chunk, or an unsupported
            encoding (only PCM integer and IEEE float are decoded).
    """
    raw = path.read_bytes()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise WavFormatError(f"{path}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int, int] | None = None
    data: bytes | None = None
    pos = 12
    while pos + 8 <= len(raw) and data is None:
        chunk_id = raw[pos : pos + 4]
        (size,) = struct.unpack_from("<I", raw, pos + 4)
        body = raw[pos + 8 : pos + 8 + size]  # a streamed file may claim more than it has
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavFormatError(f"{path}: truncated fmt chunk")
            tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _FORMAT_EXTENSIBLE:
                if len(body) < 26:
                    raise WavFormatError(f"{path}: truncated WAVE_FORMAT_EXTENSIBLE chunk")
                # The sub-format GUID starts with the plain format tag.
                (tag,) = struct.unpack_from("<H", body, 24)
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk_id == b"data":
            data = body
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    if fmt is None or data is None:
        raise WavFormatError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, block_align, bits = fmt
    if tag not in (_FORMAT_PCM, _FORMAT_FLOAT):
        raise WavFormatError(f"{path}: unsupported WAV encoding 0x{tag:04x}")
    if channels < 1 or rate < 1 or block_align != channels * ((bits + 7) // 8):
        raise WavFormatError(f"{path}: inconsistent fmt chunk")
    usable = len(data) - len(data) % block_align
    samples = _decode_samples(data[:usable], tag, bits).reshape(-1, channels).mean(axis=1)
    return samples.astype(np.float32), rate


def write_wav(path: Path, samples: npt.NDArray[np.floating], rate: int) -> None:
    """Write ``samples`` (float, [-1, 1)) as a 16-bit PCM mono WAV at ``rate`` Hz.

    Values outside [-1, 1) are clipped rather than wrapped.
    """
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype("<i2").tobytes())


def resample(samples: npt.NDArray[np.floating], from_rate: int, to_rate: int) -> Float32Array:
    """``samples`` converted from ``from_rate`` to ``to_rate`` Hz (soxr HQ, float32).

    The output has ``round(len * to_rate / from_rate)`` samples; the filter delay is
    compensated by soxr, so the signal stays time-aligned.
    """
    mono = np.ascontiguousarray(samples, dtype=np.float32)
    if from_rate == to_rate or len(mono) == 0:
        return mono.copy()
    out: Float32Array = soxr.resample(mono, from_rate, to_rate, quality="HQ")
    return out.astype(np.float32, copy=False)


def read_wav_ulaw(path: Path) -> bytes:
    """Any readable WAV as 8 kHz μ-law bytes (8 bytes per ms), resampled if needed."""
    samples, rate = read_wav(path)
    return mulaw.encode_float(resample(samples, rate, mulaw.SAMPLE_RATE))


def write_ulaw_wav(path: Path, payload: bytes, rate: int = mulaw.SAMPLE_RATE) -> None:
    """Decode 8 kHz μ-law ``payload`` and write it as 16-bit PCM mono at ``rate`` Hz."""
    write_wav(path, resample(mulaw.decode_float(payload), mulaw.SAMPLE_RATE, rate), rate)
