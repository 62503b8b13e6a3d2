"""Conversation state and observation records of one simulated Realtime session.

Everything here is plain data plus small pure helpers; times are values of the sim's
injectable clock (seconds), audio durations are ms.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

JsonObj = dict[str, Any]

_ID_ALPHABET = string.ascii_letters + string.digits


@dataclass(slots=True)
class IdGen:
    """Deterministic OpenAI-looking ids (``resp_`` + 21 alphanumerics) from a seed."""

    rng: random.Random

    def new(self, prefix: str) -> str:
        return prefix + "".join(self.rng.choice(_ID_ALPHABET) for _ in range(21))


@dataclass(slots=True)
class ConversationItem:
    """One item of the session's default conversation, as the sim sees it.

    ``audio_ms`` is the assistant audio generated for the item (incl. late deltas after a
    cancel); ``transcript`` is the caller's scripted transcript (user audio items) or the
    assistant's generated transcript, emptied by a successful truncate as the service does.
    """

    id: str
    type: str
    """``message`` or ``function_call_output``."""
    role: str | None
    status: str
    content_type: str
    """``input_audio``, ``input_text``, ``output_audio``, ``output_text`` or ``""``."""
    audio_ms: int = 0
    transcript: str = ""
    truncated_at_ms: int | None = None
    deleted: bool = False
    response_id: str | None = None
    transcribed: bool = False
    """A ``…input_audio_transcription.completed`` was emitted (user audio items)."""
    client_item: JsonObj | None = None
    """The client's item as created (items from ``conversation.item.create``)."""

    def to_json(self, *, hide_transcript: bool = False) -> JsonObj:
        """The item as the service renders it (no audio bytes)."""
        if self.client_item is not None:
            return {**self.client_item, "id": self.id, "object": "realtime.item"}
        part: JsonObj
        if self.content_type == "input_audio":
            visible = self.transcribed and not hide_transcript
            part = {"type": "input_audio", "transcript": self.transcript if visible else None}
        elif self.content_type == "output_text":
            part = {"type": "output_text", "text": self.transcript}
        else:
            part = {"type": "output_audio", "transcript": self.transcript}
        content = [] if self.status == "in_progress" else [part]
        return {
            "id": self.id,
            "type": self.type,
            "object": "realtime.item",
            "status": self.status,
            "role": self.role,
            "content": content,
        }


@dataclass(slots=True)
class ResponseRecord:
    """Observation record of one response; ``*_at`` are clock values when the event was sent.

    ``reason`` is ``turn_detected`` or ``client_cancelled`` for cancelled responses.
    ``answering`` is the caller transcript the reply answers (``None`` for a greeting or a
    reply with no caller turn). ``late_deltas`` counts audio deltas sent after the cancel.
    """

    id: str
    created_at: float
    conversation: str
    metadata: JsonObj | None
    answering: str | None
    status: str = "in_progress"
    reason: str | None = None
    items: list[str] = field(default_factory=list)
    audio_ms: dict[str, int] = field(default_factory=dict)
    transcripts: dict[str, str] = field(default_factory=dict)
    done_at: float | None = None
    cancelled_at: float | None = None
    late_deltas: int = 0


@dataclass(frozen=True, slots=True)
class TruncationRecord:
    """One ``conversation.item.truncate`` as received, and how the sim answered it."""

    t: float
    item_id: str
    audio_end_ms: int
    generated_ms: int
    """Audio generated for the item when the truncate arrived (0 for unknown items)."""
    accepted: bool
    error_code: str | None


@dataclass(slots=True)
class Conversation:
    """The default conversation, in order. Deleted items stay in ``items`` with ``deleted``."""

    items: list[ConversationItem] = field(default_factory=list)

    def live(self) -> list[ConversationItem]:
        return [item for item in self.items if not item.deleted]

    def find(self, item_id: str) -> ConversationItem | None:
        """The live item with ``item_id``, or ``None``."""
        for item in self.items:
            if item.id == item_id and not item.deleted:
                return item
        return None

    def last_id(self) -> str | None:
        live = self.live()
        return live[-1].id if live else None

    def append(self, item: ConversationItem) -> str | None:
        """Append ``item``; returns its ``previous_item_id``."""
        previous = self.last_id()
        self.items.append(item)
        return previous

    def insert_after(self, item: ConversationItem, previous_item_id: str) -> None:
        """Insert after ``previous_item_id`` (``"root"`` = at the start); raises ``KeyError``."""
        if previous_item_id == "root":
            self.items.insert(0, item)
            return
        anchor = self.find(previous_item_id)
        if anchor is None:
            raise KeyError(previous_item_id)
        self.items.insert(self.items.index(anchor) + 1, item)

    def previous_of(self, item_id: str) -> str | None:
        """``previous_item_id`` of a live item (``None`` when it is first)."""
        previous: str | None = None
        for item in self.live():
            if item.id == item_id:
                return previous
            previous = item.id
        return None
