"""Process-wide services shared by every call (created once by the server)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bridge.audio.cue import comfort_cue
from bridge.audio.wavio import read_wav_ulaw
from bridge.config import BridgeConfig
from bridge.core.call import CoreSettings
from bridge.core.realtime_client import AudioFormatName, FunctionTool, SessionSettings
from bridge.runtime.hangup import TwilioRest
from bridge.runtime.metrics import Metrics
from bridge.runtime.registry import CallRegistry

SHIPPED_HOLD_AUDIO = "assets/one_moment.wav"
""""One moment, please.", spoken by espeak-ng (en-us, 150 wpm), trimmed, 8 kHz μ-law."""


def hold_audio(config: BridgeConfig) -> bytes:
    """The hold phrase as μ-law bytes: ``BRIDGE_HOLD_AUDIO_WAV``, or the shipped one."""
    if config.hold_audio_wav is not None:
        return read_wav_ulaw(Path(config.hold_audio_wav))
    with resources.as_file(resources.files("bridge") / SHIPPED_HOLD_AUDIO) as path:
        return read_wav_ulaw(path)


def core_settings(config: BridgeConfig, hold: bytes = b"") -> CoreSettings:
    """The per-call settings of the core, from the process configuration (``hold``: the
    hold phrase, read once per process by :class:`Services`; without one, no soft cue
    either)."""
    audio: AudioFormatName = "audio/pcm" if config.openai_audio_format == "pcm16" else "audio/pcmu"
    return CoreSettings(
        session=SessionSettings(
            model=config.realtime_model,
            voice=config.openai_voice,
            instructions=config.instructions,
            audio_format=audio,
            tools=tuple(
                FunctionTool(t.name, t.description, t.parameters) for t in config.tools.tools
            ),
        ),
        frame_ms=config.tx_frame_ms,
        lead_ms=config.tx_lead_ms,
        greeting=config.greeting or None,
        negations=config.negations,
        fast_barge_in=config.fast_barge_in,
        confirm_window_ms=config.confirm_window_ms,
        gate_enabled=config.audio_gate,
        log_transcripts=config.log_transcripts,
        tools=config.tools,
        tool_filler_ms=config.tool_filler_ms,
        call_events=config.events_url is not None,
        comfort_after_ms=config.comfort_after_ms,
        reply_timeout_ms=config.reply_timeout_ms,
        media_timeout_s=config.media_timeout_s,
        hold_audio=hold,
        comfort_cue=comfort_cue() if hold else b"",
    )


class Services:
    __slots__ = (
        "config",
        "core_settings",
        "draining",
        "internal_base_url",
        "metrics",
        "registry",
        "rest",
        "upstream_url",
    )

    def __init__(self, config: BridgeConfig, upstream_url: str, rest: TwilioRest | None) -> None:
        self.config = config
        self.core_settings = core_settings(config, hold_audio(config))
        self.upstream_url = upstream_url
        self.rest = rest
        self.draining = False
        """Shutting down: new streams are refused, ``/readyz`` answers 503."""
        self.internal_base_url = config.internal_url or f"http://127.0.0.1:{config.port}"
        """``BRIDGE_INTERNAL_URL``, else this process's own address once it is bound (the
        server sets it: :func:`bridge.runtime.app_link.own_base_url`)."""
        self.registry = CallRegistry()
        self.metrics = Metrics(
            lambda: [handle.statistics() for handle in self.registry.active()],
            lambda: self.draining,
        )

    def control_url(self, call_sid: str) -> str:
        """Where the application reaches the call ``call_sid``: notes go to ``…/notes``.

        It names this process (``BRIDGE_INTERNAL_URL``), so with several bridge replicas
        behind one address an application sends a call's notes to the replica that holds
        the call, with no shared store."""
        return f"{self.internal_base_url.rstrip('/')}/calls/{call_sid}"
