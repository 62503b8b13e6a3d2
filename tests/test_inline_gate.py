"""The Twilio reader runs the gate stage itself when nothing it would write can wait.

Over real loopback sockets: with the gate task replaced by one that throws every frame
away, the caller's audio still reaches the model (the reader sent it), and only the frames
that came while there was no session to send to went to the gate task. Below that, the
rule's socket test on a real socket pair: a socket whose kernel buffer is full, a send in
progress or a closed connection each make the reader hand frames to the gate task.
"""

from __future__ import annotations

import socket

import pytest
import trio
from trio.testing import MockClock

import bridge.runtime.call
from bridge.runtime.call import CallIO
from bridge.runtime.websocket import WebSocket, server_protocol
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


async def _socket_pair() -> tuple[WebSocket, socket.socket]:
    ours, peer = trio.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    raw_peer = socket.fromfd(peer.detach(), socket.AF_UNIX, socket.SOCK_STREAM)
    raw_peer.setblocking(False)
    return WebSocket(trio.SocketStream(ours), server_protocol(1 << 20)), raw_peer


async def test_can_send_now_only_when_a_write_would_not_wait() -> None:
    with trio.fail_after(5):
        ws, peer = await _socket_pair()
        with peer:
            assert ws.can_send_now()
            # Fill the kernel's buffers (the peer reads nothing): the send waits, is given up.
            with trio.move_on_after(0.1):
                while True:
                    await ws.send_texts(["x" * 4096])
            assert not ws.can_send_now()
            while True:
                try:
                    peer.recv(1 << 20)
                except BlockingIOError:
                    break
            assert ws.can_send_now()
            async with ws._send_lock:
                assert not ws.can_send_now()  # another task is sending
            assert ws.can_send_now()
            with trio.move_on_after(0.1):
                await ws.aclose()  # the peer never answers the close
            assert not ws.can_send_now()
