"""Every stated input limit (README "Limits") is enforced, with the answer it states.

The notes limits (text length, notes per call per second) are in ``test_control_api.py``,
the signature header's in ``test_signature_headers.py``; the README table is checked
against the constants here.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock
from trio_websocket import ConnectionClosed, WebSocketConnection

from bridge.core import control, inboundgap, logsafe, ratelimit
from bridge.core.signature import compute_signature
from bridge.core.twilio import MAX_MEDIA_PAYLOAD_BYTES
from bridge.runtime.http import HttpLimits
from bridge.sim import wire
from tests.conftest import LogCapture
from tests.harness import AUTH_TOKEN, TEST_CONFIG, Rig, start_rig
from tests.wsclient import connect

README = Path(__file__).parent.parent / "README.md"
LIMITS = HttpLimits()


def _limits_table() -> dict[str, str]:
    """README "Limits" rows: first cell → the whole row."""
    lines = README.read_text().splitlines()
    start = lines.index("| Input | Limit | Answer |")
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows[line.split("|")[1].strip()] = line
    return rows


@pytest.mark.parametrize(
    ("row", "stated"),
    [
        ("HTTP request head", f"{LIMITS.max_head_bytes // 1024} KiB"),
        ("HTTP request body", f"{LIMITS.max_body_bytes // 1024} KiB"),
        ("HTTP request time", f"{LIMITS.request_timeout_s:g} s"),
        ("WebSocket message", f"{LIMITS.max_ws_message_bytes // 2**20} Mi"),
        ("Time to `start`", f"{TEST_CONFIG.start_timeout_s:g} s"),
        ("Caller media on a started stream", f"{TEST_CONFIG.media_timeout_s:g} s"),
        ("Media payload", f"{MAX_MEDIA_PAYLOAD_BYTES} bytes"),
        ("Note text", f"{control.MAX_NOTE_CHARS} characters"),
        ("Notes per call", f"{control.NOTES_PER_S:g} per second"),
        ("Notes per call", f"burst of {control.NOTES_BURST}"),
        ("Silence filled for missing caller audio", f"{inboundgap.DEFAULT_MAX_FILL_MS // 1000} s"),
        ("Silence filled for missing caller audio", f"{inboundgap.FILL_AHEAD_MS // 1000} s"),
        ("Repeated warnings", f"first {ratelimit.LOG_BURST}"),
        ("Repeated warnings", f"{ratelimit.LOG_INTERVAL_S:g} s"),
        ("Custom parameters in `CALL_START`", f"{logsafe.MAX_LOGGED_PARAMETERS} shown"),
        ("Custom parameters in `CALL_START`", f"{logsafe.MAX_LOGGED_VALUE_CHARS} characters"),
    ],
)
def test_the_readme_states_each_limit_as_enforced(row: str, stated: str) -> None:
    assert stated in _limits_table()[row]


# -- the media stream -----------------------------------------------------------------------


def _signed(rig: Rig) -> list[tuple[bytes, bytes]]:
    url = f"wss://{rig.server.host}:{rig.server.port}/twilio/media"
    return [(b"x-twilio-signature", compute_signature(AUTH_TOKEN, url).encode())]


async def _close_code(ws: WebSocketConnection) -> int | None:
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed as closed:
        return closed.reason.code


@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_a_websocket_message_over_the_limit_closes_the_stream_with_1009(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture, kind: str
) -> None:
    size = LIMITS.max_ws_message_bytes + 1
    message: str | bytes = "x" * size if kind == "text" else b"x" * size
    with trio.fail_after(20):
        rig = await start_rig(nursery)
        async with connect(rig.server.media_url, _signed(rig)) as ws:
            try:
                await ws.send_message(message)
            except ConnectionClosed as closed:
                # Refused from the frame's header: the close can come before the last byte.
                code = closed.reason.code
            else:
                code = await _close_code(ws)
    assert code == 1009
    assert rig.sim.sessions == []
    assert logs.errors == []


async def test_a_stream_without_start_is_closed_with_1008(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    with trio.fail_after(30):
        rig = await start_rig(nursery)
        async with connect(rig.server.media_url, _signed(rig)) as ws:
            await ws.send_message(json.dumps(wire.connected()))
            started = trio.current_time()
            code = await _close_code(ws)
            waited = trio.current_time() - started
    assert code == 1008
    assert waited == pytest.approx(TEST_CONFIG.start_timeout_s, abs=0.1)
    assert rig.sim.sessions == []


async def test_a_media_payload_over_the_limit_is_dropped_and_the_call_goes_on(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    big = base64.b64encode(b"\xff" * (MAX_MEDIA_PAYLOAD_BYTES + 1)).decode()
    with trio.fail_after(30):
        rig = await start_rig(nursery)
        caller = rig.caller("talk")
        async with trio.open_nursery() as calls:
            calls.start_soon(caller.run)
            await caller.wait_ai_turn_started(1)
            frame = {"event": "media", "media": {"timestamp": "1000", "payload": big}}
            await caller.send_raw(json.dumps(frame))
        handle = await rig.server.registry.wait_for_call(caller.options.call_sid)
        await handle.ended.wait()
    assert str(handle.end) == "twilio_stop"
    assert handle.statistics().twilio_malformed == 1
    [warning] = logs.tagged("TWILIO_MALFORMED")
    assert f"media payload over {MAX_MEDIA_PAYLOAD_BYTES} bytes" in warning
    assert re.search(r"malformed=1\+0", logs.tagged("CALL_END")[0])


async def test_a_started_stream_that_sends_no_media_ends_the_call(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    """``start``, then nothing but marks: Twilio sends media every 20 ms, so this stream
    carries no call and must not hold an upstream session until the call length limit."""
    call_sid, stream_sid = wire.new_sid("CA"), wire.new_sid("MZ")
    start = wire.start(
        sequence=1,
        stream_sid=stream_sid,
        call_sid=call_sid,
        account_sid="AC1",
        custom_parameters={},
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        async with connect(rig.server.media_url, _signed(rig)) as ws:
            await ws.send_message(wire.encode(start))
            started = trio.current_time()
            # Messages other than media do not keep the stream alive.
            mark = wire.mark(sequence=2, stream_sid=stream_sid, name="g1:m1:x")
            for _ in range(3):
                await trio.sleep(2.5)
                await ws.send_message(wire.encode(mark))
            code = await _close_code(ws)
            waited = trio.current_time() - started
        handle = await rig.server.registry.wait_for_call(call_sid)
        await handle.ended.wait()
    assert code == 1011
    assert handle.end is not None
    assert handle.end.reason.value == "twilio_media_timeout"
    assert waited == pytest.approx(TEST_CONFIG.media_timeout_s, abs=0.5)
    assert rig.sim.sessions[0].closed.is_set()
    assert logs.errors == []


async def test_text_that_is_not_utf8_closes_the_stream_with_1007(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    """wsproto finds the protocol error; the close frame, with its code, is the bridge's."""
    key = base64.b64encode(b"0123456789abcdef")
    with trio.fail_after(20):
        rig = await start_rig(nursery)
        [(_, signature)] = _signed(rig)
        stream = await trio.open_tcp_stream("127.0.0.1", rig.server.port)
        async with stream:
            await stream.send_all(
                b"GET /twilio/media HTTP/1.1\r\nHost: "
                + f"{rig.server.host}:{rig.server.port}".encode()
                + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13"
                + b"\r\nSec-WebSocket-Key: "
                + key
                + b"\r\nX-Twilio-Signature: "
                + signature
                + b"\r\n\r\n"
            )
            payload = b"\xff\xfe not utf-8"
            # A masked text frame (mask 0: the payload as it is).
            await stream.send_all(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            received = b""
            while chunk := await stream.receive_some(65536):
                received += chunk
    head, _, frames = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert frames[0] == 0x88  # a close frame...
    assert int.from_bytes(frames[2:4], "big") == 1007  # ...with 1007
    assert rig.sim.sessions == []
    assert logs.errors == []
