"""Twilio Media Streams messages (bidirectional ``<Connect><Stream>``), sans-IO.

Inbound (Twilio → bridge): ``connected``, ``start``, ``media``, ``dtmf``, ``mark``, ``stop``,
all JSON text frames. Numeric fields arrive as strings (``"sequenceNumber":"4"``) and are
parsed with ``int()``. :func:`parse_twilio_message` never raises: anything it cannot use
becomes :class:`Malformed` (the caller counts and logs it, and the call goes on) or
:class:`UnknownTwilioEvent`.

Outbound (bridge → Twilio): ``media``, ``mark``, ``clear`` only (:func:`media_message`,
:func:`mark_message`, :func:`clear_message`). A wrong ``streamSid`` or extra field makes
Twilio drop the message with warning 31951, so these are built from fixed templates and
a ``streamSid`` validated at ``start``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000


@dataclass(frozen=True, slots=True)
class Media:
    """One inbound caller frame: μ-law bytes (8 bytes/ms), usually 160 bytes = 20 ms."""

    payload: bytes
    timestamp_ms: int
    """Presentation time in ms since the stream started (Twilio's ``media.timestamp``)."""
    chunk: int | None


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str | None


@dataclass(frozen=True, slots=True)
class UnknownTwilioEvent:
    event: str


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str


TwilioEvent = Connected | Start | Media | Mark | Dtmf | Stop | UnknownTwilioEvent | Malformed


def _int_field(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit():
        return int(value)
    return None


def _parse_start(message: Mapping[str, Any]) -> Start | Malformed:
    start = message.get("start")
    if not isinstance(start, dict):
        return Malformed("start without a 'start' object")
    stream_sid = start.get("streamSid", message.get("streamSid"))
    call_sid = start.get("callSid")
    if not isinstance(stream_sid, str) or not _SID.match(stream_sid):
        return Malformed("start with a missing or invalid streamSid")
    if not isinstance(call_sid, str) or not _SID.match(call_sid):
        return Malformed("start with a missing or invalid callSid")
    account_sid = start.get("accountSid")
    params = start.get("customParameters")
    custom = {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {}
    media_format = start.get("mediaFormat")
    encoding, rate = "audio/x-mulaw", 8000
    if isinstance(media_format, dict):
        encoding = str(media_format.get("encoding", encoding))
        rate = _int_field(media_format.get("sampleRate")) or rate
    return Start(
        stream_sid=stream_sid,
        call_sid=call_sid,
        account_sid=account_sid if isinstance(account_sid, str) else "",
        custom_parameters=custom,
        encoding=encoding,
        sample_rate=rate,
    )


def _parse_media(message: Mapping[str, Any]) -> Media | Malformed:
    media = message.get("media")
    if not isinstance(media, dict):
        return Malformed("media without a 'media' object")
    payload = media.get("payload")
    if not isinstance(payload, str):
        return Malformed("media without a string payload")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return Malformed("media payload is not valid base64")
    timestamp = _int_field(media.get("timestamp"))
    if timestamp is None or timestamp < 0:
        return Malformed("media without a valid timestamp")
    return Media(payload=audio, timestamp_ms=timestamp, chunk=_int_field(media.get("chunk")))


def parse_twilio_message(data: str | bytes) -> TwilioEvent:
    """Parse one WebSocket frame from Twilio. Never raises."""
    if isinstance(data, bytes):
        return Malformed("binary frame (Twilio sends JSON text frames only)")
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return Malformed("not JSON")
    if not isinstance(message, dict):
        return Malformed("JSON is not an object")
    event = message.get("event")
    if not isinstance(event, str):
        return Malformed("no 'event' field")
    match event:
        case "media":
            return _parse_media(message)
        case "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            return Mark(name) if isinstance(name, str) else Malformed("mark without a name")
        case "start":
            return _parse_start(message)
        case "connected":
            return Connected(str(message.get("protocol", "")), str(message.get("version", "")))
        case "stop":
            stop = message.get("stop")
            call_sid = stop.get("callSid") if isinstance(stop, dict) else None
            return Stop(call_sid if isinstance(call_sid, str) else None)
        case "dtmf":
            dtmf = message.get("dtmf")
            digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
            return Dtmf(digit) if isinstance(digit, str) else Malformed("dtmf without a digit")
        case _:
            return UnknownTwilioEvent(event)


def media_message(stream_sid: str, payload: bytes) -> str:
    """Outbound ``media``: raw μ-law bytes (no file header), base64 in the JSON."""
    audio = base64.b64encode(payload).decode("ascii")
    return f'{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"{audio}"}}}}'


def mark_message(stream_sid: str, name: str) -> str:
    """Outbound ``mark``: Twilio echoes it when playback passes it, or at ``clear``."""
    return json.dumps(
        {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}, separators=(",", ":")
    )


def clear_message(stream_sid: str) -> str:
    """Outbound ``clear``: empties Twilio's playback buffer and echoes every pending mark."""
    return f'{{"event":"clear","streamSid":"{stream_sid}"}}'
