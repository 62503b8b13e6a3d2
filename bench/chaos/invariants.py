"""What must hold after every chaos schedule, whatever the faults did.

Each check takes the :class:`bench.chaos.rig.Observation` of one call and returns the
violations it found, as readable lines (empty: the invariant held). Times are Trio seconds.

1. **No dead air while healing**: from the moment the caller's line goes quiet after an
   upstream loss (``UPSTREAM_LOST``; what was already received plays first), at most
   :data:`SILENCE_LIMIT_S` passes before the caller hears something again (the hold phrase,
   the AI, or the call's end: the fallback is Twilio's to play), unless the upstream healed
   owing nobody anything (the AI was not speaking and no turn was waiting); while the
   caller speaks it is not silence, and it counts again once they stop. Silences while the
   upstream is healthy are the reply watch's business, not this one's: a stall is only
   known once the heartbeat finds it (within 2 s).
2. **One voice at a time**: no item is heard again once another item's audio was heard
   after it (responses never interleave). The bridge's own comfort audio is no response:
   a cue may fill a silence inside a reply that then goes on.
3. **No cancelled audio**: nothing of a response is heard that starts more than
   :data:`CANCEL_REACTION_S` after the service cancelled it.
4. **The replay is the conversation as heard**: every assistant text a new session is
   given is a prefix of what the AI said, of an item the caller heard, and no longer than
   the part heard (plus a word of slack: the cut is an estimate; audio still playing or
   queued behind audio still playing when the next session opens or the call ends counts
   as heard, as the bridge counts it); every caller text is
   something the caller said; and what the caller heard of the previous session (at least
   :data:`HEARD_ENOUGH_MS` of an item) is in the next one's replay.
5. **Clean ends**: exactly one ``CALL_END``; no task of the call, no live call and no socket
   left open; the call's end is not ``internal_error``.
6. **The process lives**: nothing escaped the rig and ``/healthz`` answers 200 after the call.
7. **Twilio protocol**: the caller saw no protocol violation from the bridge.
8. **Notes reach the call**: every note posted to the control API is queued (202), unless
   the call had already ended (404 once its ``CALL_END`` is logged).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from bench.chaos.rig import Observation, describe_socket
from bridge.core.call import LOCAL_ITEM_PREFIX
from bridge.core.records import UpstreamRestored, read_record
from bridge.sim.playback import PlayedSegment

SILENCE_LIMIT_S = 1.5
CONTIGUOUS_S = 0.03
"""Audio that starts within this of the previous segment's end continues it (a frame gap
the pacer closes is not silence)."""
CANCEL_REACTION_S = 0.1
REPLAY_SLACK_CHARS = 12
HEARD_ENOUGH_MS = 1000.0


def check_all(seen: Observation) -> list[str]:
    """Every invariant's violations, each line prefixed with the invariant's name."""
    found: list[str] = []
    for name, check in CHECKS:
        found += [f"{name}: {line}" for line in check(seen)]
    return found


def _quiet_from(segments: list[PlayedSegment], t: float) -> float:
    """When the caller's line goes quiet at or after ``t``: the end of the audio that is
    playing at ``t`` and of whatever follows it without a gap."""
    quiet = t
    for segment in segments:
        if segment.start <= quiet + CONTIGUOUS_S and segment.end > quiet:
            quiet = segment.end
    return quiet


def _new_session_heard(seen: Observation, lost_at: float, t0: float, t1: float) -> bool:
    """Whether audio of a session opened after ``lost_at`` started playing in [t0, t1]."""
    items = {
        item_id
        for session in seen.sessions
        if session.opened_at >= lost_at
        for response in session.responses.values()
        for item_id in response.items
    }
    return any(t0 <= s.start <= t1 and s.item_id in items for s in seen.segments)


def no_dead_air(seen: Observation) -> Iterable[str]:
    segments = sorted(seen.segments, key=lambda s: s.start)
    call_over = _call_over(seen)
    restores = [
        (line.t, record)
        for line in seen.lines_tagged("UPSTREAM_RESTORED")
        if (record := read_record(UpstreamRestored, line.extra)) is not None
    ]
    for lost in seen.lines_tagged("UPSTREAM_LOST"):
        healed_at = min((t for t, _ in restores if t >= lost.t), default=math.inf)
        # Healed with nothing owed (nobody was being answered): the quiet is the caller's.
        owes = any(r.resumed_reply or r.answered_turn for t, r in restores if t == healed_at)
        done_at = min(call_over, math.inf if owes else healed_at)
        quiet = _quiet_from(segments, lost.t)
        while quiet < done_at and not _new_session_heard(seen, lost.t, healed_at, quiet):
            audio = min((s.start for s in segments if s.start > quiet), default=math.inf)
            speech = [span for span in seen.caller_speech if span[1] > quiet]
            speaks = max(quiet, min((start for start, _ in speech), default=math.inf))
            sound = min(audio, speaks, done_at)
            if sound - quiet > SILENCE_LIMIT_S:
                yield (
                    f"{sound - quiet:.2f} s of silence from {quiet:.2f} after UPSTREAM_LOST at "
                    f"{lost.t:.2f} ({lost.message})"
                )
            if sound >= healed_at or sound == done_at:
                break  # the AI or the caller speaks again in a healed call, or it is over
            # Still healing: comfort audio played, or the caller spoke; then the line
            # falls quiet again, and that silence counts too.
            if sound == speaks:
                quiet = min(end for start, end in speech if start <= sound)
            quiet = _quiet_from(segments, max(quiet, sound))


def one_voice_at_a_time(seen: Observation) -> Iterable[str]:
    finished: set[str] = set()
    current: str | None = None
    for segment in sorted(seen.segments, key=lambda s: s.start):
        item = segment.item_id
        # The bridge's own comfort audio (a cue when a reply stops coming, the hold phrase)
        # is no response: it fills a silence, and the reply may go on after it.
        if item is None or item == current or item.startswith(LOCAL_ITEM_PREFIX):
            continue
        if item in finished:
            yield f"{item} heard again at {segment.start:.2f} after {current} had started"
        if current is not None:
            finished.add(current)
        current = item


def no_cancelled_audio(seen: Observation) -> Iterable[str]:
    for session in seen.sessions:
        for response in session.responses.values():
            if response.cancelled_at is None:
                continue
            cutoff = response.cancelled_at + CANCEL_REACTION_S
            for segment in seen.segments:
                if segment.item_id in response.items and segment.start > cutoff:
                    yield (
                        f"{segment.item_id} of {response.id} (cancelled at "
                        f"{response.cancelled_at:.2f}) heard at {segment.start:.2f}"
                    )
                    break


def _call_over(seen: Observation) -> float:
    ends = [line.t for line in seen.lines_tagged("CALL_END")]
    return min([*ends, seen.caller_gone_at or math.inf])


def _still_playing(seen: Observation, item_id: str, at: float) -> bool:
    """``item_id`` was still playing at ``at`` (a session's end, or the call's): what the
    caller heard of it later, or never, was not known then."""
    ends = [s.end for s in seen.segments if s.item_id == item_id]
    return bool(ends) and max(ends) >= at - CONTIGUOUS_S


def _waiting_its_turn(seen: Observation, item_id: str, at: float) -> bool:
    """Nothing of ``item_id`` was heard, and at ``at`` the caller was still hearing the AI's
    earlier audio: received audio waits its turn in the queue and counts as heard (it plays
    unless a barge-in drops it, and a barge-in corrects the replay), so a call that ends
    first never let it play, and that is not known at ``at``."""
    return _heard_ms(seen, item_id) == 0.0 and any(
        s.start <= at <= s.end + CONTIGUOUS_S
        and s.item_id is not None
        and not s.item_id.startswith(LOCAL_ITEM_PREFIX)
        for s in seen.segments
    )


def _heard_ms(seen: Observation, item_id: str) -> float:
    return sum(len(s.payload) for s in seen.segments if s.item_id == item_id) / 8.0


def replay_is_what_was_heard(seen: Observation) -> Iterable[str]:
    said: dict[str, tuple[str, int]] = {}
    """Every assistant item of every session: its full transcript and its audio ms."""
    caller_said: set[str] = set()
    for session in seen.sessions:
        for response in session.responses.values():
            for item_id in response.items:
                said[item_id] = (
                    response.transcripts.get(item_id, ""),
                    response.audio_ms.get(item_id, 0),
                )
        caller_said |= {
            item.transcript
            for item in session.conversation
            if item.role == "user" and item.client_item is None and item.transcript
        }
    for index, session in enumerate(seen.sessions[1:], start=1):
        replay = [
            (str(item.role), item.transcript)
            for item in session.conversation
            if item.client_item is not None
            and item.role in ("user", "assistant")
            and not item.deleted
        ]
        for role, text in replay:
            if role == "user" and text not in caller_said:
                yield f"session {index} was given caller text never said: {text!r}"
            if role == "assistant":
                yield from _check_assistant_replay(seen, index, text, said)
        yield from _heard_items_replayed(seen, index, replay, said)


def _check_assistant_replay(
    seen: Observation, index: int, text: str, said: dict[str, tuple[str, int]]
) -> Iterable[str]:
    later = [s.opened_at for s in seen.sessions[index + 1 :]]
    until = min([*later, _call_over(seen)])
    origins = [
        (item_id, full, audio_ms)
        for item_id, (full, audio_ms) in said.items()
        if full.startswith(text) and (len(full) == len(text) or not full[len(text)].isalnum())
    ]
    if not origins:
        yield f"session {index} was given AI text never said: {text!r}"
        return
    for item_id, full, audio_ms in origins:
        heard = _heard_ms(seen, item_id)
        waiting = _waiting_its_turn(seen, item_id, until)
        if (heard <= 0.0 and not waiting) or audio_ms <= 0:
            continue
        playing = waiting or _still_playing(seen, item_id, until)
        share = 1.0 if playing else min(1.0, heard / audio_ms)
        allowed = len(full) * share + REPLAY_SLACK_CHARS
        if len(text) <= allowed:
            return
    heard_of = ", ".join(f"{i}: {_heard_ms(seen, i):.0f}/{a} ms" for i, _, a in origins)
    yield f"session {index} was given more AI text than heard: {text!r} ({heard_of})"


def _heard_items_replayed(
    seen: Observation,
    index: int,
    replay: list[tuple[str, str]],
    said: dict[str, tuple[str, int]],
) -> Iterable[str]:
    previous = seen.sessions[index - 1]
    given = [text for role, text in replay if role == "assistant"]
    for response in previous.responses.values():
        for item_id in response.items:
            full = said[item_id][0]
            if not full or _heard_ms(seen, item_id) < HEARD_ENOUGH_MS:
                continue
            if not any(text and full.startswith(text) for text in given):
                yield (
                    f"session {index} was not given {item_id} ({_heard_ms(seen, item_id):.0f} "
                    f"ms heard): {full!r}"
                )


def clean_end(seen: Observation) -> Iterable[str]:
    ends = seen.lines_tagged("CALL_END")
    if len(ends) != 1:
        yield f"{len(ends)} CALL_END lines"
    if seen.end_reason is None:
        yield "the call never ended"
    elif seen.end_reason == "internal_error":
        yield f"ended by a bug: {ends[0].message if ends else ''}"
    if seen.tasks_left:
        yield f"tasks left: {seen.tasks_left}"
    if seen.live_calls_left:
        yield f"{seen.live_calls_left} call(s) still live"
    if leaked := sorted(seen.sockets_after - seen.sockets_before):
        yield f"sockets left open: {[describe_socket(name) for name in leaked]}"


def process_lives(seen: Observation) -> Iterable[str]:
    if seen.crashed is not None:
        yield f"the rig raised {seen.crashed.strip().splitlines()[-1]}"
    elif seen.health_status != 200:
        yield f"/healthz answered {seen.health_status}"


def twilio_protocol(seen: Observation) -> Iterable[str]:
    if seen.report is not None and seen.report.violations:
        samples = [v.detail for v in seen.report.violation_samples[:3]]
        yield f"protocol violations {seen.report.violations}: {samples}"


def notes_reach_the_call(seen: Observation) -> Iterable[str]:
    ended_at = min((line.t for line in seen.lines_tagged("CALL_END")), default=math.inf)
    for answered_at, status in seen.notes:
        if status == 202 or (status == 404 and answered_at >= ended_at):
            continue
        yield f"a note answered at {answered_at:.2f} got {status} (CALL_END at {ended_at:.2f})"


CHECKS: tuple[tuple[str, Callable[[Observation], Iterable[str]]], ...] = (
    ("no_dead_air", no_dead_air),
    ("one_voice_at_a_time", one_voice_at_a_time),
    ("no_cancelled_audio", no_cancelled_audio),
    ("replay_is_what_was_heard", replay_is_what_was_heard),
    ("clean_end", clean_end),
    ("process_lives", process_lives),
    ("twilio_protocol", twilio_protocol),
    ("notes_reach_the_call", notes_reach_the_call),
)
