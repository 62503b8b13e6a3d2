"""The real-time parts: upstream closes and stalls against the bridge as its own process.

Trials run one after another against one bridge process, each with a call of its own, so
the sim sessions opened during a trial are that trial's. Times are ``time.monotonic`` (the
sim's and the caller's clock); the bridge's own figures come from its JSON log records.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import trio

from bench.common.bridge_log import read_log, records
from bench.common.bridge_process import bridge_process, wait_call_ends
from bench.common.scenario import bench_sim_options
from bench.common.stats import stats
from bridge.core.records import UpstreamLost, UpstreamRestored
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.playback import PlayedSegment
from bridge.sim.script import script_from_name
from bridge.sim.upstream import SimSession, SimUpstream

HANDSHAKE_DELAY_MS: Final = 200.0
CALL_S: Final = 9
"""Each trial's call: the caller listens this long (greeting, break, resumed reply)."""
BREAK_AFTER_S: Final = (0.6, 1.8)
"""The break comes this long (uniform, s) after the greeting started playing."""
RESUMED_PREFIX: Final = "Sorry, I was cut off. As I was saying:"

TrialKind = Literal["close", "stall"]


@dataclass(frozen=True, slots=True)
class Trial:
    kind: TrialKind
    call_sid: str
    broke_at: float
    heard_again_s: float | None
    """Break → the first audio of the replacement session the caller heard."""
    longest_silence_s: float
    """The longest silence the caller heard between the break and then."""
    cues_heard: int
    """Comfort audio items the caller heard (hold phrase, soft cues) in this trial."""
    given_what_was_heard: bool
    """The new session was given the greeting as far as the caller heard it (a non-empty
    prefix), and the AI's next words resumed from it."""


def _new_words_after(
    segments: list[PlayedSegment], sessions: list[SimSession], after: float
) -> tuple[float | None, float]:
    """(break → the first audio of a new session heard, the longest silence the caller heard
    from the break until then), s. What was received before the break plays on first."""
    new_items = {i for s in sessions[1:] for r in s.responses.values() for i in r.items}
    starts = [s.start for s in segments if s.item_id in new_items and s.start >= after]
    if not starts:
        return None, 0.0
    resumed = min(starts)
    quiet, longest = after, 0.0
    for segment in sorted(segments, key=lambda s: s.start):
        if segment.end <= after or segment.start > resumed:
            continue
        longest = max(longest, segment.start - quiet)
        quiet = max(quiet, segment.end)
    return resumed - after, longest


def _given_what_was_heard(sessions: list[SimSession], greeting: str) -> bool:
    if len(sessions) < 2:
        return False
    new = sessions[1]
    given = [
        item.transcript
        for item in new.conversation
        if item.client_item is not None and item.role == "assistant" and not item.deleted
    ]
    said = [
        item.transcript
        for item in new.conversation
        if item.role == "assistant" and item.client_item is None
    ]
    if len(given) != 1 or not given[0] or not greeting.startswith(given[0]) or not said:
        return False
    tail = " ".join(given[0].split()[-8:])
    return said[0].startswith(f"{RESUMED_PREFIX} {tail}")


async def run_trial(
    kind: TrialKind, index: int, sim: SimUpstream, media_url: str, rng: random.Random
) -> Trial:
    call_sid = f"CA{index:032x}"
    first_session = len(sim.sessions)
    caller = SimCaller(
        CallerOptions(
            url=media_url,
            script=script_from_name(f"listen:{CALL_S}"),
            call_sid=call_sid,
            max_duration_s=CALL_S + 5,
            clock=time.monotonic,
        )
    )
    broke_at = 0.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller.run)
        session = await sim.wait_for_session(first_session)
        turn = await caller.wait_ai_turn_started(1)
        await trio.sleep(max(0.0, turn.start + rng.uniform(*BREAK_AFTER_S) - time.monotonic()))
        broke_at = time.monotonic()
        if kind == "close":
            session.close(1011)
        else:
            session.stall()
    sessions = sim.sessions[first_session:]
    segments = list(caller.playback.segments())
    cues = {s.item_id for s in segments if (s.item_id or "").startswith("local_")}
    greeting = next(iter(sessions[0].responses.values())).transcripts
    heard_again, silence = _new_words_after(segments, sessions, broke_at)
    return Trial(
        kind=kind,
        call_sid=call_sid,
        broke_at=broke_at,
        heard_again_s=heard_again,
        longest_silence_s=silence,
        cues_heard=len(cues),
        given_what_was_heard=_given_what_was_heard(sessions, " ".join(greeting.values())),
    )


async def run_trials(
    kinds: list[TrialKind], trials: int, seed: int, log_path: Path
) -> tuple[list[Trial], dict[str, dict[str, Any]]]:
    """``trials`` of each kind against one bridge process; the trials and, by call, the
    bridge's ``UPSTREAM_LOST``/``UPSTREAM_RESTORED`` records."""
    rng = random.Random(seed)
    wall_minus_mono = time.time() - time.monotonic()
    sim = SimUpstream(
        bench_sim_options(generation_speed=1.0, handshake_delay_ms=HANDSHAKE_DELAY_MS)
    )
    done: list[Trial] = []
    async with trio.open_nursery() as nursery:
        sim_url: str = await nursery.start(sim.serve)
        async with bridge_process(sim_url, log_path, {}) as bridge:
            for kind in kinds:
                for _ in range(trials):
                    index = len(done)
                    done.append(await run_trial(kind, index, sim, bridge.media_url, rng))
                    # A stalled peer stays stalled: let it see the bridge's close.
                    for session in sim.sessions:
                        if not session.closed.is_set():
                            session.send_unknown_event()
            await wait_call_ends(log_path, {t.call_sid for t in done}, 15.0)
        nursery.cancel_scope.cancel()
    lines = read_log(log_path)
    by_call: dict[str, dict[str, Any]] = {}
    broke_at = {t.call_sid: t.broke_at for t in done}
    for line, _ in records(lines, UpstreamLost):
        sid = line.call_sid or ""
        # The bridge logs wall time; the trial's break is on time.monotonic.
        noticed = line.wall_s - wall_minus_mono
        by_call.setdefault(sid, {}).setdefault("detected_s", []).append(
            noticed - broke_at.get(sid, noticed)
        )
    for line, restored in records(lines, UpstreamRestored):
        by_call.setdefault(line.call_sid or "", {}).setdefault("restored", []).append(restored)
    return done, by_call


def summarize(
    kind: TrialKind, trials: list[Trial], by_call: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    mine = [t for t in trials if t.kind == kind]
    restored = [r for t in mine for r in by_call.get(t.call_sid, {}).get("restored", [])]
    heard = [t.heard_again_s for t in mine if t.heard_again_s is not None]
    result: dict[str, Any] = {
        "trials": len(mine),
        "heard_again_s": stats(heard),
        "never_heard_again": sum(1 for t in mine if t.heard_again_s is None),
        "longest_silence_s": stats([t.longest_silence_s for t in mine]),
        "cues_heard_max": max((t.cues_heard for t in mine), default=0),
        "given_what_was_heard": sum(1 for t in mine if t.given_what_was_heard),
        "restored_gap_s": stats([r.gap_ms / 1000.0 for r in restored]),
        "restores": len(restored),
    }
    if kind == "stall":
        detected = [d for t in mine for d in by_call.get(t.call_sid, {}).get("detected_s", [])[:1]]
        result["detected_s"] = stats(detected)
    return result


def check(kind: TrialKind, summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets for ``kind``, each with its verdict."""
    n = summary["trials"]
    targets: dict[str, tuple[str, Callable[[], bool]]] = {}
    if kind == "close":
        p95 = summary["heard_again_s"]["p95"]
        targets["heard_again_p95_le_1_5_s"] = (f"{p95} s", lambda: p95 is not None and p95 <= 1.5)
        cues = summary["cues_heard_max"]
        targets["at_most_one_cue"] = (f"max {cues}", lambda: cues <= 1)
        given = summary["given_what_was_heard"]
        targets["given_the_conversation"] = (f"{given}/{n}", lambda: given == n)
    else:
        detected = summary["detected_s"]["p95"]
        targets["detected_p95_le_2_s"] = (
            f"{detected} s",
            lambda: detected is not None and detected <= 2.0,
        )
        gap = summary["restored_gap_s"]["p95"]
        targets["recovered_p95_le_1_5_s"] = (f"{gap} s", lambda: gap is not None and gap <= 1.5)
    return {name: {"value": value, "pass": ok()} for name, (value, ok) in targets.items()}
