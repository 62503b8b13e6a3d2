"""What the simulated caller says and when: a script is data, resolved against playback.

A :class:`CallerScript` is a sequence of :class:`Utterance` (synthetic speech of a given
duration and seed) and a hang-up, each with a trigger:

* :class:`At`: ``ms`` after the stream started (the ``start`` message).
* :class:`AfterAiStarts`: ``delay_ms`` after the n-th AI turn started *playing* at the
  caller (turns as defined by :class:`bridge.sim.playback.AiTurn`).
* :class:`AfterAiEnds`: ``delay_ms`` after the n-th AI turn finished playing (buffer
  drained and no new audio for 300 ms, or cut by ``clear``). The end is only known
  300 ms after it happens, so smaller delays act like about 300 ms.
* :class:`AfterReply`: ``delay_ms`` after the AI's reply to the previous utterance (the
  first AI turn that started after that utterance started) finished playing. With no
  previous utterance, the first AI turn counts. This is the natural hang-up trigger.

Utterances are spoken in order and never overlap: one starts no earlier than the end of
the one before, whatever its trigger says. The hang-up happens no earlier than the end of
the last utterance.

:class:`SpeechScheduler` resolves triggers as the call unfolds; it is sans-IO (times are
float seconds from the caller's clock) so it is tested without sockets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bridge.audio.mulaw import SAMPLE_RATE
from bridge.sim.playback import AiTurn

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class At:
    """``ms`` after the stream started."""

    ms: int


@dataclass(frozen=True, slots=True)
class AfterAiStarts:
    """``delay_ms`` after AI turn ``turn`` (1-based) started playing."""

    turn: int
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class AfterAiEnds:
    """``delay_ms`` after AI turn ``turn`` (1-based) finished playing."""

    turn: int
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class AfterReply:
    """``delay_ms`` after the AI's reply to the previous utterance finished playing."""

    delay_ms: int = 0


Trigger = At | AfterAiStarts | AfterAiEnds | AfterReply


def _check_trigger(trigger: Trigger) -> None:
    if isinstance(trigger, At):
        if trigger.ms < 0:
            raise ValueError(f"negative time in {trigger}")
    elif trigger.delay_ms < 0:
        raise ValueError(f"negative delay in {trigger}")
    if isinstance(trigger, AfterAiStarts | AfterAiEnds) and trigger.turn < 1:
        raise ValueError(f"AI turns are numbered from 1: {trigger}")


@dataclass(frozen=True, slots=True)
class Utterance:
    """``duration_ms`` of synthetic caller speech (``speech_like`` with ``seed``)."""

    duration_ms: int
    seed: int
    trigger: Trigger

    def __post_init__(self) -> None:
        if self.duration_ms <= 0:
            raise ValueError(f"utterance duration must be positive: {self.duration_ms} ms")
        _check_trigger(self.trigger)


@dataclass(frozen=True, slots=True)
class CallerScript:
    """Utterances in speaking order, then the hang-up (caller sends ``stop``)."""

    utterances: tuple[Utterance, ...] = ()
    hangup: Trigger = field(default_factory=lambda: AfterReply(1000))

    def __post_init__(self) -> None:
        _check_trigger(self.hangup)


_SCRIPT_NAMES = ("demo", "listen[:seconds]", "talk")


def script_from_name(name: str) -> CallerScript:
    """A canned script.

    * ``demo``: the AI greets; 400 ms after the greeting ends the caller answers (1.5 s);
      1.2 s into the AI's answer the caller cuts in (1.4 s); the caller waits for the
      reply to that and hangs up 1 s after it ends.
    * ``listen`` or ``listen:N``: the caller stays silent and hangs up after N s
      (default 10).
    * ``talk``: one 1.5 s utterance 1 s after the stream starts; hangs up 1 s after the
      reply ends.

    Raises:
        ValueError: unknown name or a bad ``listen`` duration.
    """
    base, _, arg = name.partition(":")
    if base == "demo" and not arg:
        return CallerScript(
            utterances=(
                Utterance(duration_ms=1500, seed=1, trigger=AfterAiEnds(turn=1, delay_ms=400)),
                Utterance(duration_ms=1400, seed=2, trigger=AfterAiStarts(turn=2, delay_ms=1200)),
            ),
            hangup=AfterReply(delay_ms=1000),
        )
    if base == "listen":
        seconds = float(arg) if arg else 10.0
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"listen needs a positive number of seconds, got {arg!r}")
        return CallerScript(utterances=(), hangup=At(ms=round(seconds * 1000)))
    if base == "talk" and not arg:
        return CallerScript(
            utterances=(Utterance(duration_ms=1500, seed=1, trigger=At(ms=1000)),),
            hangup=AfterReply(delay_ms=1000),
        )
    raise ValueError(f"unknown caller script {name!r}; known: {', '.join(_SCRIPT_NAMES)}")


@dataclass(slots=True)
class Speech:
    """One utterance's audio and, once its trigger resolved, its start time."""

    label: str
    """For the timeline, e.g. ``seed 1`` or ``in.wav``."""
    samples: Float32Array
    """8 kHz float32 samples."""
    trigger: Trigger
    start: float | None
    """Clock time (s) of the first sample; ``None`` until scheduled."""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def end(self) -> float | None:
        return None if self.start is None else self.start + self.duration_s


class SpeechScheduler:
    """Resolves utterance and hang-up triggers against the AI turns seen so far.

    Args:
        speech: the utterances in order (their ``start`` must be ``None``).
        hangup: the hang-up trigger.
        stream_start: clock time (s) the stream started; the caller's audio byte ``i``
            is the sample at ``stream_start + i / 8000``.
    """

    __slots__ = ("_hangup", "_next", "_placed", "_speech", "_stream_start")

    def __init__(self, speech: Sequence[Speech], hangup: Trigger, stream_start: float) -> None:
        self._speech = tuple(speech)
        self._hangup = hangup
        self._stream_start = stream_start
        self._next = 0
        """Index of the first utterance not scheduled yet."""
        self._placed: list[tuple[int, Float32Array]] = []
        """(first caller byte, samples) of every scheduled utterance."""

    @property
    def speech(self) -> tuple[Speech, ...]:
        return self._speech

    def schedule(self, earliest: float, turns: Sequence[AiTurn]) -> list[tuple[float, Speech]]:
        """Schedule every utterance whose trigger has resolved, in order.

        ``earliest`` is the first time (s) the caller's audio can still change (the
        start of the frame not yet sent); a trigger resolved later than its time starts
        speaking there. Returns (start, utterance) for the newly scheduled ones.
        """
        scheduled: list[tuple[float, Speech]] = []
        while self._next < len(self._speech):
            speech = self._speech[self._next]
            at = self._resolve(speech.trigger, self._next, turns)
            if at is None:
                break
            previous_end = self._speech[self._next - 1].end if self._next else None
            start = max(at, earliest, -math.inf if previous_end is None else previous_end)
            speech.start = start
            self._placed.append((round((start - self._stream_start) * SAMPLE_RATE), speech.samples))
            scheduled.append((start, speech))
            self._next += 1
        return scheduled

    def hangup_time(self, turns: Sequence[AiTurn]) -> float | None:
        """Clock time (s) to hang up, once every utterance is scheduled and it resolved."""
        if self._next < len(self._speech):
            return None
        at = self._resolve(self._hangup, len(self._speech), turns)
        if at is None:
            return None
        last_end = self._speech[-1].end if self._speech else None
        return at if last_end is None else max(at, last_end)

    def overlay(self, first_byte: int, samples: Float32Array) -> bool:
        """Add the scheduled speech covering caller bytes [first_byte, +len) to ``samples``.

        Returns whether any speech was added.
        """
        added = False
        for placed_at, speech in self._placed:
            offset = placed_at - first_byte
            lo, hi = max(0, offset), min(len(samples), offset + len(speech))
            if lo < hi:
                samples[lo:hi] += speech[lo - offset : hi - offset]
                added = True
        return added

    def _resolve(self, trigger: Trigger, index: int, turns: Sequence[AiTurn]) -> float | None:
        """Clock time (s) ``trigger`` fires at, for utterance ``index``; ``None`` if unknown."""
        if isinstance(trigger, At):
            return self._stream_start + trigger.ms / 1000.0
        delay = trigger.delay_ms / 1000.0
        if isinstance(trigger, AfterAiStarts):
            if len(turns) < trigger.turn:
                return None
            return turns[trigger.turn - 1].start + delay
        if isinstance(trigger, AfterAiEnds):
            end = turns[trigger.turn - 1].end if len(turns) >= trigger.turn else None
            return None if end is None else end + delay
        previous_start = self._speech[index - 1].start if index else None
        after = -math.inf if previous_start is None else previous_start
        reply = next((turn for turn in turns if turn.start > after), None)
        if reply is None or reply.end is None:
            return None
        return reply.end + delay
