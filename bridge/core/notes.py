"""Application notes ("server events"): system context the application sends to the model.

A note is delivered as a system ``conversation.item.create``; it may ask for a response.
The rules keep a note from sneaking the conversation back to a stale topic after the
caller cut the AI off (the seed incident: a note written before the barge-in made the
model ask the old question again):

* A note produced before the latest barge-in (its ``epoch`` is older than the call's
  barge-in epoch), or submitted while a barge-in is active, is sent **silently**: it
  never triggers ``response.create``.
* A note that waits for the caller's confirmation is held until the caller's next
  transcribed utterance. A plain negation ("no", "nope", "לא", ... configurable) discards
  it; anything else releases it under the rule above.
* ``response.create`` is never sent while a response is active (see :mod:`bridge.core.call`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum

DEFAULT_NEGATIONS: tuple[str, ...] = (
    "no",
    "nope",
    "nah",
    "no no",
    "no thanks",
    "no thank you",
    "not really",
    "לא",
    "לא לא",
    "לא תודה",
    "ממש לא",
)


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    respond: bool
    awaits_confirmation: bool
    epoch: int
    """The call's barge-in epoch when the application started producing the note."""


class NoteDisposition(Enum):
    SEND_AND_RESPOND = "send_and_respond"
    SEND_SILENTLY = "send_silently"
    HOLD = "hold_for_confirmation"


def normalize_utterance(text: str) -> str:
    """Case-folded words without punctuation or diacritics, single-spaced."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(
        " " if unicodedata.category(ch)[0] in "PZ" else ch
        for ch in decomposed
        if unicodedata.category(ch) != "Mn"
    )
    return " ".join(kept.split())


@dataclass(slots=True)
class NoteBook:
    negations: frozenset[str]
    awaiting_confirmation: list[Note] = field(default_factory=list)

    @classmethod
    def with_negations(cls, negations: Iterable[str]) -> NoteBook:
        return cls(negations=frozenset(normalize_utterance(n) for n in negations))

    def is_plain_negation(self, transcript: str) -> bool:
        return normalize_utterance(transcript) in self.negations

    def dispose(self, note: Note, *, epoch: int, barge_in_active: bool) -> NoteDisposition:
        """How to deliver ``note`` now (holding it for confirmation records it here)."""
        if note.awaits_confirmation:
            self.awaiting_confirmation.append(note)
            return NoteDisposition.HOLD
        if not note.respond or barge_in_active or note.epoch < epoch:
            return NoteDisposition.SEND_SILENTLY
        return NoteDisposition.SEND_AND_RESPOND

    def on_caller_transcript(self, transcript: str) -> tuple[list[Note], list[Note]]:
        """(released, discarded) notes once the caller has said ``transcript``."""
        waiting, self.awaiting_confirmation = self.awaiting_confirmation, []
        if self.is_plain_negation(transcript):
            return [], waiting
        return [replace(note, awaits_confirmation=False) for note in waiting], []
