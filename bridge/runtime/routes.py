"""The bridge's routes on the one port (served by :mod:`bridge.runtime.http`).

* ``POST /twilio/voice``: incoming-call webhook → TwiML ``<Connect><Stream>``;
* WebSocket ``/twilio/media``: one call per connection (:func:`bridge.runtime.call.run_call`);
* ``GET /healthz`` (process alive), ``GET /readyz`` (accepting calls), ``GET /metrics``;
* ``GET /calls`` and ``POST /calls/{call_sid}/notes``: the application notes API.

When ``TWILIO_AUTH_TOKEN`` is set, the webhook and the WebSocket upgrade must carry a valid
``X-Twilio-Signature`` (computed over the public URL from ``BRIDGE_PUBLIC_URL``); otherwise
403 and no OpenAI session is opened. While draining, new media streams are refused with 503
(Twilio then plays the TwiML after ``<Connect>``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.core.signature import is_valid_signature
from bridge.core.twiml import connect_stream
from bridge.runtime.call import run_call
from bridge.runtime.http import HttpRequest, HttpResponse
from bridge.runtime.services import Services
from bridge.runtime.twilio_leg import TwilioLeg
from bridge.runtime.websocket import WebSocket

MEDIA_PATH = "/twilio/media"
_WEBHOOK_PARAMS = ("From", "To", "CallSid")


def _text(request: HttpRequest, name: bytes) -> str | None:
    value = request.header(name)
    return None if value is None else value.decode("latin-1")


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(status, text.encode())


class BridgeApp:
    __slots__ = ("services",)

    def __init__(self, services: Services) -> None:
        self.services = services

    # -- the media stream -----------------------------------------------------------------

    async def refuse_websocket(self, request: HttpRequest) -> HttpResponse | None:
        if request.path.rstrip("/") != MEDIA_PATH:
            return _plain(404, "not found\n")
        if self.services.draining:
            return _plain(503, "draining\n")
        if not self._signature_ok(request, self._public_url(request, websocket=True), {}):
            logger.warning("TWILIO_SIGNATURE invalid or missing on the media stream upgrade")
            return _plain(403, "invalid signature\n")
        return None

    async def websocket(self, request: HttpRequest, ws: WebSocket) -> None:
        await run_call(self.services, TwilioLeg(ws))

    # -- plain HTTP -----------------------------------------------------------------------

    async def http(self, request: HttpRequest) -> HttpResponse:
        services = self.services
        method, path = request.method, request.path
        if path == "/healthz":
            return _plain(200, "ok\n")
        if path == "/readyz":
            ready = not services.draining
            return _plain(200, "ready\n") if ready else _plain(503, "draining\n")
        if path == "/metrics":
            return HttpResponse(200, services.metrics.render(), CONTENT_TYPE_LATEST)
        if path == "/twilio/voice" and method == "POST":
            return self._voice_webhook(request)
        if path == "/calls" and method == "GET":
            calls = [
                {"call_sid": h.call_sid, "stream_sid": h.stream_sid, "epoch": h.barge_in_epoch}
                for h in services.registry.active()
            ]
            return HttpResponse(200, json.dumps(calls).encode(), "application/json")
        if path.startswith("/calls/") and path.endswith("/notes") and method == "POST":
            return await self._note(path.removeprefix("/calls/").removesuffix("/notes"), request)
        return _plain(404, "not found\n")

    def _public_url(self, request: HttpRequest, *, websocket: bool) -> str:
        config = self.services.config
        if websocket:
            return config.media_stream_url(_text(request, b"host"))
        base = (config.public_url or f"https://{_text(request, b'host') or 'localhost'}").rstrip(
            "/"
        )
        return f"{base}{request.path}" + (f"?{request.query}" if request.query else "")

    def _signature_ok(
        self, request: HttpRequest, url: str, params: Mapping[str, list[str]]
    ) -> bool:
        token = self.services.config.twilio_auth_token
        if token is None:
            return True
        signature = _text(request, b"x-twilio-signature")
        return signature is not None and is_valid_signature(token.reveal(), url, signature, params)

    def _voice_webhook(self, request: HttpRequest) -> HttpResponse:
        params = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        url = self._public_url(request, websocket=False)
        if not self._signature_ok(request, url, params):
            logger.warning("TWILIO_SIGNATURE invalid or missing on the voice webhook")
            return _plain(403, "invalid signature\n")
        config = self.services.config
        stream_params = {k: params[k][0] for k in _WEBHOOK_PARAMS if params.get(k)}
        twiml = connect_stream(
            config.media_stream_url(_text(request, b"host")), stream_params, config.fallback_message
        )
        logger.info("VOICE_WEBHOOK call={} → stream", stream_params.get("CallSid", "?"))
        return HttpResponse(200, twiml.encode(), "text/xml")

    async def _note(self, call_sid: str, request: HttpRequest) -> HttpResponse:
        handle = self.services.registry.get(call_sid)
        if handle is None or handle.ended.is_set():
            return _plain(404, "no such live call\n")
        try:
            note: Any = json.loads(request.body or b"")
            if not isinstance(note, dict) or not isinstance(note.get("text"), str):
                raise TypeError("'text' must be a string")
            text: str = note["text"]
        except (ValueError, TypeError) as exc:
            return _plain(400, f"expected JSON {{'text': str, ...}}: {exc}\n")
        epoch = note.get("epoch")
        accepted = await handle.send_note(
            text,
            respond=bool(note.get("respond", False)),
            awaits_confirmation=bool(note.get("awaits_confirmation", False)),
            epoch=epoch if isinstance(epoch, int) else None,
        )
        return _plain(202, "queued\n") if accepted else _plain(503, "not queued\n")
