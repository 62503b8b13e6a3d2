"""The simulated application: tool endpoints, a call-events receiver and a fake Twilio REST.

One :class:`SimApplication` on an :class:`~bridge.sim.http_app.HttpApp` serves what the
bridge talks to besides the two call legs, on one local port:

* ``POST /tools/<name>``: a tool. Every request's signature is checked the way the README
  tells applications to (:func:`bridge.core.appsign.verify`); a bad one is a 401. A
  ``tool.call`` is answered after the tool's :class:`ToolBehaviour` delay with its reply
  (by default the demo's order lookup); a ``tool.cancel`` is recorded and answered 200.
* ``POST /events``: call events, recorded in order.
* ``POST /2010-04-01/Accounts/<AC>/Calls/<CA>.json``: Twilio's Calls resource, recorded and
  answered like Twilio (200, or the configured status).

The demo uses it as its tool server (``make demo``); tests and ``bench/tools.py`` use it as
the application under test.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import trio

from bridge.core.appsign import SIGNATURE_HEADER, verify
from bridge.sim.http_app import Exchange, HttpApp, Reply, Request


@dataclass(frozen=True, slots=True)
class ToolBehaviour:
    delay_s: float = 0.0
    status: int = 200
    body: bytes | None = None
    """The raw reply; ``None``: :func:`demo_reply`."""


def demo_reply(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    if tool == "lookup_order":
        order = str(arguments.get("order_id", "unknown"))
        return {"order_id": order, "status": "shipped", "arrives": "Thursday"}
    return {"ok": True, "tool": tool}


@dataclass(eq=False)
class SimApplication:
    secret: str
    tools: dict[str, ToolBehaviour] = field(default_factory=dict)
    twilio_status: int = 200
    http: HttpApp = field(init=False)
    bad_signatures: int = 0

    def __post_init__(self) -> None:
        self.http = HttpApp(self.handle)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        await self.http.serve(task_status=task_status)

    # -- what was received ----------------------------------------------------------------

    def _bodies(self, prefix: str, kind: str | None = None) -> list[Exchange]:
        found = []
        for exchange in self.http.exchanges:
            if not exchange.request.path.startswith(prefix):
                continue
            if kind is not None and exchange.request.json().get("type") != kind:
                continue
            found.append(exchange)
        return found

    def tool_calls(self) -> list[Exchange]:
        return self._bodies("/tools/", "tool.call")

    def cancels(self) -> list[Exchange]:
        return self._bodies("/tools/", "tool.cancel")

    def events(self) -> list[dict[str, Any]]:
        return [e.request.json() for e in self._bodies("/events")]

    def rest(self) -> list[dict[str, list[str]]]:
        return [parse_qs(e.request.body.decode()) for e in self._bodies("/2010-04-01/")]

    def rest_exchanges(self) -> list[Exchange]:
        return self._bodies("/2010-04-01/")

    async def wait_for_event(self, kind: str) -> dict[str, Any]:
        def seen(_: list[Exchange]) -> bool:
            return any(e["type"] == kind for e in self.events())

        await self.http.wait_for(seen)
        return next(e for e in self.events() if e["type"] == kind)

    # -- serving --------------------------------------------------------------------------

    async def handle(self, request: Request) -> Reply:
        if request.path.startswith("/2010-04-01/"):
            call_sid = request.path.rsplit("/", 1)[-1].removesuffix(".json")
            status = "completed" if b"Status=completed" in request.body else "in-progress"
            return Reply.of({"sid": call_sid, "status": status}, self.twilio_status)
        header = request.headers.get(SIGNATURE_HEADER.lower(), "")
        if not verify(self.secret, request.body, header, time.time()):
            self.bad_signatures += 1
            return Reply.of({"error": "bad signature"}, 401)
        if request.path == "/events":
            return Reply(204)
        if not request.path.startswith("/tools/"):
            return Reply.of({"error": "not found"}, 404)
        body = request.json()
        if body.get("type") == "tool.cancel":
            return Reply.of({"ok": True})
        tool = request.path.removeprefix("/tools/")
        behaviour = self.tools.get(tool, ToolBehaviour())
        await trio.sleep(behaviour.delay_s)
        if behaviour.body is not None:
            return Reply(behaviour.status, behaviour.body)
        return Reply(behaviour.status, json.dumps(demo_reply(tool, body["arguments"])).encode())
