"""The audio format on the OpenAI leg: μ-law passthrough (default) or PCM16 at 24 kHz.

With ``audio/pcmu`` both ways (the default) bytes pass through untouched: no transcoding
on the hot path. With ``OPENAI_AUDIO_FORMAT=pcm16`` each call has one streaming resampler
per direction (:mod:`bridge.audio.resample`, soxr LQ): caller μ-law 8 kHz → PCM16 24 kHz in
20 ms chunks toward the model, model PCM16 → μ-law in 20 ms frames toward Twilio. The core
only ever sees μ-law, so its byte counts are μ-law (8 bytes/ms); an item's μ-law duration
trails the model's by the resampler delay (≤ 40 ms), which keeps every truncation at or
under what the model generated.

The outbound resampler is per response stream: it is flushed when an item's audio ends
and cleared at a barge-in, so filter-delayed samples of discarded audio never reach the
next response.
"""

from __future__ import annotations

from bridge.audio.resample import Downsampler, Upsampler
from bridge.core import realtime as rt
from bridge.core.realtime_client import AudioFormatName, InputAudioAppend


class UpstreamCodec:
    __slots__ = ("_down", "_up")

    def __init__(self, audio_format: AudioFormatName) -> None:
        pcm = audio_format == "audio/pcm"
        self._up = Upsampler() if pcm else None
        self._down = Downsampler() if pcm else None

    def append(self, frames: list[bytes]) -> InputAudioAppend | None:
        """One ``input_audio_buffer.append`` for caller μ-law frames, in order, or ``None``
        if there is nothing to send yet.

        Frames that are ready together go in one event (the model sees one continuous
        buffer either way; fewer messages when the gate stage catches up after a delay).
        """
        if not frames:
            return None
        if self._up is None:
            return InputAudioAppend(b"".join(frames))
        chunks = [chunk for frame in frames for chunk in self._up.push(frame)]
        return InputAudioAppend(b"".join(chunks)) if chunks else None

    def outbound(self, event: rt.RealtimeEvent) -> list[rt.RealtimeEvent]:
        """Model audio events with their audio as μ-law (others unchanged)."""
        down = self._down
        if down is None:
            return [event]
        match event:
            case rt.AudioDelta():
                audio = b"".join(down.push(event.audio))
                return [rt.AudioDelta(event.response_id, event.item_id, 0, audio)]
            case rt.AudioDone():
                tail = b"".join(down.flush())
                delta = rt.AudioDelta(event.response_id, event.item_id, 0, tail)
                return [delta, event] if tail else [event]
        return [event]

    def discard_outbound(self) -> None:
        """A barge-in dropped the response: forget what the resampler still holds."""
        if self._down is not None:
            self._down.clear()
