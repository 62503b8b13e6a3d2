"""The sans-IO core of one call: every per-call decision, as events in and actions out.

:class:`CallCore` holds **all** per-call state; every field is set in ``__init__`` and
``__slots__`` forbids any other, so an attribute used but never initialised (the bug that
started this project: ``_cancelled_response_ids`` read in 14 places, set in none) cannot
exist here: mypy rejects the read and the runtime rejects the write.

Barge-in (see :meth:`CallCore._barge_in`): ``input_audio_buffer.speech_started`` is the
trigger, acted on only while the AI is speaking: a response is active, AI audio is queued
locally, or audio sent to Twilio is not yet confirmed played. The local fast path
(:meth:`CallCore.on_local_onset`) feeds the same mechanism: it stops playout at once and
holds the unplayed audio until the server confirms (then it completes) or a confirmation
window passes (then the held audio resumes where it stopped and nothing is truncated).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from bridge.core import realtime as rt
from bridge.core import twilio
from bridge.core.actions import (
    Action,
    BargeIn,
    EndCall,
    Log,
    LogLevel,
    SendUpstream,
    Truncation,
    WakeTx,
)
from bridge.core.cancelled import CancelledResponses
from bridge.core.inputclock import InputClock
from bridge.core.notes import DEFAULT_NEGATIONS, Note, NoteBook, NoteDisposition
from bridge.core.playout import BYTES_PER_MS, MarkOutcome, OutboundFrame, Pacer, PlayoutLedger

FastBargeIn = Literal["off", "duck"]

BENIGN_ERROR_CODES = frozenset(
    {
        "response_cancel_not_active",
        "conversation_already_has_active_response",
        "input_audio_buffer_commit_empty",
    }
)
FATAL_ERROR_CODES = frozenset({"beta_api_shape_disabled", "invalid_api_key", "session_expired"})


@dataclass(frozen=True, slots=True)
class CoreSettings:
    session: rt.SessionSettings
    frame_ms: int = 40
    """Outbound frame size toward Twilio, ms (a mark follows each frame). 40 ms halves the
    messages (media, mark, echo) of 20 ms frames, the bridge's main per-call cost, while the
    heard position stays within a few ms (measured by ``bench/bargein``)."""
    lead_ms: int = 100
    """How far ahead of real time audio is sent to Twilio, ms."""
    max_queued_ms: int = 120_000
    greeting: str | None = "Greet the caller briefly and ask how you can help."
    negations: tuple[str, ...] = DEFAULT_NEGATIONS
    cancelled_max: int = 64
    cancelled_max_age_s: float = 300.0
    fast_barge_in: FastBargeIn = "duck"
    """``duck``: a local voice onset stops playout at once (caller-perceived cutoff p95
    35 ms against 192 ms on the server's VAD alone, ``bench/cutoff``); ``off``: wait for
    the server's ``speech_started``."""
    confirm_window_ms: int = 700
    """Local fast path: how long the held audio waits for the server's ``speech_started``."""
    log_transcripts: bool = False
    """Log what the caller and the AI said at INFO (personal data: off by default)."""


class SessionPhase(Enum):
    CONNECTING = "connecting"
    CONFIGURING = "configuring"
    READY = "ready"


@dataclass(slots=True)
class ActiveResponse:
    response_id: str
    created_at: float
    audio_bytes: int = 0
    first_audio_at: float | None = None


@dataclass(slots=True)
class Duck:
    """Local fast barge-in in progress: playout stopped, unplayed audio held."""

    started_at: float
    held: list[OutboundFrame]


@dataclass(slots=True)
class CallCounters:
    frames_in: int = 0
    frames_dropped_backlog: int = 0
    frames_gated: int = 0
    frames_upstream: int = 0
    inbound_gaps: int = 0
    inbound_gap_filled_ms: int = 0
    twilio_malformed: int = 0
    upstream_malformed: int = 0
    upstream_unknown: int = 0
    upstream_errors: int = 0
    audio_deltas: int = 0
    audio_ms_received: int = 0
    audio_dropped_unconfirmed_ms: int = 0
    frames_out: int = 0
    audio_ms_sent: int = 0
    tx_overflow_frames: int = 0
    marks_played: int = 0
    marks_cleared: int = 0
    marks_unknown: int = 0
    responses: int = 0
    responses_cancelled: int = 0
    barge_ins: int = 0
    local_barge_ins: int = 0
    false_alarms_resumed: int = 0
    tx_flushed_frames: int = 0
    tx_flushed_ms: int = 0
    late_deltas_dropped: int = 0
    late_audio_ms_dropped: int = 0
    late_transcripts_dropped: int = 0
    truncations: int = 0
    deletions: int = 0
    notes_sent: int = 0
    notes_silent: int = 0
    notes_discarded: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class TxSend:
    media: str
    mark: str
    frame: OutboundFrame
    play_start_at: float
    """Trio time (s) the frame is expected to start playing at the caller."""


@dataclass(frozen=True, slots=True)
class TxWait:
    until: float


@dataclass(frozen=True, slots=True)
class TxIdle:
    pass


TxDecision = TxSend | TxWait | TxIdle


class CallCore:
    """All state of one call and every decision about it. Not thread-safe; no I/O."""

    __slots__ = (
        "_active",
        "_barge_in_active",
        "_barge_in_epoch",
        "_cancelled",
        "_deferred_response",
        "_duck",
        "_event_seq",
        "_late_items",
        "_notes",
        "_pacer",
        "_phase",
        "_requests_in_flight",
        "_session_update_id",
        "_stale_requests",
        "call_sid",
        "counters",
        "input_clock",
        "ledger",
        "settings",
        "started_at",
        "stream_sid",
    )

    def __init__(self, settings: CoreSettings, *, stream_sid: str, call_sid: str, now: float):
        self.settings = settings
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.started_at = now
        self.counters = CallCounters()
        self.input_clock = InputClock()
        frame_bytes = settings.frame_ms * BYTES_PER_MS
        self.ledger = PlayoutLedger(
            frame_bytes=frame_bytes,
            max_queued_frames=max(1, settings.max_queued_ms // settings.frame_ms),
        )
        self._pacer = Pacer(lead_ms=settings.lead_ms)
        self._cancelled = CancelledResponses(settings.cancelled_max, settings.cancelled_max_age_s)
        self._notes = NoteBook.with_negations(settings.negations)
        self._phase = SessionPhase.CONNECTING
        self._session_update_id: str | None = None
        self._active: ActiveResponse | None = None
        self._requests_in_flight: set[str] = set()
        self._stale_requests: set[str] = set()
        self._deferred_response = False
        self._late_items: dict[str, list[str]] = {}
        self._duck: Duck | None = None
        self._barge_in_active = False
        self._barge_in_epoch = 0
        self._event_seq = 0

    # -- read-only views ------------------------------------------------------------------

    @property
    def session_ready(self) -> bool:
        return self._phase is SessionPhase.READY

    @property
    def barge_in_active(self) -> bool:
        """From a barge-in until ``speech_stopped``: the gate passes every inbound frame."""
        return self._barge_in_active

    @property
    def barge_in_epoch(self) -> int:
        """Number of barge-ins so far; notes capture it when they start being produced."""
        return self._barge_in_epoch

    @property
    def active_response_id(self) -> str | None:
        return self._active.response_id if self._active else None

    @property
    def ai_speaking(self) -> bool:
        return (
            self._active is not None
            or self.ledger.playing
            or self.ledger.has_queued
            or self._duck is not None
        )

    @property
    def _transcript_level(self) -> LogLevel:
        return "INFO" if self.settings.log_transcripts else "DEBUG"

    def is_cancelled(self, response_id: str) -> bool:
        return response_id in self._cancelled

    # -- helpers --------------------------------------------------------------------------

    def _event_id(self, kind: str) -> str:
        self._event_seq += 1
        return f"bridge_{kind}_{self._event_seq}"

    def _request_response(self, instructions: str | None = None) -> SendUpstream:
        event_id = self._event_id("response")
        self._requests_in_flight.add(event_id)
        return SendUpstream(
            rt.response_create_event(event_id, request_tag=event_id, instructions=instructions)
        )

    def _may_create_response(self) -> bool:
        return (
            self._phase is SessionPhase.READY
            and self._active is None
            and not self._requests_in_flight
            and not self._barge_in_active
            and self._duck is None
        )

    # -- upstream lifecycle ---------------------------------------------------------------

    def on_upstream_open(self, now: float) -> list[Action]:
        """The Realtime socket is open: configure the session at once (GA shape)."""
        self._phase = SessionPhase.CONFIGURING
        self._session_update_id = self._event_id("session")
        return [
            SendUpstream(rt.session_update_event(self.settings.session, self._session_update_id))
        ]

    def _on_session_updated(self, ev: rt.SessionUpdated) -> list[Action]:
        want = self.settings.session.audio_format
        if ev.input_format != want or ev.output_format != want:
            if self._phase is SessionPhase.READY:
                return [
                    EndCall(f"session_format_changed in={ev.input_format} out={ev.output_format}")
                ]
            return [
                EndCall(
                    f"session_format_mismatch want={want} "
                    f"in={ev.input_format} out={ev.output_format}"
                )
            ]
        if self._phase is SessionPhase.READY:
            return []
        self._phase = SessionPhase.READY
        actions: list[Action] = [
            Log("INFO", "SESSION_READY", f"upstream confirmed {want} both ways", {"format": want})
        ]
        if self.settings.greeting:
            actions.append(self._request_response(self.settings.greeting))
        return actions

    # -- Realtime events ------------------------------------------------------------------

    def on_realtime_event(self, ev: rt.RealtimeEvent, now: float) -> list[Action]:
        match ev:
            case rt.AudioDelta():
                return self._on_audio_delta(ev, now)
            case rt.TranscriptDelta():
                if ev.response_id in self._cancelled:
                    self.counters.late_transcripts_dropped += 1
                return []
            case rt.SpeechStarted():
                return self._on_speech_started(ev, now)
            case rt.SpeechStopped():
                return self._on_speech_stopped(ev)
            case rt.ResponseCreated():
                return self._on_response_created(ev, now)
            case rt.OutputItemAdded():
                return self._on_output_item_added(ev)
            case rt.AudioDone():
                if ev.response_id not in self._cancelled:
                    self.ledger.audio_done(ev.item_id)
                    return [WakeTx()]
                return []
            case rt.ResponseDone():
                return self._on_response_done(ev, now)
            case rt.InputTranscript():
                return self._on_input_transcript(ev)
            case rt.ErrorEvent():
                return self._on_error(ev)
            case rt.SessionUpdated():
                return self._on_session_updated(ev)
            case rt.SessionCreated():
                return [Log("DEBUG", "SESSION_CREATED", f"upstream session {ev.session_id}")]
            case rt.ItemTruncated():
                return [Log("DEBUG", "TRUNCATED", f"{ev.item_id} at {ev.audio_end_ms} ms")]
            case rt.ItemDeleted():
                return [Log("DEBUG", "DELETED", ev.item_id)]
            case rt.TranscriptDone():
                if ev.response_id in self._cancelled:
                    return []
                return [
                    Log(
                        self._transcript_level,
                        "AI_SAID",
                        repr(ev.transcript),
                        {"item_id": ev.item_id},
                    )
                ]
            case rt.UnknownEvent():
                self.counters.upstream_unknown += 1
                return [Log("DEBUG", "UPSTREAM_UNKNOWN", f"ignored event type {ev.event_type!r}")]
            case rt.MalformedEvent():
                self.counters.upstream_malformed += 1
                return [
                    Log(
                        "WARNING",
                        "UPSTREAM_MALFORMED",
                        f"{ev.reason} (#{self.counters.upstream_malformed}); call continues",
                    )
                ]
            case rt.IgnoredEvent():
                return []

    def _on_audio_delta(self, ev: rt.AudioDelta, now: float) -> list[Action]:
        if ev.response_id in self._cancelled:
            self.counters.late_deltas_dropped += 1
            self.counters.late_audio_ms_dropped += len(ev.audio) // BYTES_PER_MS
            return []
        if self._phase is not SessionPhase.READY:
            # Audio in an unconfirmed format would reach the caller as static.
            self.counters.audio_dropped_unconfirmed_ms += len(ev.audio) // BYTES_PER_MS
            return []
        self.counters.audio_deltas += 1
        self.counters.audio_ms_received += len(ev.audio) // BYTES_PER_MS
        if self._active is not None and self._active.response_id == ev.response_id:
            self._active.audio_bytes += len(ev.audio)
            if self._active.first_audio_at is None:
                self._active.first_audio_at = now
        dropped = self.ledger.add_audio(ev.response_id, ev.item_id, ev.audio)
        if dropped:
            self.counters.tx_overflow_frames += dropped
            return [
                WakeTx(),
                Log("WARNING", "TX_OVERFLOW", f"local TX queue full: dropped {dropped} oldest"),
            ]
        return [WakeTx()]

    def _on_output_item_added(self, ev: rt.OutputItemAdded) -> list[Action]:
        if ev.role != "assistant" or ev.item_type != "message":
            return []
        if ev.response_id in self._cancelled:
            self._late_items.setdefault(ev.response_id, []).append(ev.item_id)
        else:
            self.ledger.track_item(ev.response_id, ev.item_id)
        return []

    def _on_response_created(self, ev: rt.ResponseCreated, now: float) -> list[Action]:
        tag = ev.metadata.get("bridge_request")
        if tag is not None and tag in self._stale_requests:
            # Requested before the caller cut in: it must not speak now.
            self._stale_requests.discard(tag)
            self._cancelled.add(ev.response_id, now)
            self.counters.responses_cancelled += 1
            return [
                SendUpstream(rt.response_cancel_event(self._event_id("cancel"), ev.response_id)),
                Log(
                    "INFO",
                    "STALE_RESPONSE",
                    f"cancelled {ev.response_id}: requested before barge-in",
                ),
            ]
        if tag is not None:
            self._requests_in_flight.discard(tag)
        self.counters.responses += 1
        self._active = ActiveResponse(ev.response_id, now)
        return [Log("DEBUG", "RESPONSE_CREATED", ev.response_id)]

    def _on_response_done(self, ev: rt.ResponseDone, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._active is not None and self._active.response_id == ev.response_id:
            active, self._active = self._active, None
            first = (
                f"{(active.first_audio_at - active.created_at) * 1000:.0f}"
                if active.first_audio_at is not None
                else "-"
            )
            actions.append(
                Log(
                    "INFO",
                    "RESPONSE_DONE",
                    f"{ev.response_id} status={ev.status} reason={ev.reason} "
                    f"audio_ms={active.audio_bytes // BYTES_PER_MS} first_audio_ms={first}",
                )
            )
        for item_id in self._late_items.pop(ev.response_id, []):
            self.counters.deletions += 1
            actions.append(SendUpstream(rt.item_delete_event(self._event_id("delete"), item_id)))
        if self._deferred_response and self._may_create_response():
            self._deferred_response = False
            actions.append(self._request_response())
        return actions

    def _on_speech_started(self, ev: rt.SpeechStarted, now: float) -> list[Action]:
        if self._duck is not None:
            return [self._barge_in(now, "confirmed", ev.audio_start_ms)]
        if not self.ai_speaking:
            return [Log("DEBUG", "SPEECH_STARTED", "caller speaks; AI silent, nothing to stop")]
        return [self._barge_in(now, "server", ev.audio_start_ms)]

    def _on_speech_stopped(self, ev: rt.SpeechStopped) -> list[Action]:
        if not self._barge_in_active:
            return []
        self._barge_in_active = False
        return [Log("INFO", "BARGE_IN_END", f"caller utterance ended at {ev.audio_end_ms} ms")]

    def _on_input_transcript(self, ev: rt.InputTranscript) -> list[Action]:
        released, discarded = self._notes.on_caller_transcript(ev.transcript)
        actions: list[Action] = [
            Log(self._transcript_level, "CALLER_SAID", repr(ev.transcript), {"item_id": ev.item_id})
        ]
        if discarded:
            self.counters.notes_discarded += len(discarded)
            actions.append(
                Log(
                    "INFO",
                    "NOTES_DISCARDED",
                    f"caller said a plain negation: {len(discarded)} note(s) awaiting "
                    "confirmation discarded",
                )
            )
        for note in released:
            actions.extend(self._deliver(note))
        return actions

    def _on_error(self, ev: rt.ErrorEvent) -> list[Action]:
        self.counters.upstream_errors += 1
        detail = f"code={ev.code} param={ev.param} event_id={ev.event_id}: {ev.message}"
        configuring = self._phase is SessionPhase.CONFIGURING
        if (configuring and ev.event_id == self._session_update_id) or (
            configuring and (ev.param or "").startswith("session")
        ):
            return [EndCall(f"session_update_rejected {detail}")]
        if ev.code in FATAL_ERROR_CODES:
            return [EndCall(f"upstream_fatal_error {detail}")]
        if ev.code == "conversation_already_has_active_response":
            # Our request collided with a response we did not know about: ask again later.
            if ev.event_id is not None and ev.event_id in self._requests_in_flight:
                self._requests_in_flight.discard(ev.event_id)
                self._deferred_response = True
            return [Log("INFO", "UPSTREAM_BENIGN", detail)]
        if ev.code in BENIGN_ERROR_CODES:
            return [Log("INFO", "UPSTREAM_BENIGN", detail)]
        if ev.event_id is not None and ev.event_id in self._requests_in_flight:
            self._requests_in_flight.discard(ev.event_id)
        return [Log("WARNING", "UPSTREAM_ERROR", f"{detail}; call continues")]

    # -- Twilio ---------------------------------------------------------------------------

    def on_twilio_mark(self, name: str, now: float) -> list[Action]:
        outcome = self.ledger.on_mark(name, now)
        match outcome:
            case MarkOutcome.PLAYED:
                self.counters.marks_played += 1
            case MarkOutcome.CLEARED:
                self.counters.marks_cleared += 1
            case MarkOutcome.UNKNOWN:
                self.counters.marks_unknown += 1
                return [Log("DEBUG", "MARK_UNKNOWN", f"ignored mark {name!r}")]
        return []

    # -- TX writer ------------------------------------------------------------------------

    def tx_poll(self, now: float) -> TxDecision:
        """What the TX writer should do at ``now``: send one frame, wait, or idle."""
        if self._duck is not None:
            return TxIdle()
        frame = self.ledger.peek_frame()
        if frame is None:
            return TxIdle()
        frame_ms = len(frame.payload) / BYTES_PER_MS
        ready_at = self._pacer.ready_at(now, frame_ms)
        if ready_at > now:
            return TxWait(ready_at)
        self.ledger.pop_frame()
        play_start = self._pacer.play_start_for_next(now)
        mark = self.ledger.on_sent(frame, now)
        self._pacer.on_sent(now, frame_ms)
        self.counters.frames_out += 1
        self.counters.audio_ms_sent += len(frame.payload) // BYTES_PER_MS
        return TxSend(
            media=twilio.media_message(self.stream_sid, frame.payload),
            mark=twilio.mark_message(self.stream_sid, str(mark)),
            frame=frame,
            play_start_at=play_start,
        )

    def next_deadline(self) -> float | None:
        """Trio time of the next timer the core needs (:meth:`on_timer`), if any."""
        if self._duck is not None:
            return self._duck.started_at + self.settings.confirm_window_ms / 1000.0
        return None

    def on_timer(self, now: float) -> list[Action]:
        self._cancelled.expire(now)
        duck = self._duck
        if duck is None or now < duck.started_at + self.settings.confirm_window_ms / 1000.0:
            return []
        # No server confirmation: a cough, a door, an "mm-hm". Resume where playout stopped.
        self._duck = None
        self._barge_in_active = False
        self.ledger.resume(duck.held)
        self.counters.false_alarms_resumed += 1
        held_ms = sum(len(f.payload) for f in duck.held) // BYTES_PER_MS
        return [
            WakeTx(),
            Log(
                "INFO",
                "BARGE_IN_RESUMED",
                f"no speech_started within {self.settings.confirm_window_ms} ms: "
                f"resuming {held_ms} ms of held audio, nothing truncated",
                {"held_ms": held_ms},
            ),
        ]

    # -- barge-in -------------------------------------------------------------------------

    def on_local_onset(self, now: float) -> list[Action]:
        """Local VAD heard the caller start speaking (not explained by echo)."""
        if (
            self.settings.fast_barge_in == "off"
            or self._duck is not None
            or self._barge_in_active
            or not self.ai_speaking
        ):
            return []
        cleared, held = self.ledger.hold(now)
        self._pacer.on_clear(now)
        self._duck = Duck(started_at=now, held=held)
        self._barge_in_active = True
        self.counters.local_barge_ins += 1
        return [
            BargeIn(
                trigger="local",
                detected_at=now,
                clear=twilio.clear_message(self.stream_sid),
                flushed_frames=0,
                flushed_ms=0,
                unplayed_at_twilio_ms=cleared.unplayed_bytes // BYTES_PER_MS,
                upstream=(),
                cancelled_response_ids=(),
                truncations=(),
                deleted_item_ids=(),
                held=True,
                caller_speech_ms=None,
            )
        ]

    def _barge_in(
        self, now: float, trigger: Literal["server", "confirmed"], audio_start_ms: int
    ) -> BargeIn:
        """The hard barge-in: clear, flush, cancel, truncate/delete, drop late audio."""
        clear: str | None = None
        unplayed_ms = 0
        flushed = self.ledger.flush_queue()
        if self._duck is not None:
            flushed = self._duck.held + flushed
            self._duck = None
        else:
            cleared = self.ledger.clear(now)
            self._pacer.on_clear(now)
            clear = twilio.clear_message(self.stream_sid)
            unplayed_ms = cleared.unplayed_bytes // BYTES_PER_MS
        flushed_ms = sum(len(f.payload) for f in flushed) // BYTES_PER_MS
        upstream: list[dict[str, Any]] = []
        cancelled: list[str] = []
        if self._active is not None:
            response_id = self._active.response_id
            upstream.append(rt.response_cancel_event(self._event_id("cancel"), response_id))
            cancelled.append(response_id)
            self.counters.responses_cancelled += 1
        truncations: list[Truncation] = []
        deleted: list[str] = []
        for item in list(self.ledger.items.values()):
            heard_ms = self.ledger.heard_bytes(item.item_id, now) // BYTES_PER_MS
            fully_heard = item.audio_done and heard_ms * BYTES_PER_MS >= item.received_bytes
            if not fully_heard:
                if heard_ms >= 1:
                    truncations.append(Truncation(item.item_id, heard_ms, item.received_ms))
                    upstream.append(
                        rt.item_truncate_event(self._event_id("truncate"), item.item_id, heard_ms)
                    )
                else:
                    # Truncating at 0 is an API error; leaving the item would make the model
                    # believe it said words the caller never heard (the stale-question loop).
                    deleted.append(item.item_id)
                    upstream.append(rt.item_delete_event(self._event_id("delete"), item.item_id))
            if item.response_id not in cancelled:
                cancelled.append(item.response_id)
            self.ledger.finalize(item.item_id)
        for response_id in cancelled:
            self._cancelled.add(response_id, now)
        # Per-response flags reset: nothing requested before the barge-in may speak after it.
        self._active = None
        self._stale_requests |= self._requests_in_flight
        self._requests_in_flight.clear()
        self._deferred_response = False
        self._barge_in_active = True
        self._barge_in_epoch += 1
        self.counters.barge_ins += 1
        self.counters.tx_flushed_frames += len(flushed)
        self.counters.tx_flushed_ms += flushed_ms
        self.counters.truncations += len(truncations)
        self.counters.deletions += len(deleted)
        return BargeIn(
            trigger=trigger,
            detected_at=now,
            clear=clear,
            flushed_frames=len(flushed),
            flushed_ms=flushed_ms,
            unplayed_at_twilio_ms=unplayed_ms,
            upstream=tuple(upstream),
            cancelled_response_ids=tuple(cancelled),
            truncations=tuple(truncations),
            deleted_item_ids=tuple(deleted),
            held=False,
            caller_speech_ms=self.input_clock.to_twilio_ms(audio_start_ms),
        )

    # -- application notes ----------------------------------------------------------------

    def submit_note(
        self, text: str, *, respond: bool, awaits_confirmation: bool, epoch: int | None
    ) -> list[Action]:
        """An application note; ``epoch`` is :attr:`barge_in_epoch` when its work began."""
        note = Note(
            text=text,
            respond=respond,
            awaits_confirmation=awaits_confirmation,
            epoch=self._barge_in_epoch if epoch is None else epoch,
        )
        return self._deliver(note)

    def _deliver(self, note: Note) -> list[Action]:
        disposition = self._notes.dispose(
            note, epoch=self._barge_in_epoch, barge_in_active=self._barge_in_active
        )
        if disposition is NoteDisposition.HOLD:
            return [Log("INFO", "NOTE_HELD", "note waits for the caller's confirmation")]
        actions: list[Action] = [
            SendUpstream(rt.system_note_event(self._event_id("note"), note.text))
        ]
        self.counters.notes_sent += 1
        if disposition is NoteDisposition.SEND_SILENTLY:
            if note.respond:
                self.counters.notes_silent += 1
                why = "barge-in active" if self._barge_in_active else "produced before a barge-in"
                actions.append(Log("INFO", "NOTE_SILENT", f"note sent without a response: {why}"))
            return actions
        if self._may_create_response():
            actions.append(self._request_response())
        else:
            self._deferred_response = True
            actions.append(Log("INFO", "NOTE_DEFERRED", "response.create waits for response.done"))
        return actions
