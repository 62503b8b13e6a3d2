"""Integration rig: the real bridge server, the simulated upstream, a fake Twilio REST API.

Everything listens on 127.0.0.1 (port 0) and talks over real sockets. The fake Twilio
side of each call is :class:`bridge.sim.caller.SimCaller`, which speaks the Media Streams
protocol; the fake REST API (:class:`bridge.sim.rest.SimTwilioRest`) is a small app on the
bridge's own HTTP server (:mod:`bridge.runtime.http`) that records every request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import trio

from bridge.config import BridgeConfig, Secret
from bridge.runtime.http import HttpLimits, serve_http
from bridge.runtime.registry import CallHandle
from bridge.runtime.server import BridgeServer, run_bridge
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.report import CallerReport
from bridge.sim.rest import SimTwilioRest
from bridge.sim.script import CallerScript, script_from_name
from bridge.sim.upstream import SimSession, SimUpstream, SimUpstreamOptions

ACCOUNT_SID = "AC00000000000000000000000000000000"
AUTH_TOKEN = "test-auth-token"
CONTROL_TOKEN = "test-control-token-0123456789abcdef"
CONTROL_AUTH = {"Authorization": f"Bearer {CONTROL_TOKEN}"}


class CompletedCall(NamedTuple):
    caller: SimCaller
    report: CallerReport
    handle: CallHandle
    session: SimSession


@dataclass
class Rig:
    server: BridgeServer
    sim: SimUpstream
    rest: SimTwilioRest

    def caller(self, script: CallerScript | str = "listen:60", **options: Any) -> SimCaller:
        """A caller that signs its upgrade as Twilio does (the bridge has an auth token)."""
        if isinstance(script, str):
            script = script_from_name(script)
        signing: dict[str, Any] = {
            "auth_token": AUTH_TOKEN,
            # Without BRIDGE_PUBLIC_URL the bridge expects wss://<Host header>/twilio/media.
            "signature_url": f"wss://{self.server.host}:{self.server.port}/twilio/media",
        }
        signing.update(options)
        return SimCaller(CallerOptions(url=self.server.media_url, script=script, **signing))

    async def complete_call(self, script: CallerScript | str) -> CompletedCall:
        """Run one whole call (the first upstream session) and wait for the bridge's end."""
        caller = self.caller(script)
        report = await caller.run()
        handle = await self.server.registry.wait_for_call(report.call_sid)
        await handle.ended.wait()
        return CompletedCall(caller, report, handle, self.sim.sessions[0])


TEST_CONFIG = BridgeConfig(
    host="127.0.0.1",
    port=0,
    twilio_account_sid=ACCOUNT_SID,
    twilio_auth_token=Secret(AUTH_TOKEN),
    control_token=Secret(CONTROL_TOKEN),
    heartbeat_interval_s=1.0,
    heartbeat_timeout_s=1.0,
    session_timeout_s=3.0,
    # Server-path tests by default; the fast-path tests ask for "duck".
    fast_barge_in="off",
)


async def start_rig(
    nursery: trio.Nursery,
    *,
    sim_options: SimUpstreamOptions | None = None,
    upstream_url: str | None = None,
    **config_changes: Any,
) -> Rig:
    rest = SimTwilioRest()
    host, port = await nursery.start(serve_http, rest, "127.0.0.1", 0, HttpLimits())
    rest.url = f"http://{host}:{port}"
    sim = SimUpstream(sim_options or SimUpstreamOptions())
    sim_url = await nursery.start(sim.serve)
    config = replace(
        TEST_CONFIG,
        openai_realtime_url=upstream_url or sim_url,
        twilio_api_base_url=rest.url,
        **config_changes,
    )
    server = await nursery.start(run_bridge, config)
    return Rig(server, sim, rest)
