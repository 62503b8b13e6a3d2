"""The command line: a user's mistake is one line and exit status 2, a bug its traceback.

Refusals are checked in-process with :func:`bridge.cli.main` (they happen before logging is
set up or Trio starts). The port-in-use case runs ``serve`` in-process against a socket
already listening on 127.0.0.1; ``bridge call``'s exit status runs the real command in a
subprocess against an in-process bridge whose upstream refuses connections.
"""

from __future__ import annotations

import errno
import gc
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from bridge import cli
from bridge.config import SETTINGS
from bridge.sim.caller import call_failure
from bridge.sim.caller_options import check_wav_out
from bridge.sim.report import CloseInfo
from tests.harness import start_rig

MEDIA_URL = "ws://127.0.0.1:1/twilio/media"
"""A valid media URL for refusals that happen before anything connects."""


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)


@pytest.fixture
def no_log_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` would replace the process's loguru sinks, the test's captures with them."""
    monkeypatch.setattr(cli, "configure_logging", lambda **_: None)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there now: connections are refused


@pytest.mark.parametrize(
    ("argv", "environ", "line"),
    [
        (
            ["serve"],
            {"BRIDGE_HEARTBEAT_S": "nan"},
            "BRIDGE_HEARTBEAT_S='nan': must be a finite number of seconds in 1..300",
        ),
        (
            ["serve"],
            {"BRIDGE_MAX_CALL_S": "nan"},
            "BRIDGE_MAX_CALL_S='nan': must be a finite number of seconds in 1..86400",
        ),
        (
            ["serve"],
            {"BRIDGE_PORT": "99999"},
            "BRIDGE_PORT='99999': must be an integer in 0..65535 (0: any free port)",
        ),
        (
            ["serve", "--port", "99999"],
            {},
            "--port='99999': must be an integer in 0..65535 (0: any free port)",
        ),
        (["serve", "--host", "a b"], {}, "--host='a b': must be an IP address or a host name"),
        (
            ["serve", "--public-url", "bridge.example.com"],
            {},
            "--public-url='bridge.example.com': must be a URL (https://, http://, wss:// or "
            "ws://) with a host and no query or fragment",
        ),
        (
            ["serve"],
            {"OPENAI_REALTIME_URL": "https://api.openai.com/v1/realtime"},
            "OPENAI_REALTIME_URL='https://api.openai.com/v1/realtime': must be a URL (wss:// or "
            "ws://) with a host and no fragment",
        ),
        (
            ["serve"],
            {"TWILIO_API_BASE_URL": "api.twilio.com"},
            "TWILIO_API_BASE_URL='api.twilio.com': must be a URL (https:// or http://) with a "
            "host and no query or fragment",
        ),
        (
            ["serve", "--log-level", "info"],
            {},
            "--log-level='info': must be one of DEBUG, INFO, WARNING, ERROR",
        ),
        (
            ["demo", "--fast-barge-in", "fast"],
            {},
            "--fast-barge-in='fast': must be one of off, duck",
        ),
        (
            ["demo", "--script", "sing"],
            {},
            "--script='sing': must be demo, talk, listen or listen:SECONDS",
        ),
        (
            ["call", "--url", "http://127.0.0.1:8080/twilio/media"],
            {},
            "--url='http://127.0.0.1:8080/twilio/media': must be a URL (ws:// or wss://) with a "
            "host and no fragment",
        ),
        (
            ["call", "--url", MEDIA_URL, "--max-duration", "nan"],
            {},
            "--max-duration='nan': must be a finite number of seconds in 0.1..3600",
        ),
        (
            ["call", "--url", MEDIA_URL, "--out-rate", "0"],
            {},
            "--out-rate='0': must be a whole number of Hz in 8000..48000",
        ),
        (
            ["call", "--url", MEDIA_URL, "--noise-dbfs", "inf"],
            {},
            "--noise-dbfs='inf': must be a finite number of dBFS in -120..0",
        ),
        (
            ["call", "--url", MEDIA_URL, "--lose", "3000:0"],
            {},
            "--lose='3000:0': must be START_MS:LENGTH_MS[,...] in whole ms, start >= 0 and "
            "length > 0",
        ),
        (
            ["call", "--url", MEDIA_URL, "--script", "listen:nan"],
            {},
            "--script='listen:nan': must be demo, talk, listen or listen:SECONDS",
        ),
        (
            ["call", "--url", MEDIA_URL],
            {"BRIDGE_LOG_FORMAT": "xml"},
            "BRIDGE_LOG_FORMAT='xml': must be one of text, json",
        ),
        (
            ["sim-upstream", "--port", "99999"],
            {},
            "--port='99999': must be an integer in 0..65535 (0: any free port)",
        ),
        (
            ["sim-upstream", "--fault", "explode@100"],
            {},
            "--fault='explode@100': must be comma-separated faults such as close1011@3000, "
            "error:CODE@1500 or stall@2500+1000 (kinds: close, malformed, notype, unknown, "
            "error, stall); error@1500,close1011@1500 is a server error followed by a close",
        ),
        (
            ["sim-upstream", "--handshake-delay-ms", "-5"],
            {},
            "--handshake-delay-ms='-5': must be a finite number of ms in 0..60000",
        ),
        (
            ["sim-upstream", "--session-max-s", "0"],
            {},
            "--session-max-s='0': must be a finite number of seconds in 1..86400",
        ),
        (
            ["sim-upstream", "--refuse-reconnects", "x"],
            {},
            "--refuse-reconnects='x': must be an integer in 0..100",
        ),
    ],
)
def test_a_bad_value_is_one_line_and_exit_status_2(
    argv: list[str],
    environ: dict[str, str],
    line: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"bridge: {line}\n")


@pytest.mark.parametrize("command", ["call", "demo"])
def test_an_out_file_that_cannot_be_written_is_refused_before_the_call(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    argv = [command, "--out", str(tmp_path)] + (["--url", MEDIA_URL] if command == "call" else [])
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == (
        f"bridge: --out={str(tmp_path)!r}: cannot be written (Is a directory)\n"
    )
    inside_a_file = blocker / "heard.wav"
    assert cli.main([command, "--out", str(inside_a_file), *argv[3:]]) == 2
    assert capsys.readouterr().err == (
        f"bridge: --out={str(inside_a_file)!r}: cannot be written (File exists: {blocker})\n"
    )


def test_the_out_check_leaves_no_file_behind_and_keeps_an_existing_one(tmp_path: Path) -> None:
    new = tmp_path / "out" / "heard.wav"
    check_wav_out(new)
    assert new.parent.is_dir()
    assert not new.exists()
    old = tmp_path / "old.wav"
    old.write_bytes(b"RIFF")
    check_wav_out(old)
    assert old.read_bytes() == b"RIFF"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.usefixtures("no_log_sink")
def test_serve_on_a_port_in_use_is_one_line_and_exit_status_2(
    busy_port: int,
    closed_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_REALTIME_URL", f"ws://127.0.0.1:{closed_port}/v1/realtime")
    assert cli.main(["serve", "--host", "127.0.0.1", "--port", str(busy_port)]) == 2
    gc.collect()  # a socket left open by the failed bind would warn here (warnings are errors)
    err = capsys.readouterr().err
    assert err.endswith(f"bridge: port {busy_port} on 127.0.0.1 is already in use\n")
    assert "Traceback" not in err


@pytest.mark.usefixtures("no_log_sink")
def test_sim_upstream_on_a_port_in_use_is_one_line_and_exit_status_2(
    busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sim-upstream", "--port", str(busy_port)]) == 2
    assert capsys.readouterr().err == f"bridge: port {busy_port} on 127.0.0.1 is already in use\n"


@pytest.mark.usefixtures("no_log_sink")
def test_a_bug_in_serve_still_raises_with_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("bridge.runtime.server.serve_until_signal", broken)
    monkeypatch.setenv("OPENAI_REALTIME_URL", "ws://127.0.0.1:9/v1/realtime")
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["serve", "--port", "0"])


def _in_use() -> OSError:
    return OSError(errno.EADDRINUSE, "Address already in use")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (_in_use(), "port 8080 on 0.0.0.0 is already in use"),
        (
            ExceptionGroup("serve", [ExceptionGroup("worker", [_in_use()])]),
            "port 8080 on 0.0.0.0 is already in use",
        ),
        (
            OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
            "cannot listen on 0.0.0.0: not an address of this machine",
        ),
        (
            OSError(errno.EACCES, "Permission denied"),
            "not allowed to listen on port 8080 on 0.0.0.0 (ports below 1024 need privileges)",
        ),
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "cannot listen on 0.0.0.0: Name or service not known",
        ),
        (ExceptionGroup("serve", [_in_use(), RuntimeError("a bug")]), None),
        (OSError(errno.ECONNREFUSED, "Connection refused"), None),
        (RuntimeError("a bug"), None),
    ],
)
def test_only_a_failure_to_listen_becomes_one_line(
    error: BaseException, reason: str | None
) -> None:
    assert cli.listen_failure(error, "0.0.0.0", 8080) == reason


async def test_call_failure_names_an_abnormal_close_and_a_call_without_audio(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, closed_port: int
) -> None:
    with trio.fail_after(30):
        good = await start_rig(nursery)
        completed = await good.complete_call("listen:1")
        failing = await start_rig(
            nursery, upstream_url=f"ws://127.0.0.1:{closed_port}/v1", reconnect_attempts=0
        )
        failed = await failing.caller("listen:10").run()
        # The caller sees the close before the bridge's cleanup (REST hang-up) is over.
        await (await failing.server.registry.wait_for_call(failed.call_sid)).ended.wait()
    assert call_failure(completed.report) is None
    failure = call_failure(failed)
    assert failure is not None
    assert failure.startswith("the bridge ended the call with code 1011: openai_handshake_failed")
    silent = completed.report
    silent.media_sent = silent.media_lost = 0
    assert call_failure(silent) == "the call ended before any caller audio was sent (0 s)"
    silent.close = CloseInfo(by="bridge", code=None, reason=None, t_ms=0.0)
    assert call_failure(silent) == "the bridge ended the call without a close code"


async def test_bridge_call_exits_1_when_the_bridge_closes_with_1011(
    nursery: trio.Nursery, closed_port: int
) -> None:
    rig = await start_rig(
        nursery,
        upstream_url=f"ws://127.0.0.1:{closed_port}/v1/realtime",
        twilio_auth_token=None,
    )
    environ = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-m", "bridge.cli", "call", "--url", rig.server.media_url],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=environ,
        )
    assert done.returncode == 1
    last = done.stderr.decode().splitlines()[-1]
    assert last.startswith("bridge call: the bridge ended the call with code 1011: ")
    assert b"Traceback" not in done.stderr
