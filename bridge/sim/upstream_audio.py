"""Audio helpers of the simulated OpenAI Realtime upstream: GA formats, reply audio, energy VAD.

GA audio formats (``session.audio.*.format``):

* ``audio/pcmu``: G.711 μ-law, 8 kHz, 1 byte per sample, **8 bytes per ms**;
* ``audio/pcma``: G.711 A-law, 8 kHz, **8 bytes per ms**;
* ``audio/pcm``: PCM16 little-endian mono at 24 kHz, **48 bytes per ms**.

The sim is an independent implementation of the protocol: it uses the shared μ-law codec
and the voice synthesiser, never the bridge's protocol code.

Server VAD (:class:`EnergyVad`) works on the input-audio clock (ms of audio appended, counted
from samples), in 10 ms windows. ``threshold`` (0..1) maps linearly to a window RMS level::

    level_dbfs = -60 + 50 * threshold      # 0.0 -> -60 dBFS, 0.5 -> -35 dBFS, 1.0 -> -10 dBFS

RMS dBFS is ``20*log10(rms)`` of samples in [-1, 1) (a full-scale sine is -3 dBFS, the same
convention as :mod:`bridge.audio.synth`). With the default 0.5 the 10 ms windows inside
syllables of voice at -20 dBFS RMS are 15 dB above the threshold, and stationary line noise
at -45 dBFS is 10 dB below it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

import numpy as np
import numpy.typing as npt

from bridge.audio import mulaw
from bridge.audio.synth import AI_VOICE, speech_like

Float32Array = npt.NDArray[np.float32]

PCM_RATE: Final = 24000
G711_RATE: Final = 8000
FORMAT_TYPES: Final = ("audio/pcm", "audio/pcmu", "audio/pcma")
VAD_WINDOW_MS: Final = 10
ONSET_MAX_GAP_MS: Final = 100
"""A speech candidate is abandoned after this much non-speech before it is confirmed (ms)."""


def bytes_per_ms(format_type: str) -> int:
    """Bytes per ms of one GA format: 48 for ``audio/pcm``, 8 for the G.711 ones."""
    return 48 if format_type == "audio/pcm" else 8


def sample_rate(format_type: str) -> int:
    """Samples per second of one GA format."""
    return PCM_RATE if format_type == "audio/pcm" else G711_RATE


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes & 0x70) >> 4
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1).clip(0)
    )
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    linear = np.arange(-32768, 32768, dtype=np.int32)
    magnitude = np.where(linear < 0, -linear - 1, linear) >> 3
    # Segment = position of the highest set bit minus 4 (0 below 32); 13-bit input caps it at 7.
    exponent = np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4
    exponent = np.where(magnitude < 32, 0, exponent)
    mantissa = np.where(exponent == 0, magnitude >> 1, magnitude >> exponent) & 0x0F
    sign = np.where(linear >= 0, 0x80, 0)
    table: npt.NDArray[np.uint8] = ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)
    return table


_ALAW_DECODE: Final = _alaw_decode_table()
_ALAW_ENCODE: Final = _alaw_encode_table()


def decode(payload: bytes, format_type: str) -> Float32Array:
    """Audio bytes of ``format_type`` to float32 samples in [-1, 1) at the format's rate.

    ``audio/pcm`` needs an even number of bytes; callers keep an odd trailing byte for later.
    """
    if format_type == "audio/pcmu":
        return mulaw.decode_float(payload)
    if format_type == "audio/pcma":
        codes = np.frombuffer(payload, dtype=np.uint8)
        return (_ALAW_DECODE[codes].astype(np.float32) / np.float32(32768.0)).astype(np.float32)
    pcm = np.frombuffer(payload, dtype="<i2")
    return (pcm.astype(np.float32) / np.float32(32768.0)).astype(np.float32)


def encode(samples: Float32Array, format_type: str) -> bytes:
    """float32 samples (at the format's rate) to audio bytes of ``format_type``."""
    if format_type == "audio/pcmu":
        return mulaw.encode_float(samples)
    scaled = np.clip(np.round(samples.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int32)
    if format_type == "audio/pcma":
        return _ALAW_ENCODE[scaled + 32768].tobytes()
    return scaled.astype("<i2").tobytes()


@functools.lru_cache(maxsize=64)
def _reply_samples_8k(duration_ms: int, seed: int) -> Float32Array:
    # Synthesis costs ~12 ms per second of audio at 8 kHz (10x that at 24 kHz) and runs in
    # the event loop: benchmarks reuse the same (duration, seed) pairs, so cache them.
    return speech_like(duration_ms, seed=seed, voice=AI_VOICE)


@functools.lru_cache(maxsize=64)
def reply_audio(duration_ms: int, seed: int, format_type: str) -> bytes:
    """``duration_ms`` of deterministic assistant-voice audio encoded as ``format_type``.

    Always synthesised at 8 kHz; ``audio/pcm`` is linearly interpolated up to 24 kHz, which
    keeps the content identical across formats. Length is exactly
    ``duration_ms * bytes_per_ms(format_type)`` bytes.
    """
    base = _reply_samples_8k(duration_ms, seed)
    if format_type != "audio/pcm":
        return encode(base, format_type)
    n_out = duration_ms * (PCM_RATE // 1000)
    positions = np.arange(n_out, dtype=np.float64) * (G711_RATE / PCM_RATE)
    upsampled = np.interp(positions, np.arange(base.size, dtype=np.float64), base)
    return encode(upsampled.astype(np.float32), format_type)


def threshold_to_dbfs(threshold: float) -> float:
    """Map the GA ``turn_detection.threshold`` (0..1) to a window RMS level in dBFS."""
    return -60.0 + 50.0 * threshold


class VadState(Enum):
    IDLE = "idle"
    CANDIDATE = "candidate"
    SPEAKING = "speaking"


@dataclass(frozen=True, slots=True)
class SpeechStart:
    onset_ms: int
    """Input-audio time (ms) at which the confirmed speech began (before prefix padding)."""


@dataclass(frozen=True, slots=True)
class SpeechStop:
    end_ms: int
    """Input-audio time (ms) at detection: end of the last speech window + silence duration."""


@dataclass(slots=True)
class EnergyVad:
    """Energy server VAD on the input-audio clock; see the module docstring for the mapping.

    A speech window (10 ms, level >= threshold) opens a candidate. The candidate becomes speech
    (:class:`SpeechStart`) once its speech windows add up to ``onset_ms``, and is abandoned if
    :data:`ONSET_MAX_GAP_MS` of non-speech comes first. Speech ends (:class:`SpeechStop`) after
    ``silence_ms`` of consecutive non-speech, so the dips between syllables and short word gaps
    do not end it.
    """

    threshold_dbfs: float
    onset_ms: int
    silence_ms: int
    state: VadState = VadState.IDLE
    candidate_start_ms: int = 0
    speech_acc_ms: int = 0
    quiet_ms: int = 0
    pending: Float32Array = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    pending_rate: int = G711_RATE
    clock_ms: int = 0
    """Input-audio time of the end of the last full window (ms)."""

    def reset(self, clock_ms: int) -> None:
        """Forget any speech in progress (buffer commit/clear); windows restart at ``clock_ms``."""
        self.state = VadState.IDLE
        self.speech_acc_ms = 0
        self.quiet_ms = 0
        self.pending = np.zeros(0, dtype=np.float32)
        self.clock_ms = clock_ms

    def feed(self, samples: Float32Array, rate: int) -> list[SpeechStart | SpeechStop]:
        """Process appended samples at ``rate`` Hz; returns the transitions in order."""
        if rate != self.pending_rate:
            # A format change mid-session: the partial window of the old rate is dropped.
            self.pending = np.zeros(0, dtype=np.float32)
            self.pending_rate = rate
        buf = np.concatenate((self.pending, samples)) if self.pending.size else samples
        win = rate * VAD_WINDOW_MS // 1000
        full = buf.size // win
        self.pending = buf[full * win :].copy()
        out: list[SpeechStart | SpeechStop] = []
        if full == 0:
            return out
        frames = buf[: full * win].astype(np.float64).reshape(full, win)
        levels = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        for speech in (levels >= self.threshold_dbfs).tolist():
            event = self._window(speech)
            if event is not None:
                out.append(event)
        return out

    def _window(self, speech: bool) -> SpeechStart | SpeechStop | None:
        start = self.clock_ms
        self.clock_ms += VAD_WINDOW_MS
        if self.state is VadState.IDLE:
            if not speech:
                return None
            self.state = VadState.CANDIDATE
            self.candidate_start_ms = start
            self.speech_acc_ms = 0
            self.quiet_ms = 0
        if self.state is VadState.CANDIDATE:
            if speech:
                self.speech_acc_ms += VAD_WINDOW_MS
                self.quiet_ms = 0
                if self.speech_acc_ms >= self.onset_ms:
                    self.state = VadState.SPEAKING
                    return SpeechStart(self.candidate_start_ms)
            else:
                self.quiet_ms += VAD_WINDOW_MS
                if self.quiet_ms >= ONSET_MAX_GAP_MS:
                    self.state = VadState.IDLE
            return None
        if speech:
            self.quiet_ms = 0
            return None
        self.quiet_ms += VAD_WINDOW_MS
        if self.quiet_ms >= self.silence_ms:
            self.state = VadState.IDLE
            self.quiet_ms = 0
            return SpeechStop(self.clock_ms)
        return None
