"""Barge-in scenarios: who calls, when each caller cuts in, and the simulated model.

Utterance ``k`` of a call (700 ms of synthetic speech) starts ``d_k`` ms after AI turn ``k``
starts playing at the caller (turn 1 is the greeting), so it cuts into turn ``k``; the cut-in
offsets ``d_k`` are spread evenly over 200..3000 ms and shuffled. The reply to the last
utterance plays to its end; the caller hangs up 500 ms later.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Final, Literal

from bench.common.scenario import bench_sim_options, sim_config
from bridge.sim.script import AfterAiStarts, AfterReply, CallerScript, Utterance

FastMode = Literal["off", "duck"]

# Long replies to cut into, generated 4x faster than real time.
SIM_OPTIONS: Final = bench_sim_options(
    reply_ms=4000,
    generation_speed=4.0,
    delta_ms=100,
    late_deltas_after_cancel=2,
    first_delta_delay_ms=250.0,
)

UTTERANCE_MS: Final = 700
OFFSET_MIN_MS: Final = 200
OFFSET_MAX_MS: Final = 3000
BARGE_INS_PER_SINGLE_CALL: Final = 10
CONCURRENT_START_SPREAD_S: Final = 1.5
HANGUP_AFTER_REPLY_MS: Final = 500


def bridge_settings(fast_barge_in: FastMode) -> dict[str, str]:
    """The ``BRIDGE_*`` variables a barge-in scenario sets."""
    return {"BRIDGE_FAST_BARGE_IN": fast_barge_in}


def sim_and_caller_config() -> dict[str, Any]:
    """The simulated model and callers, for the JSON report's ``config``."""
    return {
        "sim": sim_config(SIM_OPTIONS),
        "caller": {
            "utterance_ms": UTTERANCE_MS,
            "cut_in_offsets_ms": [OFFSET_MIN_MS, OFFSET_MAX_MS],
            "hangup_after_reply_ms": HANGUP_AFTER_REPLY_MS,
        },
    }


@dataclass(frozen=True, slots=True)
class CallPlan:
    call_sid: str
    offsets_ms: tuple[int, ...]
    """Cut-in offset into AI turn ``k`` for utterance ``k`` (1-based turns)."""
    start_after_s: float = 0.0

    def script(self, seed_base: int) -> CallerScript:
        return CallerScript(
            utterances=tuple(
                Utterance(
                    duration_ms=UTTERANCE_MS,
                    seed=seed_base + k,
                    trigger=AfterAiStarts(turn=k, delay_ms=d),
                )
                for k, d in enumerate(self.offsets_ms, start=1)
            ),
            hangup=AfterReply(delay_ms=HANGUP_AFTER_REPLY_MS),
        )

    @property
    def max_duration_s(self) -> float:
        return 20.0 + 6.0 * len(self.offsets_ms)


def spread_offsets(n: int, seed: int) -> list[int]:
    """``n`` cut-in offsets evenly spread over [200, 3000] ms, in a shuffled order."""
    if n <= 0:
        return []
    if n == 1:
        values = [(OFFSET_MIN_MS + OFFSET_MAX_MS) // 2]
    else:
        step = (OFFSET_MAX_MS - OFFSET_MIN_MS) / (n - 1)
        values = [round(OFFSET_MIN_MS + i * step) for i in range(n)]
    random.Random(seed).shuffle(values)
    return values


def single_plans(
    barge_ins: int, seed: int, per_call: int = BARGE_INS_PER_SINGLE_CALL
) -> list[CallPlan]:
    """Calls of up to ``per_call`` barge-ins each, ``barge_ins`` in all (run one at a time)."""
    offsets = spread_offsets(barge_ins, seed)
    return [
        CallPlan(f"CAbenchsingle{i // per_call:04d}", tuple(offsets[i : i + per_call]))
        for i in range(0, len(offsets), per_call)
    ]


def concurrent_plans(calls: int, seed: int) -> list[CallPlan]:
    """``calls`` calls of 1, 2, 3, 1, ... barge-ins, started within 1.5 s."""
    counts = [1 + i % 3 for i in range(calls)]
    offsets = spread_offsets(sum(counts), seed)
    plans: list[CallPlan] = []
    at = 0
    for i, count in enumerate(counts):
        plans.append(
            CallPlan(
                f"CAbenchconc{i:04d}",
                tuple(offsets[at : at + count]),
                start_after_s=CONCURRENT_START_SPREAD_S * i / max(1, calls),
            )
        )
        at += count
    return plans
