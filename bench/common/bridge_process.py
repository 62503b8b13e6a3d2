"""The bridge under test as its own process: ``bridge serve --log-format json``.

It listens on a free port (``--port 0``) and says which in its typed ``BRIDGE_READY``
record; it is ready once ``GET /readyz`` answers 200. It is stopped with SIGTERM (it drains
calls for up to its 10 s grace period), then SIGKILL, and always reaped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import trio

from bench.common.bridge_log import parse_log, read_log, records
from bridge.config import ConfigError, load_config
from bridge.core.records import BridgeReady, CallFinished

READY_TIMEOUT_S: Final = 20.0
STOP_TIMEOUT_S: Final = 12.0
"""SIGTERM drains for up to 10 s (the bridge's graceful period) before we kill."""
POLL_S: Final = 0.05

_NOT_PASSED_ON: Final = (
    "OPENAI_API_KEY",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "BRIDGE_HOST",
    "BRIDGE_PORT",
    "BRIDGE_PUBLIC_URL",
)


BRIDGE_BIN_VARIABLE: Final = "BENCH_BRIDGE_BIN"
"""Names another ``bridge`` executable to measure (another build, e.g. an older commit's
venv), under the same simulated upstream and callers: an A/B on the same machine."""


def bridge_command(port: int = 0) -> list[str]:
    """``bridge serve``: the executable :data:`BRIDGE_BIN_VARIABLE` names, or the one in this
    interpreter's environment (the venv's console script)."""
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--log-format", "json"]
    chosen = os.environ.get(BRIDGE_BIN_VARIABLE)
    if chosen:
        return [chosen, *args]
    script = Path(sys.executable).parent / "bridge"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "bridge.cli"]
    return [*head, *args]


def bridge_env(upstream_url: str, settings: Mapping[str, str]) -> dict[str, str]:
    """This environment, minus keys and Twilio credentials, pointed at the sim upstream,
    with the bench's ``settings`` (``BRIDGE_*`` variables) on top."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_PASSED_ON}
    env["OPENAI_REALTIME_URL"] = upstream_url
    env.update(settings)
    env["BRIDGE_LOG_FORMAT"] = "json"
    env["BRIDGE_LOG_LEVEL"] = "INFO"
    return env


def effective_settings(settings: Mapping[str, str]) -> dict[str, Any]:
    """The bridge's settings that shape the figures, as its child environment makes them."""
    try:
        config = load_config(bridge_env("ws://127.0.0.1:1/", settings))
    except ConfigError as exc:
        return {"error": str(exc)}
    return {
        "tx_frame_ms": config.tx_frame_ms,
        "tx_lead_ms": config.tx_lead_ms,
        "fast_barge_in": config.fast_barge_in,
        "confirm_window_ms": config.confirm_window_ms,
        "audio_gate": config.audio_gate,
    }


@dataclass(frozen=True, slots=True)
class BridgeProcess:
    process: trio.Process
    host: str
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def media_url(self) -> str:
        return f"ws://{self.host}:{self.port}/twilio/media"


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _wait_ready(process: trio.Process, log_path: Path) -> BridgeReady:
    """Until the log has the ``BRIDGE_READY`` record and ``GET /readyz`` answers 200."""
    with trio.fail_after(READY_TIMEOUT_S):
        ready: BridgeReady | None = None
        while ready is None:
            if process.returncode is not None:
                raise RuntimeError(
                    f"bridge exited with {process.returncode} before it was ready:\n"
                    + _log_tail(log_path)
                )
            text = await trio.Path(log_path).read_text(errors="replace")
            found = records(parse_log(text), BridgeReady)
            if found:
                ready = found[0][1]
            else:
                await trio.sleep(POLL_S)
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                try:
                    response = await http.get(f"http://{ready.host}:{ready.port}/readyz")
                    if response.status_code == 200:
                        return ready
                except httpx.TransportError:
                    pass
                await trio.sleep(POLL_S)


async def stop_process(process: trio.Process, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; always reaps. Shielded."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(timeout_s):
                await process.wait()
        if process.returncode is None:
            process.kill()
        await process.wait()


@asynccontextmanager
async def bridge_process(
    upstream_url: str, log_path: Path, settings: Mapping[str, str]
) -> AsyncIterator[BridgeProcess]:
    """Run ``bridge serve`` on a free port with JSON logs to ``log_path``; stop it on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = await trio.lowlevel.open_process(
            bridge_command(),
            env=bridge_env(upstream_url, settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            ready = await _wait_ready(process, log_path)
            yield BridgeProcess(process, ready.host, ready.port, log_path)
        finally:
            await stop_process(process)


async def wait_call_ends(log_path: Path, call_sids: set[str], timeout_s: float) -> int:
    """Until the bridge logged ``CALL_END`` for every call (or ``timeout_s``); how many did."""
    ended: set[str] = set()
    with trio.move_on_after(timeout_s):
        while True:
            lines = await trio.to_thread.run_sync(read_log, log_path)
            ended = {
                sid
                for line, _ in records(lines, CallFinished)
                if (sid := line.call_sid) in call_sids
            }
            if ended >= call_sids:
                break
            await trio.sleep(0.1)
    return len(ended)
