"""The one-port ASGI application (served by hypercorn's trio worker).

Routes:

* ``POST /twilio/voice``: incoming-call webhook → TwiML ``<Connect><Stream>``;
* WebSocket ``/twilio/media``: one call per connection (:func:`bridge.runtime.call.run_call`);
* ``GET /healthz`` (process alive), ``GET /readyz`` (accepting calls), ``GET /metrics``;
* ``GET /calls`` and ``POST /calls/{call_sid}/notes``: the application notes API.

When ``TWILIO_AUTH_TOKEN`` is set, the webhook and the WebSocket upgrade must carry a valid
``X-Twilio-Signature`` (computed over the public URL from ``BRIDGE_PUBLIC_URL``); otherwise
403 and no OpenAI session is opened.
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
from bridge.runtime.services import Services
from bridge.runtime.twilio_leg import Receive, Scope, Send, TwilioLeg

MAX_BODY_BYTES = 64 * 1024
_WEBHOOK_PARAMS = ("From", "To", "CallSid")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _respond(
    send: Send, status: int, body: str | bytes, content_type: str = "text/plain; charset=utf-8"
) -> None:
    payload = body.encode() if isinstance(body, str) else body
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or ``None`` if it exceeds :data:`MAX_BODY_BYTES`."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:
            return None
        if not message.get("more_body"):
            return bytes(body)


class BridgeApp:
    __slots__ = ("services",)

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _public_url(self, scope: Scope, path: str, websocket: bool) -> str:
        config = self.services.config
        if websocket:
            return config.media_stream_url(_header(scope, b"host"))
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        base = (config.public_url or f"https://{_header(scope, b'host') or 'localhost'}").rstrip(
            "/"
        )
        return f"{base}{path}" + (f"?{query}" if query else "")

    def _signature_ok(self, scope: Scope, url: str, params: Mapping[str, list[str]]) -> bool:
        token = self.services.config.twilio_auth_token
        if token is None:
            return True
        signature = _header(scope, b"x-twilio-signature")
        return signature is not None and is_valid_signature(token.reveal(), url, signature, params)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        path = scope.get("path", "")
        if path.rstrip("/") != "/twilio/media":
            await send({"type": "websocket.close", "code": 1008})
            return
        if self.services.draining:
            await send({"type": "websocket.close", "code": 1013})
            return
        if not self._signature_ok(scope, self._public_url(scope, path, True), {}):
            logger.warning("TWILIO_SIGNATURE invalid or missing on the media stream upgrade")
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        await run_call(self.services, TwilioLeg(receive, send))

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        services = self.services
        if path == "/healthz":
            await _respond(send, 200, "ok\n")
        elif path == "/readyz":
            ready = not services.draining
            await _respond(send, 200 if ready else 503, "ready\n" if ready else "draining\n")
        elif path == "/metrics":
            await _respond(send, 200, services.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == "/twilio/voice" and method == "POST":
            await self._voice_webhook(scope, receive, send)
        elif path == "/calls" and method == "GET":
            calls = [
                {"call_sid": h.call_sid, "stream_sid": h.stream_sid, "epoch": h.barge_in_epoch}
                for h in services.registry.active()
            ]
            await _respond(send, 200, json.dumps(calls), "application/json")
        elif path.startswith("/calls/") and path.endswith("/notes") and method == "POST":
            await self._note(path.removeprefix("/calls/").removesuffix("/notes"), receive, send)
        else:
            await _respond(send, 404, "not found\n")

    async def _voice_webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:
            await _respond(send, 413, "body too large\n")
            return
        params = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        url = self._public_url(scope, "/twilio/voice", False)
        if not self._signature_ok(scope, url, params):
            logger.warning("TWILIO_SIGNATURE invalid or missing on the voice webhook")
            await _respond(send, 403, "invalid signature\n")
            return
        config = self.services.config
        stream_params = {k: params[k][0] for k in _WEBHOOK_PARAMS if params.get(k)}
        twiml = connect_stream(
            config.media_stream_url(_header(scope, b"host")), stream_params, config.fallback_message
        )
        logger.info("VOICE_WEBHOOK call={} → stream", stream_params.get("CallSid", "?"))
        await _respond(send, 200, twiml, "text/xml")

    async def _note(self, call_sid: str, receive: Receive, send: Send) -> None:
        handle = self.services.registry.get(call_sid)
        if handle is None or handle.ended.is_set():
            await _respond(send, 404, "no such live call\n")
            return
        body = await _read_body(receive)
        try:
            note: Any = json.loads(body or b"")
            if not isinstance(note, dict) or not isinstance(note.get("text"), str):
                raise TypeError("'text' must be a string")
            text: str = note["text"]
        except (ValueError, TypeError) as exc:
            await _respond(send, 400, f"expected JSON {{'text': str, ...}}: {exc}\n")
            return
        epoch = note.get("epoch")
        accepted = await handle.send_note(
            text,
            respond=bool(note.get("respond", False)),
            awaits_confirmation=bool(note.get("awaits_confirmation", False)),
            epoch=epoch if isinstance(epoch, int) else None,
        )
        await _respond(send, 202 if accepted else 503, "queued\n" if accepted else "not queued\n")
