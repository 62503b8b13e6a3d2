"""The Twilio reader runs the gate stage itself when nothing it would write can wait.

Over real loopback sockets: with the gate task replaced by one that throws every frame
away, the caller's audio still reaches the model (the reader sent it), and only the frames
that came while there was no session to send to went to the gate task. Below that, the
rule's socket test on a real socket pair: a socket whose kernel buffer is full, a send in
progress or a closed connection each make the reader hand frames to the gate task.
"""

from __future__ import annotations

import base64
import itertools
import socket

import pytest
import trio
from trio.testing import MockClock

import bridge.runtime.call
from bridge.runtime.call import CallIO
from bridge.runtime.twilio_leg import TwilioLeg
from bridge.runtime.websocket import WebSocket, WritableCheck, server_protocol
from bridge.sim.script import script_from_name
from tests.harness import start_rig

FRAME_MS = 20


async def test_caller_audio_reaches_the_model_without_the_gate_task(
    autojump_clock: MockClock, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed_to_gate_task: list[int] = []

    async def gate_task_that_drops_everything(io: CallIO) -> None:
        async for frame in io.inbound_recv:
            handed_to_gate_task.append(frame.timestamp_ms)

    monkeypatch.setattr(bridge.runtime.call, "_gate_task", gate_task_that_drops_everything)
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        completed = await rig.complete_call("talk")
    sent_ms = completed.report.media_sent * FRAME_MS
    appended_ms = completed.session.core.audio_clock_ms
    dropped_ms = len(handed_to_gate_task) * FRAME_MS
    assert sent_ms > 2000
    # Every frame went one way or the other, and almost all of them the reader's way.
    assert appended_ms + dropped_ms == pytest.approx(sent_ms, abs=5 * FRAME_MS)
    assert dropped_ms < 0.05 * sent_ms
    answered = [r for r in completed.session.responses.values() if r.status == "completed"]
    assert len(answered) >= 2  # the greeting, and an answer to what the caller said


async def test_caller_frames_reach_the_model_once_each_and_in_order_on_either_path(
    autojump_clock: MockClock, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other frame finds the Twilio leg busy and goes to the gate task; the frame after
    it must not overtake it the reader's way while the gate task has not run yet (a memory
    channel hands a frame straight to a waiting task: nothing is queued). Jitter bunches
    frames up on top. Each frame must reach the model once, in order."""
    leg_free_now = itertools.cycle([False, True])
    write_fd = TwilioLeg.write_fd
    monkeypatch.setattr(
        TwilioLeg, "write_fd", lambda leg: write_fd(leg) if next(leg_free_now) else None
    )
    sent: list[tuple[int, bytes]] = []
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        caller = rig.caller(
            script_from_name("talk"),
            jitter_ms=60.0,
            jitter_seed=7,
            on_media_sent=lambda _t, ms, payload: sent.append((ms, payload)),
        )
        report = await caller.run()
        handle = await rig.server.registry.wait_for_call(report.call_sid)
        await handle.ended.wait()
    assert report.late_frames > 50  # the jitter did bunch frames up
    appended = b"".join(
        base64.b64decode(event["audio"])
        for _, event in rig.sim.sessions[0].received
        if event.get("type") == "input_audio_buffer.append"
    )
    bytes_per_ms = 8
    # Audio before the session opened was not kept: the stream starts with a later frame.
    spoken = [(ms, payload) for ms, payload in sent if len(set(payload)) > 8]
    first = next(i for i, (_, payload) in enumerate(spoken) if appended.find(payload) >= 0)
    offset_ms = spoken[first][0] - appended.find(spoken[first][1]) / bytes_per_ms
    for ms, payload in spoken[first:]:
        at = round((ms - offset_ms) * bytes_per_ms)
        assert appended[at : at + len(payload)] == payload, f"frame at {ms} ms"
    last_ms, last_payload = sent[-1]
    assert len(appended) == round((last_ms - offset_ms) * bytes_per_ms) + len(last_payload)


async def _socket_pair() -> tuple[WebSocket, socket.socket]:
    ours, peer = trio.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    raw_peer = socket.fromfd(peer.detach(), socket.AF_UNIX, socket.SOCK_STREAM)
    raw_peer.setblocking(False)
    return WebSocket(trio.SocketStream(ours), server_protocol(1 << 20)), raw_peer


async def test_a_socket_counts_as_writable_only_when_a_write_would_not_wait() -> None:
    """What the inline gate stage asks: a descriptor from ``send_fd`` (open, no other
    sender) and the kernel taking bytes (``WritableCheck``)."""
    check = WritableCheck()

    def can_send_now(ws: WebSocket) -> bool:
        fd = ws.send_fd()
        return fd is not None and check.all_take_bytes((fd,))

    with trio.fail_after(5):
        ws, peer = await _socket_pair()
        with peer:
            assert can_send_now(ws)
            # Fill the kernel's buffers (the peer reads nothing): the send waits, is given up.
            with trio.move_on_after(0.1):
                while True:
                    await ws.send_texts(["x" * 4096])
            assert not can_send_now(ws)
            while True:
                try:
                    peer.recv(1 << 20)
                except BlockingIOError:
                    break
            assert can_send_now(ws)
            async with ws._send_lock:
                assert ws.send_fd() is None  # another task is sending
            assert can_send_now(ws)
            with trio.move_on_after(0.1):
                await ws.aclose()  # the peer never answers the close
            assert ws.send_fd() is None
