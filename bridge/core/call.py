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
from typing import Literal, NamedTuple, assert_never

from bridge.core import realtime as rt
from bridge.core import twilio
from bridge.core.actions import (
    Action,
    BargeIn,
    DropUpstream,
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
from bridge.core.app_work import EmitEvent
from bridge.core.call_events import BargeInHappened, Transcript
from bridge.core.cancelled import CancelledResponses
from bridge.core.codec import UpstreamCodec
from bridge.core.conversation import Conversation
from bridge.core.ending import CallEnd, EndReason
from bridge.core.gate import GateStage, Released
from bridge.core.inputclock import InputClock
from bridge.core.logsafe import clip
from bridge.core.notes import Note, NoteBook, NoteDisposition
from bridge.core.playout import (
    BYTES_PER_MS,
    QUEUE_FRAME_MS,
    MarkOutcome,
    OutboundFrame,
    Pacer,
    PlayoutLedger,
)
from bridge.core.ratelimit import LogThrottle
from bridge.core.realtime_client import (
    ClientEvent,
    ItemDelete,
    ItemTruncate,
    ReplayMessage,
    ResponseCancel,
    ResponseCreate,
    SessionSettings,
    SessionUpdate,
    SystemMessage,
)
from bridge.core.records import (
    BargeInResumed,
    ResponseFinished,
    SessionRecycled,
    UpstreamLost,
    UpstreamRestored,
    report,
)
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
from bridge.core.watchdogs import (
    MediaDue,
    MediaWatch,
    Outage,
    ReplyDue,
    ReplyWatch,
    ResponseWatch,
)

FastBargeIn = Literal["off", "duck"]

BENIGN_ERROR_CODES = frozenset(
    {
        "response_cancel_not_active",
        "conversation_already_has_active_response",
        "input_audio_buffer_commit_empty",
    }
)
FATAL_ERROR_CODES = frozenset({"beta_api_shape_disabled", "invalid_api_key"})
SESSION_ENDING_ERROR_CODES = frozenset({"session_expired"})
"""The session is over but the call is not: whether the GA service sends this ``error``
before its 1001 close at the 60-minute cap is unconfirmed, so either heals the same way."""

MAX_QUEUED_MS = 120_000
"""Local TX queue cap, ms of AI audio; when full the oldest frames are dropped and counted."""
APPEND_BATCH_MS = 100
"""While the gate is closed (no turn can be starting or ending), the silence it releases
goes upstream in appends of this much, ms, instead of one per 20 ms frame; the first frame
of speech sends what waits at once, ahead of itself."""
HOLD_WHILE_AWAY_MS = 3000
"""Caller audio kept while no session is ready (set-up, a reconnect, a recycle), ms: it goes
to the session when it is ready, newest kept (older audio is dropped and counted; the model
hears what the caller said just before, never seconds of stale audio)."""
LOCAL_ITEM_PREFIX = "local_"
"""Item ids of audio the bridge plays itself (the hold phrase): never truncated upstream."""
RESPONSE_STALL_S = 5.0
"""A response with no event for this long (and no ``response.done``) has stopped streaming."""
MEDIA_STALL_S = 2.0
"""No caller media for this long while Twilio's socket is open: counted and logged."""
GARBAGE_RUN_LIMIT = 32
"""Upstream events in a row that cannot be parsed before the session is given up as lost:
one bad event is counted and skipped; a session that sends only garbage is broken."""
HOLD_PHRASE_AFTER_NUDGE_S = 1.5
"""After a nudge, how much longer the reply may take before the caller hears the phrase."""
CUE_QUIET_S = 1.2
"""While an outage lasts past the hold phrase: silence before each soft cue, s (under the
1.5 s after which a caller starts to wonder whether the line is dead)."""
CANCELLED_MAX = 64
CANCELLED_MAX_AGE_S = 300.0
"""Cancelled responses remembered (count and age): late deltas of any of them are dropped."""


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The per-call settings, projected from :class:`bridge.config.BridgeConfig` (the one
    source of their defaults) by :func:`bridge.runtime.services.core_settings`."""

    session: SessionSettings
    frame_ms: int
    """Largest media message toward Twilio, ms: the pacer sends one when Twilio has room."""
    lead_ms: int
    """How far ahead of real time audio is sent to Twilio, ms (the most it holds)."""
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
    comfort_after_ms: int
    """While the upstream heals: silence at the caller before the hold phrase plays, ms."""
    reply_timeout_ms: int
    """The caller's turn ended: how long a reply may take to start before a nudge, ms."""
    media_timeout_s: float
    """No caller media for this long while Twilio's socket is open ends the call, s."""
    hold_audio: bytes
    comfort_cue: bytes
    """While the upstream heals past the hold phrase: the soft cue (μ-law; empty: none)."""
    """The hold phrase ("One moment, please"), μ-law at 8 bytes/ms."""
    max_queued_ms: int = MAX_QUEUED_MS
    """Not a user setting: the local TX queue cap (tests make it small)."""


# NamedTuples rather than frozen dataclasses where one is built per frame or per poll: a
# frozen dataclass's generated __init__ costs about 1 µs per field more.
class TxSend(NamedTuple):
    messages: tuple[str, ...]
    """Twilio messages to write together: a frame's ``media`` and its ``mark`` if it gets
    one (:data:`bridge.core.playout.MARK_INTERVAL_MS`), or a mark owed to the last frame."""
    frame: OutboundFrame | None


class TxWait(NamedTuple):
    until: float


@dataclass(frozen=True, slots=True)
class TxIdle:
    pass


TxDecision = TxSend | TxWait | TxIdle


def _resume_instructions(cut_text: str) -> str:
    """The one instruction a new session gets when the AI was cut off mid-reply."""
    heard = f' The caller last heard you say: "{cut_text[-300:]}".' if cut_text else ""
    return (
        "A technical problem cut off your previous reply." + heard + " Say in a few words that "
        "you were cut off, then finish that reply briefly."
    )


class CallCore:
    """All state of one call and every decision about it. Not thread-safe; no I/O."""

    __slots__ = (
        "_cancelled",
        "_codec",
        "_conversation",
        "_counters",
        "_event_seq",
        "_foreign_items",
        "_garbage_run",
        "_gate",
        "_healing",
        "_hold_queued",
        "_holds",
        "_input_clock",
        "_late_items",
        "_media_watch",
        "_notes",
        "_outage",
        "_pacer",
        "_reply_watch",
        "_response_watch",
        "_session_opened_at",
        "_session_update_id",
        "_sessions",
        "_starved_cued",
        "_starving_item",
        "_state",
        "_tools",
        "_transcripts",
        "_unsent",
        "_warnings",
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
            frame_bytes=QUEUE_FRAME_MS * BYTES_PER_MS,
            max_queued_frames=max(1, settings.max_queued_ms // QUEUE_FRAME_MS),
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
        self._sessions = 0
        """Upstream sessions opened in this call (more than one after a reconnect/recycle)."""
        self._session_opened_at = now
        self._input_clock = InputClock()
        """The current session's input-audio clock (each session starts its own at 0)."""
        self._unsent: list[Released] = []
        """Caller audio released by the gate, not yet appended: under APPEND_BATCH_MS of a
        closed gate's silence, or up to HOLD_WHILE_AWAY_MS while no session is ready."""
        self._conversation = Conversation()
        self._outage: Outage | None = None
        self._healing: Outage | None = None
        """An outage healed by asking for a reply (the cut one resumed or redone, or the
        caller's turn answered) whose first audio has not come: its comfort keeps its
        schedule until that audio, the caller's speech or the response's end (a new session
        that stalls before it speaks is found only by the heartbeat, up to 1.5 s later)."""
        self._foreign_items: set[str] = set()
        """Items of an earlier session still in the ledger: played, never truncated."""
        self._holds = 0
        """Local items (hold phrases, cues) queued so far (their item ids are numbered)."""
        self._hold_queued = False
        self._starving_item: tuple[str, str] | None = None
        """``(response_id, item_id)`` of the audio that last arrived, until the item's audio is
        done: if the line falls quiet in the middle of it, the reply has stopped coming."""
        self._starved_cued = False
        """The soft cue already played in this quiet spell of a reply (once per spell)."""
        self._reply_watch = ReplyWatch(
            settings.reply_timeout_ms / 1000.0, HOLD_PHRASE_AFTER_NUDGE_S
        )
        self._response_watch = ResponseWatch(RESPONSE_STALL_S)
        self._media_watch = MediaWatch(MEDIA_STALL_S, settings.media_timeout_s, last_at=now)
        self._late_items: dict[str, list[str]] = {}
        """Items of an already-cancelled response that appeared late: deleted at its done."""
        self._garbage_run = 0
        """Upstream events that could not be parsed since the last one that could."""
        self._event_seq = 0
        self._tools = ToolLedger(
            settings.tools,
            state=self._state,
            counters=self._counters,
            conversation=self._conversation,
            ids=self._event_id,
            note=self._tool_note,
            filler_ms=settings.tool_filler_ms,
            events=settings.call_events,
        )
        """Function calls and their rules (:mod:`bridge.core.tools`)."""
        self._transcripts = TranscriptLedger()
        """AI transcripts waiting to be settled as heard (call events only)."""
        self._warnings = LogThrottle()
        """Warnings a peer can repeat at will (malformed frames) are rate-limited per call."""

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
    def _line_quiet(self) -> bool:
        """Nothing is playing at the caller or queued to (a response may exist, silent)."""
        return not (
            self.ledger.playing or self.ledger.has_queued or self._state.floor is Floor.HELD
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
        """One parsed Twilio frame: local actions only (caller audio is queued for the gate
        stage, :meth:`on_caller_frames`, which the runtime runs where nothing waits)."""
        match ev:
            case twilio.Media():
                self._counters.frames_in += 1
                self._gate.note_caller_time(ev.timestamp_ms, now)
                stalled_s = self._media_watch.frame(now)
                if stalled_s is None:
                    return [QueueCallerAudio(ev)]
                return [
                    QueueCallerAudio(ev),
                    Log(
                        "INFO", "TWILIO_MEDIA_RESUMED", f"caller media back after {stalled_s:.1f} s"
                    ),
                ]
            case twilio.Mark():
                return self._on_mark(ev.name, now)
            case twilio.Stop():
                # An exit's REST request ends the stream too: that is the exit's end.
                return [EndCall(self._tools.twilio_stopped() or CallEnd(EndReason.TWILIO_STOP))]
            case twilio.Dtmf():
                return [Log("DEBUG", "DTMF", f"digit={ev.digit}")]
            case twilio.Malformed():
                self._counters.twilio_malformed += 1
                detail = f"{ev.reason} (#{self._counters.twilio_malformed}); call continues"
                return list(self._warnings.admit(Log("WARNING", "TWILIO_MALFORMED", detail), now))
            case twilio.Start() | twilio.Connected():
                detail = f"duplicate {type(ev).__name__} ignored"
                return list(self._warnings.admit(Log("WARNING", "TWILIO_UNEXPECTED", detail), now))
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
        barge-in first, then one ``input_audio_buffer.append`` with everything released
        (while the gate is closed, once :data:`APPEND_BATCH_MS` of silence has gathered;
        while no session is ready, the audio waits, up to :data:`HOLD_WHILE_AWAY_MS`)."""
        actions: list[Action] = []
        for frame in frames:
            result = self._gate.process(frame, barge_in_active=self.barge_in_active, now=now)
            actions.extend(result.logs)
            self._unsent.extend(result.released)
            if result.onset:
                actions.extend(self.on_local_onset(now))
        if not self.session_ready:
            self._keep_newest_unsent()
            return actions
        if self._gate.closed and self._unsent_ms() < APPEND_BATCH_MS:
            return actions
        append = self._append_unsent()
        if append is not None:
            actions.append(append)
        return actions

    def _unsent_ms(self) -> int:
        return sum(len(r.audio) for r in self._unsent) // BYTES_PER_MS

    def _keep_newest_unsent(self) -> None:
        dropped = 0
        while self._unsent and self._unsent_ms() > HOLD_WHILE_AWAY_MS:
            dropped += len(self._unsent.pop(0).audio)
        self._counters.caller_audio_dropped_ms += dropped // BYTES_PER_MS

    def _append_unsent(self) -> SendUpstream | None:
        """One append of every released frame not yet sent, on the session's input clock."""
        unsent, self._unsent = self._unsent, []
        for released in unsent:
            self._input_clock.on_appended(released.timestamp_ms, len(released.audio) / BYTES_PER_MS)
        self._counters.frames_upstream += len(unsent)
        append = self._codec.append([r.audio for r in unsent])
        return None if append is None else SendUpstream(append)

    def on_caller_stream_end(
        self, frames: Sequence[twilio.Media], now: float
    ) -> SendUpstream | None:
        """The call is ending and the upstream can still take audio: ``frames`` still
        queued for the gate stage, then the gate's hold, go up in one append, so no caller
        audio is lost (no barge-in can start any more: onsets are not acted on)."""
        if not self.session_ready:
            return None
        for frame in frames:
            released = self._gate.process(frame, barge_in_active=False, now=now).released
            self._unsent.extend(released)
        self._unsent.extend(self._gate.flush())
        return self._append_unsent()

    # -- upstream lifecycle ---------------------------------------------------------------

    @property
    def at_turn_boundary(self) -> bool:
        """Nobody holds the turn: no response, nothing playing or queued, the caller not
        speaking, no reply owed. A session can be replaced here without anyone hearing it."""
        return (
            self._state.may_create_response
            and not self.ai_speaking
            and not self._gate.voice
            and self._reply_watch.owed_since is None
        )

    def on_upstream_open(self, now: float) -> list[Action]:
        """A Realtime socket is open: the first session, one replacing a lost session, or
        one replacing a session at a turn boundary (a recycle). Configure it at once."""
        actions: list[Action] = []
        if self._state.phase is SessionPhase.READY:
            boundary = self.at_turn_boundary
            self._counters.sessions_recycled += 1
            self._foreign_items |= set(self.ledger.items)
            age_s = now - self._session_opened_at
            self._state.session(SessionEvent.REPLACED)
            record = SessionRecycled(round(age_s, 1), at_turn_boundary=boundary)
            actions.append(report("INFO", record))
        elif self._state.phase is SessionPhase.LOST:
            self._state.session(SessionEvent.REPLACED)
        self._sessions += 1
        self._garbage_run = 0
        self._session_opened_at = now
        self._input_clock = InputClock()
        self._state.session(SessionEvent.OPENED)
        self._session_update_id = self._event_id("session")
        actions.append(SendUpstream(SessionUpdate(self._session_update_id, self.settings.session)))
        return actions

    def on_reconnect_attempt(self) -> None:
        """The runtime is about to try a new upstream connection during an outage."""
        self._counters.reconnect_attempts += 1
        if self._outage is not None:
            self._outage.attempts += 1

    def on_upstream_lost(self, now: float, end: CallEnd) -> list[LocalAction]:
        """The session is gone (closed, stalled, stopped streaming); the call heals. Audio
        already received keeps playing; the caller's audio waits for the next session."""
        if self._state.phase in (SessionPhase.LOST, SessionPhase.CLOSED):
            return []
        active = self._state.active
        cut_item = self._last_item_of(active.response_id) if active is not None else None
        if cut_item is not None and not self.ledger.items[cut_item].audio_done:
            self._conversation.assistant_lost(cut_item, self.ledger.items[cut_item].received_ms)
        cut_response = active.response_id if active is not None else None
        cut_audio_ms = active.audio_bytes // BYTES_PER_MS if active is not None else 0
        # Before the state forgets the response: a reply being heard counts as speaking.
        speaking = self.ai_speaking
        healing, self._healing = self._healing, None
        self._state.lose()
        tools = self._tools.on_session_lost(self._moment(now), cut_response, cut_audio_ms)
        self._counters.upstream_losses += 1
        self._foreign_items |= set(self.ledger.items)
        self._response_watch.done()
        self._late_items.clear()
        if self._outage is None:
            # The hold phrase comes `comfort_after_ms` into the caller's silence: once what
            # Twilio holds and what is queued here has played, or, if the line is already
            # quiet, counted from when it went quiet (the AI's last audio, or the end of the
            # caller's turn a reply is owed for), but never before now.
            if speaking:
                queued_s = self.ledger.queued_ms() / 1000
                # Nothing queued: quiet since Twilio's buffer ran out (a stall is found late).
                play_end = self._pacer.play_end_at
                silent_since = max(now, play_end) + queued_s if queued_s else play_end
            else:
                owed = self._reply_watch.owed_since
                silent_since = max(self._pacer.play_end_at, owed if owed is not None else now)
            # A soft cue already broke this silence (the reply starved before the loss was
            # found): the phrase follows as the next cue would, counted from its end.
            quiet_s = CUE_QUIET_S if self._starved_cued else self.settings.comfort_after_ms / 1000
            comfort_at = max(now, silent_since + quiet_s)
            cues = 0
            if healing is not None:
                # Lost again before the reply asked of the last session spoke: the comfort
                # already due for that silence keeps its time and its count.
                cues = healing.cues
                if healing.comfort_at is not None:
                    comfort_at = max(now, min(comfort_at, healing.comfort_at))
            self._outage = Outage(
                lost_at=now,
                reason=end,
                mid_reply=active is not None,
                cut_text=self._conversation.heard_text_of(cut_item) if cut_item else "",
                comfort_at=comfort_at,
                cues=cues,
            )
        record = UpstreamLost(end.reason.value, end.detail, mid_reply=active is not None)
        return [report("WARNING", record), *tools]

    def _last_item_of(self, response_id: str) -> str | None:
        items = [i.item_id for i in self.ledger.items.values() if i.response_id == response_id]
        return items[-1] if items else None

    def on_call_ending(self) -> None:
        """The call is being torn down: nothing may start from here on."""
        if self._state.phase is not SessionPhase.CLOSED:
            self._state.session(SessionEvent.CLOSED)

    def _on_session_updated(self, ev: rt.SessionUpdated, now: float) -> list[Action]:
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
        return actions + self._take_over(now)

    def _take_over(self, now: float) -> list[Action]:
        """A session just became ready: give it the conversation (notes only, the first
        time), the caller audio that waited for it, then the turn the call is in."""
        replay = self._conversation.replay(lambda: self._event_id("item"))
        actions: list[Action] = [
            SendUpstream(
                ReplayMessage(self._event_id("replay"), entry.role, entry.text, entry.item_id)
            )
            for entry in replay
        ]
        held = self._append_unsent()
        if held is not None:
            actions.append(held)
        outage, self._outage = self._outage, None
        # An exit in progress (end_call, transfer_call) owns the turn: its ledger asks for
        # the last words if they were lost, and nothing else is resumed.
        may_speak = not (self._gate.voice or self.barge_in_active or self._tools.exit_kind) and (
            self._state.may_create_response
        )
        # A tool the lost session called is still running: its result answers the caller (a
        # note); asking for the cut reply again could make the model call it a second time.
        cut_reply = outage is not None and outage.mid_reply and not self._tools.orphans_running
        # Cut off mid-reply after the caller heard some of it: the AI says so and goes on.
        resume = may_speak and cut_reply and outage is not None and bool(outage.cut_text)
        # The caller's turn ended and nothing of its answer was heard: it is answered now.
        owed = may_speak and not resume and self._reply_watch.owed_since is not None
        # A reply cut before a word of it was heard (the greeting, an answer to a note):
        # asked for again, from the replayed conversation.
        redo = may_speak and cut_reply and not (resume or owed)
        if self._sessions == 1 and self.settings.greeting:
            # The first session (after failed connects, if any): the call starts.
            if self._state.may_create_response:
                actions.append(self._request_response(self.settings.greeting))
            elif self._state.floor is Floor.HELD:
                # The caller seemed to cut into the hold phrase: greet once that proves a
                # false alarm (a confirmed barge-in gives the caller the turn, and the
                # server answers it; so does a caller already speaking).
                self._state.defer()
        if outage is not None:
            self._counters.upstream_restores += 1
            record = UpstreamRestored(
                gap_ms=round((now - outage.lost_at) * 1000.0, 1),
                attempts=outage.attempts,
                replayed_items=len(replay),
                resumed_reply=resume or redo,
                answered_turn=owed,
            )
            actions.append(report("INFO", record))
            if resume:
                actions.append(self._request_response(_resume_instructions(outage.cut_text)))
            elif redo:
                heard_nothing = self._counters.audio_ms_sent == 0
                greeting = self.settings.greeting if heard_nothing else None
                actions.append(self._request_response(greeting))
        if outage is not None and (resume or redo or owed):
            self._healing = outage
        # A deferred request (a note's) waits for the end of a resumed reply, if one was asked.
        if owed or (not (resume or redo) and self._state.take_deferred()):
            actions.append(self._request_response())
        # An exit whose last words were lost asks this session for them (when it may speak).
        return actions + self._tools.advance_all(self._moment(now))

    # -- Realtime events ------------------------------------------------------------------

    def on_realtime_event(self, ev: rt.RealtimeEvent, now: float) -> list[Action]:
        """One parsed Realtime server event (the OpenAI reader)."""
        if isinstance(ev, rt.MalformedEvent):
            self._garbage_run += 1
            if self._garbage_run == GARBAGE_RUN_LIMIT:
                detail = f"{GARBAGE_RUN_LIMIT} events in a row could not be parsed"
                drop = DropUpstream(CallEnd(EndReason.OPENAI_GARBAGE, detail))
                return [*self._on_realtime(ev, now), drop]
        else:
            self._garbage_run = 0
        if isinstance(ev, rt.AudioDelta) and ev.response_id in self._cancelled:
            # Late audio of a cancelled response: dropped and counted; it must not pass
            # through (and prime) the outbound resampler.
            return self._on_realtime(ev, now)
        actions: list[Action] = []
        for converted in self._codec.outbound(ev):
            actions.extend(self._on_realtime(converted, now))
        return actions

    def _on_realtime(self, ev: rt.RealtimeEvent, now: float) -> list[Action]:
        match ev:
            case rt.AudioDelta():
                return self._on_audio_delta(ev, now)
            case rt.TranscriptDelta():
                if ev.response_id in self._cancelled:
                    self._counters.late_transcripts_dropped += 1
                else:
                    self._response_watch.event(ev.response_id, now)
                    self._conversation.assistant_text(ev.item_id, ev.delta)
                    if self.settings.call_events:
                        self._transcripts.on_delta(ev.item_id, ev.delta)
                return []
            case rt.SpeechStarted():
                self._reply_watch.settle()
                return self._on_speech_started(ev, now)
            case rt.SpeechStopped():
                self._conversation.caller_turn(ev.item_id)
                self._reply_watch.owe(now)
                return self._on_speech_stopped(ev, now)
            case rt.ResponseCreated():
                return self._on_response_created(ev, now)
            case rt.OutputItemAdded():
                return self._on_output_item_added(ev, now)
            case rt.FunctionCallDone():
                cancelled = ev.response_id in self._cancelled
                if not cancelled:
                    self._response_watch.event(ev.response_id, now)
                return self._tools.on_function_call(ev, self._moment(now), cancelled=cancelled)
            case rt.AudioDone():
                if ev.response_id not in self._cancelled:
                    self._response_watch.event(ev.response_id, now)
                    self.ledger.audio_done(ev.item_id)
                    if self._starving_item == (ev.response_id, ev.item_id):
                        self._starving_item = None
                    return [WakeTx()]
                return []
            case rt.ResponseDone():
                return self._on_response_done(ev, now)
            case rt.InputTranscript():
                return self._on_input_transcript(ev)
            case rt.ErrorEvent():
                return self._on_error(ev, now)
            case rt.SessionUpdated():
                return self._on_session_updated(ev, now)
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
                self._response_watch.event(ev.response_id, now)
                self._conversation.assistant_said(ev.item_id, ev.transcript)
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
                detail = f"{ev.reason} (#{self._counters.upstream_malformed}); call continues"
                return list(self._warnings.admit(Log("WARNING", "UPSTREAM_MALFORMED", detail), now))
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
        self._reply_watch.settle()
        self._healing = None
        self._response_watch.event(ev.response_id, now)
        self._starving_item, self._starved_cued = (ev.response_id, ev.item_id), False
        if self._hold_queued:
            # The model speaks again: a hold phrase or cue not started is not played; one
            # that is playing ends first (a phrase cut mid-word sounds like a fault).
            self.ledger.drop_unstarted_items(LOCAL_ITEM_PREFIX)
            self._hold_queued = False
        active = self._state.active
        if active is not None and active.response_id == ev.response_id:
            active.audio_bytes += len(ev.audio)
            if active.first_audio_at is None:
                active.first_audio_at = now
        dropped = self.ledger.add_audio(ev.response_id, ev.item_id, ev.audio)
        if dropped:
            counters.tx_overflow_frames += dropped
            # One per delta while the upstream sends faster than the caller hears: throttled.
            detail = f"local TX queue full: dropped {dropped} oldest"
            overflow = Log("WARNING", "TX_OVERFLOW", detail)
            return [WakeTx(), *self._warnings.admit(overflow, now)]
        return [WakeTx()]

    def _on_output_item_added(self, ev: rt.OutputItemAdded, now: float) -> list[Action]:
        if ev.item_type == "function_call":
            # The model answers the turn by acting; the tool's own filler covers the wait.
            self._reply_watch.settle()
            self._healing = None
        if ev.role != "assistant" or ev.item_type != "message":
            return []
        if ev.response_id in self._cancelled:
            self._late_items.setdefault(ev.response_id, []).append(ev.item_id)
        else:
            self._response_watch.event(ev.response_id, now)
            self._conversation.assistant_item(ev.item_id)
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
        self._response_watch.active(ev.response_id, now)
        self._tools.on_response_created(ev.response_id, ev.metadata.get("bridge_request"))
        return [Log("DEBUG", "RESPONSE_CREATED", ev.response_id)]

    def _on_response_done(self, ev: rt.ResponseDone, now: float) -> list[Action]:
        actions: list[Action] = []
        # Ended without a word (failed, a tool call): the reply and tool watches own the wait.
        self._healing = None
        if ev.response_id == self._response_watch.response_id:
            self._response_watch.done()
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
        self._healing = None
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
        self._conversation.caller_said(ev.item_id, ev.transcript)
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

    def _on_error(self, ev: rt.ErrorEvent, now: float) -> list[Action]:
        self._counters.upstream_errors += 1
        # The server's words, cut: a log line stays a line whatever the upstream sends.
        detail = (
            f"code={str(ev.code)[:64]} param={str(ev.param)[:64]} "
            f"event_id={str(ev.event_id)[:64]}: {clip(ev.message)}"
        )
        if self._state.phase is SessionPhase.CONFIGURING and (
            ev.event_id == self._session_update_id or (ev.param or "").startswith("session")
        ):
            return [EndCall(CallEnd(EndReason.SESSION_UPDATE_REJECTED, detail))]
        if ev.code in FATAL_ERROR_CODES:
            return [EndCall(CallEnd(EndReason.UPSTREAM_FATAL_ERROR, detail))]
        if ev.code in SESSION_ENDING_ERROR_CODES:
            return [DropUpstream(CallEnd(EndReason.OPENAI_CLOSED, detail))]
        if ev.event_id is not None:
            # Our request collided with a response we did not know about: ask again later.
            collided = ev.code == "conversation_already_has_active_response"
            self._state.request_failed(ev.event_id, collided=collided)
        if ev.code in BENIGN_ERROR_CODES:
            return [Log("INFO", "UPSTREAM_BENIGN", detail)]
        warning = Log("WARNING", "UPSTREAM_ERROR", f"{detail}; call continues")
        return list(self._warnings.admit(warning, now))

    # -- TX writer ------------------------------------------------------------------------

    def tx_poll(self, now: float) -> TxDecision:
        """What the TX writer should do at ``now``: send (a frame, or a mark owed), wait,
        or idle."""
        if self._state.floor is Floor.HELD:
            return TxIdle()
        owed = self.ledger.take_due_mark()
        if owed is not None:
            return TxSend((twilio.mark_message(self.stream_sid, str(owed)),), None)
        # One message: the head item's queued audio, up to the message size. It goes when
        # Twilio has room for all of it, so Twilio holds between lead - message and lead.
        message_bytes = min(self.settings.frame_ms, self.settings.lead_ms) * BYTES_PER_MS
        size = self.ledger.head_run_bytes(message_bytes)
        if size == 0:
            return TxIdle()
        frame_ms = size / BYTES_PER_MS
        ready_at = self._pacer.ready_at(now, frame_ms)
        if ready_at > now:
            return TxWait(ready_at)
        frame = self.ledger.take_message(size)
        self._gate.note_playout(frame.payload, self._pacer.play_start_for_next(now))
        mark = self.ledger.on_sent(frame, now)
        self._pacer.on_sent(now, frame_ms)
        self._counters.frames_out += 1
        self._counters.audio_ms_sent += len(frame.payload) // BYTES_PER_MS
        media = twilio.media_message(self.stream_sid, frame.payload)
        if mark is None:
            return TxSend((media,), frame)
        return TxSend((media, twilio.mark_message(self.stream_sid, str(mark))), frame)

    def next_deadline(self) -> float | None:
        """Trio time of the next timer the core needs (:meth:`on_timer`), if any."""
        # Read after every event: no list, no generator.
        soonest = self._reply_watch.deadline()
        for deadline in (
            self._response_watch.deadline(),
            self._media_watch.deadline(),
            self.tools_deadline(),
            self._duck_deadline(),
            self._comfort_deadline(),
        ):
            if deadline is not None and (soonest is None or deadline < soonest):
                soonest = deadline
        return soonest

    def _duck_deadline(self) -> float | None:
        """When a ducked response is confirmed as a barge-in or resumed, if one is ducked."""
        duck = self._state.duck_state
        return None if duck is None else duck.started_at + self.settings.confirm_window_ms / 1000.0

    def _comfort_deadline(self) -> float | None:
        """When comfort audio plays: in an outage, or mid-reply once its audio stopped."""
        comforting = self._comforting
        return comforting.comfort_at if comforting is not None else self._starved_at()

    @property
    def _comforting(self) -> Outage | None:
        """The outage whose silence comfort audio covers: healing, or healed but not heard."""
        return self._outage if self._outage is not None else self._healing

    def _starved_at(self) -> float | None:
        """When the caller will have heard ``comfort_after_ms`` of silence in the middle of a
        reply whose audio stopped coming (a stall is found only by the heartbeat, up to 1.5 s
        later, and Twilio's buffer runs dry long before): the soft cue plays then, once.
        ``None`` when no reply is being heard mid-item, audio waits to be sent, or the
        caller has the floor."""
        active = self._state.active
        if (
            self._starving_item is None
            or self._starved_cued
            or active is None
            or active.response_id != self._starving_item[0]
            or self._state.floor is not Floor.AI_MAY_SPEAK
            or self.ledger.has_queued
        ):
            return None
        return self._pacer.play_end_at + self.settings.comfort_after_ms / 1000.0

    def on_timer(self, now: float) -> list[Action]:
        """Whatever of the call's timers is due at ``now`` (see :mod:`bridge.core.watchdogs`)."""
        self._cancelled.expire(now)
        actions: list[Action] = []
        duck = self._state.duck_state
        if duck is not None and now >= duck.started_at + self.settings.confirm_window_ms / 1000.0:
            actions += self._resume_held(duck)
        outage = self._comforting
        if outage is not None and outage.comfort_due(now):
            if outage.cues == 1:
                comfort = self._play_hold_phrase("the upstream is healing")
            else:
                comfort = self._play_local("cue", self.settings.comfort_cue)
                if comfort:
                    self._counters.comfort_cues += 1
            actions += comfort
            if comfort:
                # Again once this has played and the line has been quiet for a while.
                play_end = max(now, self._pacer.play_end_at) + self.ledger.queued_ms() / 1000
                outage.comfort_at = play_end + CUE_QUIET_S
        starved_at = self._starved_at() if outage is None else None
        if starved_at is not None and now >= starved_at:
            self._starved_cued = True
            cue = self._play_local("cue", self.settings.comfort_cue)
            if cue:
                self._counters.comfort_cues += 1
                quiet_ms = round((now - self._pacer.play_end_at) * 1000)
                detail = f"no audio of the reply for {quiet_ms} ms mid-item: a soft cue"
                actions += [*cue, Log("INFO", "REPLY_STARVED", detail)]
        match self._reply_watch.due(now):
            case ReplyDue.NUDGE if self.session_ready and self._state.may_create_response:
                self._counters.reply_nudges += 1
                actions.append(Log("INFO", "REPLY_NUDGE", "no reply started: asking again"))
                actions.append(self._request_response())
            case ReplyDue.HOLD_PHRASE if self._line_quiet and outage is None:
                actions += self._play_hold_phrase("the reply is late")
            case _:
                pass  # nothing due, or the turn moved on meanwhile
        if self._response_watch.stalled(now):
            detail = f"no event of the response for {RESPONSE_STALL_S:g} s"
            actions.append(DropUpstream(CallEnd(EndReason.OPENAI_RESPONSE_STALL, detail)))
        match self._media_watch.due(now):
            case MediaDue.STALL:
                self._counters.media_stalls += 1
                actions.append(
                    Log("WARNING", "TWILIO_MEDIA_STALL", f"no caller media for {MEDIA_STALL_S:g} s")
                )
            case MediaDue.TIMEOUT:
                detail = f"no caller media for {self.settings.media_timeout_s:g} s"
                actions.append(EndCall(CallEnd(EndReason.TWILIO_MEDIA_TIMEOUT, detail)))
            case None:
                pass
        tools_at = self.tools_deadline()
        if tools_at is not None and now >= tools_at:
            actions += self.on_tools_timer(now)
        return actions

    def _resume_held(self, duck: Duck) -> list[Action]:
        # No server confirmation: a cough, a door, an "mm-hm". Resume where playout stopped.
        self._state.resume()
        self.ledger.resume(list(duck.held))
        self._counters.false_alarms_resumed += 1
        held_ms = sum(len(f.payload) for f in duck.held) // BYTES_PER_MS
        actions: list[Action] = [
            WakeTx(),
            report("INFO", BargeInResumed(self.settings.confirm_window_ms, held_ms)),
        ]
        if self._state.take_deferred():
            actions.append(self._request_response())
        return actions

    def _play_hold_phrase(self, why: str) -> list[Action]:
        """Queue the hold phrase as audio of the bridge's own (never truncated upstream)."""
        actions = self._play_local("hold", self.settings.hold_audio)
        if not actions:
            return []
        self._counters.hold_phrases += 1
        return [*actions, Log("INFO", "HOLD_PHRASE", f"the caller hears the hold phrase: {why}")]

    def _play_local(self, kind: str, audio: bytes) -> list[Action]:
        """Queue ``audio`` as an item of the bridge's own (``local_<kind>_<n>``); it is
        dropped unplayed as soon as the model speaks again."""
        if not audio:
            return []
        self._holds += 1
        item_id = f"{LOCAL_ITEM_PREFIX}{kind}_{self._holds}"
        self.ledger.add_audio(f"{LOCAL_ITEM_PREFIX}response", item_id, audio)
        self.ledger.audio_done(item_id)
        self._hold_queued = True
        return [WakeTx()]

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
            if item.item_id.startswith(LOCAL_ITEM_PREFIX) or item.item_id in self._foreign_items:
                # Not in this session's conversation as audio; but if it was replayed to it
                # as text while it still played, that text is replaced by what was heard.
                if not fully_heard and item.received_bytes:
                    self._conversation.assistant_cut(
                        item.item_id, heard_ms * BYTES_PER_MS / item.received_bytes
                    )
                    upstream += self._correct_replay(item.item_id)
                self.ledger.finalize(item.item_id)
                continue
            if not fully_heard:
                self._conversation.assistant_cut(
                    item.item_id, heard_ms * BYTES_PER_MS / max(1, item.received_bytes)
                )
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
            caller_speech_ms=self._input_clock.to_twilio_ms(audio_start_ms),
        )

    def _correct_replay(self, item_id: str) -> list[ClientEvent]:
        fix = self._conversation.correction(item_id, self._event_id("item"))
        if fix is None:
            return []
        events: list[ClientEvent] = [ItemDelete(self._event_id("delete"), fix.old_item_id)]
        if fix.new_item_id is not None:
            events.append(
                ReplayMessage(
                    self._event_id("replay"),
                    "assistant",
                    fix.text,
                    fix.new_item_id,
                    previous_item_id=fix.previous_item_id,
                )
            )
        return events

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
        self._conversation.note(note.text)
        if not self.session_ready:
            # The next session gets it with the conversation (see _take_over).
            if disposition is NoteDisposition.SEND_AND_RESPOND:
                self._state.defer()
            return [Log("INFO", "NOTE_QUEUED", "no session is ready: the note goes to the next")]
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

    def _emit(self, event: Transcript | BargeInHappened) -> ToApp:
        return ToApp(EmitEvent(event))

    def _tool_note(self, text: str, respond: bool, epoch: int) -> list[Action]:
        """An orphaned tool call's result, under the notes' rules (:mod:`bridge.core.tools`)."""
        return self.submit_note(text, respond=respond, awaits_confirmation=False, epoch=epoch)

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
        return self._tools.on_result(call_id, result, self._moment(now))

    def on_exit_result(self, call_id: str, ok: bool, detail: str, now: float) -> list[Action]:
        """The REST work of an exit is done (:class:`~bridge.core.app_work.RunExit`)."""
        actions, note, epoch = self._tools.on_exit_result(call_id, ok, detail)
        if note is not None:
            # A failed transfer is spoken, under the notes' rules (never after a barge-in).
            actions += self.submit_note(note, respond=True, awaits_confirmation=False, epoch=epoch)
        return actions

    def tools_deadline(self) -> float | None:
        """Trio time (s) of the next tool timer (filler, exit cap), if any: one of the
        deadlines of :meth:`next_deadline`."""
        return self._tools.deadline(self.ledger.last_ack_at)

    def on_tools_timer(self, now: float) -> list[Action]:
        """The tool timers due at ``now`` (the part of :meth:`on_timer` that is theirs)."""
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
