"""Sans-IO model of Twilio's outbound playback for one bidirectional Media Stream.

What Twilio documents (https://www.twilio.com/docs/voice/media-streams/websocket-messages,
"mark" and "clear"), modelled in
continuous time:

* ``media`` is buffered and played in the order received, at 8000 μ-law bytes per second
  (**8 bytes/ms**), starting as soon as it is available: when the buffer is empty a
  chunk starts playing the instant it arrives, otherwise right after the audio ahead.
* A ``mark`` is echoed when playback reaches it, or at once if nothing is buffered.
* ``clear`` empties the buffer (the chunk being played is cut where the playhead is) and
  echoes every pending mark, in order.

No I/O and no Trio: every call takes ``now``, a float in seconds from the caller's clock,
which must never go backwards (:class:`ValueError` otherwise). Every call first plays up to
``now`` and returns the names of the marks that playback reached on the way, in order;
the caller sends those echoes before anything else.

Analysis on top of the protocol behaviour, for tests and benchmarks:

* Played audio is recorded as :class:`PlayedSegment`. Each chunk is attributed to the
  assistant item named by the first mark that follows it (``g<gen>:m<seq>:<item_id>``,
  parsed with :func:`bridge.core.marks.parse_mark_name`), or ``None``. Until that mark
  arrives (and for good if a ``clear`` or the end of the call comes first) the chunk
  belongs to the item of the mark before it, since the last ``clear``: the bridge marks the
  first frame of every item and the first after every clear, and then only every 200 ms.
  Attribution never influences playback.
* AI turns (:class:`AiTurn`): a turn starts when audio starts playing into an idle line
  and ends when the buffer has drained and no new audio arrived for ``turn_gap_s``
  (300 ms by default), or at a ``clear``.
* Underruns (:class:`Underrun`): the buffer ran dry and the next chunk of the *same* item
  arrived later, i.e. an audible gap inside one continuous response.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Final

from bridge.audio.mulaw import SAMPLE_RATE, SILENCE_BYTE
from bridge.core.marks import parse_mark_name

TIME_EPS_S: Final = 1e-9
"""Slack (s) for comparing times built from float sums (of ``len / 8000``, of 20 ms)."""


@dataclass(slots=True)
class PlayedSegment:
    """A chunk of outbound audio and when it (starts to) play.

    ``payload`` is cut short if a ``clear`` interrupted the chunk. ``item_id`` is filled
    in when the mark after the chunk arrives, which may be after the chunk has played.
    """

    start: float
    """Clock time (s) at which the first byte plays."""
    payload: bytes
    """μ-law bytes, 8 per ms."""
    item_id: str | None

    @property
    def end(self) -> float:
        """Clock time (s) at which the last byte has played."""
        return self.start + len(self.payload) / SAMPLE_RATE


@dataclass(slots=True)
class _Chunk:
    segment: PlayedSegment
    gap_before_s: float
    """Silence (s) between the previous chunk's end and this chunk's start (0 if none)."""
    previous: PlayedSegment | None
    """The chunk played just before, unless a ``clear`` came in between."""


@dataclass(slots=True)
class _Mark:
    name: str
    at: float
    """Clock time (s) at which playback reaches the mark."""


@dataclass(frozen=True, slots=True)
class ClearResult:
    """What one ``clear`` did."""

    at: float
    """Clock time (s) of the clear."""
    played_marks: tuple[str, ...]
    """Marks reached by playing up to ``at`` before clearing (echoed as played)."""
    cleared_marks: tuple[str, ...]
    """Pending marks echoed because of the clear; their audio never played."""
    discarded_bytes: int
    """Unplayed μ-law bytes dropped (8 per ms)."""

    @property
    def echoes(self) -> tuple[str, ...]:
        """Every mark to echo now, in order."""
        return self.played_marks + self.cleared_marks

    @property
    def discarded_ms(self) -> float:
        return self.discarded_bytes / (SAMPLE_RATE / 1000)


@dataclass(slots=True)
class AiTurn:
    """One stretch of AI audio playing at the caller."""

    index: int
    """1-based."""
    start: float
    """Clock time (s) the first chunk started playing."""
    end: float | None
    """Clock time (s) the audio stopped; ``None`` while the turn may continue."""
    interrupted: bool
    """A ``clear`` cut audio that was still buffered."""


@dataclass(frozen=True, slots=True)
class Underrun:
    """The buffer ran dry inside one assistant item."""

    at: float
    """Clock time (s) the late chunk started playing."""
    gap_ms: float
    item_id: str


class TwilioPlayback:
    """Twilio's outbound buffer for one stream, as a pure state machine.

    Args:
        turn_gap_s: silence (s) after the buffer drains before the AI turn counts as
            finished.
        underrun_tolerance_ms: gaps shorter than this are not underruns. A sender
            pacing at exactly 1x real time empties the buffer for microseconds between
            chunks; a real gateway's jitter buffer hides that.
    """

    __slots__ = (
        "_clears",
        "_discarded_bytes",
        "_last_mark_item",
        "_last_segment",
        "_marks_echoed",
        "_marks_received",
        "_now",
        "_play_end",
        "_played",
        "_played_bytes",
        "_pushed_bytes",
        "_queue",
        "_queued_bytes",
        "_turn_gap_s",
        "_turns",
        "_unattributed",
        "_underrun_tolerance_s",
        "_underruns",
    )

    def __init__(self, *, turn_gap_s: float = 0.3, underrun_tolerance_ms: float = 1.0) -> None:
        self._turn_gap_s = turn_gap_s
        self._underrun_tolerance_s = underrun_tolerance_ms / 1000.0
        self._now = -math.inf
        self._play_end = -math.inf
        """When everything buffered will have played (s); in the past when idle."""
        self._queue: deque[_Chunk | _Mark] = deque()
        self._queued_bytes = 0
        self._played: list[PlayedSegment] = []
        self._played_bytes = 0
        """Bytes of fully played chunks (the head chunk's progress is computed)."""
        self._pushed_bytes = 0
        self._discarded_bytes = 0
        self._unattributed: list[_Chunk] = []
        self._last_mark_item: str | None = None
        """The item of the latest mark since the last clear: the provisional owner of the
        chunks that follow it."""
        self._last_segment: PlayedSegment | None = None
        self._turns: list[AiTurn] = []
        self._underruns: list[Underrun] = []
        self._clears: list[ClearResult] = []
        self._marks_received = 0
        self._marks_echoed = 0

    # -- protocol behaviour ------------------------------------------------------------

    def advance(self, now: float) -> list[str]:
        """Play up to ``now``; return the marks reached, in order."""
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now
        reached: list[str] = []
        while self._queue:
            head = self._queue[0]
            if isinstance(head, _Mark):
                if head.at > now + TIME_EPS_S:
                    break
                reached.append(head.name)
            else:
                if head.segment.end > now + TIME_EPS_S:
                    break
                self._played.append(head.segment)
                self._played_bytes += len(head.segment.payload)
                self._queued_bytes -= len(head.segment.payload)
            self._queue.popleft()
        self._marks_echoed += len(reached)
        turn = self._open_turn()
        quiet_s = now - self._play_end
        if turn is not None and self._idle(now) and quiet_s >= self._turn_gap_s - TIME_EPS_S:
            turn.end = self._play_end
        return reached

    def push_media(self, payload: bytes, now: float) -> list[str]:
        """Buffer ``payload`` (μ-law) arriving at ``now``; return marks reached before it.

        ``now`` may be before the time playback was advanced to (the message arrived, and
        its reader got to it after the clock had moved on): it is buffered as of its
        arrival, so it starts playing then, or where the audio before it ends, and leaves
        no gap that was never there; the clock does not go back. An empty payload changes
        nothing.
        """
        reached = self.advance(max(now, self._now))
        if not payload:
            return reached
        idle = self._idle(now)
        start = max(now, self._play_end)
        gap = now - self._play_end if idle and self._last_segment is not None else 0.0
        if self._open_turn() is None:
            self._turns.append(
                AiTurn(index=len(self._turns) + 1, start=start, end=None, interrupted=False)
            )
        segment = PlayedSegment(start=start, payload=payload, item_id=self._last_mark_item)
        chunk = _Chunk(
            segment=segment,
            gap_before_s=gap if gap >= self._underrun_tolerance_s else 0.0,
            previous=self._last_segment,
        )
        self._queue.append(chunk)
        self._unattributed.append(chunk)
        self._last_segment = segment
        self._queued_bytes += len(payload)
        self._pushed_bytes += len(payload)
        self._play_end = segment.end
        return reached

    def push_mark(self, name: str, now: float) -> list[str]:
        """Queue mark ``name`` behind the buffered audio; return the marks to echo now.

        The result ends with ``name`` itself when nothing is buffered. A ``now`` before
        the playback's clock is taken as the clock: an echo cannot leave in the past.
        """
        now = max(now, self._now)
        reached = self.advance(now)
        self._marks_received += 1
        parsed = parse_mark_name(name)
        self._last_mark_item = parsed.item_id if parsed is not None else None
        self._attribute(self._last_mark_item)
        if self._idle(now):
            self._marks_echoed += 1
            return [*reached, name]
        self._queue.append(_Mark(name=name, at=self._play_end))
        return reached

    def clear(self, now: float) -> ClearResult:
        """Empty the buffer at ``now`` and echo every pending mark.

        The chunk playing at ``now`` keeps its played part; everything after the
        playhead is discarded. A ``now`` before the playback's clock is taken as the clock:
        what was played up to it, and the marks echoed, stay so.
        """
        now = max(now, self._now)
        played_marks = self.advance(now)
        was_playing = not self._idle(now)
        cleared: list[str] = []
        discarded = 0
        for entry in self._queue:
            if isinstance(entry, _Mark):
                cleared.append(entry.name)
                continue
            segment = entry.segment
            heard = self._bytes_played(segment, now)
            discarded += len(segment.payload) - heard
            if heard:
                segment.payload = segment.payload[:heard]
                self._played.append(segment)
                self._played_bytes += heard
        self._queue.clear()
        self._queued_bytes = 0
        self._unattributed.clear()
        self._last_mark_item = None
        self._last_segment = None
        turn = self._open_turn()
        if turn is not None:
            turn.end = now if was_playing else self._play_end
            turn.interrupted = was_playing
        self._play_end = min(self._play_end, now)
        self._discarded_bytes += discarded
        self._marks_echoed += len(cleared)
        result = ClearResult(
            at=now,
            played_marks=tuple(played_marks),
            cleared_marks=tuple(cleared),
            discarded_bytes=discarded,
        )
        self._clears.append(result)
        return result

    def next_deadline(self) -> float | None:
        """Clock time (s) at which the next pending mark is reached, or ``None``."""
        for entry in self._queue:
            if isinstance(entry, _Mark):
                return entry.at
        return None

    # -- state -------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The time (s) playback has been advanced to (``-inf`` before the first call)."""
        return self._now

    @property
    def turns(self) -> tuple[AiTurn, ...]:
        return tuple(self._turns)

    @property
    def underruns(self) -> tuple[Underrun, ...]:
        return tuple(self._underruns)

    @property
    def clears(self) -> tuple[ClearResult, ...]:
        return tuple(self._clears)

    @property
    def marks_received(self) -> int:
        return self._marks_received

    @property
    def marks_echoed(self) -> int:
        """Marks echoed so far, whether reached by playback or by a ``clear``."""
        return self._marks_echoed

    @property
    def pushed_bytes(self) -> int:
        return self._pushed_bytes

    @property
    def played_bytes(self) -> int:
        """Bytes played up to :attr:`now`, including the part of the chunk now playing."""
        return self._played_bytes + self._head_progress()

    @property
    def discarded_bytes(self) -> int:
        """Bytes dropped unplayed by ``clear``."""
        return self._discarded_bytes

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and still waiting to play at :attr:`now`."""
        return self._queued_bytes - self._head_progress()

    def underrun_summary(self) -> dict[str, tuple[int, float]]:
        """Per item id: (number of gaps, total gap ms)."""
        summary: dict[str, tuple[int, float]] = {}
        for underrun in self._underruns:
            count, total = summary.get(underrun.item_id, (0, 0.0))
            summary[underrun.item_id] = (count + 1, total + underrun.gap_ms)
        return summary

    # -- analysis ----------------------------------------------------------------------

    def segments(self) -> Iterator[PlayedSegment]:
        """Audio played up to :attr:`now`, in play order (the chunk playing is cut)."""
        yield from self._played
        head = self._playing_head()
        if head is not None:
            progress = self._bytes_played(head, self._now)
            if progress:
                yield PlayedSegment(
                    start=head.start, payload=head.payload[:progress], item_id=head.item_id
                )

    def played_between(
        self, t0: float, t1: float, item_ids: Collection[str | None] | None = None
    ) -> float:
        """Milliseconds of audio played within [t0, t1), optionally only of ``item_ids``."""
        total_s = 0.0
        for segment in self.segments():
            if item_ids is not None and segment.item_id not in item_ids:
                continue
            total_s += max(0.0, min(segment.end, t1) - max(segment.start, t0))
        return total_s * 1000.0

    def heard_ms(self, item_id: str) -> float:
        """Milliseconds of ``item_id`` the caller heard so far."""
        played = sum(len(s.payload) for s in self.segments() if s.item_id == item_id)
        return played / (SAMPLE_RATE / 1000)

    def heard_audio(self, t0: float, t1: float) -> bytes:
        """What the caller heard in [t0, t1) as μ-law, silence where nothing played.

        Byte ``i`` is the sample at ``t0 + i / 8000``; the length is
        ``round((t1 - t0) * 8000)``.
        """
        length = max(0, round((t1 - t0) * SAMPLE_RATE))
        out = bytearray([SILENCE_BYTE]) * length
        for segment in self.segments():
            offset = round((segment.start - t0) * SAMPLE_RATE)
            first = max(0, -offset)
            last = min(len(segment.payload), length - offset)
            if first < last:
                out[offset + first : offset + last] = segment.payload[first:last]
        return bytes(out)

    # -- internals ---------------------------------------------------------------------

    def _idle(self, now: float) -> bool:
        return self._play_end <= now + TIME_EPS_S

    def _open_turn(self) -> AiTurn | None:
        if self._turns and self._turns[-1].end is None:
            return self._turns[-1]
        return None

    @staticmethod
    def _bytes_played(segment: PlayedSegment, now: float) -> int:
        elapsed = (now - segment.start) * SAMPLE_RATE
        return min(len(segment.payload), max(0, int(elapsed + 1e-6)))

    def _playing_head(self) -> PlayedSegment | None:
        """The chunk at the head of the buffer (possibly not started yet)."""
        if self._queue and isinstance(head := self._queue[0], _Chunk):
            return head.segment
        return None

    def _head_progress(self) -> int:
        head = self._playing_head()
        return 0 if head is None else self._bytes_played(head, self._now)

    def _attribute(self, item_id: str | None) -> None:
        """Give the chunks since the previous mark to ``item_id``; detect underruns."""
        for chunk in self._unattributed:
            chunk.segment.item_id = item_id
            previous = chunk.previous
            if (
                item_id is not None
                and chunk.gap_before_s > 0.0
                and previous is not None
                and previous.item_id == item_id
            ):
                self._underruns.append(
                    Underrun(
                        at=chunk.segment.start,
                        gap_ms=chunk.gap_before_s * 1000.0,
                        item_id=item_id,
                    )
                )
        self._unattributed.clear()
