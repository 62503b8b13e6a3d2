"""OpenAI Realtime API (GA interface) client events: typed values, encoded once at the edge.

The core decides *what* to send as one of the :data:`ClientEvent` values; the adapter that
owns the socket turns it into a JSON text frame with :func:`encode`, the only place that
knows the wire shape. :func:`encode` is exhaustive over :data:`ClientEvent` (mypy checks the
``assert_never``), so a new event type cannot be silently dropped.

The hot path is :class:`InputAudioAppend` (about 50 per second per call): it is encoded
from a fixed template around the base64 audio, not through a JSON serializer. Only the GA
shapes exist here: the beta interface is shut down (``beta_api_shape_disabled``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, assert_never

import orjson
import pybase64

AudioFormatName = Literal["audio/pcmu", "audio/pcm"]


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """Explicit server-VAD settings (partial objects got odd defaults in the past)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    """Quiet input audio, ms, after which the server ends the caller's turn."""
    create_response: bool = True
    interrupt_response: bool = True


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A ``function`` tool in ``session.update`` (``tools``)."""

    name: str
    description: str
    parameters: str
    """Its JSON schema, as JSON text (kept as text so the settings stay hashable)."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    model: str | None
    """Omitted from the update when ``None`` (the model is fixed by the connect URL)."""
    voice: str
    instructions: str
    audio_format: AudioFormatName = "audio/pcmu"
    transcription_model: str | None = "gpt-4o-mini-transcribe"
    turn_detection: TurnDetection = field(default_factory=TurnDetection)
    tools: tuple[FunctionTool, ...] = ()
    """Sent with ``tool_choice: "auto"`` when there are any; omitted otherwise."""


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """``session.update`` with every field the bridge depends on set explicitly."""

    TYPE: ClassVar[str] = "session.update"
    event_id: str
    settings: SessionSettings


@dataclass(frozen=True, slots=True)
class InputAudioAppend:
    TYPE: ClassVar[str] = "input_audio_buffer.append"
    audio: bytes
    """Caller audio in the session's input format (μ-law: 8 bytes/ms; PCM16 24 kHz:
    48 bytes/ms)."""


@dataclass(frozen=True, slots=True)
class ResponseCreate:
    TYPE: ClassVar[str] = "response.create"
    event_id: str
    request_tag: str
    """Comes back as ``metadata.bridge_request`` in ``response.created``: how the core knows
    which of its requests a response answers."""
    instructions: str | None = None
    purpose: str | None = None
    """Comes back as ``metadata.bridge_purpose`` (``tools``, ``filler``, ``goodbye``, ...)."""
    answers: str | None = None
    """The response whose function calls this response answers (``metadata.bridge_for``)."""
    tool_choice: Literal["auto", "none"] | None = None
    """``none``: the model may not call a tool in this response (fillers, goodbyes)."""


@dataclass(frozen=True, slots=True)
class ResponseCancel:
    TYPE: ClassVar[str] = "response.cancel"
    event_id: str
    response_id: str


@dataclass(frozen=True, slots=True)
class ItemTruncate:
    """Truncate an assistant audio item at ``audio_end_ms`` (1..generated ms; 0 is an API
    error, more than generated too)."""

    TYPE: ClassVar[str] = "conversation.item.truncate"
    event_id: str
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ItemDelete:
    TYPE: ClassVar[str] = "conversation.item.delete"
    event_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class SystemMessage:
    """A system message item (``conversation.item.create``): context for the model that
    does not itself start a response."""

    TYPE: ClassVar[str] = "conversation.item.create"
    event_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ReplayMessage:
    """A message of an earlier session, given to a new one as text (``conversation.item
    .create``): the caller's words as ``input_text``, the AI's as ``output_text`` (assistant
    audio cannot be created)."""

    TYPE: ClassVar[str] = "conversation.item.create"
    event_id: str
    role: Literal["user", "assistant", "system"]
    text: str
    item_id: str
    """Chosen by the bridge (up to 32 characters) so that the item can be replaced later."""
    previous_item_id: str | None = None
    """Insert after this item (``"root"``: first); ``None`` appends."""


@dataclass(frozen=True, slots=True)
class FunctionCallOutput:
    """The output of one function call (``conversation.item.create`` of a
    ``function_call_output`` item); like any item, it does not start a response."""

    TYPE: ClassVar[str] = "conversation.item.create"
    event_id: str
    call_id: str
    output: str
    """Free text for the model; the bridge sends JSON text."""


ClientEvent = (
    SessionUpdate
    | InputAudioAppend
    | ResponseCreate
    | ResponseCancel
    | ItemTruncate
    | ItemDelete
    | SystemMessage
    | ReplayMessage
    | FunctionCallOutput
)


def _format_object(name: AudioFormatName) -> dict[str, Any]:
    # pcmu takes no `rate` (the server rejects it as an unknown parameter); pcm is 24 kHz only.
    return {"type": "audio/pcm", "rate": 24000} if name == "audio/pcm" else {"type": name}


def _session_update(event: SessionUpdate) -> dict[str, Any]:
    settings = event.settings
    turn = settings.turn_detection
    audio_input: dict[str, Any] = {
        "format": _format_object(settings.audio_format),
        "turn_detection": {
            "type": "server_vad",
            "threshold": turn.threshold,
            "prefix_padding_ms": turn.prefix_padding_ms,
            "silence_duration_ms": turn.silence_duration_ms,
            "create_response": turn.create_response,
            "interrupt_response": turn.interrupt_response,
        },
    }
    if settings.transcription_model:
        audio_input["transcription"] = {"model": settings.transcription_model}
    session: dict[str, Any] = {"type": "realtime"}
    if settings.model:
        session["model"] = settings.model
    session |= {
        "output_modalities": ["audio"],
        "instructions": settings.instructions,
        "audio": {
            "input": audio_input,
            "output": {"format": _format_object(settings.audio_format), "voice": settings.voice},
        },
    }
    if settings.tools:
        session["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": orjson.loads(tool.parameters),
            }
            for tool in settings.tools
        ]
        session["tool_choice"] = "auto"
    return {"type": event.TYPE, "event_id": event.event_id, "session": session}


def _response_create(event: ResponseCreate) -> dict[str, Any]:
    metadata = {"bridge_request": event.request_tag}
    if event.purpose:
        metadata["bridge_purpose"] = event.purpose
    if event.answers:
        metadata["bridge_for"] = event.answers
    response: dict[str, Any] = {"metadata": metadata}
    if event.instructions:
        response["instructions"] = event.instructions
    if event.tool_choice:
        response["tool_choice"] = event.tool_choice
    return {"type": event.TYPE, "event_id": event.event_id, "response": response}


def _system_message(event: SystemMessage) -> dict[str, Any]:
    return {
        "type": event.TYPE,
        "event_id": event.event_id,
        "item": {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": event.text}],
        },
    }


def _replay_message(event: ReplayMessage) -> dict[str, Any]:
    content_type = "output_text" if event.role == "assistant" else "input_text"
    message: dict[str, Any] = {
        "type": event.TYPE,
        "event_id": event.event_id,
        "item": {
            "id": event.item_id,
            "type": "message",
            "role": event.role,
            "content": [{"type": content_type, "text": event.text}],
        },
    }
    if event.previous_item_id is not None:
        message["previous_item_id"] = event.previous_item_id
    return message


def _dumps(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


def encode(event: ClientEvent) -> str:
    """The JSON text frame of ``event``."""
    match event:
        case InputAudioAppend():
            audio = pybase64.b64encode_as_string(event.audio)
            return f'{{"type":"input_audio_buffer.append","audio":"{audio}"}}'
        case SessionUpdate():
            return _dumps(_session_update(event))
        case ResponseCreate():
            return _dumps(_response_create(event))
        case ResponseCancel():
            return _dumps(
                {"type": event.TYPE, "event_id": event.event_id, "response_id": event.response_id}
            )
        case ItemTruncate():
            return _dumps(
                {
                    "type": event.TYPE,
                    "event_id": event.event_id,
                    "item_id": event.item_id,
                    "content_index": 0,
                    "audio_end_ms": event.audio_end_ms,
                }
            )
        case ItemDelete():
            return _dumps(
                {"type": event.TYPE, "event_id": event.event_id, "item_id": event.item_id}
            )
        case SystemMessage():
            return _dumps(_system_message(event))
        case ReplayMessage():
            return _dumps(_replay_message(event))
        case FunctionCallOutput():
            return _dumps(
                {
                    "type": event.TYPE,
                    "event_id": event.event_id,
                    "item": {
                        "type": "function_call_output",
                        "call_id": event.call_id,
                        "output": event.output,
                    },
                }
            )
        case _:
            assert_never(event)
