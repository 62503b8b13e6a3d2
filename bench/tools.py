"""Tool calls end to end: output delivery, silence before the filler, goodbyes never cut.

Run from the project root (the full run takes about 2 minutes)::

    .venv/bin/python -m bench.tools --out out/bench-tools.json
    .venv/bin/python -m bench.tools --delivery 10 --filler 3 --end-call 10   # smoke

Process layout, as in :mod:`bench.bargein`: the bridge runs as its own process (``bridge
serve --log-format json``, one per scenario, its log in ``out/bench-tools-<scenario>.log``);
the simulated upstream (scripted to call tools), the simulated callers and the application
(:class:`bridge.sim.tool_app.SimApplication`: the tool endpoints and a fake Twilio REST API)
run in this process on one clock, so their records compare directly.

Scenarios and what they measure:

* ``delivery``: every caller turn's reply calls ``lookup_order`` (the application answers in
  200 ms). Sample: the application wrote its reply → the simulated upstream read the
  ``function_call_output``. Target p95 ≤ 5 ms.
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

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from bridge.core.records import BridgeReady, ToolDeliveredReport, read_record
from bridge.logs import configure_logging
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.report import CallerReport
from bridge.sim.script import AfterAiEnds, AfterReply, At, CallerScript, Utterance
from bridge.sim.tool_app import SimApplication, ToolBehaviour
from bridge.sim.upstream import SimUpstream, SimUpstreamOptions
from bridge.sim.upstream_tools import SimToolCall

ACCOUNT_SID: Final = "AC" + "1" * 32
READY_TIMEOUT_S: Final = 20.0
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


def _cpu_s(pid: int | str = "self") -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``)."""
    user, nice, system, idle, iowait, *rest = (
        int(v) for v in Path("/proc/stat").read_text().split()[1:9]
    )
    del idle, iowait
    return (user + nice + system + sum(rest)) / os.sysconf("SC_CLK_TCK")


BRIDGE_CPU: dict[str, float] = {}
"""CPU seconds of each scenario's bridge process (read before it is stopped)."""


@dataclass(frozen=True, slots=True)
class Bridge:
    process: trio.Process
    port: int

    @property
    def media_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio/media"


@asynccontextmanager
async def bridge_process(
    out_dir: Path, name: str, upstream_url: str, app_url: str, secret: str, token: str
) -> AsyncIterator[Bridge]:
    """``bridge serve`` on a free port, pointed at the sim and the application."""
    tools = out_dir / "bench-tools.toml"
    tools.write_text(TOOLS_TOML.format(app=app_url))
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TWILIO_", "BRIDGE_"))
    }
    env |= {
        "OPENAI_REALTIME_URL": upstream_url,
        "BRIDGE_TOOLS_FILE": str(tools),
        "BRIDGE_APP_SECRET": secret,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": token,
        "TWILIO_API_BASE_URL": app_url,
        "BRIDGE_LOG_FORMAT": "json",
    }
    script = Path(sys.executable).parent / "bridge"
    command = [str(script), "serve", "--host", "127.0.0.1", "--port", "0"]
    log_path = out_dir / f"bench-tools-{name}.log"
    with log_path.open("wb") as log:
        process = await trio.lowlevel.open_process(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        try:
            yield Bridge(process, await _ready_port(process, log_path))
        finally:
            BRIDGE_CPU[name] = _cpu_s(process.pid) if process.returncode is None else 0.0
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    with trio.move_on_after(12):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                await process.wait()


async def _ready_port(process: trio.Process, log_path: Path) -> int:
    with trio.fail_after(READY_TIMEOUT_S):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"bridge exited with {process.returncode}: see {log_path}")
            for line in (await trio.Path(log_path).read_text(errors="replace")).splitlines():
                if not line.startswith("{"):
                    continue
                extra = json.loads(line).get("record", {}).get("extra", {})
                if (ready := read_record(BridgeReady, extra)) is not None:
                    return ready.port
            await trio.sleep(0.05)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), 3),
        "p95": round(percentile(values, 0.95), 3),
        "max": round(max(values), 3) if values else float("nan"),
        "mean": round(statistics.fmean(values), 3) if values else float("nan"),
    }


@dataclass
class Run:
    """One scenario's moving parts, after the calls."""

    sim: SimUpstream
    callers: list[tuple[SimCaller, CallerReport]]


async def run_calls(
    name: str,
    *,
    out_dir: Path,
    app: SimApplication,
    app_url: str,
    options: SimUpstreamOptions,
    script: CallerScript,
    calls: int,
    concurrency: int,
) -> Run:
    secret, token = app.secret, secrets.token_hex(8)
    sim = SimUpstream(options)
    done: list[tuple[SimCaller, CallerReport]] = []
    async with trio.open_nursery() as nursery:
        sim_url = await nursery.start(sim.serve)
        async with bridge_process(out_dir, name, sim_url, app_url, secret, token) as bridge:
            limiter = trio.CapacityLimiter(concurrency)

            async def one() -> None:
                async with limiter:
                    caller = SimCaller(
                        CallerOptions(
                            url=bridge.media_url,
                            script=script,
                            max_duration_s=60.0,
                            auth_token=token,
                            signature_url=f"wss://127.0.0.1:{bridge.port}/twilio/media",
                        )
                    )
                    done.append((caller, await caller.run()))

            async with trio.open_nursery() as callers:
                for _ in range(calls):
                    callers.start_soon(one)
                    await trio.sleep(0.2)  # stagger the connects
        nursery.cancel_scope.cancel()
    return Run(sim, done)


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


async def delivery(
    out_dir: Path, app: SimApplication, app_url: str, n: int, conc: int
) -> dict[str, Any]:
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
    before = len(app.tool_calls())
    run = await run_calls(
        "delivery",
        out_dir=out_dir,
        app=app,
        app_url=app_url,
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
        call_id = exchange.request.json()["call_id"]
        if call_id in read_at:
            samples.append(round((read_at[call_id] - exchange.replied_at) * 1000.0, 3))
    inside = [r.reply_to_output_ms for r in _records(out_dir / "bench-tools-delivery.log")]
    return {
        "samples_ms": samples,
        "delivery_ms": summary(samples),
        "bridge_samples_ms": inside,
        "bridge_ms": summary(inside),
        "calls": calls,
    }


def _records(log_path: Path) -> list[ToolDeliveredReport]:
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            extra = json.loads(line).get("record", {}).get("extra", {})
            if (record := read_record(ToolDeliveredReport, extra)) is not None:
                found.append(record)
    return found


async def filler(
    out_dir: Path, app: SimApplication, app_url: str, n: int, conc: int
) -> dict[str, Any]:
    options = SimUpstreamOptions(
        reply_ms=1200, tool_calls=(SimToolCall(1, "slow_lookup", '{"order_id": "7"}'),)
    )
    script = CallerScript(
        utterances=(Utterance(800, 1, AfterAiEnds(turn=1, delay_ms=400)),),
        hangup=AfterAiEnds(turn=3, delay_ms=300),
    )
    before = len(app.tool_calls())
    run = await run_calls(
        "filler",
        out_dir=out_dir,
        app=app,
        app_url=app_url,
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
        replied[exchange.request.json()["call_id"]] = exchange.replied_at
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
        "silence_before_filler_ms": summary(silence),
        "answer_after_result_ms": summary(answer_after),
        "answers_after_filler": ordered,
        "samples": {"silence_ms": silence, "answer_after_result_ms": answer_after},
    }


async def end_call(
    out_dir: Path, app: SimApplication, app_url: str, n: int, conc: int
) -> dict[str, Any]:
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
        before = len(app.rest_exchanges())
        run = await run_calls(
            f"end-call-{variant}",
            out_dir=out_dir,
            app=app,
            app_url=app_url,
            options=options,
            script=script,
            calls=count,
            concurrency=conc,
        )
        rests = app.rest_exchanges()[before:]
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
            rest = [r for r in rests if report.call_sid in r.request.path]
            closed_at = caller.origin + (report.close.t_ms / 1000.0 if report.close else 1e9)
            in_order = (
                len(rest) == 1
                and segments[-1].end <= rest[0].request.received_at + 1e-3
                and (rest[0].replied_at <= closed_at + 1e-3)
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


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(data: dict[str, Any]) -> str:
    rows = ["| metric | n | p50 | p95 | max | target | result |", "|---|---|---|---|---|---|---|"]
    if "delivery" in data:
        b = data["delivery"]["bridge_ms"]
        rows.append(
            f"| the bridge's share: reply read → output written (ms) | {b['n']} | {b['p50']:.2f} | "
            f"{b['p95']:.2f} | {b['max']:.2f} | | |"
        )
        d = data["delivery"]["delivery_ms"]
        ok = d["n"] > 0 and d["p95"] <= 5.0
        rows.append(
            f"| output delivered: app reply written → upstream read the output (ms) | {d['n']} | "
            f"{d['p50']:.2f} | {d['p95']:.2f} | {d['max']:.2f} | p95 ≤ 5 ms | {_verdict(ok)} |"
        )
    if "filler" in data:
        f = data["filler"]
        s = f["silence_before_filler_ms"]
        ok = s["n"] == f["calls"] and s["max"] <= 1000.0
        rows.append(
            f"| silence: function call → filler heard, 3 s tool (ms) | {s['n']} | {s['p50']:.0f} | "
            f"{s['p95']:.0f} | {s['max']:.0f} | ≤ 1000 ms, once per wait | {_verdict(ok)} |"
        )
        a = f["answer_after_result_ms"]
        ok = a["n"] == f["calls"] and f["answers_after_filler"] == f["calls"]
        rows.append(
            f"| answer: app reply → answer heard (ms) | {a['n']} | {a['p50']:.0f} | "
            f"{a['p95']:.0f} | {a['max']:.0f} | follows the result | {_verdict(ok)} |"
        )
    if "end_call" in data:
        e = data["end_call"]
        ok = e["cut"] == 0 and e["runs"] > 0
        rows.append(
            f"| end_call: goodbyes cut | {e['runs']} | | | {e['cut']} | 0 | {_verdict(ok)} |"
        )
    return "\n".join(rows)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out_dir = Path(args.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    app = SimApplication(
        secrets.token_hex(16),
        tools={
            "lookup_order": ToolBehaviour(delay_s=0.2),
            "slow_lookup": ToolBehaviour(delay_s=3.0),
        },
    )
    data: dict[str, Any] = {"args": vars(args)}
    wall0, busy0, self0 = trio.current_time(), _machine_busy_s(), _cpu_s()
    async with trio.open_nursery() as nursery:
        app_url = await nursery.start(app.serve)
        if args.delivery:
            data["delivery"] = await delivery(
                out_dir, app, app_url, args.delivery, args.concurrency
            )
        if args.filler:
            data["filler"] = await filler(out_dir, app, app_url, args.filler, args.concurrency)
        if args.end_call:
            data["end_call"] = await end_call(out_dir, app, app_url, args.end_call, 10)
        nursery.cancel_scope.cancel()
    data["bad_signatures"] = app.bad_signatures
    wall = trio.current_time() - wall0
    ours = (_cpu_s() - self0) + sum(BRIDGE_CPU.values())
    data["load"] = {
        "wall_s": round(wall, 1),
        "bench_and_bridges_cpu_pct_of_a_core": round(100 * ours / wall, 1),
        "other_processes_cpu_pct_of_a_core": round(
            100 * (_machine_busy_s() - busy0 - ours) / wall, 1
        ),
        "cores": os.cpu_count(),
    }
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/bench-tools.json")
    parser.add_argument("--delivery", type=int, default=50, help="tool calls measured (5 a call)")
    parser.add_argument("--filler", type=int, default=20, help="calls with a 3 s tool")
    parser.add_argument("--end-call", type=int, default=50, help="calls ended by end_call")
    parser.add_argument("--concurrency", type=int, default=5, help="calls at once")
    args = parser.parse_args(argv)
    configure_logging(level="WARNING")
    data = trio.run(main_async, args)
    Path(args.out).write_text(json.dumps(data, indent=2))
    text = table(data)
    print(text)
    load = data["load"]
    print(
        f"\n{load['wall_s']} s; this bench and its bridges used "
        f"{load['bench_and_bridges_cpu_pct_of_a_core']}% of a core, other processes "
        f"{load['other_processes_cpu_pct_of_a_core']}% ({load['cores']} cores)."
    )
    print(f"JSON: {args.out}; bad signatures seen by the application: {data['bad_signatures']}")
    return 0 if "FAIL" not in text and data["bad_signatures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
