"""Twilio's side of the Media Streams wire format, written independently of the bridge.

Builders for the messages Twilio sends (``connected``, ``start``, ``media``, ``mark``,
``stop``), with every field typed as Twilio types it: strings for ``sequenceNumber``,
``chunk`` and ``timestamp``; numbers only for ``mediaFormat.sampleRate``/``channels``.

:func:`parse_bridge_message` checks a frame from the bridge the way Twilio does and
returns either the decoded message or a :class:`Violation` carrying the Twilio warning
code: 31950 for a binary frame; 31951 for invalid JSON, an unknown event, missing or
unexpected fields, a wrong ``streamSid`` or a payload that is not base64. Twilio is
understood to drop such messages; the caller does the same and counts them.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import orjson
import pybase64

JsonObject = dict[str, object]

WARNING_BINARY_FRAME: Final = 31950
WARNING_INVALID_MESSAGE: Final = 31951


def new_sid(prefix: str) -> str:
    """A random Twilio-style SID: ``prefix`` and 32 hex digits (``CA…``, ``MZ…``, ``AC…``)."""
    return prefix + secrets.token_hex(16)


def encode(message: JsonObject) -> str:
    """Compact JSON text, as sent on the wire (orjson: the load generator sends 50 of these
    per second per call, and the stdlib encoder was about 4 % of its CPU)."""
    return orjson.dumps(message).decode()


def connected() -> JsonObject:
    return {"event": "connected", "protocol": "Call", "version": "1.0.0"}


def start(
    *,
    sequence: int,
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    custom_parameters: Mapping[str, str],
) -> JsonObject:
    return {
        "event": "start",
        "sequenceNumber": str(sequence),
        "start": {
            "accountSid": account_sid,
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": dict(custom_parameters),
        },
        "streamSid": stream_sid,
    }


def media(
    *, sequence: int, stream_sid: str, chunk: int, timestamp_ms: int, payload: bytes
) -> JsonObject:
    """An inbound ``media`` message; ``chunk`` counts media messages from 1."""
    return {
        "event": "media",
        "sequenceNumber": str(sequence),
        "media": {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str(timestamp_ms),
            "payload": pybase64.b64encode_as_string(payload),
        },
        "streamSid": stream_sid,
    }


def mark(*, sequence: int, stream_sid: str, name: str) -> JsonObject:
    """The echo of a mark the bridge sent."""
    return {
        "event": "mark",
        "sequenceNumber": str(sequence),
        "streamSid": stream_sid,
        "mark": {"name": name},
    }


def stop(*, sequence: int, stream_sid: str, account_sid: str, call_sid: str) -> JsonObject:
    return {
        "event": "stop",
        "sequenceNumber": str(sequence),
        "streamSid": stream_sid,
        "stop": {"accountSid": account_sid, "callSid": call_sid},
    }


@dataclass(frozen=True, slots=True)
class MediaIn:
    payload: bytes
    """μ-law, 8 bytes per ms."""


@dataclass(frozen=True, slots=True)
class MarkIn:
    name: str


@dataclass(frozen=True, slots=True)
class ClearIn:
    pass


@dataclass(frozen=True, slots=True)
class Violation:
    """A frame Twilio would reject, with its warning code."""

    code: int
    detail: str


BridgeMessage = MediaIn | MarkIn | ClearIn

_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "media": frozenset({"event", "streamSid", "media"}),
    "mark": frozenset({"event", "streamSid", "mark"}),
    "clear": frozenset({"event", "streamSid"}),
}


def _invalid(detail: str) -> Violation:
    return Violation(code=WARNING_INVALID_MESSAGE, detail=detail)


def parse_bridge_message(frame: str | bytes, stream_sid: str) -> BridgeMessage | Violation:
    """Decode one WebSocket message from the bridge, or say why Twilio would reject it."""
    if isinstance(frame, bytes):
        return Violation(code=WARNING_BINARY_FRAME, detail=f"binary frame ({len(frame)} bytes)")
    try:
        message = json.loads(frame)
    except json.JSONDecodeError as exc:
        return _invalid(f"invalid JSON: {exc.msg}")
    if not isinstance(message, dict):
        return _invalid("message is not a JSON object")
    event = message.get("event")
    if not isinstance(event, str) or event not in _KEYS:
        return _invalid(f"unknown event {event!r}")
    keys = frozenset(message)
    if keys != _KEYS[event]:
        missing = sorted(_KEYS[event] - keys)
        extra = sorted(keys - _KEYS[event])
        return _invalid(f"{event}: missing {missing}, unexpected {extra}")
    if message["streamSid"] != stream_sid:
        return _invalid(f"{event}: wrong streamSid {message['streamSid']!r}")
    if event == "clear":
        return ClearIn()
    body = message[event]
    if event == "mark":
        if not isinstance(body, dict) or set(body) != {"name"} or not isinstance(body["name"], str):
            return _invalid(f"mark: expected {{'name': str}}, got {body!r}")
        return MarkIn(name=body["name"])
    if (
        not isinstance(body, dict)
        or set(body) != {"payload"}
        or not isinstance(body["payload"], str)
    ):
        return _invalid("media: expected {'payload': str}")
    try:
        payload = base64.b64decode(body["payload"], validate=True)
    except binascii.Error:
        return _invalid("media: payload is not base64")
    return MediaIn(payload=payload)
