"""OpenAI Realtime API (GA interface) events, sans-IO.

Server events are parsed by :func:`parse_realtime_event` into small frozen dataclasses.
It never raises: a frame that is not a JSON object with a string ``type``, or a known event
missing a field the bridge relies on, becomes :class:`MalformedEvent`; events the bridge has
no use for become :class:`IgnoredEvent` (known) or :class:`UnknownEvent` (not in the GA spec).

Client events (bridge → server) are typed values in :mod:`bridge.core.realtime_client`.
Only the GA shapes exist here: the beta interface is shut down (``beta_api_shape_disabled``).
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pybase64


@dataclass(frozen=True, slots=True)
class SessionCreated:
    session_id: str


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    input_format: str | None
    """``session.audio.input.format.type`` as confirmed by the server."""
    output_format: str | None
    input_rate: int | None
    output_rate: int | None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int
    """Position on the upstream input-audio clock (ms of audio appended this session)."""
    item_id: str


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: int
    item_id: str


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    response_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutputItemAdded:
    response_id: str
    item_id: str
    item_type: str
    role: str


@dataclass(frozen=True, slots=True)
class FunctionCallDone:
    """``response.output_item.done`` of a ``function_call`` item: the model finished (or, with
    ``status`` other than ``completed``, was cut off while) writing one function call.

    Dispatch waits for this event, not ``response.function_call_arguments.done``: both are
    sent when a response is interrupted, and only the item's ``status`` says whether the
    arguments are whole."""

    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str
    status: str


@dataclass(frozen=True, slots=True)
class AudioDelta:
    response_id: str
    item_id: str
    content_index: int
    audio: bytes
    """Decoded audio in the session's output format (μ-law: 8 bytes/ms)."""


@dataclass(frozen=True, slots=True)
class AudioDone:
    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class TranscriptDone:
    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class ItemTruncated:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ItemDeleted:
    item_id: str


@dataclass(frozen=True, slots=True)
class InputTranscript:
    """``conversation.item.input_audio_transcription.completed``: what the caller said."""

    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    code: str | None
    message: str
    error_type: str | None
    param: str | None
    event_id: str | None
    """The ``event_id`` of our client event that caused the error, when the server says."""


@dataclass(frozen=True, slots=True)
class IgnoredEvent:
    event_type: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    event_type: str


@dataclass(frozen=True, slots=True)
class MalformedEvent:
    reason: str


RealtimeEvent = (
    SessionCreated
    | SessionUpdated
    | SpeechStarted
    | SpeechStopped
    | ResponseCreated
    | OutputItemAdded
    | FunctionCallDone
    | AudioDelta
    | AudioDone
    | TranscriptDelta
    | TranscriptDone
    | ResponseDone
    | ItemTruncated
    | ItemDeleted
    | InputTranscript
    | ErrorEvent
    | IgnoredEvent
    | UnknownEvent
    | MalformedEvent
)

# GA server events the bridge receives but does not act on.
_IGNORED = frozenset(
    {
        "conversation.created",
        "conversation.item.created",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.retrieved",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.segment",
        "conversation.item.input_audio_transcription.failed",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "input_audio_buffer.timeout_triggered",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "rate_limits.updated",
    }
)


class _Missing(Exception):
    """A required field is absent or has the wrong type (internal to the parser)."""


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _Missing(key)
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Missing(key)
    return value


def _obj(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise _Missing(key)
    return value


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _format(session: Mapping[str, Any], direction: str) -> tuple[str | None, int | None]:
    audio = session.get("audio")
    side = audio.get(direction) if isinstance(audio, dict) else None
    fmt = side.get("format") if isinstance(side, dict) else None
    if not isinstance(fmt, dict):
        return None, None
    rate = fmt.get("rate")
    return _opt_str(fmt, "type"), rate if isinstance(rate, int) else None


def _parse(event_type: str, msg: Mapping[str, Any]) -> RealtimeEvent:
    match event_type:
        case "response.output_audio.delta":
            try:
                audio = pybase64.b64decode(_str(msg, "delta"), validate=True)
            except (binascii.Error, ValueError):
                return MalformedEvent("audio delta is not valid base64")
            index = msg.get("content_index", 0)
            return AudioDelta(
                _str(msg, "response_id"),
                _str(msg, "item_id"),
                index if isinstance(index, int) else 0,
                audio,
            )
        case "response.output_audio_transcript.delta":
            return TranscriptDelta(
                _str(msg, "response_id"), _str(msg, "item_id"), _str(msg, "delta")
            )
        case "input_audio_buffer.speech_started":
            return SpeechStarted(_int(msg, "audio_start_ms"), _str(msg, "item_id"))
        case "input_audio_buffer.speech_stopped":
            return SpeechStopped(_int(msg, "audio_end_ms"), _str(msg, "item_id"))
        case "response.created":
            response = _obj(msg, "response")
            metadata = response.get("metadata")
            meta = (
                {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}
            )
            return ResponseCreated(_str(response, "id"), meta)
        case "response.done":
            response = _obj(msg, "response")
            details = response.get("status_details")
            reason = _opt_str(details, "reason") if isinstance(details, dict) else None
            return ResponseDone(_str(response, "id"), _str(response, "status"), reason)
        case "response.output_item.added":
            item = _obj(msg, "item")
            return OutputItemAdded(
                _str(msg, "response_id"),
                _str(item, "id"),
                _opt_str(item, "type") or "",
                _opt_str(item, "role") or "",
            )
        case "response.output_item.done":
            item = _obj(msg, "item")
            if item.get("type") != "function_call":
                return IgnoredEvent(event_type)
            return FunctionCallDone(
                response_id=_str(msg, "response_id"),
                item_id=_str(item, "id"),
                call_id=_str(item, "call_id"),
                name=_str(item, "name"),
                arguments=_opt_str(item, "arguments") or "",
                status=_opt_str(item, "status") or "completed",
            )
        case "response.output_audio.done":
            return AudioDone(_str(msg, "response_id"), _str(msg, "item_id"))
        case "response.output_audio_transcript.done":
            return TranscriptDone(
                _str(msg, "response_id"), _str(msg, "item_id"), _opt_str(msg, "transcript") or ""
            )
        case "conversation.item.truncated":
            return ItemTruncated(_str(msg, "item_id"), _int(msg, "audio_end_ms"))
        case "conversation.item.deleted":
            return ItemDeleted(_str(msg, "item_id"))
        case "conversation.item.input_audio_transcription.completed":
            return InputTranscript(_str(msg, "item_id"), _opt_str(msg, "transcript") or "")
        case "session.created":
            return SessionCreated(_opt_str(_obj(msg, "session"), "id") or "")
        case "session.updated":
            session = _obj(msg, "session")
            in_fmt, in_rate = _format(session, "input")
            out_fmt, out_rate = _format(session, "output")
            return SessionUpdated(in_fmt, out_fmt, in_rate, out_rate)
        case "error":
            error = _obj(msg, "error")
            return ErrorEvent(
                code=_opt_str(error, "code"),
                message=_opt_str(error, "message") or "",
                error_type=_opt_str(error, "type"),
                param=_opt_str(error, "param"),
                event_id=_opt_str(error, "event_id"),
            )
        case _ if event_type in _IGNORED:
            return IgnoredEvent(event_type)
        case _:
            return UnknownEvent(event_type)


def parse_realtime_event(data: str | bytes) -> RealtimeEvent:
    """Parse one WebSocket message from the Realtime API. Never raises."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return MalformedEvent("not JSON")
    if not isinstance(message, dict):
        return MalformedEvent("JSON is not an object")
    event_type = message.get("type")
    if not isinstance(event_type, str):
        return MalformedEvent("no 'type' field")
    try:
        return _parse(event_type, message)
    except _Missing as missing:
        return MalformedEvent(f"{event_type} without a valid '{missing}'")
