"""Tool calls end to end: output delivery, silence before the filler, goodbyes never cut.

Run from the project root (the full run takes about 2 minutes)::

    .venv/bin/python -m bench.tools --out out/bench-tools.json
    .venv/bin/python -m bench.tools --delivery 10 --filler 3 --end-call 10   # smoke

Process layout, as in :mod:`bench.bargein`: the bridge runs as its own process
(:mod:`bench.common.bridge_process`, one per scenario, its log in
``out/bench-tools-<scenario>.log``); the simulated upstream (scripted to call tools), the
simulated callers, the application (:class:`bridge.sim.tool_app.SimApplication`: the tool
endpoints) and the fake Twilio REST API (:class:`bridge.sim.rest.SimTwilioRest`) run in this
process on one clock (Trio's), so their records compare directly.

Scenarios and what they measure:

* ``delivery``: every caller turn's reply calls ``lookup_order`` (the application answers in
  200 ms). Sample: the application handed its reply to its server → the simulated upstream
  read the ``function_call_output``. Target p95 ≤ 5 ms.
* ``filler``: the reply calls a tool that takes 3 s. Samples: the model's function call
  (the upstream wrote ``response.output_item.done``) → the filler's first audio played at
  the caller (target ≤ 1000 ms every time), and the application's reply → the answer's first
  audio at the caller (it must follow the result, after the filler).
* ``end_call``: the reply says goodbye and calls ``end_call`` (``said``: in the same response,
  1.2-2.8 s of speech; ``asked``: without speech, so the bridge asks for a goodbye). A goodbye
  is *cut* unless the caller heard all of its audio and the REST hang-up came after the last
  of it and before the stream closed. Target: 0 cut.

Writes JSON (every sample) and prints a table; exit status 1 if a target is missed.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from bench.common.bridge_log import read_log, records
from bench.common.bridge_process import BridgeProcess, bridge_process
from bench.common.cli import bench_parser, configure_bench_logging
from bench.common.cpu import cpu_seconds, cpu_snapshot, cpu_usage, describe_cpu
from bench.common.report import build_report, write_report
from bench.common.stats import stats
from bench.common.tables import cell, format_table, verdict
from bridge.core.records import ToolDeliveredReport
from bridge.runtime.http import HttpLimits, serve_http
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.report import CallerReport
from bridge.sim.rest import SimTwilioRest
from bridge.sim.script import AfterAiEnds, AfterReply, At, CallerScript, Utterance
from bridge.sim.tool_app import SimApplication, ToolBehaviour
from bridge.sim.upstream import SimUpstream, SimUpstreamOptions
from bridge.sim.upstream_tools import SimToolCall

ACCOUNT_SID: Final = "AC" + "1" * 32
TURNS_PER_CALL: Final = 5

TOOLS_TOML: Final = """
[[tools]]
name = "lookup_order"
description = "Look up an order."
url = "{app}/tools/lookup_order"

[[tools]]
name = "slow_lookup"
description = "Look up an order, slowly."
url = "{app}/tools/slow_lookup"

[[tools]]
name = "end_call"
builtin = "end_call"
"""

BRIDGE_CPU: dict[str, float] = {}
"""CPU seconds of each scenario's bridge process (read before it is stopped)."""


@dataclass(frozen=True, slots=True)
class Application:
    """What the bridge talks to besides the call legs: the tools and the Twilio REST API."""

    app: SimApplication
    app_url: str
    rest: SimTwilioRest
    token: str
    """The Twilio auth token the bridge is given (the callers sign their upgrades with it)."""


def bridge_settings(out_dir: Path, application: Application) -> dict[str, str]:
    """The bridge's environment for these scenarios: the tools file, the application's
    secret, Twilio REST pointed at the simulated API."""
    tools = out_dir / "bench-tools.toml"
    tools.write_text(TOOLS_TOML.format(app=application.app_url))
    return {
        "BRIDGE_TOOLS_FILE": str(tools),
        "BRIDGE_APP_SECRET": application.app.secret,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": application.token,
        "TWILIO_API_BASE_URL": application.rest.url,
    }


@dataclass
class Run:
    """One scenario's moving parts, after the calls."""

    sim: SimUpstream
    callers: list[tuple[SimCaller, CallerReport]]
    log_path: Path
    """The scenario's bridge log (JSON lines)."""


def _caller(bridge: BridgeProcess, script: CallerScript, token: str) -> SimCaller:
    return SimCaller(
        CallerOptions(
            url=bridge.media_url,
            script=script,
            max_duration_s=60.0,
            auth_token=token,
            signature_url=f"wss://{bridge.host}:{bridge.port}/twilio/media",
        )
    )


async def run_calls(
    name: str,
    *,
    out_dir: Path,
    application: Application,
    options: SimUpstreamOptions,
    script: CallerScript,
    calls: int,
    concurrency: int,
) -> Run:
    """``calls`` calls (at most ``concurrency`` at once, connects 0.2 s apart) through one
    bridge process, against a fresh simulated upstream."""
    sim = SimUpstream(options)
    done: list[tuple[SimCaller, CallerReport]] = []
    log_path = out_dir / f"bench-tools-{name}.log"
    settings = bridge_settings(out_dir, application)
    async with trio.open_nursery() as nursery:
        sim_url = await nursery.start(sim.serve)
        async with bridge_process(sim_url, log_path, settings) as bridge:
            limiter = trio.CapacityLimiter(concurrency)

            async def one() -> None:
                async with limiter:
                    caller = _caller(bridge, script, application.token)
                    done.append((caller, await caller.run()))

            async with trio.open_nursery() as callers:
                for _ in range(calls):
                    callers.start_soon(one)
                    await trio.sleep(0.2)  # stagger the connects
            BRIDGE_CPU[name] = cpu_seconds(bridge.pid)
        nursery.cancel_scope.cancel()
    return Run(sim, done, log_path)


def _first_heard(runs: Run) -> dict[str, float]:
    starts: dict[str, float] = {}
    for caller, _ in runs.callers:
        for segment in caller.playback.segments():
            if segment.item_id is not None:
                starts.setdefault(segment.item_id, segment.start)
    return starts


def _items_of(run: Run, purpose: str) -> list[tuple[str, str]]:
    """(response id answered, item id) of the responses the bridge asked for ``purpose``."""
    found = []
    for session in run.sim.sessions:
        for response in session.responses.values():
            meta = response.metadata or {}
            if meta.get("bridge_purpose") == purpose:
                found += [(str(meta.get("bridge_for")), item) for item in response.items]
    return found


async def delivery(out_dir: Path, application: Application, n: int, conc: int) -> dict[str, Any]:
    calls = max(1, -(-n // TURNS_PER_CALL))
    options = SimUpstreamOptions(
        reply_ms=1200,
        tool_calls=tuple(
            SimToolCall(k, "lookup_order", json.dumps({"order_id": str(k)}))
            for k in range(1, TURNS_PER_CALL + 1)
        ),
    )
    utterances = [Utterance(800, 1, AfterAiEnds(turn=1, delay_ms=400))]
    utterances += [Utterance(800, k, AfterReply(300)) for k in range(2, TURNS_PER_CALL + 1)]
    script = CallerScript(utterances=tuple(utterances), hangup=AfterReply(300))
    app = application.app
    before = len(app.tool_calls())
    run = await run_calls(
        "delivery",
        out_dir=out_dir,
        application=application,
        options=options,
        script=script,
        calls=calls,
        concurrency=conc,
    )
    read_at: dict[str, float] = {}
    for session in run.sim.sessions:
        for t, event in session.received:
            item = event.get("item") or {}
            if (
                event["type"] == "conversation.item.create"
                and item.get("type") == "function_call_output"
            ):
                read_at[item["call_id"]] = t
    samples = []
    for exchange in app.tool_calls()[before:]:
        call_id = exchange.json()["call_id"]
        if call_id in read_at:
            samples.append(round((read_at[call_id] - exchange.replied_at) * 1000.0, 3))
    inside = [r.reply_to_output_ms for _, r in records(read_log(run.log_path), ToolDeliveredReport)]
    return {
        "samples_ms": samples,
        "delivery_ms": stats(samples),
        "bridge_samples_ms": inside,
        "bridge_ms": stats(inside),
        "calls": calls,
    }


async def filler(out_dir: Path, application: Application, n: int, conc: int) -> dict[str, Any]:
    options = SimUpstreamOptions(
        reply_ms=1200, tool_calls=(SimToolCall(1, "slow_lookup", '{"order_id": "7"}'),)
    )
    script = CallerScript(
        utterances=(Utterance(800, 1, AfterAiEnds(turn=1, delay_ms=400)),),
        hangup=AfterAiEnds(turn=3, delay_ms=300),
    )
    app = application.app
    before = len(app.tool_calls())
    run = await run_calls(
        "filler",
        out_dir=out_dir,
        application=application,
        options=options,
        script=script,
        calls=n,
        concurrency=conc,
    )
    heard = _first_heard(run)
    called_at = {
        e["response_id"]: t
        for s in run.sim.sessions
        for t, e in s.sent
        if e["type"] == "response.output_item.done" and e["item"].get("type") == "function_call"
    }
    replied = {}
    for exchange in app.tool_calls()[before:]:
        replied[exchange.json()["call_id"]] = exchange.replied_at
    call_of = {
        e["response_id"]: e["item"]["call_id"]
        for s in run.sim.sessions
        for _, e in s.sent
        if e["type"] == "response.output_item.done" and e["item"].get("type") == "function_call"
    }
    silence, answer_after, fillers, ordered = [], [], 0, 0
    answers = dict(_items_of(run, "tools"))
    for response_id, item in _items_of(run, "filler"):
        fillers += 1
        if item in heard and response_id in called_at:
            silence.append(round((heard[item] - called_at[response_id]) * 1000.0, 1))
        answer = answers.get(response_id)
        call_id = call_of.get(response_id)
        if answer in heard and call_id in replied:
            answer_after.append(round((heard[answer] - replied[call_id]) * 1000.0, 1))
            ordered += heard[answer] > heard.get(item, float("inf"))
    return {
        "calls": n,
        "fillers": fillers,
        "silence_before_filler_ms": stats(silence),
        "answer_after_result_ms": stats(answer_after),
        "answers_after_filler": ordered,
        "samples": {"silence_ms": silence, "answer_after_result_ms": answer_after},
    }


async def end_call(out_dir: Path, application: Application, n: int, conc: int) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": 0, "cut": 0, "problems": []}
    halves = {"said": (n + 1) // 2, "asked": n // 2}
    for variant, count in halves.items():
        if not count:
            continue
        say = 1200 + (secrets.randbelow(8) * 200) if variant == "said" else 0
        options = SimUpstreamOptions(
            reply_ms=1200,
            short_reply_ms=1600,
            tool_calls=(SimToolCall(1, "end_call", '{"reason": "done"}', say_first_ms=say),),
        )
        script = CallerScript(
            utterances=(Utterance(800, 1, AfterAiEnds(turn=1, delay_ms=400)),), hangup=At(40_000)
        )
        run = await run_calls(
            f"end-call-{variant}",
            out_dir=out_dir,
            application=application,
            options=options,
            script=script,
            calls=count,
            concurrency=conc,
        )
        audio = {
            i.id: i.audio_ms
            for s in run.sim.sessions
            for i in s.conversation
            if i.role == "assistant"
        }
        for caller, report in run.callers:
            results["runs"] += 1
            segments = list(caller.playback.segments())
            goodbye = segments[-1].item_id if segments else None
            heard = report.heard_ms_by_item.get(goodbye or "", 0.0)
            whole = goodbye is not None and heard >= audio.get(goodbye, 0) - 0.5
            rest = application.rest.hangups_for(report.call_sid)
            closed_at = caller.origin + (report.close.t_ms / 1000.0 if report.close else 1e9)
            in_order = (
                len(rest) == 1
                and segments[-1].end <= rest[0].received_at + 1e-3
                and rest[0].received_at <= closed_at + 1e-3
            )
            closed_ok = report.close is not None and (report.close.by, report.close.code) == (
                "bridge",
                1000,
            )
            if not (whole and in_order and closed_ok):
                results["cut"] += 1
                results["problems"].append(
                    {
                        "variant": variant,
                        "call_sid": report.call_sid,
                        "heard_ms": heard,
                        "audio_ms": audio.get(goodbye or ""),
                        "rest": len(rest),
                        "closed_ok": closed_ok,
                    }
                )
    return results


def _stats_row(label: str, figures: dict[str, Any], target: str, ok: bool | None) -> list[str]:
    return [
        label,
        str(figures["n"]),
        cell(figures["p50"]),
        cell(figures["p95"]),
        cell(figures["max"]),
        target,
        verdict(ok),
    ]


def table(data: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    if "delivery" in data:
        b = data["delivery"]["bridge_ms"]
        rows.append(_stats_row("the bridge's share: reply read → output written (ms)", b, "", None))
        d = data["delivery"]["delivery_ms"]
        ok = d["n"] > 0 and d["p95"] <= 5.0
        label = "output delivered: app reply → upstream read the output (ms)"
        rows.append(_stats_row(label, d, "p95 ≤ 5 ms", ok))
    if "filler" in data:
        f = data["filler"]
        s = f["silence_before_filler_ms"]
        ok = s["n"] == f["calls"] and s["max"] is not None and s["max"] <= 1000.0
        label = "silence: function call → filler heard, 3 s tool (ms)"
        rows.append(_stats_row(label, s, "≤ 1000 ms, once per wait", ok))
        a = f["answer_after_result_ms"]
        ok = a["n"] == f["calls"] and f["answers_after_filler"] == f["calls"]
        rows.append(
            _stats_row("answer: app reply → answer heard (ms)", a, "follows the result", ok)
        )
    if "end_call" in data:
        e = data["end_call"]
        ok = e["cut"] == 0 and e["runs"] > 0
        rows.append(
            ["end_call: goodbyes cut", str(e["runs"]), "", "", str(e["cut"]), "0", verdict(ok)]
        )
    return format_table(("metric", "n", "p50", "p95", "max", "target", "result"), rows)


async def main_async(args: Any) -> dict[str, Any]:
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    app = SimApplication(
        secrets.token_hex(16),
        tools={
            "lookup_order": ToolBehaviour(delay_s=0.2),
            "slow_lookup": ToolBehaviour(delay_s=3.0),
        },
    )
    rest = SimTwilioRest()
    data: dict[str, Any] = {}
    before = cpu_snapshot({"bench": "self"})
    async with trio.open_nursery() as nursery:
        app_url = await nursery.start(app.serve)
        host, port = await nursery.start(serve_http, rest, "127.0.0.1", 0, HttpLimits())
        rest.url = f"http://{host}:{port}"
        application = Application(app, app_url, rest, secrets.token_hex(8))
        if args.delivery:
            data["delivery"] = await delivery(out_dir, application, args.delivery, args.concurrency)
        if args.filler:
            data["filler"] = await filler(out_dir, application, args.filler, args.concurrency)
        if args.end_call:
            data["end_call"] = await end_call(out_dir, application, args.end_call, 10)
        nursery.cancel_scope.cancel()
    data["bad_signatures"] = app.bad_signatures
    data["cpu"] = cpu_usage(before, cpu_snapshot({"bench": "self"}))
    data["bridge_cpu_s"] = {name: round(cpu_s, 2) for name, cpu_s in BRIDGE_CPU.items()}
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser("tools", __doc__, Path("out/bench-tools.json"))
    parser.add_argument("--delivery", type=int, default=50, help="tool calls measured (5 a call)")
    parser.add_argument("--filler", type=int, default=20, help="calls with a 3 s tool")
    parser.add_argument("--end-call", type=int, default=50, help="calls ended by end_call")
    parser.add_argument("--concurrency", type=int, default=5, help="calls at once")
    args = parser.parse_args(argv)
    configure_bench_logging()
    started = time.monotonic()
    data = trio.run(main_async, args)
    text = table(data)
    print(text)
    report = build_report(
        "tools", argv, {"args": vars(args) | {"out": str(args.out)}}, data, started
    )
    write_report(args.out, report)
    print(
        f"\n{report['duration_s']:.0f} s; {describe_cpu(data['cpu'])}; the bridges used "
        f"{sum(BRIDGE_CPU.values()):.1f} CPU s."
    )
    print(f"JSON: {args.out}; bad signatures seen by the application: {data['bad_signatures']}")
    return 0 if "FAIL" not in text and data["bad_signatures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
