"""The AI's final transcripts *as heard*, for the ``transcript`` call events (sans-IO).

The model's transcript of an item (``response.output_audio_transcript.done``) arrives long
before the caller has heard the item: audio is generated faster than real time. So an
AI transcript is held until playout settles it:

* the item was heard in full (it leaves the playout ledger once every mark of its audio
  echoed): the whole text;
* a barge-in cut it at ``heard_ms`` of ``audio_ms`` received: the same share of its words
  (word timings are not in the API; the share of the audio is the best estimate, and it
  errs by about a word);
* the caller heard none of it (the item was deleted): no event.

The text of a whole item is its ``.done`` transcript. For a cut item it is the deltas that
came with the audio received before the barge-in (deltas of a cancelled response that
arrive later belong to audio nobody received), or the ``.done`` text if there were none.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from bridge.core.actions import Truncation
from bridge.core.call_events import Transcript

MAX_ITEMS: Final = 32


@dataclass(slots=True)
class _Pending:
    deltas: str = ""
    final: str = ""
    done: bool = False

    @property
    def whole(self) -> str:
        return self.final or self.deltas

    @property
    def received(self) -> str:
        return self.deltas or self.final


class TranscriptLedger:
    __slots__ = ("_cuts", "_pending")

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._cuts: dict[str, tuple[int, int]] = {}
        """item → (heard ms, audio ms) of a barge-in, until the item's ``.done``."""

    @property
    def waiting(self) -> bool:
        """Some AI transcript waits for playout to settle it."""
        return bool(self._pending)

    def _item(self, item_id: str) -> _Pending:
        pending = self._pending.get(item_id)
        if pending is None:
            pending = self._pending[item_id] = _Pending()
            while len(self._pending) > MAX_ITEMS:
                del self._pending[next(iter(self._pending))]
        return pending

    def on_delta(self, item_id: str, delta: str) -> None:
        """A transcript delta of a response that is not cancelled."""
        pending = self._item(item_id)
        if not pending.done:
            pending.deltas += delta

    def on_done(self, item_id: str, transcript: str, playing: bool) -> list[Transcript]:
        """``.done``; ``playing``: the item is still in the playout ledger."""
        pending = self._item(item_id)
        pending.done = True
        pending.final = transcript
        cut = self._cuts.pop(item_id, None)
        if cut is not None:
            return self._cut(item_id, *cut)
        if playing:
            return []
        return self._whole(item_id)

    def on_barge_in(
        self, truncations: Collection[Truncation], deleted: Collection[str]
    ) -> list[Transcript]:
        out: list[Transcript] = []
        for item_id in deleted:
            self._pending.pop(item_id, None)
        for trunc in truncations:
            pending = self._pending.get(trunc.item_id)
            if pending is not None and pending.done:
                out += self._cut(trunc.item_id, trunc.audio_end_ms, trunc.received_ms)
            else:
                self._cuts[trunc.item_id] = (trunc.audio_end_ms, trunc.received_ms)
                while len(self._cuts) > MAX_ITEMS:
                    del self._cuts[next(iter(self._cuts))]
        return out

    def on_heard(self, playing: Collection[str]) -> list[Transcript]:
        """Playout moved on; ``playing``: the items still in the playout ledger."""
        settled = [i for i, p in self._pending.items() if p.done and i not in playing]
        out: list[Transcript] = []
        for item_id in settled:
            out += self._whole(item_id)
        return out

    def _whole(self, item_id: str) -> list[Transcript]:
        text = self._pending.pop(item_id).whole
        if not text:
            return []
        return [Transcript("ai", item_id, text, False, None, None)]

    def _cut(self, item_id: str, heard_ms: int, audio_ms: int) -> list[Transcript]:
        pending = self._pending.pop(item_id, None)
        words = pending.received.split() if pending is not None else []
        if not words:
            return []
        share = 0.0 if audio_ms <= 0 else min(1.0, heard_ms / audio_ms)
        kept = " ".join(words[: round(len(words) * share)])
        return [Transcript("ai", item_id, kept, True, heard_ms, audio_ms)]
