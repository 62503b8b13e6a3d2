"""Notes under a burst: many concurrent ``POST /calls/{sid}/notes`` against a live call.

Run from the project root::

    .venv/bin/python -m bench.notes_burst --out out/bench-notes.json [--notes 1000]

The bridge runs as its own process (``bridge serve``, :mod:`bench.common.bridge_process`)
with ``BRIDGE_CONTROL_TOKEN`` set; the simulated upstream and one simulated caller run here.
The AI speaks one long reply (20 s) and, while it plays, a child process (this module with
``--burst``, so that its CPU is not the caller's) opens ``--notes`` connections, then sends
one note on each at once and reads the answers. Figures:

* the burst: from the first note sent to the last answer, and the answers by status (the
  call takes :data:`bridge.core.control.NOTES_BURST` at once; the rest get 429);
* ``GET /healthz`` from here, one request every 50 ms: latency before the burst and during it;
* the call's audio: underrun gaps inside the AI's reply at the caller (Twilio's playback
  model runs dry: the bridge wrote nothing for longer than Twilio's lead) during the
  burst, and the longest interval between two media messages the caller received.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import trio

from bench.common.bridge_process import bridge_process
from bench.common.cli import bench_parser, configure_bench_logging
from bench.common.report import build_report, write_report
from bench.common.stats import percentile
from bench.common.tables import format_table
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.script import script_from_name
from bridge.sim.upstream import SimUpstream, SimUpstreamOptions

CONTROL_TOKEN: Final = "bench-control-token-0123456789abcdef"
REPLY_MS: Final = 20_000
HEALTH_EVERY_S: Final = 0.05
BASELINE_S: Final = 2.0


# -- the burst (the child process) ---------------------------------------------------------


async def _burst(port: int, call_sid: str, notes: int) -> dict[str, Any]:
    """``notes`` connections, then one note on each, all at once; the answers."""
    streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(notes)]
    statuses: dict[str, int] = {}
    done_at: list[float] = []

    async def post(stream: trio.SocketStream, i: int) -> None:
        body = json.dumps({"text": f"Note {i}: the caller is a VIP.", "respond": False}).encode()
        request = (
            f"POST /calls/{call_sid}/notes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {CONTROL_TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        async with stream:
            await stream.send_all(request)
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk
        status = answer.split(b" ", 2)[1].decode() if answer else "none"
        statuses[status] = statuses.get(status, 0) + 1
        done_at.append(time.monotonic())

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i, stream in enumerate(streams):
            nursery.start_soon(post, stream, i)
    return {"notes": notes, "burst_s": round(max(done_at) - started, 3), "statuses": statuses}


# -- the bench -----------------------------------------------------------------------------


async def _sample_health(port: int, until: trio.Event, samples: list[float]) -> None:
    """``GET /healthz`` every 50 ms until ``until``; each latency, ms."""
    while not until.is_set():
        started = time.monotonic()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while await stream.receive_some(4096):
                pass
        samples.append((time.monotonic() - started) * 1000.0)
        await trio.sleep(HEALTH_EVERY_S)


def _summary(samples: Sequence[float]) -> dict[str, Any]:
    p50 = percentile(samples, 50)
    return {
        "n": len(samples),
        "p50": None if p50 is None else round(p50, 2),
        "max": round(max(samples), 2) if samples else None,
    }


async def run_notes_burst(notes: int, out_dir: Path) -> dict[str, Any]:
    sim = SimUpstream(SimUpstreamOptions(reply_ms=REPLY_MS, clock=time.monotonic))
    async with trio.open_nursery() as nursery:
        sim_url = await nursery.start(sim.serve)
        settings = {"BRIDGE_CONTROL_TOKEN": CONTROL_TOKEN}
        async with bridge_process(sim_url, out_dir / "bench-notes.log", settings) as bridge:
            script = script_from_name("listen:16")
            caller = SimCaller(
                CallerOptions(url=bridge.media_url, script=script, clock=time.monotonic)
            )
            nursery.start_soon(caller.run)
            await caller.wait_ai_turn_started(1)
            baseline: list[float] = []
            enough = trio.Event()
            nursery.start_soon(_sample_health, bridge.port, enough, baseline)
            await trio.sleep(BASELINE_S)
            enough.set()
            during: list[float] = []
            burst_over = trio.Event()
            nursery.start_soon(_sample_health, bridge.port, burst_over, during)
            burst_from = time.monotonic()
            burst_command = [sys.executable, "-m", "bench.notes_burst", "--burst"]
            burst_command += [str(bridge.port), caller.options.call_sid, str(notes)]
            child = await trio.run_process(burst_command, capture_stdout=True)
            burst_to = time.monotonic()
            burst_over.set()
            await caller.wait_closed()
        nursery.cancel_scope.cancel()
    burst = json.loads(child.stdout)
    playback = caller.playback
    gaps = [u for u in playback.underruns if burst_from <= u.at <= burst_to + 1.0]
    return {
        "burst": burst,
        "healthz_ms": {"before": _summary(baseline), "during": _summary(during)},
        "audio": {
            "underrun_gaps_during_burst": len(gaps),
            "underrun_ms_during_burst": round(sum(u.gap_ms for u in gaps), 1),
            "underrun_gaps_whole_call": len(playback.underruns),
        },
    }


def _table(result: dict[str, Any]) -> str:
    burst, health, audio = result["burst"], result["healthz_ms"], result["audio"]
    statuses = ", ".join(f"{n}×{s}" for s, n in sorted(burst["statuses"].items()))
    rows = [
        ["notes sent at once", str(burst["notes"])],
        ["all answered within", f"{burst['burst_s'] * 1000:.0f} ms"],
        ["answers", statuses],
        ["/healthz before: p50 / max", f"{health['before']['p50']} / {health['before']['max']}"],
        ["/healthz during: p50 / max", f"{health['during']['p50']} / {health['during']['max']}"],
        [
            "audio gaps at the caller during the burst",
            f"{audio['underrun_gaps_during_burst']} ({audio['underrun_ms_during_burst']} ms)",
        ],
    ]
    return format_table(["", "value"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--burst"]:
        port, call_sid, notes = args_list[1:4]
        print(json.dumps(trio.run(_burst, int(port), call_sid, int(notes))))
        return 0
    parser = bench_parser("notes_burst", __doc__, Path("out/bench-notes.json"))
    parser.add_argument("--notes", type=int, default=1000)
    args = parser.parse_args(args_list)
    configure_bench_logging()
    started = time.monotonic()
    result = trio.run(run_notes_burst, args.notes, args.out.parent)
    print(_table(result))
    config = {"notes": args.notes, "reply_ms": REPLY_MS, "healthz_every_s": HEALTH_EVERY_S}
    write_report(args.out, build_report("notes_burst", argv, config, result, started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
