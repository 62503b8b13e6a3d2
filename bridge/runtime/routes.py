"""The bridge's routes on the one port (served by :mod:`bridge.runtime.http`).

* ``POST /twilio/voice``: incoming-call webhook → TwiML ``<Connect><Stream>``;
* WebSocket ``/twilio/media``: one call per connection (:func:`bridge.runtime.call.run_call`);
* ``GET /healthz`` (process alive), ``GET /readyz`` (accepting calls), ``GET /metrics``;
* ``GET /calls`` and ``POST /calls/{call_sid}/notes``: the control API, off unless
  ``BRIDGE_CONTROL_TOKEN`` is set, then only with ``Authorization: Bearer <token>``
  (:mod:`bridge.core.control`).

Every request gets an answer that says what was wrong, in one short line: 404 for a path
that is no route, 405 (with ``Allow``) for a method a route does not take, 426 for a plain
request to the media stream, 400 for a ``Host`` header that is no host. ``HEAD`` is taken
wherever ``GET`` is.

When ``TWILIO_AUTH_TOKEN`` is set, the webhook and the WebSocket upgrade must carry exactly
one valid ``X-Twilio-Signature`` (computed over the public URL from ``BRIDGE_PUBLIC_URL``);
otherwise 403 and no OpenAI session is opened. While draining, new media streams are
refused with 503 (Twilio then plays the TwiML after ``<Connect>``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from urllib.parse import parse_qs

import trio
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.core.actions import Log
from bridge.core.control import Refusal, bearer_matches, is_json_content_type, parse_note
from bridge.core.logsafe import clip
from bridge.core.ratelimit import LogThrottle
from bridge.core.signature import is_valid_signature
from bridge.core.twiml import connect_stream
from bridge.logs import log_action, log_tagged
from bridge.runtime.call import run_call
from bridge.runtime.http import HttpRequest, HttpResponse
from bridge.runtime.services import Services
from bridge.runtime.twilio_leg import TwilioLeg
from bridge.runtime.websocket import WebSocket

MEDIA_PATH = "/twilio/media"
_WEBHOOK_PARAMS = ("From", "To", "CallSid")
_GET = ("GET", "HEAD")
_METHODS: Mapping[str, tuple[str, ...]] = {
    "/healthz": _GET,
    "/readyz": _GET,
    "/metrics": _GET,
    "/twilio/voice": ("POST",),
    "/calls": _GET,
}
_NOTES_PATH = re.compile(r"/calls/(?P<call_sid>[^/]+)/notes")
_HOST = re.compile(r"(?:[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?")


def _plain(status: int, text: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> HttpResponse:
    return HttpResponse(status, text.encode(), headers=headers)


class _BadHost(Exception):
    """The ``Host`` header is not ``host[:port]``."""


def _host(request: HttpRequest) -> str | None:
    """The ``Host`` header (``None`` if absent, as HTTP/1.0 allows).

    Raises:
        _BadHost: several of them, or one that is not a host name or address and a port.
    """
    values = request.header_values(b"host")
    if not values:
        return None
    text = values[0].decode("latin-1")
    match = _HOST.fullmatch(text)
    if len(values) > 1 or match is None or int(match["port"] or 0) > 65535:
        raise _BadHost
    return text


class BridgeApp:
    __slots__ = ("_warnings", "services")

    def __init__(self, services: Services) -> None:
        self.services = services
        self._warnings = LogThrottle()
        """Refused signatures and control-API credentials: logged, but not one line each."""

    def _warn(self, tag: str, message: str) -> None:
        for log in self._warnings.admit(Log("WARNING", tag, message), trio.current_time()):
            log_action(log)

    # -- the media stream -----------------------------------------------------------------

    async def refuse_websocket(self, request: HttpRequest) -> HttpResponse | None:
        if request.path.rstrip("/") != MEDIA_PATH:
            return _plain(404, "not found\n")
        if self.services.draining:
            return _plain(503, "draining\n")
        try:
            url = self.services.config.media_stream_url(_host(request))
        except _BadHost:
            return _plain(400, "bad Host header\n")
        if not self._signature_ok(request, url, {}):
            self._warn("TWILIO_SIGNATURE", "invalid or missing on the media stream upgrade")
            return _plain(403, "invalid signature\n")
        return None

    async def websocket(self, request: HttpRequest, ws: WebSocket) -> None:
        await run_call(self.services, TwilioLeg(ws))

    # -- plain HTTP -----------------------------------------------------------------------

    async def http(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        notes = _NOTES_PATH.fullmatch(path)
        if notes is not None:
            allowed: tuple[str, ...] = ("POST",)
        elif path.rstrip("/") == MEDIA_PATH:
            return _plain(426, "the media stream is a WebSocket\n", ((b"upgrade", b"websocket"),))
        elif path in _METHODS:
            allowed = _METHODS[path]
        else:
            return _plain(404, "not found\n")
        if request.method not in allowed:
            return _plain(405, "method not allowed\n", ((b"allow", ", ".join(allowed).encode()),))
        if notes is not None or path == "/calls":
            refused = self._control_refusal(request)
            if refused is not None:
                return refused
        if notes is not None:
            return await self._note(notes["call_sid"], request)
        try:
            return self._answer(request)
        except _BadHost:
            return _plain(400, "bad Host header\n")

    def _answer(self, request: HttpRequest) -> HttpResponse:
        """The answer of a route that needs no waiting (every one but the notes)."""
        services = self.services
        match request.path:
            case "/healthz":
                return _plain(200, "ok\n")
            case "/readyz":
                return _plain(503, "draining\n") if services.draining else _plain(200, "ready\n")
            case "/metrics":
                return HttpResponse(200, services.metrics.render(), CONTENT_TYPE_LATEST)
            case "/twilio/voice":
                return self._voice_webhook(request)
            case _:
                calls = [
                    {"call_sid": h.call_sid, "stream_sid": h.stream_sid, "epoch": h.barge_in_epoch}
                    for h in services.registry.active()
                ]
                return HttpResponse(200, json.dumps(calls).encode(), "application/json")

    def _signature_ok(
        self, request: HttpRequest, url: str, params: Mapping[str, list[str]]
    ) -> bool:
        token = self.services.config.twilio_auth_token
        if token is None:
            return True
        # Twilio sends one; several leave it open which one was meant: none counts.
        signatures = request.header_values(b"x-twilio-signature")
        return len(signatures) == 1 and is_valid_signature(
            token.reveal(), url, signatures[0], params
        )

    def _voice_webhook(self, request: HttpRequest) -> HttpResponse:
        config = self.services.config
        host = _host(request)
        params = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        base = (config.public_url or f"https://{host or 'localhost'}").rstrip("/")
        url = f"{base}{request.path}" + (f"?{request.query}" if request.query else "")
        if not self._signature_ok(request, url, params):
            self._warn("TWILIO_SIGNATURE", "invalid or missing on the voice webhook")
            return _plain(403, "invalid signature\n")
        stream_params = {k: params[k][0] for k in _WEBHOOK_PARAMS if params.get(k)}
        stream_url = config.media_stream_url(host)
        twiml = connect_stream(stream_url, stream_params, config.fallback_message)
        call_sid = clip(stream_params.get("CallSid", "?"))
        log_tagged("INFO", "VOICE_WEBHOOK", f"call={call_sid} → stream")
        return HttpResponse(200, twiml.encode(), "text/xml")

    # -- the control API ------------------------------------------------------------------

    def _control_refusal(self, request: HttpRequest) -> HttpResponse | None:
        """Why a control-API request is not served (off, or not authenticated), if it is not."""
        token = self.services.config.control_token
        if token is None:
            return _plain(404, "control API off (set BRIDGE_CONTROL_TOKEN)\n")
        if bearer_matches(request.header_values(b"authorization"), token.reveal().encode()):
            return None
        self._warn("CONTROL_AUTH", f"refused {request.method} {clip(request.path, 80)}")
        return _plain(
            401,
            "missing or wrong bearer token\n",
            ((b"www-authenticate", b'Bearer realm="bridge control"'),),
        )

    async def _note(self, call_sid: str, request: HttpRequest) -> HttpResponse:
        handle = self.services.registry.get(call_sid)
        if handle is None or handle.ended.is_set():
            return _plain(404, "no such live call\n")
        now = trio.current_time()
        # Counted before the body is read: a flood of bad requests is a flood all the same.
        if not handle.http_notes.take(now):
            retry_s = max(1, math.ceil(handle.http_notes.retry_after_s(now)))
            return _plain(
                429, "too many notes for this call\n", ((b"retry-after", str(retry_s).encode()),)
            )
        if not is_json_content_type(request.header(b"content-type")):
            return _plain(415, "expected Content-Type: application/json\n")
        note = parse_note(request.body, current_epoch=handle.barge_in_epoch)
        if isinstance(note, Refusal):
            return _plain(note.status, note.reason + "\n")
        accepted = await handle.send_note(
            note.text,
            respond=note.respond,
            awaits_confirmation=note.awaits_confirmation,
            epoch=note.epoch,
        )
        return _plain(202, "queued\n") if accepted else _plain(503, "not queued\n")
