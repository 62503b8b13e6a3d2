"""Optional PCM16 upstream (``OPENAI_AUDIO_FORMAT=pcm16``): μ-law 8 kHz ⇄ PCM16 24 kHz.

The Realtime API's ``audio/pcm`` is 16-bit little-endian mono at 24 kHz only; Twilio is
μ-law at 8 kHz. One :class:`Upsampler` (toward OpenAI) and one :class:`Downsampler`
(toward Twilio) per call, each wrapping a streaming ``soxr.ResampleStream`` at quality
``"LQ"``. LQ has the same stop band as the default HQ (85-87 dB on aliasing tones) at about
half the latency: 23 ms mean and 40 ms worst, against 43 ms and 73 ms for HQ (measured
with python-soxr 1.1 on 20 ms chunks; ``tests/test_audio_resample.py`` keeps the LQ bound).
Do not use ``"QQ"`` for 24k→8k: it aliases at 0 dB.

soxr emits output in bursts (LQ 8k→24k: 0, 0, 900, 900, 0, 900, ... samples per 20 ms
input), so each side has a :class:`Reframer` that emits exact frame sizes: 160-byte μ-law
frames toward Twilio, :data:`PCM_FRAME_BYTES` (20 ms, 960 bytes) toward OpenAI.

Lifecycle:

* ``push`` converts a chunk and returns the whole frames ready so far (often none).
* ``flush`` ends a stream (the end of a response toward Twilio, or the end of the call):
  it drains the filter's delayed samples, pads the last partial frame with silence (so the
  final frame holds up to one frame of padding), and leaves the object ready for a new
  stream. Total duration is conserved up to that padding.
* ``clear`` discards everything pending, both the filter's delayed samples and the partial
  frame. Call it after a barge-in flush, so the tail of discarded audio does not leak
  into the start of the next response.

Failure modes: samples beyond int16 are clipped by soxr (counted by ``num_clips``). An
odd-length PCM chunk is accepted; its last byte waits for the next chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from bridge.audio import mulaw

PCM_RATE: Final = 24_000
PCM_SAMPLE_BYTES: Final = 2
PCM_FRAME_MS: Final = 20
PCM_FRAME_BYTES: Final = PCM_RATE * PCM_FRAME_MS // 1000 * PCM_SAMPLE_BYTES
"""20 ms of PCM16 at 24 kHz: 960 bytes."""
ULAW_FRAME_BYTES: Final = 20 * mulaw.BYTES_PER_MS
"""20 ms of μ-law toward Twilio: 160 bytes."""
QUALITY: Final = "LQ"

_PCM_DTYPE: Final = np.dtype("<i2")


@dataclass(slots=True)
class Reframer:
    """Cuts a byte stream into frames of exactly ``frame_bytes``."""

    frame_bytes: int
    pad_byte: int
    """Silence in the stream's format: 0xFF for μ-law, 0x00 for PCM16."""
    pending: bytearray = field(default_factory=bytearray)

    def push(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every whole frame now available, oldest first."""
        self.pending += data
        whole = len(self.pending) - len(self.pending) % self.frame_bytes
        if whole == 0:
            return []
        frames = [
            bytes(self.pending[i : i + self.frame_bytes]) for i in range(0, whole, self.frame_bytes)
        ]
        del self.pending[:whole]
        return frames

    def flush(self) -> list[bytes]:
        """The partial frame left, padded with ``pad_byte`` to full size (or nothing)."""
        if not self.pending:
            return []
        padding = bytes([self.pad_byte]) * (self.frame_bytes - len(self.pending))
        frame = bytes(self.pending) + padding
        self.pending.clear()
        return [frame]

    def clear(self) -> None:
        """Drop the partial frame."""
        self.pending.clear()


def _int16(samples: object) -> npt.NDArray[np.int16]:
    """soxr returns untyped arrays; pin the type (int16 in, int16 out)."""
    return np.asarray(samples, dtype=np.int16)


@dataclass(slots=True, init=False)
class Upsampler:
    """μ-law 8 kHz → PCM16 LE 24 kHz in fixed chunks, toward OpenAI."""

    stream: soxr.ResampleStream
    reframer: Reframer

    def __init__(self, frame_bytes: int = PCM_FRAME_BYTES) -> None:
        """``frame_bytes``: size of every chunk returned (even: whole samples)."""
        self.stream = soxr.ResampleStream(
            mulaw.SAMPLE_RATE, PCM_RATE, 1, dtype="int16", quality=QUALITY
        )
        self.reframer = Reframer(frame_bytes, 0x00)

    def push(self, ulaw: bytes) -> list[bytes]:
        """Convert μ-law bytes (8 per ms); return the whole chunks ready so far."""
        out = _int16(self.stream.resample_chunk(mulaw.decode(ulaw)))
        return self.reframer.push(out.astype(_PCM_DTYPE, copy=False).tobytes())

    def flush(self) -> list[bytes]:
        """End of stream: the filter's remaining output, the last chunk padded with zeros."""
        out = _int16(self.stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True))
        self.stream.clear()
        chunks = self.reframer.push(out.astype(_PCM_DTYPE, copy=False).tobytes())
        return chunks + self.reframer.flush()

    def clear(self) -> None:
        """Discard everything pending (filter memory and partial chunk)."""
        self.stream.clear()
        self.reframer.clear()


@dataclass(slots=True, init=False)
class Downsampler:
    """PCM16 LE 24 kHz → μ-law 8 kHz in 160-byte (20 ms) frames, toward Twilio."""

    stream: soxr.ResampleStream
    reframer: Reframer
    odd: bytes
    """The last byte of an odd-length chunk, waiting for its other half."""

    def __init__(self, frame_bytes: int = ULAW_FRAME_BYTES) -> None:
        """``frame_bytes``: size of every μ-law frame returned (8 bytes per ms)."""
        self.stream = soxr.ResampleStream(
            PCM_RATE, mulaw.SAMPLE_RATE, 1, dtype="int16", quality=QUALITY
        )
        self.reframer = Reframer(frame_bytes, mulaw.SILENCE_BYTE)
        self.odd = b""

    def push(self, pcm: bytes) -> list[bytes]:
        """Convert PCM16 LE bytes at 24 kHz; return the whole μ-law frames ready so far."""
        data = self.odd + pcm
        whole = len(data) - len(data) % PCM_SAMPLE_BYTES
        self.odd = data[whole:]
        samples = np.frombuffer(data, dtype=_PCM_DTYPE, count=whole // PCM_SAMPLE_BYTES)
        out = _int16(self.stream.resample_chunk(samples.astype(np.int16, copy=False)))
        return self.reframer.push(mulaw.encode(out))

    def flush(self) -> list[bytes]:
        """End of stream (end of a response): remaining output, last frame padded with
        μ-law silence. A dangling odd byte is dropped (half a sample is not audio)."""
        out = _int16(self.stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True))
        self.stream.clear()
        self.odd = b""
        return self.reframer.push(mulaw.encode(out)) + self.reframer.flush()

    def clear(self) -> None:
        """Discard everything pending (after a barge-in flush)."""
        self.stream.clear()
        self.reframer.clear()
        self.odd = b""
