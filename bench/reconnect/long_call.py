"""The long part: one call of hours, in this process under a virtual clock.

The bridge runs with its defaults (``BRIDGE_SESSION_RECYCLE_S`` 3300 s); the sim closes
every session at 60 minutes with 1001 and the service's message, as the real one does. The
caller speaks every :data:`TURN_EVERY_S` and hangs up at the end. It must never be cut:
every session is replaced before the cap, at a turn boundary, and every turn is answered.
A two-hour call is about 360,000 media frames each way: several minutes of CPU.
"""

from __future__ import annotations

import time
from typing import Any, Final

import trio
from loguru import logger
from trio.testing import MockClock

from bench.chaos.rig import ACCOUNT_SID, AUTH_TOKEN
from bridge.config import BridgeConfig, Secret
from bridge.core.records import SessionRecycled, read_record
from bridge.runtime.http import HttpLimits, serve_http
from bridge.runtime.server import run_bridge
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.rest import SimTwilioRest
from bridge.sim.script import At, CallerScript, Utterance
from bridge.sim.upstream import SimUpstream, SimUpstreamOptions

SESSION_CAP_S: Final = 3600.0
TURN_EVERY_S: Final = 300


async def _long_call(duration_s: float) -> dict[str, Any]:
    recycles: list[SessionRecycled] = []

    def sink(message: Any) -> None:
        record = read_record(SessionRecycled, message.record["extra"])
        if record is not None:
            recycles.append(record)

    sink_id = logger.add(sink, level="INFO")
    try:
        async with trio.open_nursery() as nursery:
            rest = SimTwilioRest()
            host, port = await nursery.start(serve_http, rest, "127.0.0.1", 0, HttpLimits())
            sim = SimUpstream(SimUpstreamOptions(session_max_s=SESSION_CAP_S))
            sim_url = await nursery.start(sim.serve)
            config = BridgeConfig(
                host="127.0.0.1",
                port=0,
                openai_realtime_url=sim_url,
                twilio_account_sid=ACCOUNT_SID,
                twilio_auth_token=Secret(AUTH_TOKEN),
                twilio_api_base_url=f"http://{host}:{port}",
            )
            server = await nursery.start(run_bridge, config)
            turns = int(duration_s // TURN_EVERY_S)
            utterances = tuple(
                Utterance(1500, seed=k, trigger=At(ms=(60 + TURN_EVERY_S * k) * 1000))
                for k in range(turns)
            )
            caller = SimCaller(
                CallerOptions(
                    url=server.media_url,
                    script=CallerScript(utterances, hangup=At(ms=int(duration_s * 1000))),
                    auth_token=AUTH_TOKEN,
                    signature_url=f"wss://{server.host}:{server.port}/twilio/media",
                    max_duration_s=duration_s + 60,
                )
            )
            report = await caller.run()
            handle = await server.registry.wait_for_call(report.call_sid)
            await handle.ended.wait()
            nursery.cancel_scope.cancel()
    finally:
        logger.remove(sink_id)
    stats = handle.statistics()
    answered = sum(
        1
        for session in sim.sessions
        for item in session.conversation
        if item.role == "assistant"
        and item.client_item is None
        and item.transcript.startswith("You said:")
    )
    return {
        "duration_s": round(report.duration_ms / 1000.0, 1),
        "end_reason": None if handle.end is None else handle.end.reason.value,
        "sessions": len(sim.sessions),
        "recycles": len(recycles),
        "recycles_at_turn_boundary": sum(1 for r in recycles if r.at_turn_boundary),
        "recycle_ages_s": [r.session_age_s for r in recycles],
        "upstream_losses": stats.upstream_losses,
        "caller_turns": turns,
        "turns_answered": answered,
        "clears": report.clears,
    }


def run_long_call(duration_s: float) -> dict[str, Any]:
    """Run the long call; its figures, the targets' verdicts, and the CPU it took."""
    cpu0 = time.process_time()
    logger.remove()
    result = trio.run(_long_call, duration_s, clock=MockClock(autojump_threshold=0))
    result["cpu_s"] = round(time.process_time() - cpu0, 1)
    result["targets"] = {
        "never_cut": {
            "value": f"{result['end_reason']} after {result['duration_s']} s",
            "pass": result["end_reason"] == "twilio_stop"
            and result["duration_s"] >= duration_s - 1,
        },
        "recycled_at_turn_boundaries": {
            "value": f"{result['recycles_at_turn_boundary']}/{result['recycles']}",
            "pass": result["recycles"] >= int(duration_s // SESSION_CAP_S)
            and result["recycles_at_turn_boundary"] == result["recycles"]
            and result["upstream_losses"] == 0,
        },
        "every_turn_answered": {
            "value": f"{result['turns_answered']}/{result['caller_turns']}",
            "pass": result["turns_answered"] >= result["caller_turns"],
        },
    }
    return result
