"""Playout accounting: what the caller has actually heard, and pacing toward Twilio.

**Queue and frames.** AI audio (μ-law, 8 bytes/ms) is re-framed per assistant item into
frames of ``frame_bytes`` (:data:`QUEUE_FRAME_MS`; a frame never spans two items) and queued
locally. The TX writer sends *messages*: consecutive frames of one item merged, as many as
the pacer has room for, up to the message size; some are followed by a ``mark`` named
``g<generation>:m<seq>:<item_id>`` (:mod:`bridge.core.marks`). Small frames keep the start
of a reply from waiting for a whole message of audio; merged messages keep the message
count down once audio is queued. A message is *in flight* from its send until a mark at or
after it echoes (below, "frame" means what was sent as one message).

**Mark policy.** A frame gets a mark when it is the first frame of its item or the first
after a ``clear``, when :data:`MARK_INTERVAL_MS` of audio was sent since the last mark, and
when it is the last frame of its item (if the item's end is only known after its last frame
was sent, that mark is sent on its own then). So Twilio echoes about five marks a second
instead of one per frame (each a message both ways), every item's start and end are still
confirmed by Twilio itself, and every frame lies after a mark of its own item, which lets a
listener tell which item any audio it played belongs to.

**Heard rule.** Twilio echoes a mark when playback passes it, so an echoed mark of the
current generation means its frame, and every frame before it, was played in full:
``heard_bytes(item)`` becomes the end offset of that frame in the item. Marks echoed because
of a ``clear`` carry an older generation (the generation is bumped at every clear) and are
never counted as played. Past the last echo, the frames in flight are played by the clock:
back to back from the last echo, none before it was sent (Twilio plays 8000 bytes per
second and waits when its buffer is empty), each capped at its length. At a ``clear`` that
estimate is frozen into the items. The heard position is therefore never more than what was
received for the item. Between echoes it is off by the network delay of the frames (the
estimate runs ahead of Twilio by its one-way delay until the first echo of a burst, and
behind by the echo's return delay after it: a few ms on a good path, measured by
``bench/bargein``), and an underrun the clock does not see (a frame delayed in transit)
makes it run ahead by that delay at most until the next echo.

**Pacing.** :class:`Pacer` keeps Twilio's buffer only ``lead_ms`` ahead of real time, so a
barge-in leaves at most ``lead_ms`` of unplayed audio at Twilio even before the ``clear``
lands, and the local flush drops the rest.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from bridge.core.marks import MarkName, parse_mark_name

BYTES_PER_MS = 8
BYTES_PER_S = 8000
QUEUE_FRAME_MS = 20
"""The unit the local queue is cut in, ms: the least audio that can go out alone."""
MARK_INTERVAL_MS = 200
"""At most this much audio is sent between two marks, ms."""


# NamedTuples rather than frozen dataclasses (this one and SentFrame): one of each is built
# per message, and a frozen dataclass's __init__ costs about 2 µs, a NamedTuple's 0.3 µs.
class OutboundFrame(NamedTuple):
    response_id: str
    item_id: str
    payload: bytes
    item_offset: int
    """Byte offset of ``payload[0]`` within the item's audio."""

    @property
    def end_offset(self) -> int:
        return self.item_offset + len(self.payload)


class SentFrame(NamedTuple):
    frame: OutboundFrame
    mark: MarkName | None
    """The mark sent right after the frame, if it got one."""
    sent_at: float
    """Trio time (s) the frame was handed to Twilio."""


@dataclass(slots=True)
class ItemPlayout:
    item_id: str
    response_id: str
    received_bytes: int = 0
    heard_bytes: int = 0
    """Confirmed by marks, plus the partial of a frame stopped by a clear."""
    audio_done: bool = False

    @property
    def received_ms(self) -> int:
        return self.received_bytes // BYTES_PER_MS


class MarkOutcome(Enum):
    PLAYED = "played"
    CLEARED = "cleared"
    """Echo of a mark from an older generation: its audio was cleared, not played."""
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ClearResult:
    generation: int
    """The new generation: frames sent from now on carry it."""
    unplayed: tuple[OutboundFrame, ...]
    """In-flight audio Twilio will not play, in order; the first may be a frame's tail."""

    @property
    def unplayed_bytes(self) -> int:
        return sum(len(f.payload) for f in self.unplayed)


@dataclass(slots=True)
class Pacer:
    """Sends just ahead of real time: Twilio holds at most ``lead_ms`` of unplayed audio."""

    lead_ms: float
    play_end_at: float = 0.0
    """Trio time (s) at which all audio sent so far will have played (estimate)."""

    def ready_at(self, now: float, frame_ms: float) -> float:
        """Earliest time the next frame of ``frame_ms`` may be sent."""
        return max(now, self.play_end_at - max(0.0, self.lead_ms - frame_ms) / 1000.0)

    def play_start_for_next(self, now: float) -> float:
        """When a frame sent at ``now`` starts playing (estimate)."""
        return max(now, self.play_end_at)

    def on_sent(self, now: float, frame_ms: float) -> None:
        self.play_end_at = max(self.play_end_at, now) + frame_ms / 1000.0

    def on_clear(self, now: float) -> None:
        self.play_end_at = now


@dataclass(slots=True)
class PlayoutLedger:
    """Local TX queue, in-flight frames, and the heard position of each assistant item."""

    frame_bytes: int
    max_queued_frames: int
    max_items: int = 32
    generation: int = 0
    next_seq: int = 0
    last_ack_at: float | None = None
    unmarked_bytes: int = 0
    """Audio sent since the last mark."""
    mark_due: bool = False
    """The last frame in flight ended its item but went without a mark: send one now."""
    mark_next: bool = True
    """The next frame sent gets a mark (the first since a ``clear``)."""
    queue: deque[OutboundFrame] = field(default_factory=deque)
    in_flight: deque[SentFrame] = field(default_factory=deque)
    items: dict[str, ItemPlayout] = field(default_factory=dict)
    _partial: dict[str, bytearray] = field(default_factory=dict)

    # -- audio from the model -------------------------------------------------------------

    def add_audio(self, response_id: str, item_id: str, audio: bytes) -> int:
        """Queue ``audio`` of an item in whole frames; returns frames dropped (queue full).

        Full policy: real-time audio drops the *oldest* queued frames and counts them.
        """
        item = self._item(response_id, item_id)
        offset = item.received_bytes - len(self._partial.get(item_id, b""))
        item.received_bytes += len(audio)
        pending = self._partial.setdefault(item_id, bytearray())
        pending += audio
        whole = len(pending) - len(pending) % self.frame_bytes
        for start in range(0, whole, self.frame_bytes):
            chunk = bytes(pending[start : start + self.frame_bytes])
            self.queue.append(OutboundFrame(response_id, item_id, chunk, offset + start))
        del pending[:whole]
        dropped = 0
        while len(self.queue) > self.max_queued_frames:
            self.queue.popleft()
            dropped += 1
        return dropped

    def audio_done(self, item_id: str) -> None:
        """The item's audio is complete: queue its last, shorter frame."""
        item = self.items.get(item_id)
        if item is None:
            return
        item.audio_done = True
        tail = self._partial.pop(item_id, bytearray())
        if tail:
            offset = item.received_bytes - len(tail)
            self.queue.append(OutboundFrame(item.response_id, item_id, bytes(tail), offset))
        elif self.in_flight and not any(f.item_id == item_id for f in self.queue):
            last = self.in_flight[-1]
            if last.mark is None and last.frame.item_id == item_id:
                self.mark_due = True  # its last frame already went without a mark
        self._retire_if_heard(item)

    def _item(self, response_id: str, item_id: str) -> ItemPlayout:
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = ItemPlayout(item_id, response_id)
            while len(self.items) > self.max_items:
                oldest = next(iter(self.items))
                del self.items[oldest]
                self._partial.pop(oldest, None)
        return item

    def track_item(self, response_id: str, item_id: str) -> None:
        """Know an assistant item before its first audio (``response.output_item.added``)."""
        self._item(response_id, item_id)

    # -- sending and echoes ---------------------------------------------------------------

    def head_run_bytes(self, limit: int) -> int:
        """Bytes queued at the head that one message can carry (one item, contiguous), at
        most ``limit`` but never less than the head frame."""
        total = 0
        previous: OutboundFrame | None = None
        for frame in self.queue:
            contiguous = previous is None or (
                frame.item_id == previous.item_id and frame.item_offset == previous.end_offset
            )
            if not contiguous or (previous is not None and total + len(frame.payload) > limit):
                break
            total += len(frame.payload)
            previous = frame
        return total

    def take_message(self, size: int) -> OutboundFrame:
        """The head frames merged into one message of ``size`` bytes (from
        :meth:`head_run_bytes`)."""
        first = self.queue.popleft()
        parts = [first.payload]
        taken = len(first.payload)
        while taken < size:
            frame = self.queue.popleft()
            parts.append(frame.payload)
            taken += len(frame.payload)
        if len(parts) == 1:
            return first
        return OutboundFrame(first.response_id, first.item_id, b"".join(parts), first.item_offset)

    def on_sent(self, frame: OutboundFrame, now: float) -> MarkName | None:
        """Record a frame handed to Twilio at ``now``; the mark to send after it, if any
        (see the mark policy in the module docstring)."""
        self.unmarked_bytes += len(frame.payload)
        item = self.items.get(frame.item_id)
        ends_item = item is not None and item.audio_done and frame.end_offset >= item.received_bytes
        mark = None
        if (
            self.mark_next
            or frame.item_offset == 0
            or ends_item
            or self.unmarked_bytes >= MARK_INTERVAL_MS * BYTES_PER_MS
        ):
            mark = self._new_mark(frame.item_id)
        self.in_flight.append(SentFrame(frame, mark, now))
        return mark

    def take_due_mark(self) -> MarkName | None:
        """The mark owed to the last frame in flight (its item ended after it was sent)."""
        if not self.mark_due:
            return None
        self.mark_due = False
        if not self.in_flight or self.in_flight[-1].mark is not None:
            return None
        last = self.in_flight.pop()
        mark = self._new_mark(last.frame.item_id)
        self.in_flight.append(SentFrame(last.frame, mark, last.sent_at))
        return mark

    def _new_mark(self, item_id: str) -> MarkName:
        mark = MarkName(self.generation, self.next_seq, item_id)
        self.next_seq += 1
        self.unmarked_bytes = 0
        self.mark_next = False
        return mark

    def on_mark(self, name: str, now: float) -> MarkOutcome:
        mark = parse_mark_name(name)
        if mark is None:
            return MarkOutcome.UNKNOWN
        if mark.generation != self.generation:
            return MarkOutcome.CLEARED
        if not any(sent.mark is not None and sent.mark.seq == mark.seq for sent in self.in_flight):
            return MarkOutcome.UNKNOWN
        # Echoes arrive in buffer order: every frame up to the marked one was played.
        while self.in_flight:
            sent = self.in_flight.popleft()
            item = self.items.get(sent.frame.item_id)
            if item is not None:
                item.heard_bytes = max(item.heard_bytes, sent.frame.end_offset)
            if sent.mark is not None and sent.mark.seq == mark.seq:
                break
        self.last_ack_at = now
        for item in list(self.items.values()):
            self._retire_if_heard(item)
        return MarkOutcome.PLAYED

    def _retire_if_heard(self, item: ItemPlayout) -> None:
        if item.audio_done and item.heard_bytes >= item.received_bytes:
            del self.items[item.item_id]

    # -- what was heard -------------------------------------------------------------------

    def _progress(self, now: float) -> list[tuple[SentFrame, int]]:
        """Bytes of each frame in flight played by ``now`` (by the clock, past the last
        echo), in order, up to the first frame not played in full."""
        progress: list[tuple[SentFrame, int]] = []
        clock = self.last_ack_at if self.last_ack_at is not None else -math.inf
        for sent in self.in_flight:
            length = len(sent.frame.payload)
            started = max(clock, sent.sent_at)
            # Rounded: the clock sums frame lengths, so a frame that ends exactly at `now`
            # must not come out a float rounding short of played.
            played = max(0, min(length, round((now - started) * BYTES_PER_S)))
            progress.append((sent, played))
            if played < length:
                break
            clock = started + length / BYTES_PER_S
        return progress

    def heard_bytes(self, item_id: str, now: float) -> int:
        """Bytes of the item the caller has heard by ``now``, at most what was received."""
        item = self.items.get(item_id)
        if item is None:
            return 0
        heard = item.heard_bytes
        for sent, played in self._progress(now):
            if sent.frame.item_id == item_id:
                heard = max(heard, sent.frame.item_offset + played)
        return min(heard, item.received_bytes)

    @property
    def playing(self) -> bool:
        """Audio sent to Twilio is not yet confirmed played (unacknowledged marks)."""
        return bool(self.in_flight)

    @property
    def has_queued(self) -> bool:
        return bool(self.queue) or any(self._partial.values())

    def queued_ms(self) -> int:
        return sum(len(f.payload) for f in self.queue) // BYTES_PER_MS

    # -- barge-in -------------------------------------------------------------------------

    def clear(self, now: float) -> ClearResult:
        """Twilio ``clear`` was decided at ``now``: freeze heard positions, bump generation."""
        unplayed: list[OutboundFrame] = []
        progress = self._progress(now)
        for sent, played in progress:
            item = self.items.get(sent.frame.item_id)
            if item is not None:
                item.heard_bytes = max(item.heard_bytes, sent.frame.item_offset + played)
        if progress:
            sent, played = progress[-1]
            frame = sent.frame
            if played < len(frame.payload):
                unplayed.append(
                    OutboundFrame(
                        frame.response_id,
                        frame.item_id,
                        frame.payload[played:],
                        frame.item_offset + played,
                    )
                )
            unplayed.extend(s.frame for s in list(self.in_flight)[len(progress) :])
        self.in_flight.clear()
        self.generation += 1
        self.last_ack_at = None
        self.unmarked_bytes = 0
        self.mark_due = False
        self.mark_next = True
        return ClearResult(self.generation, tuple(unplayed))

    def flush_queue(self) -> list[OutboundFrame]:
        """Empty the local queue (and partial frames); returns what was dropped, in order."""
        flushed = list(self.queue)
        self.queue.clear()
        for item_id, tail in self._partial.items():
            item = self.items.get(item_id)
            if tail and item is not None:
                flushed.append(
                    OutboundFrame(
                        item.response_id, item_id, bytes(tail), item.received_bytes - len(tail)
                    )
                )
        self._partial.clear()
        return flushed

    def hold(self, now: float) -> tuple[ClearResult, list[OutboundFrame]]:
        """Stop playout but keep the unplayed audio: (clear result, frames held in order)."""
        cleared = self.clear(now)
        held = list(cleared.unplayed) + list(self.queue)
        self.queue.clear()
        return cleared, held

    def resume(self, held: list[OutboundFrame]) -> None:
        """Put held frames back at the front of the queue, in order."""
        self.queue.extendleft(reversed(held))

    def drop_unstarted_items(self, prefix: str) -> int:
        """Drop every item whose id starts with ``prefix`` and of which nothing has been
        sent yet (an item already playing plays to its end); returns the frames dropped."""
        queued: dict[str, int] = {}
        for frame in self.queue:
            if frame.item_id.startswith(prefix):
                queued[frame.item_id] = queued.get(frame.item_id, 0) + len(frame.payload)
        unstarted = {
            item_id
            for item_id, size in queued.items()
            if item_id in self.items and size >= self.items[item_id].received_bytes
        }
        if not unstarted:
            return 0
        kept = [f for f in self.queue if f.item_id not in unstarted]
        dropped = len(self.queue) - len(kept)
        self.queue = deque(kept)
        return dropped

    def finalize(self, item_id: str) -> None:
        """Forget an item (truncated or deleted upstream)."""
        self.items.pop(item_id, None)
        self._partial.pop(item_id, None)
