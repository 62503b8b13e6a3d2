"""Process-wide services shared by every call (created once by the server)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import BridgeConfig
from bridge.core import realtime as rt
from bridge.core.call import CoreSettings
from bridge.core.notes import DEFAULT_NEGATIONS
from bridge.runtime.hangup import TwilioRest
from bridge.runtime.metrics import Metrics
from bridge.runtime.registry import CallRegistry


@dataclass(slots=True)
class Services:
    config: BridgeConfig
    upstream_url: str
    registry: CallRegistry
    metrics: Metrics
    rest: TwilioRest | None
    draining: bool = False

    def core_settings(self) -> CoreSettings:
        config = self.config
        audio: rt.AudioFormatName = (
            "audio/pcm" if config.openai_audio_format == "pcm16" else "audio/pcmu"
        )
        return CoreSettings(
            session=rt.SessionSettings(
                model=config.realtime_model,
                voice=config.openai_voice,
                instructions=config.instructions,
                audio_format=audio,
            ),
            frame_ms=config.tx_frame_ms,
            lead_ms=config.tx_lead_ms,
            greeting=config.greeting or None,
            negations=config.negations or DEFAULT_NEGATIONS,
            fast_barge_in=config.fast_barge_in,
            confirm_window_ms=config.confirm_window_ms,
            log_transcripts=config.log_transcripts,
        )
