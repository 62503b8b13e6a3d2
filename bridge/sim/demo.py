"""``bridge demo``: the whole path of a phone call on this machine, no keys, no network.

The bridge runs on 127.0.0.1 with the embedded simulated upstream; the simulated caller
dials its media WebSocket over real loopback sockets. With the ``demo`` script (the default)
the call shows everything the bridge does: the AI greets, the caller answers, the AI answers,
the caller cuts in and the AI falls silent at once, then the AI answers only the new words,
which ask for a tool: a round trip to a tiny local tool server (3 s, so the model says it is
checking after 1 s of silence), the answer, and the caller's goodbye, which the AI answers
with a goodbye and ``end_call``: the bridge hangs up once the goodbye has been heard
(:mod:`bridge.sim.demo_tools`). Other scripts (``talk``, ``listen``) run without tools.
The caller's timeline, merged with the application's side, is printed, and what the caller
heard is written to a WAV file.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from functools import partial
from pathlib import Path

import trio

from bridge.config import BridgeConfig, Secret
from bridge.runtime.http import HttpLimits, serve_http
from bridge.runtime.server import BridgeServer, run_bridge
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.demo_tools import (
    ACCOUNT_SID,
    CALLER_SAYS,
    TOOL_CALLS,
    TOOL_DELAY_S,
    demo_catalog,
    demo_script,
    tool_timeline,
)
from bridge.sim.report import format_timeline
from bridge.sim.rest import SimTwilioRest
from bridge.sim.script import script_from_name
from bridge.sim.tool_app import SimApplication, ToolBehaviour
from bridge.sim.upstream import SimUpstream, SimUpstreamOptions


def _merged(timeline: str, extra: list[tuple[float, str]]) -> str:
    *entries, summary = timeline.splitlines()
    lines = [(float(line.split("s", 1)[0]) * 1000.0, 0, k, line) for k, line in enumerate(entries)]
    lines += [(round(t, 3), 1, k, f"{t / 1000:7.3f}s  {text}") for k, (t, text) in enumerate(extra)]
    return "\n".join([line for *_, line in sorted(lines)] + [summary])


async def run_demo(config: BridgeConfig, wav_out: Path, script: str) -> int:
    wav_out.parent.mkdir(parents=True, exist_ok=True)
    tools = script == "demo"
    token = secrets.token_hex(8)
    app = SimApplication(secrets.token_hex(16))
    app.tools["lookup_order"] = ToolBehaviour(delay_s=TOOL_DELAY_S)
    rest = SimTwilioRest()
    async with trio.open_nursery() as upstream_nursery:
        app_url = await upstream_nursery.start(app.serve)
        host, port = await upstream_nursery.start(serve_http, rest, "127.0.0.1", 0, HttpLimits())
        rest.url = f"http://{host}:{port}"
        options = (
            SimUpstreamOptions(tool_calls=TOOL_CALLS, caller_transcripts=CALLER_SAYS)
            if tools
            else SimUpstreamOptions()
        )
        sim = SimUpstream(options)
        sim_url = await upstream_nursery.start(sim.serve)
        local = replace(
            config,
            host="127.0.0.1",
            port=0,
            openai_api_key=None,
            openai_realtime_url=None,
            log_transcripts=True,
            # The demo's application (tools, call events) and a fake Twilio REST API.
            tools=demo_catalog(app_url) if tools else config.tools,
            app_secret=Secret(app.secret),
            events_url=f"{app_url}/events",
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=Secret(token),
            twilio_api_base_url=rest.url,
        )
        async with trio.open_nursery() as nursery:
            server: BridgeServer = await nursery.start(
                partial(run_bridge, local, upstream_url=sim_url)
            )
            caller = SimCaller(
                CallerOptions(
                    url=server.media_url,
                    script=demo_script() if tools else script_from_name(script),
                    wav_out=wav_out,
                    max_duration_s=70.0,
                    # The fake REST API needs Twilio credentials, so the upgrade is signed.
                    auth_token=token,
                    signature_url=f"wss://{server.host}:{server.port}/twilio/media",
                )
            )
            report = await caller.run()
            handle = await server.registry.wait_for_call(report.call_sid)
            await handle.ended.wait()
            server.shutdown()
        upstream_nursery.cancel_scope.cancel()
    counters = handle.statistics()
    extra = tool_timeline(caller, report, sim.sessions[0], app, rest) if sim.sessions else []
    print()
    print("Caller's timeline (what a person on the phone experienced), with the application's:")
    print(_merged(format_timeline(report), extra))
    print()
    print(
        f"Bridge: call ended ({handle.end}); barge-ins={counters.barge_ins}, "
        f"late audio deltas dropped={counters.late_deltas_dropped}, "
        f"AI audio sent={counters.audio_ms_sent / 1000:.2f} s, tool calls={counters.tool_calls}, "
        f"fillers={counters.tool_fillers}, call events sent={len(app.events())}."
    )
    print(f"What the caller heard: {wav_out}")
    return 0
