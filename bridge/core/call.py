"""The sans-IO core of one call: every per-call decision, as events in and actions out.

:class:`CallCore` holds **all** per-call state; every field is set in ``__init__`` and
``__slots__`` forbids any other, so an attribute used but never initialised (the bug that
started this project: ``_cancelled_response_ids`` read in 14 places, set in none) cannot
exist here: mypy rejects the read and the runtime rejects the write. It owns the pieces:
the conversation state machine (:mod:`bridge.core.state`), the playout ledger and pacer
(:mod:`bridge.core.playout`), the audio-gate stage (:mod:`bridge.core.gate`), the upstream
audio codec (:mod:`bridge.core.codec`), the cancelled-response set and the notes. The
outside world reads its counters through :meth:`CallCore.statistics`.

Events come in through one method per source: :meth:`on_twilio_event` (the Twilio reader),
:meth:`on_realtime_event` (the OpenAI reader), :meth:`on_caller_frames` (the gate stage),
:meth:`tx_poll` and :meth:`on_timer` (the TX writer), :meth:`submit_note` (the notes pump).

Barge-in (see :meth:`CallCore._barge_in`): ``input_audio_buffer.speech_started`` is the
trigger, acted on only while the AI is speaking: a response is active, AI audio is queued
locally, or audio sent to Twilio is not yet confirmed played. The local fast path
(:meth:`CallCore.on_local_onset`) feeds the same mechanism: it stops playout at once and
holds the unplayed audio until the server confirms (then it completes) or a confirmation
window passes (then the held audio resumes where it stopped and nothing is truncated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, assert_never

from bridge.core import realtime as rt
from bridge.core import twilio
from bridge.core.actions import (
    Action,
    BargeIn,
    EndCall,
    LocalAction,
    Log,
    LogLevel,
    QueueCallerAudio,
    SendUpstream,
    ToApp,
    Truncation,
    WakeTx,
)
from bridge.core.app_work import EmitEvent, WakeTools
from bridge.core.call_events import BargeInHappened, Transcript
from bridge.core.cancelled import CancelledResponses
from bridge.core.codec import UpstreamCodec
from bridge.core.ending import CallEnd, EndReason
from bridge.core.gate import GateStage
from bridge.core.notes import Note, NoteBook, NoteDisposition
from bridge.core.playout import BYTES_PER_MS, MarkOutcome, OutboundFrame, Pacer, PlayoutLedger
from bridge.core.realtime_client import (
    ClientEvent,
    ItemDelete,
    ItemTruncate,
    ResponseCancel,
    ResponseCreate,
    SessionSettings,
    SessionUpdate,
    SystemMessage,
)
from bridge.core.records import BargeInResumed, ResponseFinished, report
from bridge.core.state import (
    ActiveResponse,
    ConversationState,
    Created,
    Duck,
    Floor,
    SessionEvent,
    SessionPhase,
)
from bridge.core.stats import CallCounters, CallStatistics
from bridge.core.tools import Moment, ToolLedger, ToolResult
from bridge.core.toolspec import ToolCatalog
from bridge.core.transcripts import TranscriptLedger

FastBargeIn = Literal["off", "duck"]

BENIGN_ERROR_CODES = frozenset(
    {
        "response_cancel_not_active",
        "conversation_already_has_active_response",
        "input_audio_buffer_commit_empty",
    }
)
FATAL_ERROR_CODES = frozenset({"beta_api_shape_disabled", "invalid_api_key", "session_expired"})

MAX_QUEUED_MS = 120_000
"""Local TX queue cap, ms of AI audio; when full the oldest frames are dropped and counted."""
CANCELLED_MAX = 64
CANCELLED_MAX_AGE_S = 300.0
"""Cancelled responses remembered (count and age): late deltas of any of them are dropped."""


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The per-call settings, projected from :class:`bridge.config.BridgeConfig` (the one
    source of their defaults) by :func:`bridge.runtime.services.core_settings`."""

    session: SessionSettings
    frame_ms: int
    """Outbound frame size toward Twilio, ms (a mark follows each frame)."""
    lead_ms: int
    """How far ahead of real time audio is sent to Twilio, ms."""
    greeting: str | None
    negations: tuple[str, ...]
    fast_barge_in: FastBargeIn
    confirm_window_ms: int
    """Local fast path: how long the held audio waits for the server's ``speech_started``."""
    gate_enabled: bool
    log_transcripts: bool
    """Log what the caller and the AI said at INFO (personal data)."""
    tools: ToolCatalog
    """The tools the model may call (``BRIDGE_TOOLS_FILE``; see :mod:`bridge.core.tools`)."""
    tool_filler_ms: int
    """Silence while a tool runs before the filler is heard (0: no filler)."""
    call_events: bool
    """Call events go to the application (``BRIDGE_EVENTS_URL`` is set)."""
    max_queued_ms: int = MAX_QUEUED_MS
    """Not a user setting: the local TX queue cap (tests make it small)."""


@dataclass(frozen=True, slots=True)
class TxSend:
    media: str
    mark: str
    frame: OutboundFrame


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
        "_cancelled",
        "_codec",
        "_counters",
        "_event_seq",
        "_gate",
        "_late_items",
        "_notes",
        "_pacer",
        "_session_update_id",
        "_state",
        "_tools",
        "_transcripts",
        "call_sid",
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
        self._counters = CallCounters()
        self._state = ConversationState()
        self.ledger = PlayoutLedger(
            frame_bytes=settings.frame_ms * BYTES_PER_MS,
            max_queued_frames=max(1, settings.max_queued_ms // settings.frame_ms),
        )
        self._pacer = Pacer(lead_ms=settings.lead_ms)
        self._gate = GateStage(
            self._counters,
            gate_enabled=settings.gate_enabled,
            server_silence_ms=settings.session.turn_detection.silence_duration_ms,
        )
        self._codec = UpstreamCodec(settings.session.audio_format)
        self._cancelled = CancelledResponses(CANCELLED_MAX, CANCELLED_MAX_AGE_S)
        self._notes = NoteBook.with_negations(settings.negations)
        self._session_update_id: str | None = None
        self._late_items: dict[str, list[str]] = {}
        """Items of an already-cancelled response that appeared late: deleted at its done."""
        self._event_seq = 0
        self._tools = ToolLedger(
            settings.tools,
            state=self._state,
            counters=self._counters,
            ids=self._event_id,
            filler_ms=settings.tool_filler_ms,
            events=settings.call_events,
        )
        """Function calls and their rules (:mod:`bridge.core.tools`)."""
        self._transcripts = TranscriptLedger()
        """AI transcripts waiting to be settled as heard (call events only)."""

    # -- read-only views ------------------------------------------------------------------

    def statistics(self) -> CallStatistics:
        """A snapshot of the call's counters."""
        return self._counters.snapshot()

    @property
    def phase(self) -> SessionPhase:
        return self._state.phase

    @property
    def session_ready(self) -> bool:
        return self._state.phase is SessionPhase.READY

    @property
    def barge_in_active(self) -> bool:
        """From a barge-in until ``speech_stopped`` (or a local one until it resolves): the
        gate passes every inbound frame."""
        return self._state.floor is not Floor.AI_MAY_SPEAK

    @property
    def barge_in_epoch(self) -> int:
        """Number of barge-ins so far; notes capture it when they start being produced."""
        return self._state.barge_in_epoch

    @property
    def active_response_id(self) -> str | None:
        active = self._state.active
        return active.response_id if active else None

    @property
    def ai_speaking(self) -> bool:
        return (
            self._state.active is not None
            or self.ledger.playing
            or self.ledger.has_queued
            or self._state.floor is Floor.HELD
        )

    @property
    def floor_dbfs(self) -> float | None:
        """The caller's learned noise floor, dBFS (``None`` before the first frame)."""
        return self._gate.floor_dbfs

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
        self._state.request(event_id)
        return SendUpstream(
            ResponseCreate(event_id, request_tag=event_id, instructions=instructions)
        )

    # -- Twilio ---------------------------------------------------------------------------

    def on_twilio_event(self, ev: twilio.TwilioEvent, now: float) -> list[LocalAction]:
        """One parsed Twilio frame (the Twilio reader holds no upstream socket)."""
        match ev:
            case twilio.Media():
                self._counters.frames_in += 1
                self._gate.note_caller_time(ev.timestamp_ms, now)
                return [QueueCallerAudio(ev)]
            case twilio.Mark():
                return self._on_mark(ev.name, now)
            case twilio.Stop():
                # An exit's REST request ends the stream too: that is the exit's end.
                return [EndCall(self._tools.twilio_stopped() or CallEnd(EndReason.TWILIO_STOP))]
            case twilio.Dtmf():
                return [Log("DEBUG", "DTMF", f"digit={ev.digit}")]
            case twilio.Malformed():
                self._counters.twilio_malformed += 1
                return [
                    Log(
                        "WARNING",
                        "TWILIO_MALFORMED",
                        f"{ev.reason} (#{self._counters.twilio_malformed}); call continues",
                    )
                ]
            case twilio.Start() | twilio.Connected():
                return [
                    Log("WARNING", "TWILIO_UNEXPECTED", f"duplicate {type(ev).__name__} ignored")
                ]
            case twilio.UnknownTwilioEvent():
                return [Log("DEBUG", "TWILIO_UNKNOWN", f"event={ev.event!r} ignored")]
            case _:
                assert_never(ev)

    def on_caller_audio_dropped(self) -> None:
        """The gate stage fell behind and the oldest queued caller frame was dropped."""
        if self.session_ready:
            self._counters.frames_dropped_backlog += 1

    def _on_mark(self, name: str, now: float) -> list[LocalAction]:
        outcome = self.ledger.on_mark(name, now)
        match outcome:
            case MarkOutcome.PLAYED:
                self._counters.marks_played += 1
            case MarkOutcome.CLEARED:
                self._counters.marks_cleared += 1
            case MarkOutcome.UNKNOWN:
                self._counters.marks_unknown += 1
                return [Log("DEBUG", "MARK_UNKNOWN", f"ignored mark {name!r}")]
            case _:
                assert_never(outcome)
        return self._after_playout(now)

    # -- caller audio (the gate stage) ----------------------------------------------------

    def on_caller_frames(self, frames: Sequence[twilio.Media], now: float) -> list[Action]:
        """Caller frames taken together by the gate stage, in order: their logs and any local
        barge-in first, then one ``input_audio_buffer.append`` with everything released."""
        actions: list[Action] = []
        released: list[bytes] = []
        for frame in frames:
            result = self._gate.process(frame, barge_in_active=self.barge_in_active)
            actions.extend(result.logs)
            released.extend(result.released)
            if result.onset:
                actions.extend(self.on_local_onset(now))
        append = self._codec.append(released)
        if append is not None:
            actions.append(SendUpstream(append))
        return actions

    def on_caller_stream_end(
        self, frames: Sequence[twilio.Media], now: float
    ) -> SendUpstream | None:
        """The call is ending and the upstream can still take audio: ``frames`` still
        queued for the gate stage, then the gate's hold, go up in one append, so no caller
        audio is lost (no barge-in can start any more: onsets are not acted on)."""
        if not self.session_ready:
            return None
        released: list[bytes] = []
        for frame in frames:
            released.extend(self._gate.process(frame, barge_in_active=False).released)
        released.extend(self._gate.flush())
        append = self._codec.append(released)
        return None if append is None else SendUpstream(append)

    # -- upstream lifecycle ---------------------------------------------------------------

    def on_upstream_open(self, now: float) -> list[Action]:
        """The Realtime socket is open: configure the session at once (GA shape)."""
        self._state.session(SessionEvent.OPENED)
        self._session_update_id = self._event_id("session")
        return [SendUpstream(SessionUpdate(self._session_update_id, self.settings.session))]

    def on_call_ending(self) -> None:
        """The call is being torn down: nothing may start from here on."""
        if self._state.phase is not SessionPhase.CLOSED:
            self._state.session(SessionEvent.CLOSED)

    def _on_session_updated(self, ev: rt.SessionUpdated) -> list[Action]:
        want = self.settings.session.audio_format
        want_rate = 24000 if want == "audio/pcm" else None
        confirmed = (
            ev.input_format == want
            and ev.output_format == want
            and ev.input_rate in (None, want_rate)
            and ev.output_rate in (None, want_rate)
        )
        formats = f"in={ev.input_format} out={ev.output_format}"
        ready = self._state.phase is SessionPhase.READY
        if not confirmed:
            if ready:
                return [EndCall(CallEnd(EndReason.SESSION_FORMAT_CHANGED, formats))]
            return [EndCall(CallEnd(EndReason.SESSION_FORMAT_MISMATCH, f"want={want} {formats}"))]
        if ready:
            return []
        self._state.session(SessionEvent.CONFIRMED)
        actions: list[Action] = [
            Log("INFO", "SESSION_READY", f"upstream confirmed {want} both ways", {"format": want})
        ]
        if self.settings.greeting:
            actions.append(self._request_response(self.settings.greeting))
        return actions

    # -- Realtime events ------------------------------------------------------------------

    def on_realtime_event(self, ev: rt.RealtimeEvent, now: float) -> list[Action]:
        """One parsed Realtime server event (the OpenAI reader)."""
        if isinstance(ev, rt.AudioDelta) and ev.response_id in self._cancelled:
            # Late audio of a cancelled response: dropped and counted; it must not pass
            # through (and prime) the outbound resampler.
            return self._on_realtime(ev, now)
        actions: list[Action] = []
        for converted in self._codec.outbound(ev):
            actions.extend(self._on_realtime(converted, now))
        return self._wake_tools(actions)

    def _on_realtime(self, ev: rt.RealtimeEvent, now: float) -> list[Action]:
        match ev:
            case rt.AudioDelta():
                return self._on_audio_delta(ev, now)
            case rt.TranscriptDelta():
                if ev.response_id in self._cancelled:
                    self._counters.late_transcripts_dropped += 1
                elif self.settings.call_events:
                    self._transcripts.on_delta(ev.item_id, ev.delta)
                return []
            case rt.SpeechStarted():
                return self._on_speech_started(ev, now)
            case rt.SpeechStopped():
                return self._on_speech_stopped(ev, now)
            case rt.ResponseCreated():
                return self._on_response_created(ev, now)
            case rt.OutputItemAdded():
                return self._on_output_item_added(ev)
            case rt.FunctionCallDone():
                cancelled = ev.response_id in self._cancelled
                return self._tools.on_function_call(ev, self._moment(now), cancelled=cancelled)
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
                settled = self._ai_transcript_done(ev)
                if ev.response_id in self._cancelled:
                    return settled
                return [
                    Log(
                        self._transcript_level,
                        "AI_SAID",
                        repr(ev.transcript),
                        {"item_id": ev.item_id},
                    ),
                    *settled,
                ]
            case rt.UnknownEvent():
                self._counters.upstream_unknown += 1
                return [Log("DEBUG", "UPSTREAM_UNKNOWN", f"ignored event type {ev.event_type!r}")]
            case rt.MalformedEvent():
                self._counters.upstream_malformed += 1
                return [
                    Log(
                        "WARNING",
                        "UPSTREAM_MALFORMED",
                        f"{ev.reason} (#{self._counters.upstream_malformed}); call continues",
                    )
                ]
            case rt.IgnoredEvent():
                return []
            case _:
                assert_never(ev)

    def _on_audio_delta(self, ev: rt.AudioDelta, now: float) -> list[Action]:
        counters = self._counters
        if ev.response_id in self._cancelled:
            counters.late_deltas_dropped += 1
            counters.late_audio_ms_dropped += len(ev.audio) // BYTES_PER_MS
            return []
        if not self.session_ready:
            # Audio in an unconfirmed format would reach the caller as static.
            counters.audio_dropped_unconfirmed_ms += len(ev.audio) // BYTES_PER_MS
            return []
        counters.audio_deltas += 1
        counters.audio_ms_received += len(ev.audio) // BYTES_PER_MS
        active = self._state.active
        if active is not None and active.response_id == ev.response_id:
            active.audio_bytes += len(ev.audio)
            if active.first_audio_at is None:
                active.first_audio_at = now
        dropped = self.ledger.add_audio(ev.response_id, ev.item_id, ev.audio)
        if dropped:
            counters.tx_overflow_frames += dropped
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
        created = self._state.created(ev.response_id, ev.metadata.get("bridge_request"), now)
        if created is Created.STALE:
            # Requested before the caller cut in: it must not speak now.
            self._cancelled.add(ev.response_id, now)
            self._counters.responses_cancelled += 1
            return [
                SendUpstream(ResponseCancel(self._event_id("cancel"), ev.response_id)),
                Log(
                    "INFO",
                    "STALE_RESPONSE",
                    f"cancelled {ev.response_id}: requested before barge-in",
                ),
            ]
        self._counters.responses += 1
        self._tools.on_response_created(ev.response_id, ev.metadata.get("bridge_request"))
        return [Log("DEBUG", "RESPONSE_CREATED", ev.response_id)]

    def _on_response_done(self, ev: rt.ResponseDone, now: float) -> list[Action]:
        actions: list[Action] = []
        active = self._state.done(ev.response_id)
        if active is not None:
            first_ms = (
                (active.first_audio_at - active.created_at) * 1000.0
                if active.first_audio_at is not None
                else None
            )
            record = ResponseFinished(
                response_id=ev.response_id,
                status=ev.status,
                reason=ev.reason,
                audio_ms=active.audio_bytes // BYTES_PER_MS,
                first_audio_ms=first_ms,
            )
            actions.append(report("INFO", record))
        for item_id in self._late_items.pop(ev.response_id, []):
            self._counters.deletions += 1
            actions.append(SendUpstream(ItemDelete(self._event_id("delete"), item_id)))
        if self._state.take_deferred():
            actions.append(self._request_response())
        actions.extend(self._tools_on_response_done(ev.response_id, active, now))
        return actions

    def _on_speech_started(self, ev: rt.SpeechStarted, now: float) -> list[Action]:
        self._tools.on_speech(started=True)
        if self._state.floor is Floor.HELD:
            plan = self._barge_in(now, "confirmed", ev.audio_start_ms)
            return [plan, *self._after_barge_in(plan, now)]
        if not self.ai_speaking:
            return [Log("DEBUG", "SPEECH_STARTED", "caller speaks; AI silent, nothing to stop")]
        plan = self._barge_in(now, "server", ev.audio_start_ms)
        return [plan, *self._after_barge_in(plan, now)]

    def _on_speech_stopped(self, ev: rt.SpeechStopped, now: float) -> list[Action]:
        server_responds = self.settings.session.turn_detection.create_response
        if not self._state.caller_stopped():
            return self._tools.on_caller_turn_end(self._moment(now), server_responds)
        return [
            Log("INFO", "BARGE_IN_END", f"caller utterance ended at {ev.audio_end_ms} ms"),
            *self._tools.on_caller_turn_end(self._moment(now), server_responds),
        ]

    def _on_input_transcript(self, ev: rt.InputTranscript) -> list[Action]:
        released, discarded = self._notes.on_caller_transcript(ev.transcript)
        actions: list[Action] = [
            Log(self._transcript_level, "CALLER_SAID", repr(ev.transcript), {"item_id": ev.item_id})
        ]
        if self.settings.call_events and ev.transcript:
            said = Transcript("caller", ev.item_id, ev.transcript, False, None, None)
            actions.append(self._emit(said))
        if discarded:
            self._counters.notes_discarded += len(discarded)
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
        self._counters.upstream_errors += 1
        detail = f"code={ev.code} param={ev.param} event_id={ev.event_id}: {ev.message}"
        if self._state.phase is SessionPhase.CONFIGURING and (
            ev.event_id == self._session_update_id or (ev.param or "").startswith("session")
        ):
            return [EndCall(CallEnd(EndReason.SESSION_UPDATE_REJECTED, detail))]
        if ev.code in FATAL_ERROR_CODES:
            return [EndCall(CallEnd(EndReason.UPSTREAM_FATAL_ERROR, detail))]
        if ev.event_id is not None:
            # Our request collided with a response we did not know about: ask again later.
            collided = ev.code == "conversation_already_has_active_response"
            self._state.request_failed(ev.event_id, collided=collided)
        if ev.code in BENIGN_ERROR_CODES:
            return [Log("INFO", "UPSTREAM_BENIGN", detail)]
        return [Log("WARNING", "UPSTREAM_ERROR", f"{detail}; call continues")]

    # -- TX writer ------------------------------------------------------------------------

    def tx_poll(self, now: float) -> TxDecision:
        """What the TX writer should do at ``now``: send one frame, wait, or idle."""
        if self._state.floor is Floor.HELD:
            return TxIdle()
        frame = self.ledger.peek_frame()
        if frame is None:
            return TxIdle()
        frame_ms = len(frame.payload) / BYTES_PER_MS
        ready_at = self._pacer.ready_at(now, frame_ms)
        if ready_at > now:
            return TxWait(ready_at)
        self.ledger.pop_frame()
        self._gate.note_playout(frame.payload, self._pacer.play_start_for_next(now))
        mark = self.ledger.on_sent(frame, now)
        self._pacer.on_sent(now, frame_ms)
        self._counters.frames_out += 1
        self._counters.audio_ms_sent += len(frame.payload) // BYTES_PER_MS
        return TxSend(
            media=twilio.media_message(self.stream_sid, frame.payload),
            mark=twilio.mark_message(self.stream_sid, str(mark)),
            frame=frame,
        )

    def next_deadline(self) -> float | None:
        """Trio time of the next timer the core needs (:meth:`on_timer`), if any."""
        duck = self._state.duck_state
        if duck is not None:
            return duck.started_at + self.settings.confirm_window_ms / 1000.0
        return None

    def on_timer(self, now: float) -> list[LocalAction]:
        self._cancelled.expire(now)
        duck = self._state.duck_state
        if duck is None or now < duck.started_at + self.settings.confirm_window_ms / 1000.0:
            return []
        # No server confirmation: a cough, a door, an "mm-hm". Resume where playout stopped.
        self._state.resume()
        self.ledger.resume(list(duck.held))
        self._counters.false_alarms_resumed += 1
        held_ms = sum(len(f.payload) for f in duck.held) // BYTES_PER_MS
        return [
            WakeTx(),
            report("INFO", BargeInResumed(self.settings.confirm_window_ms, held_ms)),
        ]

    def on_clear_written(self, now: float) -> None:
        """A barge-in's Twilio ``clear`` was written at Trio time ``now``."""
        self._gate.note_playout_stopped(now)

    # -- barge-in -------------------------------------------------------------------------

    def on_local_onset(self, now: float) -> list[Action]:
        """Local VAD heard the caller start speaking (not explained by echo)."""
        if (
            self.settings.fast_barge_in == "off"
            or self._state.floor is not Floor.AI_MAY_SPEAK
            or not self.ai_speaking
        ):
            return []
        cleared, held = self.ledger.hold(now)
        self._pacer.on_clear(now)
        self._state.duck(Duck(started_at=now, held=tuple(held)))
        self._counters.local_barge_ins += 1
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
        """The hard barge-in: clear, flush, cancel, truncate/delete, drop late audio.

    It is triggered by the server's ``speech_started`` (directly, or confirming a local
    one), so the server has already cancelled the active response when ``interrupt_response``
    is on (the default): the bridge then sends no ``response.cancel`` of its own."""
        clear: str | None = None
        unplayed_ms = 0
        flushed = self.ledger.flush_queue()
        active = self._state.active
        confirmed_duck = self._state.cut()
        if confirmed_duck is not None:
            flushed = list(confirmed_duck.held) + flushed
        else:
            cleared = self.ledger.clear(now)
            self._pacer.on_clear(now)
            clear = twilio.clear_message(self.stream_sid)
            unplayed_ms = cleared.unplayed_bytes // BYTES_PER_MS
        self._codec.discard_outbound()
        flushed_ms = sum(len(f.payload) for f in flushed) // BYTES_PER_MS
        upstream: list[ClientEvent] = []
        cancelled: list[str] = []
        if active is not None:
            # With `interrupt_response` the server cancels its response itself when its VAD
            # hears the caller (the trigger of every hard barge-in); a cancel of ours would
            # only draw `response_cancel_not_active`. Its late audio is dropped here either way.
            if not self.settings.session.turn_detection.interrupt_response:
                upstream.append(ResponseCancel(self._event_id("cancel"), active.response_id))
            cancelled.append(active.response_id)
            self._counters.responses_cancelled += 1
        truncations: list[Truncation] = []
        deleted: list[str] = []
        for item in list(self.ledger.items.values()):
            heard_ms = self.ledger.heard_bytes(item.item_id, now) // BYTES_PER_MS
            fully_heard = item.audio_done and heard_ms * BYTES_PER_MS >= item.received_bytes
            if not fully_heard:
                if heard_ms >= 1:
                    truncations.append(Truncation(item.item_id, heard_ms, item.received_ms))
                    upstream.append(
                        ItemTruncate(self._event_id("truncate"), item.item_id, heard_ms)
                    )
                else:
                    # Truncating at 0 is an API error; leaving the item would make the model
                    # believe it said words the caller never heard (the stale-question loop).
                    deleted.append(item.item_id)
                    upstream.append(ItemDelete(self._event_id("delete"), item.item_id))
            if item.response_id not in cancelled:
                cancelled.append(item.response_id)
            self.ledger.finalize(item.item_id)
        for response_id in cancelled:
            self._cancelled.add(response_id, now)
        counters = self._counters
        counters.barge_ins += 1
        counters.tx_flushed_frames += len(flushed)
        counters.tx_flushed_ms += flushed_ms
        counters.truncations += len(truncations)
        counters.deletions += len(deleted)
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
            caller_speech_ms=self._gate.input_clock.to_twilio_ms(audio_start_ms),
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
            epoch=self.barge_in_epoch if epoch is None else epoch,
        )
        return self._deliver(note)

    def _deliver(self, note: Note) -> list[Action]:
        disposition = self._notes.dispose(
            note, epoch=self.barge_in_epoch, barge_in_active=self.barge_in_active
        )
        if disposition is NoteDisposition.HOLD:
            return [Log("INFO", "NOTE_HELD", "note waits for the caller's confirmation")]
        actions: list[Action] = [SendUpstream(SystemMessage(self._event_id("note"), note.text))]
        self._counters.notes_sent += 1
        if disposition is NoteDisposition.SEND_SILENTLY:
            if note.respond:
                self._counters.notes_silent += 1
                why = "barge-in active" if self.barge_in_active else "produced before a barge-in"
                actions.append(Log("INFO", "NOTE_SILENT", f"note sent without a response: {why}"))
            return actions
        if self._state.may_create_response:
            actions.append(self._request_response())
        else:
            self._state.defer()
            actions.append(Log("INFO", "NOTE_DEFERRED", "response.create waits for response.done"))
        return actions

    # -- tools and call events (bridge.core.tools, bridge.core.transcripts) ---------------

    def _moment(self, now: float) -> Moment:
        in_flight = sum(len(sent.frame.payload) for sent in self.ledger.in_flight)
        return Moment(
            now=now,
            ai_speaking=self.ai_speaking,
            last_heard_at=self.ledger.last_ack_at,
            unplayed_ms=self.ledger.queued_ms() + in_flight // BYTES_PER_MS,
        )

    def _wake_tools(self, actions: list[Action]) -> list[Action]:
        """``actions``, then a wake-up for the link's timer if a tool deadline appeared."""
        if self._tools.take_wake():
            actions.append(ToApp(WakeTools()))
        return actions

    def _emit(self, event: Transcript | BargeInHappened) -> ToApp:
        return ToApp(EmitEvent(event))

    def count_event(self, *, dropped: bool) -> None:
        """The application link queued (or, full, dropped) a call event."""
        if dropped:
            self._counters.events_dropped += 1
        else:
            self._counters.events_emitted += 1

    @property
    def tool_exit(self) -> str | None:
        """``end_call`` or ``transfer_call`` while one is pending."""
        return self._tools.exit_kind

    def on_tool_result(self, call_id: str, result: ToolResult, now: float) -> list[Action]:
        """The application link's outcome of a :class:`~bridge.core.app_work.RunTool`."""
        return self._wake_tools(self._tools.on_result(call_id, result, self._moment(now)))

    def on_exit_result(self, call_id: str, ok: bool, detail: str, now: float) -> list[Action]:
        """The REST work of an exit is done (:class:`~bridge.core.app_work.RunExit`)."""
        actions, note, epoch = self._tools.on_exit_result(call_id, ok, detail)
        if note is not None:
            # A failed transfer is spoken, under the notes' rules (never after a barge-in).
            actions += self.submit_note(note, respond=True, awaits_confirmation=False, epoch=epoch)
        return self._wake_tools(actions)

    def tools_deadline(self, now: float) -> float | None:
        """Trio time of the next tool timer (filler, exit cap), if any."""
        return self._tools.deadline(self._moment(now))

    def on_tools_timer(self, now: float) -> list[Action]:
        return self._tools.on_timer(self._moment(now))

    def _tools_on_response_done(
        self, response_id: str, active: ActiveResponse | None, now: float
    ) -> list[Action]:
        audio_ms = 0
        if active is not None:
            audio_ms = active.audio_bytes // BYTES_PER_MS
            if active.first_audio_at is not None:
                self._tools.on_first_audio(active.first_audio_at - active.created_at)
        return self._tools.on_response_done(response_id, audio_ms, self._moment(now))

    def _after_barge_in(self, plan: BargeIn, now: float) -> list[Action]:
        """After a hard barge-in's own steps: the tool rules, then its call events."""
        actions: list[Action] = list(self._tools.on_barge_in(self._moment(now)))
        if self.settings.call_events:
            truncated: tuple[dict[str, int | str], ...] = tuple(
                {"item_id": t.item_id, "heard_ms": t.audio_end_ms, "audio_ms": t.received_ms}
                for t in plan.truncations
            )
            event = BargeInHappened(
                plan.trigger, self.barge_in_epoch, truncated, plan.deleted_item_ids
            )
            actions.append(self._emit(event))
            settled = self._transcripts.on_barge_in(plan.truncations, plan.deleted_item_ids)
            actions.extend(self._emit(t) for t in settled)
        return actions

    def _ai_transcript_done(self, ev: rt.TranscriptDone) -> list[Action]:
        if not self.settings.call_events:
            return []
        playing = ev.item_id in self.ledger.items
        settled = self._transcripts.on_done(ev.item_id, ev.transcript, playing)
        return [self._emit(t) for t in settled]

    def _after_playout(self, now: float) -> list[LocalAction]:
        """A mark echoed: an exit may proceed, AI transcripts may be settled as heard (the
        hot path of marks pays two attribute reads when neither is waiting)."""
        actions: list[LocalAction] = []
        if self._tools.waits_for_playout:
            actions.extend(self._tools.on_heard(self._moment(now)))
        if self.settings.call_events and self._transcripts.waiting:
            settled = self._transcripts.on_heard(self.ledger.items.keys())
            actions.extend(self._emit(t) for t in settled)
        return actions
