"""Barge-in metrics from one scenario's observations.

Per barge-in (``k``-th utterance of a call; ``t_ss`` = when the sim wrote
``speech_started``; ``R`` = the responses created before the caller started utterance ``k``):

* ``reaction_ms``: the bridge's ``BARGE_IN clear_ms`` (``speech_started`` received → ``clear``
  written; for a local fast barge-in, local onset → ``clear``);
* ``heard_after_ms``: audio of ``R`` the caller played in ``[t_ss, clear received)``;
* ``late_audio_bytes``: media of ``R``'s items that reached the caller after that ``clear``
  (items attributed through the mark after each frame, ``g<gen>:m<seq>:<item_id>``);
* ``truncate_error_ms``: ``audio_end_ms`` of each ``conversation.item.truncate`` the sim
  received minus the ms of that item the caller heard;
* ``next_reply``: the first response created after ``t_ss`` was heard in full (last reply of
  a call), or without a gap from its start up to the next cut-in;
* ``pacing_gaps``: underruns inside one item at the caller (count, ms);
* CPU seconds of each process during the scenario, from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bench.bargein.plan import CallPlan
from bench.common.bridge_log import LogLine, lines_by_call, records
from bench.common.calls import CallRun
from bench.common.cpu import cpu_per_call
from bench.common.scenario import (
    ScenarioData,
    bench_loop_lag,
    call_seconds,
    measurement_validity,
    sessions_by_call,
)
from bench.common.stats import count, percentile, rounded, stats
from bridge.core.records import BargeInReport, BargeInResumed
from bridge.sim.report import CallerReport, EventKind
from bridge.sim.upstream import SimSession

TARGETS: Final[dict[str, dict[str, float]]] = {
    "single": {"reaction_p95_ms": 2.0},
    "concurrent": {"reaction_p95_ms": 10.0},
}
HEARD_AFTER_P95_MS: Final = 20.0
TRUNCATE_ERROR_MAX_MS: Final = 40.0
SLOW_DETECT_MS: Final = 1000.0
"""A ``speech_started`` later than this after the caller began is flagged (normal: ~180 ms,
the sim's 150 ms VAD onset plus a frame and the path)."""
REPLY_TOLERANCE_MS: Final = 2.0
"""Slack when comparing heard and expected ms (float sums, mark attribution)."""


@dataclass(slots=True)
class BargeInSample:
    call_sid: str
    k: int
    planned_offset_ms: int
    offset_ms: float | None = None
    """Caller starts speaking − AI turn ``k`` starts playing at the caller (ms)."""
    speech_started_offset_ms: float | None = None
    """``speech_started`` written by the sim − AI turn ``k`` start (ms)."""
    trigger: str | None = None
    reaction_ms: float | None = None
    upstream_ms: float | None = None
    detect_ms: float | None = None
    """Caller starts speaking → the sim writes ``speech_started`` (server VAD onset time plus
    the caller → bridge → sim audio path)."""
    heard_after_ms: float | None = None
    upstream_leg_ms: float | None = None
    """Sim writes ``speech_started`` → the bridge's reader has it (wall/monotonic mapped)."""
    twilio_leg_ms: float | None = None
    """Bridge has written the ``clear`` → the caller handles it (wall/monotonic mapped)."""
    clear_delay_ms: float | None = None
    """``speech_started`` written by the sim → ``clear`` handled by the caller (ms; negative
    when a local fast barge-in cleared first): the whole path, transport and both loops."""
    late_audio_bytes: int = 0
    truncations: list[tuple[str, int, float]] = field(default_factory=list)
    """(item_id, audio_end_ms sent, heard ms at the caller)."""
    deleted_heard_ms: list[float] = field(default_factory=list)
    next_reply_ok: bool | None = None
    next_reply_detail: str = ""
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "call_sid": self.call_sid,
            "k": self.k,
            "planned_offset_ms": self.planned_offset_ms,
            "offset_ms": rounded(self.offset_ms, 1),
            "speech_started_offset_ms": rounded(self.speech_started_offset_ms, 1),
            "trigger": self.trigger,
            "reaction_ms": rounded(self.reaction_ms),
            "upstream_ms": rounded(self.upstream_ms),
            "detect_ms": rounded(self.detect_ms, 1),
            "heard_after_ms": rounded(self.heard_after_ms, 2),
            "clear_delay_ms": rounded(self.clear_delay_ms, 2),
            "upstream_leg_ms": rounded(self.upstream_leg_ms, 2),
            "twilio_leg_ms": rounded(self.twilio_leg_ms, 2),
            "late_audio_bytes": self.late_audio_bytes,
            "truncations": [[i, e, round(h, 2)] for i, e, h in self.truncations],
            "deleted_heard_ms": [round(h, 2) for h in self.deleted_heard_ms],
            "next_reply_ok": self.next_reply_ok,
            "next_reply_detail": self.next_reply_detail,
            "problems": self.problems,
        }


def _origin(run: CallRun[CallPlan], report: CallerReport) -> float | None:
    """Caller clock (s) of the report's time zero, from the first AI turn."""
    turns = run.playback.turns
    if not turns or not report.ai_turns:
        return None
    return turns[0].start - report.ai_turns[0].start_ms / 1000.0


def analyse_call(
    run: CallRun[CallPlan],
    session: SimSession | None,
    log: Sequence[LogLine],
    wall_minus_mono: float = 0.0,
) -> tuple[list[BargeInSample], dict[str, Any]]:
    """Barge-in samples of one call and its per-call facts (``log``: the call's lines)."""
    plan = run.plan
    samples = [BargeInSample(plan.call_sid, k, d) for k, d in enumerate(plan.offsets_ms, start=1)]
    facts: dict[str, Any] = {"call_sid": plan.call_sid, "error": run.error}
    report = run.report
    if report is None or session is None:
        for sample in samples:
            sample.problems.append("call failed" if report is None else "no sim session matched")
            sample.next_reply_ok = False
        return samples, facts
    playback = run.playback
    facts.update(
        underrun_gaps=report.underrun_gaps,
        underrun_ms=round(report.underrun_ms, 2),
        late_frames=report.late_frames,
        media_sent=report.media_sent,
        violations=report.violation_count,
        clears=report.clears,
        ai_turns=len(report.ai_turns),
    )
    origin = _origin(run, report)
    speech_starts = (
        [origin + e.t_ms / 1000.0 for e in report.timeline if e.kind is EventKind.SPEECH_START]
        if origin is not None
        else []
    )
    responses = sorted(session.responses.values(), key=lambda r: r.created_at)
    ss_times = [t for t, _ in session.speech_started]
    clears = [c.at for c in playback.clears]
    media = playback.attributed_media()
    barge_ins = records(log, BargeInReport)
    hard = [(line, b) for line, b in barge_ins if b.trigger in ("server", "confirmed")]
    local = [(line, b) for line, b in barge_ins if b.trigger == "local"]
    facts["barge_in_records"] = len(hard)
    facts["local_barge_in_records"] = len(local)
    facts["false_alarms_resumed"] = len(records(log, BargeInResumed))
    facts["speech_started"] = len(ss_times)
    turns = playback.turns
    deleted = {item.id for item in session.conversation if item.deleted}
    truncated_by_item: dict[str, int] = {}
    for tr in session.truncations:
        truncated_by_item.setdefault(tr.item_id, tr.audio_end_ms)
    underruns = report.underruns_by_item

    def items_of(rs: Iterable[Any]) -> set[str]:
        return {i for r in rs for i in r.items}

    t_ss_list: list[float | None] = []
    # When the caller's audio was stopped for barge-in k: the earlier of speech_started and
    # the clear (a local fast barge-in clears before the server's speech_started).
    stop_list: list[float | None] = []
    for k, sample in enumerate(samples, start=1):
        if len(speech_starts) < k:
            sample.problems.append("utterance never spoken")
            t_ss_list.append(None)
            stop_list.append(None)
            continue
        s_k = speech_starts[k - 1]
        s_next = speech_starts[k] if len(speech_starts) > k else math.inf
        in_window = [t for t in ss_times if s_k <= t < s_next]
        if len(in_window) > 1:
            sample.problems.append(f"{len(in_window)} speech_started for one utterance")
        t_ss = in_window[0] if in_window else None
        t_ss_list.append(t_ss)
        clear_at = next((c for c in clears if s_k <= c < s_next), None)
        stops = [t for t in (t_ss, clear_at) if t is not None]
        stop_list.append(min(stops) if stops else None)
        if len(turns) >= k:
            sample.offset_ms = (s_k - turns[k - 1].start) * 1000.0
            if t_ss is not None:
                sample.speech_started_offset_ms = (t_ss - turns[k - 1].start) * 1000.0
        if t_ss is None:
            sample.problems.append("no speech_started")
            continue
        sample.detect_ms = (t_ss - s_k) * 1000.0
        if sample.detect_ms > SLOW_DETECT_MS:
            sample.problems.append(
                f"speech_started {sample.detect_ms:.0f} ms after the caller began "
                "(caller audio reached the sim late)"
            )
        # The responses being interrupted: every one created before the caller spoke (the
        # turn playing then, and earlier ones). Anchored on the caller's speech, not on
        # speech_started, so a late speech_started cannot pull in later replies.
        before = [r for r in responses if r.created_at < s_k]
        interrupted_items = items_of(before)
        if clear_at is None:
            sample.problems.append("no clear at the caller")
        end = math.inf if clear_at is None else clear_at
        sample.heard_after_ms = (
            0.0 if end <= t_ss else playback.played_between(t_ss, end, interrupted_items)
        )
        if clear_at is not None:
            sample.clear_delay_ms = (clear_at - t_ss) * 1000.0
            sample.late_audio_bytes = sum(
                n for t, n, item in media if t > clear_at and item in interrupted_items
            )
        # The bridge's record of this barge-in: the hard one that cancelled the response.
        last = before[-1] if before else None
        found = next(
            (
                (line, b)
                for line, b in hard
                if last is not None
                and (
                    last.id in b.cancelled
                    or any(t.item_id in last.items for t in b.truncations)
                    or any(i in last.items for i in b.deleted)
                )
            ),
            None,
        )
        if found is None:
            sample.problems.append("no BARGE_IN record for the interrupted response")
        else:
            line, barge_in = found
            sample.trigger = barge_in.trigger
            sample.upstream_ms = barge_in.upstream_ms
            clear_ms = barge_in.clear_ms
            if clear_ms is None and sample.trigger == "confirmed":
                prior = [
                    b
                    for earlier, b in local
                    if earlier.wall_s <= line.wall_s and b.clear_ms is not None
                ]
                if prior:
                    clear_ms = prior[-1].clear_ms
                    sample.trigger = "local+confirmed"
            sample.reaction_ms = clear_ms
            upstream_ms = barge_in.upstream_ms
            if sample.trigger == "server" and upstream_ms is not None:
                # The record is written right after the upstream sends (upstream_ms after
                # detection); detection is when the bridge's reader got speech_started.
                detected = line.wall_s - wall_minus_mono - upstream_ms / 1000.0
                sample.upstream_leg_ms = (detected - t_ss) * 1000.0
                if clear_at is not None and clear_ms is not None:
                    written = detected + clear_ms / 1000.0
                    sample.twilio_leg_ms = (clear_at - written) * 1000.0
        if last is not None:
            for item_id in last.items:
                heard = playback.heard_ms(item_id)
                if item_id in truncated_by_item:
                    sample.truncations.append((item_id, truncated_by_item[item_id], heard))
                elif item_id in deleted:
                    sample.deleted_heard_ms.append(heard)

    # The reply after each barge-in.
    for k, sample in enumerate(samples, start=1):
        t_ss = t_ss_list[k - 1]
        if t_ss is None:
            sample.next_reply_ok = False
            sample.next_reply_detail = "no speech_started"
            continue
        reply = next((r for r in responses if r.created_at > t_ss), None)
        if reply is None:
            sample.next_reply_ok = False
            sample.next_reply_detail = "no response after the barge-in"
            continue
        items = set(reply.items)
        generated = float(sum(reply.audio_ms.values()))
        heard = sum(playback.heard_ms(i) for i in items)
        gaps = sum(underruns.get(i, (0, 0.0))[0] for i in items)
        starts = [s.start for s in playback.segments() if s.item_id in items]
        if not starts or generated <= 0:
            sample.next_reply_ok = False
            sample.next_reply_detail = f"reply {reply.id} ({reply.status}) never played"
            continue
        reply_start = min(starts)
        next_cut = stop_list[k] if k < len(samples) else None
        if k == len(samples) or next_cut is None:
            ok = heard >= generated - REPLY_TOLERANCE_MS and gaps == 0
            sample.next_reply_detail = f"heard {heard:.1f}/{generated:.0f} ms, gaps {gaps}"
        else:
            expected = min(generated, (next_cut - reply_start) * 1000.0)
            got = playback.played_between(reply_start, next_cut, items)
            ok = got >= expected - REPLY_TOLERANCE_MS and gaps == 0
            sample.next_reply_detail = (
                f"heard {got:.1f}/{expected:.1f} ms up to the next cut-in, gaps {gaps}"
            )
        sample.next_reply_ok = ok
    return samples, facts


def _metrics(
    name: str, samples: Sequence[BargeInSample], calls: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    reaction = [s.reaction_ms for s in samples if s.reaction_ms is not None]
    heard_after = [s.heard_after_ms for s in samples if s.heard_after_ms is not None]
    # Late audio is only measurable for a barge-in whose clear reached the caller.
    late = [s.late_audio_bytes for s in samples if s.clear_delay_ms is not None]
    trunc_err = [e - h for s in samples for _, e, h in s.truncations]
    deleted_heard = [h for s in samples for h in s.deleted_heard_ms]
    replies = [s.next_reply_ok for s in samples]
    gaps = sum(int(c.get("underrun_gaps", 0)) for c in calls)
    gap_ms = sum(float(c.get("underrun_ms", 0.0)) for c in calls)
    reaction_target = TARGETS.get(name, TARGETS["concurrent"])["reaction_p95_ms"]
    reaction_stats = stats(reaction)
    heard_stats = stats(heard_after)
    trunc_stats = stats([abs(e) for e in trunc_err])
    return {
        "reaction_ms": {
            **reaction_stats,
            "target": f"p95 < {reaction_target:g} ms",
            "pass": bool(reaction)
            and (reaction_stats["p95"] or 0.0) < reaction_target
            and len(reaction) == len(samples),
            "by_trigger": count(s.trigger or "none" for s in samples),
        },
        "heard_after_ms": {
            **heard_stats,
            "target": f"p95 <= {HEARD_AFTER_P95_MS:g} ms",
            "pass": bool(heard_after)
            and (heard_stats["p95"] or 0.0) <= HEARD_AFTER_P95_MS
            and len(heard_after) == len(samples),
        },
        "late_audio_bytes": {
            **stats([float(v) for v in late]),
            "total": sum(late),
            "barge_ins_with_late_audio": sum(1 for v in late if v),
            "barge_ins_without_clear": len(samples) - len(late),
            "target": "exactly 0",
            "pass": sum(late) == 0 and len(late) == len(samples),
        },
        "truncate_error_ms": {
            **trunc_stats,
            "signed_p50": rounded(percentile(trunc_err, 50)),
            "signed_min": rounded(min(trunc_err)) if trunc_err else None,
            "signed_max": rounded(max(trunc_err)) if trunc_err else None,
            "deleted_items": len(deleted_heard),
            "deleted_items_heard_max_ms": rounded(max(deleted_heard)) if deleted_heard else None,
            "target": f"|error| <= {TRUNCATE_ERROR_MAX_MS:g} ms",
            "pass": (trunc_stats["max"] or 0.0) <= TRUNCATE_ERROR_MAX_MS
            and all(h <= TRUNCATE_ERROR_MAX_MS for h in deleted_heard),
        },
        "next_reply": {
            "n": len(replies),
            "ok": sum(1 for r in replies if r),
            "target": "heard in full every time",
            "pass": bool(replies) and all(replies),
        },
        "pacing_gaps": {
            "count": gaps,
            "ms": round(gap_ms, 2),
            "target": "0",
            "pass": gaps == 0,
        },
    }


def analyse(data: ScenarioData[CallPlan]) -> dict[str, Any]:
    """Samples and summary of one barge-in scenario."""
    sessions = sessions_by_call(data)
    by_call = lines_by_call(data.log)
    samples: list[BargeInSample] = []
    calls: list[dict[str, Any]] = []
    for run in data.runs:
        sid = run.plan.call_sid
        call_samples, facts = analyse_call(
            run, sessions[sid], by_call.get(sid, []), data.wall_minus_monotonic_s
        )
        samples += call_samples
        calls.append(facts)
    metrics = _metrics(data.name, samples, calls)
    offsets = [s.offset_ms for s in samples if s.offset_ms is not None]
    clear_delay = [s.clear_delay_ms for s in samples if s.clear_delay_ms is not None]
    diagnostics = {
        "clear_delay_ms": stats(clear_delay),
        "detect_ms": stats([s.detect_ms for s in samples if s.detect_ms is not None]),
        "upstream_leg_ms": stats(
            [s.upstream_leg_ms for s in samples if s.upstream_leg_ms is not None]
        ),
        "twilio_leg_ms": stats([s.twilio_leg_ms for s in samples if s.twilio_leg_ms is not None]),
        "bench_loop_lag_ms": bench_loop_lag(data),
    }
    problems = [f"{s.call_sid} #{s.k}: {p}" for s in samples for p in s.problems] + [
        f"{s.call_sid} #{s.k}: next reply: {s.next_reply_detail}"
        for s in samples
        if s.next_reply_ok is False
    ]
    return {
        "calls": len(data.runs),
        "calls_failed": sum(1 for r in data.runs if r.report is None),
        "calls_ended_in_bridge": data.calls_ended_in_bridge,
        "barge_ins_planned": sum(len(r.plan.offsets_ms) for r in data.runs),
        "barge_ins_measured": metrics["reaction_ms"]["n"],
        "fast_barge_in": data.settings.get("BRIDGE_FAST_BARGE_IN"),
        "cut_in_offset_ms": {
            "min": rounded(min(offsets), 1) if offsets else None,
            "p50": rounded(percentile(offsets, 50), 1),
            "max": rounded(max(offsets), 1) if offsets else None,
        },
        "metrics": metrics,
        "pass": all(bool(m["pass"]) for m in metrics.values()),
        "cpu": data.cpu,
        "load": cpu_per_call(data.cpu, call_seconds(data)),
        "diagnostics": diagnostics,
        "measurement": measurement_validity(data),
        "caller_late_frames": sum(int(c.get("late_frames", 0)) for c in calls),
        "protocol_violations": sum(int(c.get("violations", 0)) for c in calls),
        "false_alarms_resumed": sum(int(c.get("false_alarms_resumed", 0)) for c in calls),
        "extra_speech_started": sum(
            max(0, int(c.get("speech_started", 0)) - len(r.plan.offsets_ms))
            for c, r in zip(calls, data.runs, strict=True)
        ),
        "bridge_log": str(data.log_path),
        "problems": problems[:50],
        "problem_count": len(problems),
        "calls_detail": calls,
        "samples": [s.as_json() for s in samples],
    }
