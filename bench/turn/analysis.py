"""Turn-path metrics from one scenario's observations (times in ms unless named ``_s``).

For each caller turn (``L`` = where its speech ends on the caller's clock, see
:func:`bench.turn.inbound.speech_ends_ms`; the *last speech frame* is the frame holding
``L``, sent at ``t_last``):

* ``turn_latency_ms``: the first media frame of the reply (the first response created after
  ``t_last``) reaching the caller − ``t_last`` − the model's fixed answer delay
  (``silence_duration_ms`` of the session + ``first_delta_delay_ms``). A bridge that adds
  nothing scores the transport alone, a few ms;
* ``turn_window_inbound_ms``: per caller frame whose audio starts within 600 ms after the
  last speech frame (30 frames): the sim reading the append that holds the frame's last byte
  − the caller writing the frame;

per response:

* ``first_reply_audio_ms``: the first media frame of the response reaching the caller − the
  sim writing the response's first audio delta;

per call:

* ``unforwarded_at_stop_ms``: caller audio sent before ``stop`` that never reached the sim:
  the end of the last frame sent − the end of the last audio appended, on the caller's clock.

Diagnostics: ``turn_end_detected_ms`` (the sim writing ``speech_stopped`` − ``t_last`` −
``silence_duration_ms``: the inbound share of the turn latency) and
``dropped_before_session_ms`` (caller audio before the first appended byte, the offset
between the two clocks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

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
from bench.common.stats import rounded, stats
from bench.common.wire import SentFrame
from bench.turn.inbound import (
    ULAW,
    appends_from,
    arrival_times,
    caller_clock_offset,
    frame_holding,
    speech_ends_ms,
    unforwarded_tail_ms,
)
from bench.turn.plan import TurnPlan
from bridge.core.records import BargeInReport
from bridge.sim.upstream import SimSession, SimUpstreamOptions
from bridge.sim.upstream_conversation import ResponseRecord

TURN_WINDOW_MS: Final = 600.0
TURN_WINDOW_INBOUND_P95_MS: Final = 5.0
FIRST_REPLY_AUDIO_P95_MS: Final = {"single": 1.0, "concurrent": 3.0}
GATE_COST_P95_MS: Final = 5.0
"""Turn latency p95 with the gate on may exceed the same run's with the gate off by this."""


@dataclass(slots=True)
class TurnSample:
    call_sid: str
    k: int
    speech_end_ms: float
    """``L`` on the caller's clock (ms since the stream started)."""
    turn_latency_ms: float | None = None
    turn_end_detected_ms: float | None = None
    window_inbound_ms: list[float] = field(default_factory=list)
    reply_id: str | None = None
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        window = stats(self.window_inbound_ms)
        return {
            "call_sid": self.call_sid,
            "k": self.k,
            "speech_end_ms": round(self.speech_end_ms, 1),
            "turn_latency_ms": rounded(self.turn_latency_ms, 2),
            "turn_end_detected_ms": rounded(self.turn_end_detected_ms, 2),
            "window_inbound_ms": {k: window[k] for k in ("n", "p50", "max")},
            "reply_id": self.reply_id,
            "problems": self.problems,
        }


@dataclass(slots=True)
class CallFigures:
    """Everything measured on one call."""

    turns: list[TurnSample] = field(default_factory=list)
    first_reply_audio_ms: list[float] = field(default_factory=list)
    unforwarded_at_stop_ms: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _first_delta_at(session: SimSession) -> dict[str, float]:
    """Response id -> when the sim wrote its first audio delta (s)."""
    first: dict[str, float] = {}
    for t, event in session.sent:
        if event.get("type") == "response.output_audio.delta":
            first.setdefault(str(event.get("response_id")), t)
    return first


def _first_media_of(items: Sequence[str], media: Sequence[tuple[float, int, str | None]]) -> float:
    """When the first media message of any of ``items`` reached the caller (s; inf: never)."""
    wanted = set(items)
    return min((t for t, _, item in media if item in wanted), default=math.inf)


@dataclass(frozen=True, slots=True)
class _Observed:
    """One call's observations, as the turn figures read them."""

    frames: Sequence[SentFrame]
    arrivals: Sequence[float | None] | None
    """Per frame, when its audio reached the sim (s); ``None``: not placed on the input clock."""
    responses: Sequence[ResponseRecord]
    """In the order they were created."""
    media: Sequence[tuple[float, int, str | None]]
    """:meth:`bench.common.wire.WirePlayback.attributed_media`."""
    turn_ends_written: Sequence[float]
    """When the sim wrote each ``speech_stopped`` (s)."""
    silence_ms: int
    answer_delay_ms: float


def _measure_turn(seen: _Observed, sample: TurnSample) -> None:
    """Fill in one turn's figures (see the module docstring)."""
    frames = seen.frames
    last = frame_holding(frames, sample.speech_end_ms)
    if last is None:
        sample.problems.append("no frame holds the end of speech")
        return
    sent_at = frames[last].t
    if seen.arrivals is not None:
        window_end_ms = frames[last].end_ms + TURN_WINDOW_MS
        for frame, arrived in zip(frames[last + 1 :], seen.arrivals[last + 1 :], strict=True):
            if frame.timestamp_ms >= window_end_ms:
                break
            if arrived is None:
                sample.problems.append(f"frame at {frame.timestamp_ms} ms never appended")
            else:
                sample.window_inbound_ms.append((arrived - frame.t) * 1000.0)
    written = next((t for t in seen.turn_ends_written if t > sent_at), None)
    if written is not None:
        sample.turn_end_detected_ms = (written - sent_at) * 1000.0 - seen.silence_ms
    reply = next((r for r in seen.responses if r.created_at > sent_at), None)
    heard = _first_media_of(reply.items, seen.media) if reply is not None else math.inf
    if reply is None or heard == math.inf:
        sample.problems.append("no reply reached the caller")
        return
    sample.reply_id = reply.id
    sample.turn_latency_ms = (heard - sent_at) * 1000.0 - seen.answer_delay_ms


def analyse_call(
    run: CallRun[TurnPlan],
    session: SimSession | None,
    log: Sequence[LogLine],
    sim: SimUpstreamOptions,
) -> CallFigures:
    """Turn, reply and stream-stop figures of one call (``log``: the call's lines)."""
    sid = run.plan.call_sid
    out = CallFigures(facts={"call_sid": sid, "error": run.error})
    report = run.report
    if report is None or session is None:
        out.problems.append(f"{sid}: " + ("call failed" if report is None else "no sim session"))
        return out
    barge_ins = len(records(log, BargeInReport))
    out.facts.update(
        media_sent=report.media_sent,
        late_frames=report.late_frames,
        underrun_gaps=report.underrun_gaps,
        underrun_ms=round(report.underrun_ms, 2),
        barge_ins=barge_ins,
    )
    if barge_ins:
        out.problems.append(f"{sid}: {barge_ins} barge-in(s) in a turn-taking call")
    audio_in = session.session["audio"]["input"]
    detection = audio_in["turn_detection"]
    if detection is None or detection.get("type") != "server_vad":
        out.problems.append(f"{sid}: turn detection {detection!r}: the turn bench needs server_vad")
        return out
    silence_ms = int(detection["silence_duration_ms"])
    out.facts["silence_duration_ms"] = silence_ms
    frames = run.sent.frames
    ends = speech_ends_ms(
        frames,
        threshold=float(detection["threshold"]),
        onset_ms=sim.vad_onset_ms,
        silence_ms=silence_ms,
    )
    if len(ends) != run.plan.turns:
        out.problems.append(f"{sid}: {len(ends)} turns heard, {run.plan.turns} planned")
    appends = appends_from(session.received) if audio_in["format"]["type"] == ULAW else []
    offset = caller_clock_offset(frames, appends)
    if offset is None:
        out.problems.append(f"{sid}: caller audio not found in the appends: no inbound figures")
    else:
        out.unforwarded_at_stop_ms = unforwarded_tail_ms(frames, appends, offset)
        out.facts["dropped_before_session_ms"] = offset
    seen = _Observed(
        frames=frames,
        arrivals=None if offset is None else arrival_times(frames, appends, offset),
        responses=sorted(session.responses.values(), key=lambda r: r.created_at),
        media=run.playback.attributed_media(),
        turn_ends_written=[
            t for t, e in session.sent if e.get("type") == "input_audio_buffer.speech_stopped"
        ],
        silence_ms=silence_ms,
        answer_delay_ms=silence_ms + sim.first_delta_delay_ms,
    )
    for k, end_ms in enumerate(ends, start=1):
        sample = TurnSample(sid, k, end_ms)
        _measure_turn(seen, sample)
        out.turns.append(sample)
    deltas = _first_delta_at(session)
    for response in seen.responses:
        heard = _first_media_of(response.items, seen.media)
        if response.id in deltas and heard < math.inf:
            out.first_reply_audio_ms.append((heard - deltas[response.id]) * 1000.0)
    out.problems += [f"{s.call_sid} #{s.k}: {p}" for s in out.turns for p in s.problems]
    return out


def _judged(values: Sequence[float], target_p95: float | None, what: str) -> dict[str, Any]:
    summary = stats(values)
    p95 = summary["p95"]
    return {
        **summary,
        "target": what,
        "pass": None if target_p95 is None else p95 is not None and p95 <= target_p95,
    }


def analyse(data: ScenarioData[TurnPlan], *, one_call: bool) -> dict[str, Any]:
    """Samples and summary of one turn scenario (``one_call``: calls ran one at a time)."""
    sessions = sessions_by_call(data)
    by_call = lines_by_call(data.log)
    calls = [
        analyse_call(
            r, sessions[r.plan.call_sid], by_call.get(r.plan.call_sid, []), data.sim_options
        )
        for r in data.runs
    ]
    turns = [t for c in calls for t in c.turns]
    latency = [t.turn_latency_ms for t in turns if t.turn_latency_ms is not None]
    window = [ms for t in turns for ms in t.window_inbound_ms]
    first_audio = [ms for c in calls for ms in c.first_reply_audio_ms]
    unforwarded = [c.unforwarded_at_stop_ms for c in calls if c.unforwarded_at_stop_ms is not None]
    first_target = FIRST_REPLY_AUDIO_P95_MS["single" if one_call else "concurrent"]
    gaps = sum(int(c.facts.get("underrun_gaps", 0)) for c in calls)
    metrics: dict[str, Any] = {
        "turn_latency_ms": _judged(
            latency,
            None,
            "reference of the gate comparison"
            if data.settings.get("BRIDGE_AUDIO_GATE") == "off"
            else f"p95 within {GATE_COST_P95_MS:g} ms of the gate-off run",
        ),
        "turn_window_inbound_ms": _judged(
            window, TURN_WINDOW_INBOUND_P95_MS, f"p95 <= {TURN_WINDOW_INBOUND_P95_MS:g} ms"
        ),
        "first_reply_audio_ms": _judged(first_audio, first_target, f"p95 <= {first_target:g} ms"),
        "unforwarded_at_stop_ms": {
            **_judged(unforwarded, 0.0, "0 ms"),
            "total": round(sum(unforwarded), 1),
        },
        # Not judged: the model streams at exactly real time, so a delta that arrives a
        # little late leaves a gap at the caller unless the bridge buffers ahead.
        "pacing_gaps": {
            "count": gaps,
            "ms": round(sum(float(c.facts.get("underrun_ms", 0.0)) for c in calls), 2),
            "target": "- (deltas stream at real time)",
            "pass": None,
        },
    }
    problems = [p for c in calls for p in c.problems]
    silences = {c.facts["silence_duration_ms"] for c in calls if "silence_duration_ms" in c.facts}
    if len(silences) > 1:
        problems.append(f"sessions ended turns after different silences: {sorted(silences)} ms")
    silence_ms = silences.pop() if len(silences) == 1 else None
    first_delta_ms = data.sim_options.first_delta_delay_ms
    return {
        "calls": len(data.runs),
        "calls_failed": sum(1 for r in data.runs if r.report is None),
        "calls_ended_in_bridge": data.calls_ended_in_bridge,
        "audio_gate": data.settings.get("BRIDGE_AUDIO_GATE"),
        "turns_planned": sum(r.plan.turns for r in data.runs),
        "turns_measured": len(latency),
        "model_answer_delay": {
            "silence_duration_ms": silence_ms,
            "first_delta_delay_ms": first_delta_ms,
            "total_ms": None if silence_ms is None else silence_ms + first_delta_ms,
        },
        "metrics": metrics,
        "cpu": data.cpu,
        "load": cpu_per_call(data.cpu, call_seconds(data)),
        "diagnostics": {
            "turn_end_detected_ms": stats(
                [t.turn_end_detected_ms for t in turns if t.turn_end_detected_ms is not None]
            ),
            "dropped_before_session_ms": stats(
                [
                    float(c.facts["dropped_before_session_ms"])
                    for c in calls
                    if "dropped_before_session_ms" in c.facts
                ]
            ),
            "bench_loop_lag_ms": bench_loop_lag(data),
        },
        "measurement": measurement_validity(data),
        "caller_late_frames": sum(int(c.facts.get("late_frames", 0)) for c in calls),
        "bridge_log": str(data.log_path),
        "problems": problems[:50],
        "problem_count": len(problems),
        "calls_detail": [
            {**c.facts, "unforwarded_at_stop_ms": rounded(c.unforwarded_at_stop_ms, 1)}
            for c in calls
        ],
        "samples": [t.as_json() for t in turns],
    }


def compare_gate(results: dict[str, Any], gate_off_suffix: str) -> dict[str, Any]:
    """For every scenario with a gate-off twin (``<name><gate_off_suffix>``): turn latency
    p50/p95 with the gate on and off, the difference, and the target on the p95."""
    out: dict[str, Any] = {}
    for name, on in results.items():
        off = results.get(name + gate_off_suffix)
        if off is None:
            continue
        row: dict[str, Any] = {}
        for q in ("p50", "p95"):
            a, b = on["metrics"]["turn_latency_ms"][q], off["metrics"]["turn_latency_ms"][q]
            diff = None if a is None or b is None else round(a - b, 3)
            row[f"turn_latency_{q}_ms"] = {"gate_on": a, "gate_off": b, "difference": diff}
        diff95 = row["turn_latency_p95_ms"]["difference"]
        row["target"] = f"p95 difference <= {GATE_COST_P95_MS:g} ms"
        row["pass"] = diff95 is not None and diff95 <= GATE_COST_P95_MS
        out[name] = row
    return out
