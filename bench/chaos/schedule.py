"""One chaos schedule: a caller's script and the faults of one call, drawn from a seed.

A schedule is plain data (it prints as the command that replays it). Times are seconds
after the call's stream started (``at_s``) or ms where a simulator takes ms.

Upstream faults hit the session that is current at ``at_s``:

* ``close``: the socket closes with ``close_code`` (1011 server error, 1001 the service's
  cap, 1000, 4000);
* ``stall``: the session stops sending and reading, for ``stall_s`` or for good;
* ``garbage``: ``count`` events that cannot be parsed, then (``then_close``) a 1011 close;
* ``error_close``: an ``error`` event of the server-error class, then a 1011 close;
* ``refuse``: the next ``count`` handshakes are refused with ``status``.

On the Twilio side: spans of caller media lost on the way, network jitter, an abrupt
close (TCP gone, no ``stop``), and application notes posted at random moments.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from bridge.sim.script import AfterAiStarts, AfterReply, At, CallerScript, Trigger, Utterance

UpstreamFaultKind = Literal["close", "stall", "garbage", "error_close", "refuse"]


@dataclass(frozen=True, slots=True)
class UpstreamFault:
    kind: UpstreamFaultKind
    at_s: float
    close_code: int = 1011
    stall_s: float | None = None
    """``stall``: how long (``None``: until the bridge gives the session up)."""
    count: int = 0
    """``garbage``: events sent; ``refuse``: handshakes refused."""
    then_close: bool = False
    status: int = 503
    """``refuse``: the HTTP status (5xx heals; 401 ends the call: a bad key is for good)."""

    def describe(self) -> str:
        match self.kind:
            case "close":
                return f"close{self.close_code}@{self.at_s:.2f}s"
            case "stall":
                length = "forever" if self.stall_s is None else f"{self.stall_s:.1f}s"
                return f"stall({length})@{self.at_s:.2f}s"
            case "garbage":
                return f"garbage×{self.count}{'+close' if self.then_close else ''}@{self.at_s:.2f}s"
            case "error_close":
                return f"server_error+close@{self.at_s:.2f}s"
            case "refuse":
                return f"refuse{self.count}×{self.status}@{self.at_s:.2f}s"


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    script: CallerScript
    max_duration_s: float
    generation_speed: float
    """Simulated audio ms per wall ms: under 1.0 the deltas come slower than real time."""
    handshake_delay_ms: float
    fast_barge_in: Literal["off", "duck"]
    upstream_faults: tuple[UpstreamFault, ...] = ()
    lost_inbound_ms: tuple[tuple[int, int], ...] = ()
    """(start, length) ms of caller media lost before it reaches Twilio."""
    jitter_ms: float = 0.0
    abort_at_s: float | None = None
    """The Twilio leg drops (no ``stop``) at this time."""
    notes_at_s: tuple[float, ...] = field(default=())

    def describe(self) -> str:
        parts = [f"seed={self.seed}", f"speed={self.generation_speed:g}x"]
        if self.handshake_delay_ms:
            parts.append(f"handshake={self.handshake_delay_ms:.0f}ms")
        parts.append(f"fast_barge_in={self.fast_barge_in}")
        parts.append(f"utterances={len(self.script.utterances)}")
        parts += [f.describe() for f in self.upstream_faults]
        parts += [f"lost{start}+{length}ms" for start, length in self.lost_inbound_ms]
        if self.jitter_ms:
            parts.append(f"jitter={self.jitter_ms:.0f}ms")
        if self.abort_at_s is not None:
            parts.append(f"twilio_abort@{self.abort_at_s:.2f}s")
        parts += [f"note@{t:.2f}s" for t in self.notes_at_s]
        return " ".join(parts)


def _trigger(rng: random.Random, index: int) -> Trigger:
    if index == 0:
        return At(ms=rng.randint(2500, 6000))
    if rng.random() < 0.4:
        # Over the AI's reply: a barge-in.
        return AfterAiStarts(turn=index + 1, delay_ms=rng.randint(150, 1500))
    return AfterReply(delay_ms=rng.randint(200, 1500))


def _upstream_fault(rng: random.Random, at_s: float) -> UpstreamFault:
    kind: UpstreamFaultKind = rng.choices(
        ("close", "stall", "garbage", "error_close", "refuse"), weights=(4, 2, 1, 1, 2)
    )[0]
    match kind:
        case "close":
            code = rng.choice((1011, 1011, 1001, 1000, 4000))
            return UpstreamFault(kind, at_s, close_code=code)
        case "stall":
            return UpstreamFault(kind, at_s, stall_s=rng.choice((None, 0.8, 3.0)))
        case "garbage":
            return UpstreamFault(
                kind, at_s, count=rng.choice((1, 5, 40)), then_close=rng.random() < 0.5
            )
        case "error_close":
            return UpstreamFault(kind, at_s)
        case "refuse":
            # Mostly a few retryable refusals; now and then more than the budget, or a 401.
            count = rng.choice((1, 2, 2, 3, 5))
            status = 401 if rng.random() < 0.1 else rng.choice((500, 502, 503))
            return UpstreamFault(kind, at_s, count=count, status=status)


def schedule_for(seed: int) -> Schedule:
    """The schedule of ``seed`` (the same on every machine and Python run)."""
    rng = random.Random(seed)
    utterances = tuple(
        Utterance(rng.randint(500, 2500), seed=rng.randint(0, 10_000), trigger=_trigger(rng, i))
        for i in range(rng.randint(1, 3))
    )
    script = CallerScript(utterances=utterances, hangup=AfterReply(delay_ms=rng.randint(300, 2000)))
    max_duration_s = rng.uniform(10.0, 18.0)
    faults = sorted(
        (_upstream_fault(rng, rng.uniform(0.3, 10.0)) for _ in range(rng.choice((0, 1, 1, 2, 3)))),
        key=lambda f: f.at_s,
    )
    # A refusal takes effect at the next handshake; when it comes first, a close follows it.
    if faults and faults[-1].kind == "refuse":
        faults.append(UpstreamFault("close", faults[-1].at_s + rng.uniform(0.0, 2.0)))
    lost: tuple[tuple[int, int], ...] = ()
    if rng.random() < 0.25:
        length = rng.choice((60, 200, 1000, 2500, 12_000))
        lost = ((rng.randint(500, 9000) // 20 * 20, length),)
    return Schedule(
        seed=seed,
        script=script,
        max_duration_s=max_duration_s,
        generation_speed=rng.choice((0.7, 1.0, 4.0, 4.0)),
        handshake_delay_ms=rng.choice((0.0, 0.0, 200.0, 800.0)),
        fast_barge_in=rng.choice(("off", "duck")),
        upstream_faults=tuple(faults),
        lost_inbound_ms=lost,
        jitter_ms=rng.choice((0.0, 0.0, 20.0, 60.0)),
        abort_at_s=rng.uniform(1.0, 12.0) if rng.random() < 0.1 else None,
        notes_at_s=tuple(sorted(rng.uniform(0.5, 10.0) for _ in range(rng.choice((0, 0, 1, 2))))),
    )
