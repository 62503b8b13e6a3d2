"""The conversation as the caller experienced it: what a replacement session is given.

A Realtime session cannot be resumed: when it is lost (a close, a stall) or recycled before
its 60-minute cap, the next session starts empty, and assistant *audio* cannot be put back
into it. What can be given is text, as conversation items: the caller's words (from
input transcription), the application's notes, and the AI's words **as far as the caller
heard them**, so the model never believes it said what the caller never heard (the same
rule as truncating at a barge-in).

Entries are kept in conversation order: a caller turn's place is taken when its speech
ends, before the reply it gets, and its text filled in when the transcription arrives
(asynchronously, often after the reply started). An assistant item's text is its
transcript, cut at the share of its audio the caller heard when it was cut (a barge-in
truncation); an item the caller heard nothing of is dropped. The cut is proportional to
time and moved back to a word boundary: the transcript is not aligned to the audio, so it
is an estimate, erring toward fewer words.

When a session is lost mid-reply, the audio already received still plays, and nothing more
of the item will: its text is cut at the share of it that audio can carry at
:data:`SPEECH_CHARS_PER_S` (the transcript may run ahead of the audio; it is never
lengthened).

The replay is bounded: the newest entries, at most :data:`MAX_REPLAY_ITEMS` and
:data:`MAX_REPLAY_CHARS` characters (about a quarter as many tokens), oldest dropped first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Role = Literal["user", "assistant", "system"]

SPEECH_CHARS_PER_S = 15.0
"""A speaking rate of about 150 words per minute, in transcript characters per second."""
MAX_REPLAY_ITEMS = 64
MAX_REPLAY_CHARS = 12_000
_KEPT_ENTRIES = 256
"""Entries remembered at all (a long call's oldest fall off): more than any replay uses."""


@dataclass(slots=True)
class Entry:
    role: Role
    item_id: str | None
    """The server's item id in the session it was made in (``None`` for notes)."""
    text: str
    heard_fraction: float = 1.0
    """For assistant items: the share of its audio the caller heard (1.0 = all)."""
    replayed_as: str | None = None
    """Its item id in the current session, if it was given to that session as text."""
    replayed_text: str = ""

    @property
    def spoken_text(self) -> str:
        """The text as the caller heard it (see the module docstring)."""
        if self.heard_fraction >= 1.0:
            return self.text
        keep = int(len(self.text) * max(0.0, self.heard_fraction))
        cut = self.text[:keep]
        if keep < len(self.text) and not self.text[keep].isspace():
            # Mid-word: back to the last whole word (none: nothing was heard of a word).
            cut = cut[: cut.rindex(" ")] if " " in cut else ""
        return cut.rstrip(" ,;:")


@dataclass(frozen=True, slots=True)
class ReplayEntry:
    role: Role
    text: str
    item_id: str
    """The id it is given in the new session."""


@dataclass(frozen=True, slots=True)
class ReplayCorrection:
    """A replayed assistant item was cut after the replay (its audio was still playing when
    the caller barged in): the session must have ``old_item_id`` replaced by ``text``."""

    old_item_id: str
    new_item_id: str | None
    """``None`` when nothing of it remains (the item is only deleted)."""
    text: str
    previous_item_id: str
    """Where the new item goes: after the replayed entry before it, or ``"root"``."""


class Conversation:
    __slots__ = ("_by_item", "_entries")

    def __init__(self) -> None:
        self._entries: deque[Entry] = deque(maxlen=_KEPT_ENTRIES)
        self._by_item: dict[str, Entry] = {}

    def _add(self, entry: Entry) -> None:
        if len(self._entries) == self._entries.maxlen:
            oldest = self._entries[0]
            if oldest.item_id is not None:
                self._by_item.pop(oldest.item_id, None)
        self._entries.append(entry)
        if entry.item_id is not None:
            self._by_item[entry.item_id] = entry

    def caller_turn(self, item_id: str) -> None:
        """The caller's utterance ``item_id`` ended (its text comes later)."""
        if item_id not in self._by_item:
            self._add(Entry("user", item_id, ""))

    def caller_said(self, item_id: str, text: str) -> None:
        entry = self._by_item.get(item_id)
        if entry is None:
            self._add(Entry("user", item_id, text))
        else:
            entry.text = text

    def assistant_item(self, item_id: str) -> None:
        if item_id not in self._by_item:
            self._add(Entry("assistant", item_id, ""))

    def assistant_text(self, item_id: str, delta: str) -> None:
        entry = self._by_item.get(item_id)
        if entry is not None and entry.role == "assistant":
            entry.text += delta

    def assistant_said(self, item_id: str, transcript: str) -> None:
        """The item's whole transcript (``response.output_audio_transcript.done``)."""
        entry = self._by_item.get(item_id)
        if entry is not None and entry.role == "assistant" and transcript:
            entry.text = transcript

    def assistant_cut(self, item_id: str, heard_fraction: float) -> None:
        """A barge-in truncated the item at ``heard_fraction`` of its audio (0: dropped)."""
        entry = self._by_item.get(item_id)
        if entry is None or entry.role != "assistant":
            return
        entry.heard_fraction = min(entry.heard_fraction, heard_fraction)

    def assistant_lost(self, item_id: str, received_ms: int) -> None:
        """The session was lost while item ``item_id`` streamed, after ``received_ms`` of its
        audio: the caller will hear that much, no more."""
        entry = self._by_item.get(item_id)
        if entry is None or entry.role != "assistant" or not entry.text:
            return
        carried = received_ms / 1000.0 * SPEECH_CHARS_PER_S
        self.assistant_cut(item_id, min(1.0, carried / len(entry.text)))

    def note(self, text: str) -> None:
        self._add(Entry("system", None, text))

    def heard_text_of(self, item_id: str) -> str:
        entry = self._by_item.get(item_id)
        return "" if entry is None else entry.spoken_text

    def replay(self, new_item_id: Callable[[], str]) -> list[ReplayEntry]:
        """The newest entries with something to say, oldest first, within the bounds, for a
        new session (``new_item_id`` names each item there)."""
        chosen: list[Entry] = []
        chars = 0
        for entry in self._entries:
            entry.replayed_as = None
        for entry in reversed(self._entries):
            text = entry.spoken_text.strip()
            if not text:
                continue
            if len(chosen) >= MAX_REPLAY_ITEMS or chars + len(text) > MAX_REPLAY_CHARS:
                break
            chosen.append(entry)
            chars += len(text)
        chosen.reverse()
        replay = []
        for entry in chosen:
            entry.replayed_as, entry.replayed_text = new_item_id(), entry.spoken_text.strip()
            replay.append(ReplayEntry(entry.role, entry.replayed_text, entry.replayed_as))
        return replay

    def correction(self, item_id: str, new_item_id: str) -> ReplayCorrection | None:
        """What the current session must be told after a cut of ``item_id``, if it was
        given that item as text and what the caller heard of it is now shorter."""
        entry = self._by_item.get(item_id)
        if entry is None or entry.replayed_as is None:
            return None
        text = entry.spoken_text.strip()
        if text == entry.replayed_text:
            return None
        previous = "root"
        for other in self._entries:
            if other is entry:
                break
            if other.replayed_as is not None:
                previous = other.replayed_as
        old = entry.replayed_as
        entry.replayed_as = new_item_id if text else None
        entry.replayed_text = text
        return ReplayCorrection(old, entry.replayed_as, text, previous)
