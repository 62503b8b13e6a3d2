"""The simulated application: tool endpoints and a call-events receiver.

One :class:`SimApplication` is an app for :func:`bridge.runtime.http.serve_http` (the
bridge's own one-port server) and serves what the bridge talks to besides the two call legs
and Twilio's REST API (that is :class:`bridge.sim.rest.SimTwilioRest`):

* ``POST /tools/<name>``: a tool. Every request's signature is checked the way the README
  tells applications to (:func:`bridge.core.appsign.verify`); a bad one is a 401. A
  ``tool.call`` is answered after the tool's :class:`ToolBehaviour` delay with its reply
  (by default the demo's order lookup); a ``tool.cancel`` is recorded and answered 200.
* ``POST /events``: call events, recorded in order (answered after ``events_delay_s``).

Every request answered is kept as an :class:`Exchange` with the Trio time it arrived and the
time its reply was handed to the server. The demo uses it as its tool server (``make
demo``); tests and ``bench/tools.py`` use it as the application under test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from bridge.core.appsign import SIGNATURE_HEADER, verify
from bridge.runtime.http import HttpLimits, HttpRequest, HttpResponse, serve_http
from bridge.runtime.websocket import WebSocket


@dataclass(frozen=True, slots=True)
class ToolBehaviour:
    delay_s: float = 0.0
    status: int = 200
    body: bytes | None = None
    """The raw reply; ``None``: :func:`demo_reply`."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request the application answered."""

    path: str
    headers: Mapping[str, str]
    """Names in lower case."""
    body: bytes
    received_at: float
    """Trio time (s) the whole request had arrived."""
    replied_at: float
    """Trio time (s) the reply was handed to the server, which writes it at once."""
    reply: bytes
    """The reply's body."""

    def json(self) -> Any:
        """The request's JSON body. Raises ``ValueError`` if it is not JSON."""
        return json.loads(self.body)


def demo_reply(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if tool == "lookup_order":
        order = str(arguments.get("order_id", "unknown"))
        return {"order_id": order, "status": "shipped", "arrives": "Thursday"}
    return {"ok": True, "tool": tool}


def _json_response(value: object, status: int = 200) -> HttpResponse:
    return HttpResponse(status, json.dumps(value).encode(), "application/json")


@dataclass(eq=False)
class SimApplication:
    secret: str
    tools: dict[str, ToolBehaviour] = field(default_factory=dict)
    events_delay_s: float = 0.0
    """How long each call event waits for its answer (a slow events receiver)."""
    exchanges: list[Exchange] = field(default_factory=list)
    bad_signatures: int = 0
    _changed: trio.Event = field(default_factory=trio.Event)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on a free loopback port until cancelled; reports ``http://127.0.0.1:port``."""
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve_http, self, "127.0.0.1", 0, HttpLimits())
            task_status.started(f"http://{host}:{port}")

    # -- what was received ----------------------------------------------------------------

    def _matching(self, prefix: str, kind: str | None = None) -> list[Exchange]:
        return [
            e
            for e in self.exchanges
            if e.path.startswith(prefix) and (kind is None or e.json().get("type") == kind)
        ]

    def tool_calls(self) -> list[Exchange]:
        return self._matching("/tools/", "tool.call")

    def cancels(self) -> list[Exchange]:
        return self._matching("/tools/", "tool.cancel")

    def events(self) -> list[dict[str, Any]]:
        return [e.json() for e in self._matching("/events")]

    async def wait_for(self, ready: Callable[[SimApplication], bool]) -> None:
        """Until ``ready(self)`` holds (checked after every exchange)."""
        while not ready(self):
            await self._changed.wait()

    async def wait_for_event(self, kind: str) -> dict[str, Any]:
        await self.wait_for(lambda app: any(e["type"] == kind for e in app.events()))
        return next(e for e in self.events() if e["type"] == kind)

    # -- serving (bridge.runtime.http.HttpApp) --------------------------------------------

    async def http(self, request: HttpRequest) -> HttpResponse:
        received_at = trio.current_time()
        response = await self._answer(request)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers}
        self.exchanges.append(
            Exchange(
                request.path, headers, request.body, received_at, trio.current_time(), response.body
            )
        )
        self._changed.set()
        self._changed = trio.Event()
        return response

    async def refuse_websocket(self, request: HttpRequest) -> HttpResponse | None:
        return HttpResponse(404, b"not found\n")

    async def websocket(self, request: HttpRequest, ws: WebSocket) -> None:
        raise AssertionError("the simulated application takes no WebSocket")

    async def _answer(self, request: HttpRequest) -> HttpResponse:
        header = (request.header(SIGNATURE_HEADER.lower().encode()) or b"").decode("latin-1")
        if not verify(self.secret, request.body, header, time.time()):
            self.bad_signatures += 1
            return _json_response({"error": "bad signature"}, 401)
        if request.path == "/events":
            await trio.sleep(self.events_delay_s)
            return HttpResponse(204)
        if not request.path.startswith("/tools/"):
            return _json_response({"error": "not found"}, 404)
        body = json.loads(request.body)
        if body.get("type") == "tool.cancel":
            return _json_response({"ok": True})
        tool = request.path.removeprefix("/tools/")
        behaviour = self.tools.get(tool, ToolBehaviour())
        await trio.sleep(behaviour.delay_s)
        if behaviour.body is not None:
            return HttpResponse(behaviour.status, behaviour.body, "application/json")
        return _json_response(demo_reply(tool, body["arguments"]), behaviour.status)
