"""A simulated Twilio REST API: it records every request and answers like the Calls resource.

The bridge ends a call through ``POST /2010-04-01/Accounts/{sid}/Calls/{call_sid}.json``
(the fallback ``<Say>`` and ``<Hangup/>``; ``Status=completed`` after ``end_call``; a
``<Dial>`` for ``transfer_call``); tests, the demo and the benches point
``BRIDGE_TWILIO_API_BASE_URL`` here to see those requests without any network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs

import trio

from bridge.runtime.http import HttpRequest, HttpResponse
from bridge.runtime.websocket import WebSocket


@dataclass
class RestRequest:
    method: str
    path: str
    form: dict[str, list[str]]
    authorization: str | None
    received_at: float
    """Trio time (s) the request had arrived (its answer is written at once)."""


@dataclass
class SimTwilioRest:
    """An application for :func:`bridge.runtime.http.serve_http`: answers every request
    with ``status`` (200 unless a test wants Twilio to fail) and keeps it."""

    requests: list[RestRequest] = field(default_factory=list)
    status: int = 200
    url: str = ""
    """Where it listens, once serving (``http://host:port``)."""

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
                trio.current_time(),
            )
        )
        return HttpResponse(
            self.status, b'{"sid": "CA", "status": "completed"}', "application/json"
        )

    async def refuse_websocket(self, request: HttpRequest) -> HttpResponse | None:
        return HttpResponse(404, b"not found\n")

    async def websocket(self, request: HttpRequest, ws: WebSocket) -> None:
        raise AssertionError("the simulated REST API takes no WebSocket")
