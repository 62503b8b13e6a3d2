"""Conversation-turn scenarios: callers that take turns with the model, never cutting in.

The simulated model answers like the one issue 9 was measured with: its server VAD ends a
turn after the session's ``silence_duration_ms`` of quiet input audio (the bridge sets it in
``session.update``), the first audio delta follows at once (``first_delta_delay_ms`` 0), and
100 ms deltas stream at real time (``generation_speed`` 1.0). That answer delay is fixed,
so the turn latency subtracts it.

Each call: the greeting plays; 400 ms after each AI turn has finished playing (the caller
knows it 300 ms after the audio drained) the caller speaks one utterance, 900, 1300 or
1700 ms in turn; the model answers with 1500 ms of audio; after the last reply the
caller hangs up 500 ms later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from bench.common.scenario import bench_sim_options, sim_config
from bridge.sim.script import AfterReply, CallerScript, Utterance

GateMode = Literal["on", "off"]

SIM_OPTIONS: Final = bench_sim_options(
    reply_ms=1500, generation_speed=1.0, delta_ms=100, first_delta_delay_ms=0.0
)

UTTERANCE_MS: Final = (900, 1300, 1700)
PAUSE_AFTER_REPLY_MS: Final = 400
HANGUP_AFTER_REPLY_MS: Final = 500
TURNS_PER_SINGLE_CALL: Final = 10
CONCURRENT_START_SPREAD_S: Final = 4.0
"""About one turn's length: concurrent calls start spread over it, so their turns do not
line up and the load is even."""


def bridge_settings(gate: GateMode) -> dict[str, str]:
    """The ``BRIDGE_*`` variables a turn scenario sets; everything else is the default."""
    return {"BRIDGE_AUDIO_GATE": gate}


def sim_and_caller_config() -> dict[str, Any]:
    """The simulated model and callers, for the JSON report's ``config``."""
    return {
        "sim": {
            **sim_config(SIM_OPTIONS),
            "answers_after": "turn_detection.silence_duration_ms of quiet input audio "
            "(the session's, as the bridge set it)",
        },
        "caller": {
            "utterance_ms": list(UTTERANCE_MS),
            "pause_after_reply_ms": PAUSE_AFTER_REPLY_MS,
            "hangup_after_reply_ms": HANGUP_AFTER_REPLY_MS,
        },
    }


@dataclass(frozen=True, slots=True)
class TurnPlan:
    call_sid: str
    turns: int
    """Caller utterances, each answered by the model."""
    start_after_s: float = 0.0

    def script(self, seed_base: int) -> CallerScript:
        return CallerScript(
            utterances=tuple(
                Utterance(
                    duration_ms=UTTERANCE_MS[(seed_base + k) % len(UTTERANCE_MS)],
                    seed=seed_base + k,
                    trigger=AfterReply(delay_ms=PAUSE_AFTER_REPLY_MS),
                )
                for k in range(1, self.turns + 1)
            ),
            hangup=AfterReply(delay_ms=HANGUP_AFTER_REPLY_MS),
        )

    @property
    def max_duration_s(self) -> float:
        return 10.0 + 6.0 * self.turns


def single_plans(turns: int, per_call: int = TURNS_PER_SINGLE_CALL) -> list[TurnPlan]:
    """Calls of up to ``per_call`` turns, ``turns`` in all (run one at a time)."""
    return [
        TurnPlan(f"CAturnsingle{i // per_call:04d}", min(per_call, turns - i))
        for i in range(0, turns, per_call)
    ]


def concurrent_plans(calls: int, turns_per_call: int) -> list[TurnPlan]:
    """``calls`` calls of ``turns_per_call`` turns, started evenly over 4 s."""
    return [
        TurnPlan(
            f"CAturnconc{i:04d}",
            turns_per_call,
            start_after_s=CONCURRENT_START_SPREAD_S * i / calls,
        )
        for i in range(calls)
    ]
