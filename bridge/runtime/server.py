"""The bridge process: one port (:mod:`bridge.runtime.http`) for the webhook and the stream.

:func:`run_bridge` is also the library entry point for Trio integration tests::

    async with trio.open_nursery() as nursery:
        server = await nursery.start(run_bridge, config)
        ...  # connect a caller to server.media_url, look calls up in server.registry
        server.shutdown()

The runtime knows no simulator: the upstream is ``config.realtime_url`` (the real service by
default), or ``upstream_url`` when the caller of :func:`run_bridge` runs one of its own (the
CLI and the demo start the embedded simulated upstream and pass its URL).

Shutdown is graceful: the port stays open while open calls get ``GRACEFUL_S`` to finish,
``/readyz`` answers 503 and new media streams are refused with 503 (a load balancer drains,
Twilio plays the fallback); calls still open then are cancelled, and each ends through its
normal cleanup (``CALL_END reason=server_shutdown``).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from functools import partial

import httpx
import trio

from bridge.config import BridgeConfig, ConfigError, check_together
from bridge.core.records import BridgeReady, report
from bridge.logs import log_action, log_tagged
from bridge.runtime.app_link import own_base_url
from bridge.runtime.hangup import TwilioRest
from bridge.runtime.http import HttpLimits, serve_http
from bridge.runtime.registry import CallRegistry
from bridge.runtime.routes import BridgeApp
from bridge.runtime.services import Services

GRACEFUL_S = 10.0


@dataclass(frozen=True, slots=True)
class BridgeServer:
    """A running bridge: where it listens, its live calls, and how to stop it."""

    host: str
    port: int
    services: Services
    _stop: trio.Event

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def media_url(self) -> str:
        return f"ws://{self.host}:{self.port}/twilio/media"

    @property
    def registry(self) -> CallRegistry:
        return self.services.registry

    def shutdown(self) -> None:
        self.services.draining = True
        self._stop.set()


async def run_bridge(
    config: BridgeConfig,
    *,
    upstream_url: str | None = None,
    task_status: trio.TaskStatus[BridgeServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until :meth:`BridgeServer.shutdown` and the drain (or cancellation).

    ``upstream_url`` replaces ``config.realtime_url`` (a simulated or fake upstream).

    Raises:
        ConfigError: the configuration asks for the embedded simulated upstream (no key and
            no URL) and no ``upstream_url`` was given: the runtime cannot start one itself;
            or settings that only work together are not all set (:func:`check_together`).
        OSError: the port cannot be bound.
    """
    if upstream_url is None and config.uses_embedded_upstream:
        raise ConfigError(
            "no upstream: set OPENAI_API_KEY or OPENAI_REALTIME_URL, or pass upstream_url= "
            "(bridge.sim.upstream.SimUpstream serves one for tests)"
        )
    check_together(config)
    upstream = upstream_url or config.realtime_url
    log_tagged("INFO", "BRIDGE_START", f"upstream {upstream}")
    rest_auth = (
        (config.twilio_account_sid or "", config.twilio_auth_token.reveal())
        if config.twilio_auth_token is not None
        else None
    )
    async with (
        httpx.AsyncClient(
            base_url=config.twilio_api_base_url,
            auth=rest_auth,
            timeout=httpx.Timeout(2.0, connect=1.0),
            limits=httpx.Limits(max_connections=20),
        ) as http,
        trio.open_nursery() as nursery,
    ):
        rest = (
            TwilioRest(http, config.twilio_account_sid or "", config.fallback_message)
            if config.twilio_rest_enabled
            else None
        )
        services = Services(config, upstream, rest)
        stop = trio.Event()
        host, port = await nursery.start(
            serve_http, BridgeApp(services), config.host, config.port, HttpLimits()
        )
        server = BridgeServer(host, port, services, stop)
        if config.internal_url is None:  # tools: each call's control URL names this process
            services.internal_base_url = await own_base_url(config.host, server.port)
        log_action(report("INFO", BridgeReady(server.host, server.port)))
        task_status.started(server)
        await stop.wait()
        # Draining (services.draining is set): the open calls may finish on their own.
        with trio.move_on_after(GRACEFUL_S):
            await services.registry.wait_until_idle()
        nursery.cancel_scope.cancel()


async def serve_until_signal(config: BridgeConfig, *, upstream_url: str | None = None) -> None:
    """``bridge serve``: run until SIGTERM/SIGINT, then drain gracefully."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            server: BridgeServer = await nursery.start(
                partial(run_bridge, config, upstream_url=upstream_url)
            )
            async for signum in signals:
                log_tagged(
                    "INFO",
                    "BRIDGE_DRAIN",
                    f"{signal.Signals(signum).name}: refusing new calls, "
                    f"open calls get {GRACEFUL_S:g} s",
                )
                server.shutdown()
                break
