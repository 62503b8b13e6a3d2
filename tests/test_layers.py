"""The runtime knows no simulator: a production ``bridge serve`` never imports ``bridge.sim``.

The import contracts themselves (core without Trio, runtime without the simulator, ...) are
checked by ``lint-imports`` in ``make test``; this test checks the process a user runs.
``python -X importtime`` lists every module a process imports, so the test runs the real
``bridge serve`` until it is ready, stops it with SIGTERM and reads that list.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import trio

from bridge.core.records import BridgeReady, read_record


async def _modules_imported_by_serve(env: dict[str, str]) -> set[str]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-X", "importtime", "-m", "bridge.cli", "serve"],
        env={**os.environ, **env, "BRIDGE_HOST": "127.0.0.1", "BRIDGE_PORT": "0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    output = b""
    try:
        with trio.fail_after(20):
            ready = False
            while not ready:
                chunk = await process.stderr.receive_some()
                assert chunk, "bridge serve exited before it was ready:\n" + output.decode()
                output += chunk
                for line in output.decode(errors="replace").splitlines():
                    if line.startswith("{"):
                        extra = json.loads(line)["record"]["extra"]
                        ready = ready or read_record(BridgeReady, extra) is not None
            process.send_signal(signal.SIGTERM)
            while chunk := await process.stderr.receive_some():
                output += chunk
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    return {
        line.rsplit("|", 1)[1].strip()
        for line in output.decode(errors="replace").splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize(
    ("env", "loads_the_simulator"),
    [
        # A key (never used: no call is made) selects the real upstream.
        ({"OPENAI_API_KEY": "sk-not-used"}, False),
        # No key and no URL: the embedded simulated upstream, as `make demo` uses it.
        ({"OPENAI_API_KEY": "", "OPENAI_REALTIME_URL": ""}, True),
    ],
)
async def test_bridge_serve_with_a_key_never_imports_the_simulator(
    env: dict[str, str], loads_the_simulator: bool
) -> None:
    modules = await _modules_imported_by_serve({**env, "BRIDGE_LOG_FORMAT": "json"})
    assert "bridge.runtime.server" in modules  # the listing really covers the server
    simulator = sorted(m for m in modules if m == "bridge.sim" or m.startswith("bridge.sim."))
    assert bool(simulator) is loads_the_simulator, simulator
