"""Live calls in this process, and the handle an application uses to talk to one.

Applications reach a call through :class:`CallHandle`: read its barge-in epoch before
starting slow work, then send a note (see :mod:`bridge.core.notes` for the rules that
keep a late note from dragging the conversation back). Notes travel to the call over a
bounded channel; that is control traffic, so a full channel makes the sender wait, for at
most ``timeout_s``, and then :meth:`CallHandle.send_note` reports failure.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

from bridge.core.call import CallCore
from bridge.core.ending import CallEnd
from bridge.core.stats import CallStatistics

NOTES_CHANNEL_SIZE = 16


@dataclass(frozen=True, slots=True)
class NoteRequest:
    text: str
    respond: bool
    awaits_confirmation: bool
    epoch: int | None


class CallHandle:
    __slots__ = ("_core", "_notes", "end", "ended", "started_at")

    def __init__(
        self, core: CallCore, notes: trio.MemorySendChannel[NoteRequest], started_at: float
    ) -> None:
        self._core = core
        self._notes = notes
        self.started_at = started_at
        self.ended = trio.Event()
        self.end: CallEnd | None = None
        """Why the call ended, once it has."""

    @property
    def call_sid(self) -> str:
        return self._core.call_sid

    @property
    def stream_sid(self) -> str:
        return self._core.stream_sid

    @property
    def barge_in_epoch(self) -> int:
        """Capture this before producing a note; pass it back with the note."""
        return self._core.barge_in_epoch

    def statistics(self) -> CallStatistics:
        """A snapshot of the call's counters."""
        return self._core.statistics()

    async def send_note(
        self,
        text: str,
        *,
        respond: bool = False,
        awaits_confirmation: bool = False,
        epoch: int | None = None,
        timeout_s: float = 1.0,
    ) -> bool:
        """Queue a note for the model; ``False`` if the call ended or the queue stayed full."""
        if self.ended.is_set():
            return False
        with trio.move_on_after(timeout_s):
            try:
                await self._notes.send(NoteRequest(text, respond, awaits_confirmation, epoch))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
            return True
        return False


class CallRegistry:
    __slots__ = ("_active", "_changed", "_recent")

    def __init__(self, recent: int = 256) -> None:
        self._active: dict[str, CallHandle] = {}
        self._recent: deque[CallHandle] = deque(maxlen=recent)
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def add(self, handle: CallHandle) -> None:
        self._active[handle.call_sid] = handle
        self._recent.append(handle)
        self._notify()

    def remove(self, handle: CallHandle) -> None:
        if self._active.get(handle.call_sid) is handle:
            del self._active[handle.call_sid]
        self._notify()

    def active(self) -> list[CallHandle]:
        return list(self._active.values())

    def get(self, call_sid: str) -> CallHandle | None:
        if call_sid in self._active:
            return self._active[call_sid]
        return next((h for h in reversed(self._recent) if h.call_sid == call_sid), None)

    async def wait_until_idle(self) -> None:
        """Until no call is live."""
        while self._active:
            await self._changed.wait()

    async def wait_for_call(self, call_sid: str) -> CallHandle:
        """The call with ``call_sid`` once it has started (live or recently ended)."""
        while (handle := self.get(call_sid)) is None:
            await self._changed.wait()
        return handle
