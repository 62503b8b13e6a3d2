"""``bridge demo``: the whole path of a phone call on this machine, no keys, no network.

The bridge runs on 127.0.0.1 with the embedded simulated upstream; the simulated caller
dials its media WebSocket over real loopback sockets and follows the ``demo`` script: the
AI greets, the caller answers, the AI answers, the caller cuts in and the AI falls silent
at once, then the AI answers only the new words. The caller's timeline is printed and
what it heard is written to a WAV file.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import trio

from bridge.config import BridgeConfig
from bridge.runtime.server import BridgeServer, run_bridge
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.report import format_timeline
from bridge.sim.script import script_from_name
from bridge.sim.upstream import SimUpstream


async def run_demo(config: BridgeConfig, wav_out: Path, script: str) -> int:
    wav_out.parent.mkdir(parents=True, exist_ok=True)
    local = replace(
        config,
        host="127.0.0.1",
        port=0,
        openai_api_key=None,
        openai_realtime_url=None,
        log_transcripts=True,
    )
    async with trio.open_nursery() as upstream_nursery:
        sim_url = await upstream_nursery.start(SimUpstream().serve)
        async with trio.open_nursery() as nursery:
            server: BridgeServer = await nursery.start(
                partial(run_bridge, local, upstream_url=sim_url)
            )
            caller = SimCaller(
                CallerOptions(
                    url=server.media_url,
                    script=script_from_name(script),
                    wav_out=wav_out,
                    max_duration_s=40.0,
                )
            )
            report = await caller.run()
            handle = await server.registry.wait_for_call(report.call_sid)
            await handle.ended.wait()
            server.shutdown()
        upstream_nursery.cancel_scope.cancel()
    counters = handle.statistics()
    print()
    print("Caller's timeline (what a person on the phone experienced):")
    print(format_timeline(report))
    print()
    print(
        f"Bridge: call ended ({handle.end}); barge-ins={counters.barge_ins}, "
        f"late audio deltas dropped={counters.late_deltas_dropped}, "
        f"AI audio sent={counters.audio_ms_sent / 1000:.2f} s."
    )
    print(f"What the caller heard: {wav_out}")
    return 0
