"""Integration rig: the real bridge server, the simulated upstream, a fake Twilio REST API.

Everything listens on 127.0.0.1 (port 0) and talks over real sockets. The fake Twilio
side of each call is :class:`bridge.sim.caller.SimCaller`, which speaks the Media Streams
protocol; the fake REST API is a small app on the bridge's own HTTP server
(:mod:`bridge.runtime.http`) that records every request.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import trio

from bridge.config import BridgeConfig, Secret
from bridge.runtime.http import HttpLimits, HttpRequest, HttpResponse, serve_http
from bridge.runtime.registry import CallHandle
from bridge.runtime.server import BridgeServer, run_bridge
from bridge.runtime.websocket import WebSocket
from bridge.sim.caller import CallerOptions, SimCaller
from bridge.sim.report import CallerReport
from bridge.sim.script import CallerScript, script_from_name
from bridge.sim.upstream import SimSession, SimUpstream, SimUpstreamOptions

ACCOUNT_SID = "AC00000000000000000000000000000000"
AUTH_TOKEN = "test-auth-token"


@dataclass
class RestRequest:
    method: str
    path: str
    form: dict[str, list[str]]
    authorization: str | None


@dataclass
class FakeTwilioRest:
    """Records requests; answers like Twilio's Calls resource (200, or a canned status)."""

    requests: list[RestRequest] = field(default_factory=list)
    status: int = 200
    url: str = ""

    def hangups_for(self, call_sid: str) -> list[RestRequest]:
        return [r for r in self.requests if r.path.endswith(f"/Calls/{call_sid}.json")]

    async def http(self, request: HttpRequest) -> HttpResponse:
        authorization = request.header(b"authorization")
        self.requests.append(
            RestRequest(
                request.method,
                request.path,
                parse_qs(request.body.decode()),
                None if authorization is None else authorization.decode(),
            )
        )
        return HttpResponse(
            self.status, b'{"sid": "CA", "status": "completed"}', "application/json"
        )

    async def refuse_websocket(self, request: HttpRequest) -> HttpResponse | None:
        return HttpResponse(404, b"not found\n")

    async def websocket(self, request: HttpRequest, ws: WebSocket) -> None:
        raise AssertionError("the fake REST API takes no WebSocket")


class CompletedCall(NamedTuple):
    caller: SimCaller
    report: CallerReport
    handle: CallHandle
    session: SimSession


@dataclass
class Rig:
    server: BridgeServer
    sim: SimUpstream
    rest: FakeTwilioRest

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
    rest = FakeTwilioRest()
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


def live_task_names() -> list[str]:
    """Names of every task alive in this Trio run."""
    names: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        names.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(trio.lowlevel.current_root_task())
    return names


def call_tasks_alive(call_sid: str) -> list[str]:
    return [name for name in live_task_names() if name.endswith(f":{call_sid}")]
