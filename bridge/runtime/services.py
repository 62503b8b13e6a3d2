"""Process-wide services shared by every call (created once by the server)."""

from __future__ import annotations

from bridge.config import BridgeConfig
from bridge.core.call import CoreSettings
from bridge.core.realtime_client import AudioFormatName, SessionSettings
from bridge.runtime.hangup import TwilioRest
from bridge.runtime.metrics import Metrics
from bridge.runtime.registry import CallRegistry


def core_settings(config: BridgeConfig) -> CoreSettings:
    """The per-call settings of the core, from the process configuration."""
    audio: AudioFormatName = "audio/pcm" if config.openai_audio_format == "pcm16" else "audio/pcmu"
    return CoreSettings(
        session=SessionSettings(
            model=config.realtime_model,
            voice=config.openai_voice,
            instructions=config.instructions,
            audio_format=audio,
        ),
        frame_ms=config.tx_frame_ms,
        lead_ms=config.tx_lead_ms,
        greeting=config.greeting or None,
        negations=config.negations,
        fast_barge_in=config.fast_barge_in,
        confirm_window_ms=config.confirm_window_ms,
        gate_enabled=config.audio_gate,
        log_transcripts=config.log_transcripts,
    )


class Services:
    __slots__ = (
        "config",
        "core_settings",
        "draining",
        "metrics",
        "registry",
        "rest",
        "upstream_url",
    )

    def __init__(self, config: BridgeConfig, upstream_url: str, rest: TwilioRest | None) -> None:
        self.config = config
        self.core_settings = core_settings(config)
        self.upstream_url = upstream_url
        self.rest = rest
        self.draining = False
        """Shutting down: new streams are refused, ``/readyz`` answers 503."""
        self.registry = CallRegistry()
        self.metrics = Metrics(
            lambda: [handle.statistics() for handle in self.registry.active()],
            lambda: self.draining,
        )
