"""Smoke tests of the barge-in benchmark harness (``bench/bargein/``, ``bench/cutoff.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bargein.analysis import analyse
from bench.bargein.cli import run_bargein_scenario
from bench.bargein.plan import (
    OFFSET_MAX_MS,
    OFFSET_MIN_MS,
    CallPlan,
    concurrent_plans,
    single_plans,
    spread_offsets,
)
from bench.common.cpu import cpu_seconds, machine_busy_seconds
from bench.common.stats import percentile
from bench.common.wire import WirePlayback
from bench.cutoff import run_cutoff


def test_offsets_are_spread_over_the_reply_and_deterministic() -> None:
    offsets = spread_offsets(50, seed=1)
    assert len(offsets) == 50
    assert min(offsets) == OFFSET_MIN_MS
    assert max(offsets) == OFFSET_MAX_MS
    assert offsets == spread_offsets(50, seed=1)
    assert offsets != sorted(offsets)


def test_plans_split_barge_ins_into_calls() -> None:
    single = single_plans(25, seed=1)
    assert [len(p.offsets_ms) for p in single] == [10, 10, 5]
    assert all(p.start_after_s == 0.0 for p in single)
    concurrent = concurrent_plans(6, seed=1)
    assert [len(p.offsets_ms) for p in concurrent] == [1, 2, 3, 1, 2, 3]
    assert max(p.start_after_s for p in concurrent) < 1.5
    assert len({p.call_sid for p in concurrent}) == 6
    script = concurrent[2].script(seed_base=0)
    assert len(script.utterances) == 3


def test_wire_playback_attributes_media_to_the_following_mark() -> None:
    playback = WirePlayback()
    playback.push_media(b"\xff" * 160, 0.0)
    playback.push_mark("g0:m0:item_a", 0.001)
    playback.push_media(b"\xff" * 160, 0.002)
    playback.clear(0.010)
    playback.push_media(b"\xff" * 80, 0.011)
    playback.push_mark("g1:m1:item_b", 0.012)
    playback.push_media(b"\xff" * 40, 0.013)
    assert playback.attributed_media() == [
        (0.0, 160, "item_a"),
        (0.002, 160, "item_b"),
        (0.011, 80, "item_b"),
        (0.013, 40, None),
    ]
    assert [e.kind for e in playback.wire].count("clear") == 1


def test_cpu_counters_and_percentiles() -> None:
    assert cpu_seconds("self") > 0.0
    assert machine_busy_seconds() > 0.0
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0


async def test_one_barge_in_end_to_end(tmp_path: Path) -> None:
    """The bridge as a child process, one call with one cut-in 300 ms into the greeting."""
    data = await run_bargein_scenario(
        "smoke",
        [CallPlan("CAbenchsmoke0001", (300,))],
        sequential=True,
        fast_barge_in="off",
        out_dir=tmp_path,
    )
    assert data.log_path.exists()
    assert data.runs[0].report is not None
    result = analyse(data)
    metrics = result["metrics"]
    assert result["barge_ins_measured"] == 1, result["problems"]
    assert metrics["reaction_ms"]["n"] == 1
    assert metrics["late_audio_bytes"]["total"] == 0
    assert metrics["next_reply"]["ok"] == 1, result["problems"]
    assert metrics["truncate_error_ms"]["n"] == 1
    assert result["cpu"]["bridge"]["cpu_s"] > 0.0


async def test_cutoff_rejects_unknown_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fast_barge_in"):
        await run_cutoff("fast", 1, out_dir=tmp_path)
