"""The control API's decisions, sans-IO: who may use it, and what a note request may say.

The control API (``GET /calls``, ``POST /calls/{call_sid}/notes``) lets whoever uses it
list live calls and put instructions into them, so it is off unless
``BRIDGE_CONTROL_TOKEN`` is set, and then every request must carry
``Authorization: Bearer <token>``. The comparison is over bytes and constant-time
(:func:`bearer_matches`): both sides are hashed first, so neither the content nor the
length of the token leaks through timing.

A note's body is strict JSON (:func:`parse_note`): an object with ``text`` (a string of
1..:data:`MAX_NOTE_CHARS` characters) and optionally ``respond`` and
``awaits_confirmation`` (JSON booleans) and ``epoch`` (an integer from 0 to the call's
current barge-in epoch). Anything else (another type, ``"false"`` as a string, an epoch
from the future, an unknown field, which is usually a typo that would otherwise be
silently ignored) is refused with the status and a one-line reason.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

MAX_NOTE_CHARS = 4000
"""Characters of one note's text (about 1000 tokens of system context)."""
NOTES_PER_S = 5.0
NOTES_BURST = 5
"""Notes per call over HTTP: a burst of :data:`NOTES_BURST`, then :data:`NOTES_PER_S` per
second; beyond that 429 with ``Retry-After``."""
_NOTE_FIELDS = ("text", "respond", "awaits_confirmation", "epoch")


def bearer_matches(authorization: Sequence[bytes], token: bytes) -> bool:
    """Whether the request's ``Authorization`` header values (all of them) are exactly one
    ``Bearer <token>``; the scheme is case-insensitive (RFC 6750), the token is not."""
    if len(authorization) != 1:
        return False
    scheme, _, credentials = authorization[0].strip().partition(b" ")
    matches = hmac.compare_digest(
        hashlib.sha256(credentials.strip()).digest(), hashlib.sha256(token).digest()
    )
    return scheme.lower() == b"bearer" and matches


@dataclass(frozen=True, slots=True)
class NoteRequestBody:
    text: str
    respond: bool
    awaits_confirmation: bool
    epoch: int | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer to a request the control API will not take."""

    status: int
    reason: str


def is_json_content_type(content_type: bytes | None) -> bool:
    """No ``Content-Type`` (read as JSON), or ``application/json`` with any parameters."""
    if content_type is None:
        return True
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


def _flag(note: dict[str, Any], name: str) -> bool:
    value = note.get(name, False)
    if not isinstance(value, bool):
        raise TypeError(f"'{name}' must be true or false (a JSON boolean)")
    return value


def parse_note(body: bytes, *, current_epoch: int) -> NoteRequestBody | Refusal:
    """The note in ``body``, or why it is refused (400, or 413 for a text too long)."""
    try:
        note: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Refusal(400, "the body is not JSON (UTF-8, no NaN)")
    if not isinstance(note, dict):
        return Refusal(400, "the body must be a JSON object")
    unknown = sorted(set(note) - set(_NOTE_FIELDS))
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        return Refusal(400, f"unknown field(s) {names}; allowed: {', '.join(_NOTE_FIELDS)}")
    text = note.get("text")
    if not isinstance(text, str) or not text:
        return Refusal(400, "'text' must be a non-empty string")
    if len(text) > MAX_NOTE_CHARS:
        return Refusal(413, f"'text' has {len(text)} characters; at most {MAX_NOTE_CHARS}")
    try:
        respond = _flag(note, "respond")
        awaits_confirmation = _flag(note, "awaits_confirmation")
    except TypeError as wrong:
        return Refusal(400, str(wrong))
    epoch = note.get("epoch")
    if epoch is not None:
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            return Refusal(400, "'epoch' must be an integer (the epoch from GET /calls)")
        if not 0 <= epoch <= current_epoch:
            return Refusal(
                400, f"'epoch' {epoch} is not in 0..{current_epoch} (the call's epoch now)"
            )
    return NoteRequestBody(text, respond, awaits_confirmation, epoch)
