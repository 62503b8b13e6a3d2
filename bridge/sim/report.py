"""The simulated caller's account of a call, and its human-readable timeline.

All times in a report are milliseconds since the caller started connecting (the WAV it
writes uses the same origin). Audio durations are milliseconds of μ-law at 8 bytes/ms.
:class:`CallRecorder` collects it all while the call runs, without I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from loguru import logger

from bridge.audio.mulaw import BYTES_PER_MS
from bridge.sim.playback import TIME_EPS_S, AiTurn, TwilioPlayback
from bridge.sim.script import Speech

_MAX_VIOLATION_SAMPLES: Final = 20


class EventKind(StrEnum):
    CONNECTED = "connected"
    START_SENT = "start_sent"
    SPEECH_START = "speech_start"
    SPEECH_END = "speech_end"
    AI_START = "ai_start"
    AI_STOP = "ai_stop"
    CLEAR = "clear"
    MARKS = "marks"
    VIOLATION = "violation"
    MAX_DURATION = "max_duration"
    STOP_SENT = "stop_sent"
    CLOSED = "closed"


_ACTOR: dict[EventKind, str] = {
    EventKind.CONNECTED: "TWILIO",
    EventKind.START_SENT: "TWILIO",
    EventKind.SPEECH_START: "CALLER",
    EventKind.SPEECH_END: "CALLER",
    EventKind.AI_START: "AI",
    EventKind.AI_STOP: "AI",
    EventKind.CLEAR: "TWILIO",
    EventKind.MARKS: "TWILIO",
    EventKind.VIOLATION: "TWILIO",
    EventKind.MAX_DURATION: "CALLER",
    EventKind.STOP_SENT: "CALLER",
    EventKind.CLOSED: "TWILIO",
}


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    t_ms: float
    """Milliseconds since the caller started connecting."""
    kind: EventKind
    detail: str
    """Short human text, shown after the actor in :func:`format_timeline`."""


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """How the WebSocket ended."""

    by: Literal["caller", "bridge", "abort"]
    """``caller``: after ``stop``, with a close handshake. ``bridge``: the bridge closed
    first (or the TCP connection dropped: code 1006). ``abort``: the caller dropped TCP
    without a close handshake (test hook)."""
    code: int | None
    reason: str | None
    t_ms: float


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    t_ms: float
    code: int
    """Twilio warning code: 31950 binary frame, 31951 invalid message."""
    detail: str


@dataclass(frozen=True, slots=True)
class TurnSummary:
    index: int
    start_ms: float
    end_ms: float | None
    """``None`` when the call ended while the turn was still playing."""
    heard_ms: float
    interrupted: bool
    """Cut by a ``clear`` while audio was still buffered."""
    caller_overlap_ms: float | None
    """How long the turn kept playing after the caller started speaking over it: for a
    barge-in, the stop latency the caller perceives. ``None`` if the caller did not
    start speaking during the turn."""
    underrun_gaps: int
    underrun_ms: float


@dataclass(slots=True)
class CallerReport:
    """Everything the simulated caller observed during one call."""

    call_sid: str
    stream_sid: str
    duration_ms: float
    """From the start of connecting to the end of the call."""
    timeline: list[TimelineEntry]
    """Sorted by time."""
    media_sent: int
    """Inbound ``media`` frames sent (20 ms each)."""
    media_lost: int
    """Frames not sent because they fell in a ``lost_inbound_ms`` span."""
    late_frames: int
    """Frames sent more than 5 ms after their real-time deadline."""
    media_received: int
    """Outbound ``media`` messages accepted from the bridge."""
    media_received_bytes: int
    marks_received: int
    marks_echoed: int
    marks_echoed_by_clear: int
    clears: int
    violations: dict[int, int]
    """Twilio warning code -> count."""
    violation_samples: list[ProtocolViolation]
    """The first few violations, with details."""
    underrun_gaps: int
    underrun_ms: float
    underruns_by_item: dict[str, tuple[int, float]]
    """Item id -> (gaps, total gap ms)."""
    ai_turns: list[TurnSummary]
    heard_ms_by_item: dict[str, float]
    """Assistant item id (from the mark names) -> ms the caller heard."""
    heard_ms: float
    """All AI audio the caller heard, attributed or not."""
    close: CloseInfo | None

    @property
    def media_received_ms(self) -> float:
        return self.media_received_bytes / BYTES_PER_MS

    @property
    def violation_count(self) -> int:
        return sum(self.violations.values())


def format_timeline(report: CallerReport) -> str:
    """One line per event (``  3.412s  AI     speaking (turn 2)``), then a summary."""
    lines = [
        f"{entry.t_ms / 1000:7.3f}s  {_ACTOR[entry.kind]:<6} {entry.detail}"
        for entry in report.timeline
    ]
    lines.append(
        f"Summary: {report.duration_ms / 1000:.1f} s call, heard {report.heard_ms / 1000:.2f} s"
        f" of AI audio in {len(report.ai_turns)} turn(s), {report.clears} clear(s),"
        f" {report.violation_count} protocol violations,"
        f" {report.underrun_gaps} underrun gaps ({report.underrun_ms:.0f} ms)"
    )
    return "\n".join(lines)


@dataclass(slots=True)
class WireCounters:
    """Message counts kept by the caller's Trio tasks."""

    media_sent: int = 0
    media_lost: int = 0
    late_frames: int = 0
    media_received: int = 0
    media_received_bytes: int = 0
    marks_sent: int = 0


class CallRecorder:
    """Builds a :class:`CallerReport` as the call happens (sans-IO).

    Times passed in are clock seconds; entries are stored as ms since ``origin``.
    """

    __slots__ = (
        "_origin",
        "_speech_ended",
        "_timeline",
        "_turns_ended",
        "_turns_started",
        "_violation_samples",
        "_violations",
    )

    def __init__(self, origin: float) -> None:
        self._origin = origin
        """Clock time (s) the caller started connecting: time zero."""
        self._timeline: list[TimelineEntry] = []
        self._violations: dict[int, int] = {}
        self._violation_samples: list[ProtocolViolation] = []
        self._turns_started = 0
        self._turns_ended = 0
        self._speech_ended = 0

    @property
    def origin(self) -> float:
        return self._origin

    def ms(self, t: float) -> float:
        """Clock time (s) to ms since the origin."""
        return (t - self._origin) * 1000.0

    def event(self, at: float, kind: EventKind, detail: str) -> None:
        entry = TimelineEntry(self.ms(at), kind, detail)
        self._timeline.append(entry)
        logger.debug("sim caller {:9.3f}s {} {}", entry.t_ms / 1000, kind.value, detail)

    def violation(self, at: float, code: int, detail: str) -> None:
        """Count a bad frame from the bridge; the first of each code goes on the timeline,
        as Twilio reports each warning once per stream."""
        seen = self._violations.get(code, 0)
        self._violations[code] = seen + 1
        if len(self._violation_samples) < _MAX_VIOLATION_SAMPLES:
            self._violation_samples.append(ProtocolViolation(self.ms(at), code, detail))
        if not seen:
            text = f"warning {code}: {detail} (message dropped)"
            self.event(at, EventKind.VIOLATION, text)
            logger.warning("sim caller: bridge sent a bad frame: {}", text)

    def turn_events(self, playback: TwilioPlayback, speech: Sequence[Speech]) -> bool:
        """Timeline entries for AI turns that started or ended since the last call;
        returns whether there were any."""
        turns = playback.turns
        changed = False
        while self._turns_started < len(turns):
            turn = turns[self._turns_started]
            self._turns_started += 1
            self.event(turn.start, EventKind.AI_START, f"speaking (turn {turn.index})")
            changed = True
        while self._turns_ended < len(turns) and (end := turns[self._turns_ended].end) is not None:
            summary = self.summarize(turns[self._turns_ended], playback, speech)
            self._turns_ended += 1
            self.event(end, EventKind.AI_STOP, _turn_stop_text(summary, "stops"))
            changed = True
        return changed

    def speech_ends(self, speech: Sequence[Speech], until: float, *, cut_off: bool) -> None:
        """Timeline entries for utterances whose audio was sent up to ``until`` (s); with
        ``cut_off``, also for one still in progress (the call ended)."""
        for utterance in speech[self._speech_ended :]:
            if utterance.start is None or utterance.start >= until:
                return
            end = utterance.start + utterance.duration_s
            if end <= until + TIME_EPS_S:
                self.event(end, EventKind.SPEECH_END, "stops speaking")
            elif cut_off:
                self.event(until, EventKind.SPEECH_END, "stops speaking (call ended)")
            else:
                return
            self._speech_ended += 1

    def summarize(
        self, turn: AiTurn, playback: TwilioPlayback, speech: Sequence[Speech]
    ) -> TurnSummary:
        end = playback.now if turn.end is None else turn.end
        gaps = [u for u in playback.underruns if turn.start <= u.at <= end]
        talked_over = [
            s.start for s in speech if s.start is not None and turn.start <= s.start < end
        ]
        return TurnSummary(
            index=turn.index,
            start_ms=self.ms(turn.start),
            end_ms=None if turn.end is None else self.ms(turn.end),
            heard_ms=playback.played_between(turn.start, end),
            interrupted=turn.interrupted,
            caller_overlap_ms=(end - talked_over[0]) * 1000.0 if talked_over else None,
            underrun_gaps=len(gaps),
            underrun_ms=sum(u.gap_ms for u in gaps),
        )

    def report(
        self,
        *,
        call_sid: str,
        stream_sid: str,
        end: float,
        playback: TwilioPlayback,
        speech: Sequence[Speech],
        counters: WireCounters,
        close: CloseInfo | None,
    ) -> CallerReport:
        """The final report at clock time ``end`` (s); ``playback`` is advanced to when
        audio stopped playing."""
        self.turn_events(playback, speech)
        turns = [self.summarize(turn, playback, speech) for turn in playback.turns]
        if self._turns_ended < len(turns):
            self.event(
                playback.now, EventKind.AI_STOP, _turn_stop_text(turns[-1], "still speaking")
            )
        by_clear = sum(len(clear.cleared_marks) for clear in playback.clears)
        if playback.marks_received:
            self.event(
                end,
                EventKind.MARKS,
                f"{counters.marks_sent} of {playback.marks_received} marks echoed"
                f" ({by_clear} by clear)",
            )
        heard_by_item: dict[str, float] = {}
        for segment in playback.segments():
            if segment.item_id is not None:
                heard_by_item[segment.item_id] = (
                    heard_by_item.get(segment.item_id, 0.0) + len(segment.payload) / BYTES_PER_MS
                )
        underruns = playback.underrun_summary()
        return CallerReport(
            call_sid=call_sid,
            stream_sid=stream_sid,
            duration_ms=self.ms(end),
            timeline=sorted(self._timeline, key=lambda entry: entry.t_ms),
            media_sent=counters.media_sent,
            media_lost=counters.media_lost,
            late_frames=counters.late_frames,
            media_received=counters.media_received,
            media_received_bytes=counters.media_received_bytes,
            marks_received=playback.marks_received,
            marks_echoed=counters.marks_sent,
            marks_echoed_by_clear=by_clear,
            clears=len(playback.clears),
            violations=dict(self._violations),
            violation_samples=list(self._violation_samples),
            underrun_gaps=sum(count for count, _ in underruns.values()),
            underrun_ms=sum(total for _, total in underruns.values()),
            underruns_by_item=underruns,
            ai_turns=turns,
            heard_ms_by_item=heard_by_item,
            heard_ms=playback.played_bytes / BYTES_PER_MS,
            close=close,
        )


def _turn_stop_text(summary: TurnSummary, verb: str) -> str:
    parts = [f"turn {summary.index}", f"{summary.heard_ms / 1000:.2f} s heard"]
    if summary.caller_overlap_ms is not None:
        parts.append(f"{summary.caller_overlap_ms:.0f} ms after the caller began")
    if summary.underrun_gaps:
        parts.append(f"{summary.underrun_gaps} underrun gaps, {summary.underrun_ms:.0f} ms")
    return f"{'cut off by clear' if summary.interrupted else verb} ({', '.join(parts)})"
