"""The caller's audio on its way to the model: frames as the caller sent them, appends as
the simulated upstream received them, and where the one lies on the other's clock.

The model's input clock counts ms of audio appended this session; the caller's clock is the
Twilio ``media.timestamp``. The bridge keeps the two equal up to an offset, which changes
only where caller audio never reached the upstream (frames before the session was ready),
so one offset per call places every frame on the input clock. It is found from the audio
itself: a frame the gate passed as audio appears byte for byte in the appended μ-law.

Times are seconds of the shared ``time.monotonic`` clock; positions are ms.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bench.common.wire import SentFrame
from bridge.audio.mulaw import BYTES_PER_MS, SAMPLE_RATE, SILENCE_BYTE
from bridge.sim.upstream_audio import EnergyVad, SpeechStop, decode, threshold_to_dbfs

ULAW: Final = "audio/pcmu"
POSITION_EPS_MS: Final = 1e-6
MIN_SPOKEN_SHARE: Final = 0.5
"""A frame is matched by content only if at most half its bytes are silence (a frame that
is mostly silence could be found in the wrong place)."""


@dataclass(frozen=True, slots=True)
class Append:
    """One ``input_audio_buffer.append`` as the simulated upstream received it."""

    t: float
    """When the sim read it from the socket (s)."""
    start_ms: float
    """Input-clock position of its first byte (ms of audio appended before it)."""
    audio: bytes

    @property
    def end_ms(self) -> float:
        return self.start_ms + len(self.audio) / BYTES_PER_MS


def appends_from(received: Iterable[tuple[float, dict[str, Any]]]) -> list[Append]:
    """The μ-law appends among a sim session's received events, placed on the input clock."""
    out: list[Append] = []
    at = 0.0
    for t, event in received:
        if event.get("type") != "input_audio_buffer.append":
            continue
        audio = base64.b64decode(event.get("audio") or "")
        out.append(Append(t, at, audio))
        at += len(audio) / BYTES_PER_MS
    return out


def _spoken(payload: bytes) -> bool:
    return payload.count(SILENCE_BYTE) <= len(payload) * (1 - MIN_SPOKEN_SHARE)


def caller_clock_offset(frames: Sequence[SentFrame], appends: Sequence[Append]) -> float | None:
    """``caller ms − input-clock ms`` for this call's μ-law appends, from the first spoken
    frame found byte for byte in the appended audio and confirmed by the next one; ``None``
    if no spoken frame reached the model unchanged (or the audio is not μ-law)."""
    stream = b"".join(a.audio for a in appends)
    spoken = [f for f in frames if _spoken(f.payload)]
    for frame, following in zip(spoken, [*spoken[1:], None], strict=True):
        at = stream.find(frame.payload)
        if at < 0:
            continue
        offset = frame.timestamp_ms - at / BYTES_PER_MS
        if following is None:
            return offset
        there = round((following.timestamp_ms - offset) * BYTES_PER_MS)
        if stream[there : there + len(following.payload)] == following.payload:
            return offset
    return None


def arrival_times(
    frames: Sequence[SentFrame], appends: Sequence[Append], offset_ms: float
) -> list[float | None]:
    """Per frame, when the sim received the append holding the frame's last byte (s), or
    ``None`` if no append did (dropped before the session, or never forwarded)."""
    ends = [a.end_ms for a in appends]
    out: list[float | None] = []
    for frame in frames:
        position = frame.end_ms - offset_ms
        i = bisect.bisect_left(ends, position - POSITION_EPS_MS)
        held = i < len(appends) and appends[i].start_ms < position and position > 0
        out.append(appends[i].t if held else None)
    return out


def speech_ends_ms(
    frames: Sequence[SentFrame], *, threshold: float, onset_ms: int, silence_ms: int
) -> list[float]:
    """Where each turn's speech ends on the caller's clock (ms): the end of the last 10 ms
    window the simulated server VAD counts as speech before it ends the turn, found by
    running that VAD (same threshold, onset and silence) over the audio the caller sent.

    The frames must run without a gap from timestamp 0, as a caller without lost spans sends.
    """
    if not frames:
        return []
    if frames[0].timestamp_ms != 0:
        raise ValueError("the caller's frames must start at timestamp 0")
    vad = EnergyVad(
        threshold_dbfs=threshold_to_dbfs(threshold), onset_ms=onset_ms, silence_ms=silence_ms
    )
    samples = decode(b"".join(f.payload for f in frames), ULAW)
    return [
        float(change.end_ms - silence_ms)
        for change in vad.feed(samples, SAMPLE_RATE)
        if isinstance(change, SpeechStop)
    ]


def frame_holding(frames: Sequence[SentFrame], position_ms: float) -> int | None:
    """Index of the frame whose audio holds the instant just before ``position_ms``."""
    starts = [f.timestamp_ms for f in frames]
    i = bisect.bisect_left(starts, position_ms) - 1
    return i if i >= 0 and frames[i].end_ms >= position_ms - POSITION_EPS_MS else None


def unforwarded_tail_ms(
    frames: Sequence[SentFrame], appends: Sequence[Append], offset_ms: float
) -> float:
    """Caller audio at the end of the stream that never reached the upstream (ms): from the
    end of the last appended audio to the end of the last frame sent, on the caller's clock
    (negative if more was appended than sent, which would be a bug worth seeing)."""
    sent_end = max((f.end_ms for f in frames), default=0.0)
    appended_end = appends[-1].end_ms + offset_ms if appends else 0.0
    return sent_end - appended_end
