"""Live calls in this process, and the handle an application uses to talk to one.

Applications reach a call through :class:`CallHandle`: read its barge-in epoch before
starting slow work, then send a note (see :mod:`bridge.core.notes` for the rules that
keep a late note from dragging the conversation back). Notes travel to the call over a
bounded channel; that is control traffic, so a full channel makes the sender wait, for at
most ``timeout_s``, and then :meth:`CallHandle.send_note` reports failure. Notes that come
over HTTP are also rate-limited per call (:attr:`CallHandle.http_notes`); in-process
callers are the application's own code and are not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

from bridge.core.call import CallCore
from bridge.core.control import NOTES_BURST, NOTES_PER_S
from bridge.core.ending import CallEnd
from bridge.core.ratelimit import TokenBucket
from bridge.core.stats import CallStatistics

NOTES_CHANNEL_SIZE = 16


@dataclass(frozen=True, slots=True)
class NoteRequest:
    text: str
    respond: bool
    awaits_confirmation: bool
    epoch: int | None


@dataclass(frozen=True, slots=True)
class _EndedCall:
    """What a handle keeps of its call once the call has left the live set."""

    call_sid: str
    stream_sid: str
    barge_in_epoch: int
    final_statistics: CallStatistics

    def statistics(self) -> CallStatistics:
        return self.final_statistics


class CallHandle:
    __slots__ = ("_call", "_notes", "end", "ended", "http_notes", "started_at")

    def __init__(
        self, core: CallCore, notes: trio.MemorySendChannel[NoteRequest], started_at: float
    ) -> None:
        self._call: CallCore | _EndedCall = core
        """The live call's core; once it has ended (:meth:`release_call`) what is left of it,
        so that the recently ended calls the registry remembers cost little each (a core
        holds audio queues and the analyzer's state, about 120 KiB after a short call)."""
        self._notes = notes
        self.started_at = started_at
        self.ended = trio.Event()
        self.end: CallEnd | None = None
        """Why the call ended, once it has."""
        self.http_notes = TokenBucket(NOTES_PER_S, NOTES_BURST, started_at)
        """The rate limit of ``POST /calls/{call_sid}/notes`` for this call."""

    @property
    def call_sid(self) -> str:
        return self._call.call_sid

    @property
    def stream_sid(self) -> str:
        return self._call.stream_sid

    @property
    def barge_in_epoch(self) -> int:
        """Capture this before producing a note; pass it back with the note."""
        return self._call.barge_in_epoch

    def statistics(self) -> CallStatistics:
        """A snapshot of the call's counters (the final ones once it has ended)."""
        return self._call.statistics()

    def release_call(self) -> None:
        """The call has ended (the registry says so): keep its ids and final counters only."""
        call = self._call
        self._call = _EndedCall(
            call.call_sid, call.stream_sid, call.barge_in_epoch, call.statistics()
        )

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
        """The call has ended: out of the live set, remembered among the recent ones."""
        if self._active.get(handle.call_sid) is handle:
            del self._active[handle.call_sid]
        handle.release_call()
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
