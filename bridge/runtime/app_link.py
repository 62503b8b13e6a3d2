"""The call's link to the application: tool requests, exits (Twilio REST) and call events.

One :class:`AppLink` per call. The core hands it work through :class:`ToApp` actions
(:mod:`bridge.core.app_work`), which any task executes with :meth:`AppLink.accept`, a
non-blocking put; the HTTP and REST work runs in the link's own task of the call nursery
(:meth:`AppLink.run`), never in the task that handed it over: the OpenAI reader never waits
on an application.

Channels, and what happens when they are full:

* **work** (tool requests, cancels, exits), capacity ``2 × MAX_RUNNING + 4``: the core never
  has more than :data:`bridge.core.tools.MAX_RUNNING` calls running (it answers any more with
  an error output), so the channel cannot fill; a full one is a bug and raises.
* **events**, capacity :data:`EVENTS_QUEUE`: call events must never block the call, so a
  full queue drops the new event and counts it (``events_dropped``; the envelope's ``seq``
  has a gap the application can see). Delivery is in order, one at a time, each tried
  :data:`EVENT_ATTEMPTS` times (timeouts, connection errors, 5xx, 408 and 429 are retried;
  other 4xx are not), then dropped and counted. ``call.ended`` and whatever is still queued
  when the call ends are delivered by :meth:`AppLink.finish`, within :data:`FINAL_DRAIN_S`.

Requests are JSON, signed (:mod:`bridge.core.appsign`), with ``Idempotency-Key:
<CallSid>:<call_id>`` (``…:cancel`` for a cancel). A tool request::

    {"type": "tool.call", "tool": "lookup_order", "call_id": "call_…",
     "arguments": {"order_id": "4217"}, "call_sid": "CA…", "stream_sid": "MZ…",
     "epoch": 0, "idempotency_key": "CA…:call_…", "control_url": "http://…/calls/CA…"}

The reply: any 2xx with a JSON body (at most :data:`MAX_REPLY_BYTES`), which becomes the
call's output as it is; 204 or an empty body is ``{"ok": true}``. A timeout (the tool's
``timeout_s``), another status, a body that is not JSON, or a connection error becomes an
error output for the model; the call goes on. A cancel (``"type": "tool.cancel"``, same
URL) is sent once, bounded by :data:`CANCEL_S`; its answer is ignored. The original request
is not aborted: if its result still comes, the core drops and counts it.
"""

from __future__ import annotations

import functools
import json
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, assert_never

import httpx
import trio
from loguru import logger

from bridge.core.actions import Action, SendUpstream
from bridge.core.app_work import AppWork, CancelTool, EmitEvent, RunExit, RunTool
from bridge.core.appsign import SIGNATURE_HEADER, signature
from bridge.core.call import CallCore
from bridge.core.call_events import CallEnded, CallEvent, event_data
from bridge.core.records import ToolDeliveredReport, report
from bridge.core.tools import MAX_RUNNING, ToolResult
from bridge.core.twiml import dial
from bridge.logs import log_action, log_tagged
from bridge.runtime.services import Services

Execute = Callable[[Sequence[Action]], Awaitable[None]]
Job = RunTool | CancelTool | RunExit
"""The work the link's task does (call events have their own queue)."""

WORK_QUEUE: Final = 2 * MAX_RUNNING + 4
EVENTS_QUEUE: Final = 256
EVENT_ATTEMPTS: Final = 3
EVENT_BACKOFF_S: Final = (0.0, 0.25, 1.0)
EVENT_TIMEOUT_S: Final = 2.0
FINAL_DRAIN_S: Final = 3.0
CANCEL_S: Final = 2.0
REST_S: Final = 3.0
MAX_REPLY_BYTES: Final = 64 * 1024
CONNECT_S: Final = 2.0


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every call's client (building one loads the CA bundle: ~10 ms)."""
    return ssl.create_default_context()


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=_tls(),
        timeout=httpx.Timeout(None, connect=CONNECT_S),  # the overall bound is a cancel scope
        limits=httpx.Limits(max_connections=MAX_RUNNING + 2, max_keepalive_connections=4),
        follow_redirects=False,
    )


async def own_base_url(host: str, port: int) -> str:
    """``http://<address>:<port>`` of this process, for ``BRIDGE_INTERNAL_URL``'s default.

    A wildcard bind (``0.0.0.0``, ``::``) is not an address anyone can reach: the host name's
    address is used (a pod's IP in Kubernetes, where ``/etc/hosts`` maps it), else loopback.
    """
    address = host
    if host in ("0.0.0.0", "::", ""):
        address = "127.0.0.1"
        with trio.move_on_after(1.0):
            try:
                infos = await trio.socket.getaddrinfo(
                    socket.gethostname(), port, type=socket.SOCK_STREAM
                )
            except OSError:
                infos = []
            for family, *_rest, sockaddr in infos:
                if family == socket.AF_INET:
                    address = str(sockaddr[0])
                    break
    netloc = f"[{address}]" if ":" in address else address
    return f"http://{netloc}:{port}"


class AppLink:
    """See the module docstring."""

    __slots__ = (
        "_core",
        "_events_recv",
        "_events_send",
        "_in_flight_event",
        "_seq",
        "_services",
        "_work_recv",
        "_work_send",
    )

    def __init__(self, services: Services, core: CallCore) -> None:
        self._services = services
        self._core = core
        self._work_send, self._work_recv = trio.open_memory_channel[Job](WORK_QUEUE)
        self._events_send, self._events_recv = trio.open_memory_channel[dict[str, Any]](
            EVENTS_QUEUE
        )
        self._seq = 0
        self._in_flight_event: dict[str, Any] | None = None

    @property
    def control_url(self) -> str:
        return self._services.control_url(self._core.call_sid)

    # -- any task: hand work over, never blocking -----------------------------------------

    def accept(self, work: AppWork) -> None:
        match work:
            case EmitEvent(event=event):
                self.emit(event)
            case RunTool() | CancelTool() | RunExit():
                # Cannot be full: the core caps the calls running (see the module docstring).
                self._work_send.send_nowait(work)
            case _:
                assert_never(work)

    def emit(self, event: CallEvent) -> None:
        """Queue a call event; a full queue drops it (counted)."""
        if self._services.config.events_url is None:
            return
        self._seq += 1
        envelope = {
            "type": event.TYPE,
            "seq": self._seq,
            "call_sid": self._core.call_sid,
            "stream_sid": self._core.stream_sid,
            "control_url": self.control_url,
            "data": event_data(event),
        }
        try:
            self._events_send.send_nowait(envelope)
        except trio.WouldBlock:
            self._core.count_event(dropped=True)
            log_tagged("WARNING", "EVENT_DROPPED", f"{event.TYPE} #{self._seq}: queue full")
            return
        self._core.count_event(dropped=False)

    # -- the link's task ------------------------------------------------------------------

    async def run(self, execute: Execute) -> None:
        """Serve tool requests, exits and event delivery until cancelled; ``execute`` runs
        the core's actions for their outcomes (:func:`bridge.runtime.callio.execute`)."""
        async with _client() as client, trio.open_nursery() as nursery:
            if self._services.config.events_url is not None:
                nursery.start_soon(self._deliver_events, client)
            async for work in self._work_recv:
                self._start(work, client, nursery, execute)

    def _start(
        self, work: Job, client: httpx.AsyncClient, nursery: trio.Nursery, execute: Execute
    ) -> None:
        match work:
            case RunTool():
                nursery.start_soon(self._run_tool, client, work, execute)
            case CancelTool():
                nursery.start_soon(self._cancel_tool, client, work)
            case RunExit():
                nursery.start_soon(self._run_exit, work, execute)
            case _:
                assert_never(work)

    # -- tools ----------------------------------------------------------------------------

    def _headers(self, body: bytes, key: str) -> dict[str, str]:
        secret = self._services.config.app_secret
        headers = {"content-type": "application/json", "idempotency-key": key}
        if secret is not None:
            headers[SIGNATURE_HEADER] = signature(secret.reveal(), int(time.time()), body)
        return headers

    def _body(self, kind: str, **fields: object) -> bytes:
        core = self._core
        body = {
            "type": kind,
            **fields,
            "call_sid": core.call_sid,
            "stream_sid": core.stream_sid,
            "control_url": self.control_url,
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    async def _run_tool(self, client: httpx.AsyncClient, work: RunTool, execute: Execute) -> None:
        key = f"{self._core.call_sid}:{work.call_id}"
        body = self._body(
            "tool.call",
            tool=work.tool,
            call_id=work.call_id,
            arguments=json.loads(work.arguments),
            epoch=work.epoch,
            idempotency_key=key,
        )
        result = ToolResult("timeout", detail=f"no answer within {work.timeout_s:g} s")
        with trio.move_on_after(work.timeout_s):
            result = await self._post_tool(client, work.url, body, key)
        replied = trio.current_time()
        actions = self._core.on_tool_result(work.call_id, result, replied)
        # The output, when there is one, is the first action: it goes before anything else.
        await execute(actions[:1])
        delivered = bool(actions) and isinstance(actions[0], SendUpstream)
        if result.outcome != "timeout" and delivered:
            took = (trio.current_time() - replied) * 1000.0
            record = ToolDeliveredReport(work.tool, work.call_id, round(took, 3))
            log_action(report("INFO", record))
        await execute(actions[1:])

    async def _post_tool(
        self, client: httpx.AsyncClient, url: str, body: bytes, key: str
    ) -> ToolResult:
        try:
            async with client.stream(
                "POST", url, content=body, headers=self._headers(body, key)
            ) as r:
                reply = bytearray()
                async for chunk in r.aiter_bytes():
                    reply += chunk
                    if len(reply) > MAX_REPLY_BYTES:
                        return ToolResult("too_large", detail=f"reply over {MAX_REPLY_BYTES} bytes")
                status = r.status_code
        except httpx.HTTPError as exc:
            return ToolResult("unreachable", detail=f"{type(exc).__name__}: {exc}"[:200])
        if not 200 <= status < 300:
            return ToolResult("http_status", detail=f"the application answered HTTP {status}")
        if status == 204 or not reply.strip():
            return ToolResult("ok", output='{"ok":true}', detail=f"HTTP {status}")
        try:
            value = json.loads(reply)
        except ValueError:
            return ToolResult("invalid_json", detail="the application's reply is not JSON")
        output = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return ToolResult("ok", output=output, detail=f"HTTP {status}")

    async def _cancel_tool(self, client: httpx.AsyncClient, work: CancelTool) -> None:
        key = f"{self._core.call_sid}:{work.call_id}:cancel"
        body = self._body(
            "tool.cancel",
            tool=work.tool,
            call_id=work.call_id,
            reason=work.reason,
            idempotency_key=key,
        )
        status: str = "timed out"
        with trio.move_on_after(CANCEL_S):
            try:
                response = await client.post(
                    work.url, content=body, headers=self._headers(body, key)
                )
                status = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                status = f"{type(exc).__name__}"
        log_tagged("DEBUG", "TOOL_CANCEL_SENT", f"{work.tool} call_id={work.call_id}: {status}")

    # -- exits ----------------------------------------------------------------------------

    async def _run_exit(self, work: RunExit, execute: Execute) -> None:
        rest = self._services.rest
        call_sid = self._core.call_sid
        ok, detail = False, "Twilio REST is not configured"
        if rest is not None:
            detail = f"no answer from Twilio within {REST_S:g} s"
            with trio.move_on_after(REST_S):
                if work.kind == "end_call":
                    result = await rest.end(call_sid)
                else:
                    assert work.destination is not None
                    result = await rest.redirect(call_sid, dial(work.destination))
                ok, detail = result.ok, result.detail
            self._services.metrics.rest_hangup(ok)
        await execute(self._core.on_exit_result(work.call_id, ok, detail, trio.current_time()))

    # -- call events ----------------------------------------------------------------------

    async def _deliver_events(self, client: httpx.AsyncClient) -> None:
        async for envelope in self._events_recv:
            self._in_flight_event = envelope
            await self._post_event(client, envelope)
            self._in_flight_event = None

    async def _post_event(self, client: httpx.AsyncClient, envelope: dict[str, Any]) -> None:
        url = self._services.config.events_url
        assert url is not None
        key = f"{self._core.call_sid}:event:{envelope['seq']}"
        why = ""
        for backoff in EVENT_BACKOFF_S[:EVENT_ATTEMPTS]:
            await trio.sleep(backoff)
            envelope["sent_at"] = round(time.time(), 3)
            body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
            why = f"no answer within {EVENT_TIMEOUT_S:g} s"
            with trio.move_on_after(EVENT_TIMEOUT_S):
                try:
                    response = await client.post(
                        url, content=body, headers=self._headers(body, key)
                    )
                except httpx.HTTPError as exc:
                    why = type(exc).__name__
                    continue
                if response.is_success:
                    return
                why = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    break
        self._core.count_event(dropped=True)
        log_tagged("WARNING", "EVENT_DROPPED", f"{envelope['type']} #{envelope['seq']}: {why}")

    async def finish(self, ended: CallEnded) -> None:
        """After the call's tasks: ``call.ended`` and any events still queued, in order,
        within :data:`FINAL_DRAIN_S` (the caller of this is shielded)."""
        if self._services.config.events_url is None:
            return
        self.emit(ended)
        pending = [self._in_flight_event] if self._in_flight_event is not None else []
        while True:
            try:
                pending.append(self._events_recv.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        delivered = 0
        with trio.move_on_after(FINAL_DRAIN_S) as scope:
            async with _client() as client:
                for envelope in pending:
                    await self._post_event(client, envelope)
                    delivered += 1
        if scope.cancelled_caught:
            for _ in pending[delivered:]:
                self._core.count_event(dropped=True)
            logger.warning(
                "EVENT_DROPPED {} call event(s) undelivered after {} s",
                len(pending) - delivered,
                FINAL_DRAIN_S,
            )
