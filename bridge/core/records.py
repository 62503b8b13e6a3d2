"""Typed log records: the schema shared by the bridge's log lines and the tools that read them.

A few log lines are read by programs as well as people: the benchmarks and an operator's
log pipeline need the barge-in timings, the end of each call and the port the bridge
listens on. Each of those is a frozen dataclass here. The bridge logs it with
:func:`report` (tag ``TAG``, a readable sentence from :meth:`text`, and the fields as JSON
under ``extra.record`` in ``BRIDGE_LOG_FORMAT=json``); a reader rebuilds the same value with
:func:`read_record`, so it never depends on the wording of a message.

Units are in the field names: ``*_ms`` milliseconds, ``*_s`` seconds, ``*_dbfs`` dBFS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from bridge.core.actions import Log, LogLevel, Truncation


class LogRecord(Protocol):
    TAG: ClassVar[str]

    def text(self) -> str: ...


R = TypeVar("R", bound=LogRecord)


@dataclass(frozen=True, slots=True)
class BridgeReady:
    """The bridge accepts calls on ``host:port`` (port 0 in the settings means any free one)."""

    TAG: ClassVar[str] = "BRIDGE_READY"
    host: str
    port: int

    def text(self) -> str:
        return (
            f"listening on http://{self.host}:{self.port} "
            "(webhook POST /twilio/voice, stream /twilio/media)"
        )


@dataclass(frozen=True, slots=True)
class BargeInReport:
    """One barge-in, with the time each step took (ms after the trigger was received)."""

    TAG: ClassVar[str] = "BARGE_IN"
    trigger: str
    """``server`` (``speech_started`` while the AI spoke), ``local`` (the fast path stopped
    playout and holds the audio) or ``confirmed`` (the server confirmed a local one)."""
    clear_ms: float | None
    """Trigger received → Twilio ``clear`` written; ``None`` when an earlier local barge-in
    had already cleared."""
    flushed_frames: int
    flushed_ms: int
    unplayed_at_twilio_ms: int
    cancelled: tuple[str, ...]
    truncations: tuple[Truncation, ...]
    deleted: tuple[str, ...]
    upstream_ms: float | None
    """Trigger received → the last cancel/truncate/delete written upstream, if any."""
    held: bool
    caller_speech_ms: float | None
    """Where the interrupting speech began on the caller's clock (Twilio media ms)."""

    def text(self) -> str:
        steps = [f"trigger={self.trigger}"]
        if self.caller_speech_ms is not None:
            steps.append(f"speech_at={self.caller_speech_ms:.0f}ms")
        steps.append(
            f"clear={self.clear_ms:.2f}ms" if self.clear_ms is not None else "clear=earlier"
        )
        steps.append(f"flushed={self.flushed_frames}f/{self.flushed_ms}ms")
        steps.append(f"unplayed_at_twilio={self.unplayed_at_twilio_ms}ms")
        if self.held:
            steps.append("held (waiting for the server to confirm)")
        if self.cancelled:
            steps.append("cancel=" + ",".join(self.cancelled))
        if self.truncations:
            steps.append(
                "truncate="
                + ",".join(
                    f"{t.item_id}@{t.audio_end_ms}/{t.received_ms}ms" for t in self.truncations
                )
            )
        if self.deleted:
            steps.append("delete=" + ",".join(self.deleted))
        if self.upstream_ms is not None:
            steps.append(f"upstream_sent={self.upstream_ms:.2f}ms")
        return " ".join(steps)


@dataclass(frozen=True, slots=True)
class BargeInResumed:
    """A local barge-in the server never confirmed: the held audio plays on."""

    TAG: ClassVar[str] = "BARGE_IN_RESUMED"
    confirm_window_ms: int
    held_ms: int

    def text(self) -> str:
        return (
            f"no speech_started within {self.confirm_window_ms} ms: resuming {self.held_ms} ms "
            "of held audio, nothing truncated"
        )


@dataclass(frozen=True, slots=True)
class ResponseFinished:
    TAG: ClassVar[str] = "RESPONSE_DONE"
    response_id: str
    status: str
    reason: str | None
    audio_ms: int
    first_audio_ms: float | None
    """``response.created`` → its first audio delta received, ms."""

    def text(self) -> str:
        first = "-" if self.first_audio_ms is None else f"{self.first_audio_ms:.0f}"
        return (
            f"{self.response_id} status={self.status} reason={self.reason} "
            f"audio_ms={self.audio_ms} first_audio_ms={first}"
        )


@dataclass(frozen=True, slots=True)
class ToolCallReport:
    """The model called a tool (the request is handed to the application link)."""

    TAG: ClassVar[str] = "TOOL_CALL"
    tool: str
    call_id: str
    kind: str
    """``url``, ``end_call`` or ``transfer_call``."""
    response_id: str
    epoch: int

    def text(self) -> str:
        return (
            f"{self.tool} call_id={self.call_id} kind={self.kind} "
            f"response={self.response_id} epoch={self.epoch}"
        )


@dataclass(frozen=True, slots=True)
class ToolResultReport:
    """A call's output went to the model."""

    TAG: ClassVar[str] = "TOOL_RESULT"
    tool: str
    call_id: str
    outcome: str
    """``ok``, or the error: ``timeout``, ``http_status``, ``invalid_json``, ``unreachable``,
    ``too_large``, ``bad_arguments``, ``unknown_tool``, ``cut_off``, ``busy``."""
    latency_ms: float
    """The model's call → its output handed to the upstream socket."""
    detail: str

    def text(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return (
            f"{self.tool} call_id={self.call_id} outcome={self.outcome}{detail} "
            f"latency={self.latency_ms:.0f}ms"
        )


@dataclass(frozen=True, slots=True)
class ToolDeliveredReport:
    """The application's reply became the model's output: how long the bridge took."""

    TAG: ClassVar[str] = "TOOL_DELIVERED"
    tool: str
    call_id: str
    reply_to_output_ms: float
    """The application's reply read in full → its ``function_call_output`` written to the
    upstream socket (the bridge's own share of the delivery)."""

    def text(self) -> str:
        took = f"{self.reply_to_output_ms:.2f}ms"
        return f"{self.tool} call_id={self.call_id} output written {took} after the reply"


@dataclass(frozen=True, slots=True)
class ToolCancelledReport:
    """A call still running when the caller barged in was cancelled (or a late result of
    one was dropped: ``late_result``)."""

    TAG: ClassVar[str] = "TOOL_CANCELLED"
    tool: str
    call_id: str
    reason: str
    late_result: bool

    def text(self) -> str:
        what = "late result dropped" if self.late_result else "cancelled"
        return f"{self.tool} call_id={self.call_id} {what} (reason={self.reason})"


@dataclass(frozen=True, slots=True)
class ToolResponseReport:
    """The outputs of one response's calls are all in: what the bridge did about them."""

    TAG: ClassVar[str] = "TOOL_RESPOND"
    answers: str
    """The response that made the calls."""
    call_ids: tuple[str, ...]
    decision: str
    """``respond`` (one ``response.create`` for them all), ``silent`` (a barge-in came after
    the calls: the outputs never start a response), ``answered`` (the caller spoke after the
    outputs were in: the server's reply answers them), ``last_words`` (an exit tool: the bridge
    asks for a goodbye or a transfer notice), ``heard`` (an exit tool whose response
    already spoke: it waits for that to be heard) or ``session_lost`` (the session that had
    the calls was lost: their outputs never start a response)."""
    epoch: int

    def text(self) -> str:
        return (
            f"{self.decision} for {len(self.call_ids)} call(s) of {self.answers} "
            f"(epoch {self.epoch})"
        )


@dataclass(frozen=True, slots=True)
class ToolFillerReport:
    """A tool is slow: the bridge asked the model to say it is checking."""

    TAG: ClassVar[str] = "TOOL_FILLER"
    answers: str
    waited_ms: float
    """Silence at the caller when the filler was requested."""
    lead_ms: float
    """How much earlier than ``BRIDGE_TOOL_FILLER_MS`` it was requested: the upstream's
    first-audio latency measured on this call."""

    def text(self) -> str:
        return (
            f"asked for a filler after {self.waited_ms:.0f} ms of silence "
            f"(lead {self.lead_ms:.0f} ms) for {self.answers}"
        )


@dataclass(frozen=True, slots=True)
class CallExitReport:
    """``end_call`` / ``transfer_call`` progress: ``heard`` (the last words were heard),
    ``done``, ``failed`` or ``aborted`` (the caller cut in)."""

    TAG: ClassVar[str] = "CALL_EXIT"
    kind: str
    call_id: str
    step: str
    detail: str

    def text(self) -> str:
        return f"{self.kind} {self.step} call_id={self.call_id}" + (
            f": {self.detail}" if self.detail else ""
        )


@dataclass(frozen=True, slots=True)
class UpstreamLost:
    """The Realtime session was lost; the call goes on and heals."""

    TAG: ClassVar[str] = "UPSTREAM_LOST"
    reason: str
    """:class:`bridge.core.ending.EndReason` value."""
    detail: str
    mid_reply: bool

    def text(self) -> str:
        cut = " mid-reply" if self.mid_reply else ""
        return f"reason={self.reason} {self.detail}{cut}; reconnecting".replace("  ", " ")


@dataclass(frozen=True, slots=True)
class UpstreamRestored:
    """A new session took over the conversation after a loss."""

    TAG: ClassVar[str] = "UPSTREAM_RESTORED"
    gap_ms: float
    """Loss noticed → the new session confirmed, ms."""
    attempts: int
    replayed_items: int
    resumed_reply: bool
    """The AI was cut off mid-reply and was asked to say so and go on (or, if the caller
    had heard none of it, to give that reply again)."""
    answered_turn: bool
    """The caller's turn ended during the gap: the new session was asked to answer it."""

    def text(self) -> str:
        resumed = ", resuming the cut reply" if self.resumed_reply else ""
        if self.answered_turn:
            resumed += ", answering the caller's turn"
        return (
            f"after {self.gap_ms:.0f} ms, {self.attempts} attempt(s), "
            f"{self.replayed_items} item(s) replayed{resumed}"
        )


@dataclass(frozen=True, slots=True)
class SessionRecycled:
    """A session was replaced before the service's session cap: at a turn boundary, or
    (``at_turn_boundary`` false) forced shortly before the cap because none came."""

    TAG: ClassVar[str] = "SESSION_RECYCLED"
    session_age_s: float
    at_turn_boundary: bool

    def text(self) -> str:
        where = "at a turn boundary" if self.at_turn_boundary else "with no turn boundary"
        return f"session replaced {where} after {self.session_age_s:.0f} s"


@dataclass(frozen=True, slots=True)
class CallFinished:
    """The one ``CALL_END`` line of a call."""

    TAG: ClassVar[str] = "CALL_END"
    reason: str
    """:class:`bridge.core.ending.EndReason` value."""
    detail: str
    duration_s: float
    rest_hangup: str
    noise_floor_dbfs: float | None
    statistics: Mapping[str, int]
    """:class:`bridge.core.stats.CallStatistics` as a mapping."""

    def text(self) -> str:
        s = self.statistics
        floor = "-" if self.noise_floor_dbfs is None else f"{self.noise_floor_dbfs:.1f}dBFS"
        reason = f"{self.reason} {self.detail}" if self.detail else self.reason
        return (
            f"reason={reason} duration_s={self.duration_s:.2f} barge_ins={s['barge_ins']} "
            f"frames_in={s['frames_in']} audio_ms_sent={s['audio_ms_sent']} "
            f"late_deltas_dropped={s['late_deltas_dropped']} "
            f"malformed={s['twilio_malformed']}+{s['upstream_malformed']} "
            f"gated={s['frames_gated']} inbound_gap_filled_ms={s['inbound_gap_filled_ms']} "
            f"noise_floor={floor} rest_hangup={self.rest_hangup}"
        )


def report(level: LogLevel, record: LogRecord) -> Log:
    """The log action for ``record``: readable text, and the fields for programs."""
    fields = dataclasses.asdict(record)  # type: ignore[call-overload]
    return Log(level, record.TAG, record.text(), {"record": fields})


def _build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = data[f.name]
        if f.name == "truncations":
            value = tuple(Truncation(**t) for t in value)
        elif isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def read_record(cls: type[R], extra: Mapping[str, Any]) -> R | None:
    """The record of type ``cls`` in a JSON log line's ``extra``, or ``None`` if the line is
    another kind. Raises ``KeyError``/``TypeError`` if it claims the tag but lacks a field."""
    if extra.get("tag") != cls.TAG or not isinstance(extra.get("record"), Mapping):
        return None
    built: R = _build(cls, extra["record"])
    return built
