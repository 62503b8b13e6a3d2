"""A test driver for the sans-IO call core: feeds events, plays Twilio's part, no sockets."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.config import BridgeConfig
from bridge.core import realtime as rt
from bridge.core import twilio
from bridge.core.actions import Action, BargeIn, EndCall, Log, SendUpstream
from bridge.core.call import CallCore, CoreSettings, TxSend
from bridge.core.realtime_client import SessionSettings, TurnDetection
from bridge.runtime.services import core_settings

SESSION = SessionSettings(model="gpt-realtime", voice="marin", instructions="Be brief.")
CLIENT_CANCELS = replace(SESSION, turn_detection=TurnDetection(interrupt_response=False))
"""A session whose server VAD does not cancel responses: the bridge sends the cancel."""


def settings(**changes: Any) -> CoreSettings:
    """The bridge's default per-call settings (no greeting), with ``changes``."""
    base = replace(core_settings(BridgeConfig()), session=SESSION, greeting=None)
    return replace(base, **changes)


def server_event(payload: Mapping[str, Any]) -> rt.RealtimeEvent:
    return rt.parse_realtime_event(json.dumps(payload))


def delta(response_id: str, item_id: str, audio: bytes) -> rt.RealtimeEvent:
    return server_event(
        {
            "type": "response.output_audio.delta",
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "delta": base64.b64encode(audio).decode(),
        }
    )


@dataclass
class Driver:
    """A call core with a fake clock (seconds) and a model of Twilio's playback."""

    core: CallCore
    now: float = 100.0
    actions: list[Action] = field(default_factory=list)
    sent_frames: list[TxSend] = field(default_factory=list)
    twilio_out: list[str] = field(default_factory=list)

    @classmethod
    def ready(cls, **changes: Any) -> Driver:
        driver = cls(CallCore(settings(**changes), stream_sid="MZ1", call_sid="CA1", now=100.0))
        driver.open_session()
        return driver

    def open_session(self) -> list[Action]:
        """A (new) upstream session opens and confirms pcmu both ways; what the core did."""
        start = len(self.actions)
        self.record(self.core.on_upstream_open(self.now))
        self.event(
            {
                "type": "session.updated",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {"format": {"type": "audio/pcmu"}},
                        "output": {"format": {"type": "audio/pcmu"}},
                    },
                },
            }
        )
        assert self.core.session_ready
        return self.actions[start:]

    def record(self, actions: list[Action]) -> list[Action]:
        self.actions.extend(actions)
        for action in actions:
            if isinstance(action, BargeIn) and action.clear is not None:
                self.twilio_out.append(action.clear)
        return actions

    def event(self, payload: Mapping[str, Any]) -> list[Action]:
        return self.record(self.core.on_realtime_event(server_event(payload), self.now))

    def response_created(self, response_id: str, metadata: Mapping[str, str] | None = None) -> None:
        self.event(
            {
                "type": "response.created",
                "response": {"id": response_id, "status": "in_progress", "metadata": metadata},
            }
        )

    def item_added(self, response_id: str, item_id: str) -> None:
        self.event(
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "item": {"id": item_id, "type": "message", "role": "assistant"},
            }
        )

    def audio(self, response_id: str, item_id: str, ms: int) -> list[Action]:
        return self.record(
            self.core.on_realtime_event(delta(response_id, item_id, b"\x55" * (8 * ms)), self.now)
        )

    def audio_done(self, response_id: str, item_id: str) -> None:
        self.event(
            {"type": "response.output_audio.done", "response_id": response_id, "item_id": item_id}
        )

    def response_done(self, response_id: str, status: str = "completed") -> list[Action]:
        return self.event(
            {"type": "response.done", "response": {"id": response_id, "status": status}}
        )

    def speech_started(self, audio_start_ms: int = 1000) -> list[Action]:
        return self.event(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": audio_start_ms,
                "item_id": "item_user",
            }
        )

    def speech_stopped(self, audio_end_ms: int = 2000) -> list[Action]:
        return self.event(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": audio_end_ms,
                "item_id": "item_user",
            }
        )

    def pump_tx(self) -> int:
        """Send every frame the pacer allows at ``now``; returns how many were sent."""
        count = 0
        while isinstance(decision := self.core.tx_poll(self.now), TxSend):
            self.twilio_out.extend(decision.messages)
            if decision.frame is not None:
                self.sent_frames.append(decision)
                count += 1
        return count

    def mark_names(self) -> list[str]:
        return [json.loads(m)["mark"]["name"] for m in self.twilio_out if '"event":"mark"' in m]

    def play(self, ms: float) -> None:
        """Twilio plays ``ms`` of real time: echo the marks whose audio finished, keep pacing."""
        start, steps = self.now, round(ms / 5)
        for k in range(1, steps + 1):
            self.pump_tx()
            self.now = start + k * 0.005
            self._echo_played()
        self.now = start + ms / 1000.0
        self.pump_tx()

    def _echo_played(self) -> None:
        # Twilio plays frames back to back from the first send and echoes each mark when
        # playback passes it.
        ledger = self.core.ledger
        clock = ledger.last_ack_at or 0.0
        for sent in list(ledger.in_flight):
            started = max(clock, sent.sent_at)
            clock = started + len(sent.frame.payload) / 8000.0
            if clock > self.now + 1e-9:
                return
            if sent.mark is not None:
                self.echo_mark(str(sent.mark), clock)
                self._echo_played()
                return

    def echo_mark(self, name: str, at: float | None = None) -> None:
        """Twilio echoes mark ``name`` (at ``now`` unless ``at`` is given)."""
        self.record(self.core.on_twilio_event(twilio.Mark(name), self.now if at is None else at))

    def upstream_types(self, actions: list[Action] | None = None) -> list[str]:
        return [a.event.TYPE for a in (actions or self.actions) if isinstance(a, SendUpstream)]

    def barge_ins(self) -> list[BargeIn]:
        return [a for a in self.actions if isinstance(a, BargeIn)]

    def logs(self, tag: str) -> list[Log]:
        return [a for a in self.actions if isinstance(a, Log) and a.tag == tag]

    def ended(self) -> list[EndCall]:
        return [a for a in self.actions if isinstance(a, EndCall)]
