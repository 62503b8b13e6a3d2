"""A whole call over real loopback sockets, and every way it can end.

For each failure path the test asserts: the call ended within its bound, both sockets are
closed, no task of the call is left running, the REST hang-up reached the fake Twilio REST
server the expected number of times, the ``CALL_END`` line says why, and another call on
the same server kept working throughout.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from trio.testing import MockClock
from trio_websocket import ConnectionClosed

from bench.chaos.rig import call_tasks_alive
from bridge.core.call import CallCore
from bridge.core.ending import EndReason
from bridge.core.realtime import AudioDelta
from bridge.core.signature import compute_signature
from bridge.runtime.registry import CallHandle
from bridge.sim import wire
from bridge.sim.caller import SimCaller
from bridge.sim.caller_options import CallerConnectError
from bridge.sim.report import CallerReport
from bridge.sim.script import AfterReply, At, CallerScript, Utterance
from bridge.sim.upstream import SimSession
from tests.conftest import LogCapture
from tests.harness import AUTH_TOKEN, Rig, start_rig
from tests.wsclient import connect

SPEAKS_AT_4S = CallerScript(
    utterances=(Utterance(duration_ms=1200, seed=7, trigger=At(ms=4000)),),
    hangup=AfterReply(delay_ms=500),
)


@dataclass
class CallerRun:
    caller: SimCaller
    done: trio.Event = field(default_factory=trio.Event)
    report: CallerReport | None = None


async def run_caller(nursery: trio.Nursery, caller: SimCaller) -> CallerRun:
    """Start the caller in the background once its stream has started."""
    run = CallerRun(caller)

    async def go() -> None:
        run.report = await caller.run()
        run.done.set()

    nursery.start_soon(go)
    await caller.wait_stream_started()
    return run


async def start_call(
    rig: Rig, nursery: trio.Nursery, index: int, script: CallerScript | str
) -> tuple[CallerRun, CallHandle, SimSession]:
    run = await run_caller(nursery, rig.caller(script))
    handle = await rig.server.registry.wait_for_call(run.caller.options.call_sid)
    session = await rig.sim.wait_for_session(index)
    return run, handle, session


async def assert_ended_cleanly(
    rig: Rig,
    logs: LogCapture,
    handle: CallHandle,
    session: SimSession,
    caller: SimCaller,
    *,
    reason: str,
    within_s: float,
    rest_hangups: int,
    upstream_stalled: bool = False,
) -> None:
    started = trio.current_time()
    with trio.fail_after(within_s):
        await handle.ended.wait()
    assert handle.end is not None
    assert str(handle.end).startswith(reason), str(handle.end)
    if upstream_stalled:
        # A stalled peer reads nothing, so it cannot see our close until it resumes.
        session.send_unknown_event()
    with trio.fail_after(1.0):
        await session.closed.wait()
        await caller.wait_closed()
    assert trio.current_time() - started <= within_s
    assert call_tasks_alive(handle.call_sid) == []
    assert len(rig.rest.hangups_for(handle.call_sid)) == rest_hangups
    [line] = logs.tagged("CALL_END", handle.call_sid)
    assert f"reason={reason}" in line


async def assert_other_call_kept_working(run: CallerRun, handle: CallHandle) -> None:
    with trio.fail_after(30):
        await run.done.wait()
        await handle.ended.wait()
    report = run.report
    assert report is not None
    assert len(report.ai_turns) >= 2  # the greeting, then the answer to its utterance
    assert str(handle.end) == "twilio_stop"


async def test_audio_flows_both_ways(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        run, handle, session = await start_call(rig, nursery, 0, SPEAKS_AT_4S)
        await run.done.wait()
        await handle.ended.wait()
    report = run.report
    assert report is not None
    greeting, answer = report.ai_turns[:2]
    assert greeting.heard_ms >= 2500
    assert answer.heard_ms >= 2500
    appended = [e for _, e in session.received if e.get("type") == "input_audio_buffer.append"]
    appended_ms = sum(len(base64.b64decode(e["audio"])) for e in appended) // 8
    assert appended_ms >= (report.media_sent - 50) * 20  # at most the first second waits for setup
    assert session.speech_started  # the caller's voice reached the model's VAD
    assert any(
        item.transcript and item.transcript.startswith("You said:") for item in session.conversation
    )
    assert str(handle.end) == "twilio_stop"
    assert rig.rest.hangups_for(handle.call_sid) == []  # Twilio ended it; nothing to hang up
    assert report.violation_count == 0


async def _failure_case(
    nursery: trio.Nursery,
    logs: LogCapture,
    inject: Callable[[Rig, SimCaller, SimSession, CallHandle], Awaitable[None]],
    *,
    reason: str,
    within_s: float,
    rest_hangups: int,
    upstream_stalled: bool = False,
    **config: Any,
) -> None:
    with trio.fail_after(60):
        rig = await start_rig(nursery, **config)
        other, other_handle, _ = await start_call(rig, nursery, 0, SPEAKS_AT_4S)
        run, handle, session = await start_call(rig, nursery, 1, "listen:30")
        await run.caller.wait_ai_turn_started(1)
        await inject(rig, run.caller, session, handle)
        await assert_ended_cleanly(
            rig,
            logs,
            handle,
            session,
            run.caller,
            reason=reason,
            within_s=within_s,
            rest_hangups=rest_hangups,
            upstream_stalled=upstream_stalled,
        )
        await assert_other_call_kept_working(other, other_handle)


async def test_seed_bug_attribute_error_in_openai_reader_ends_call_cleanly(
    autojump_clock: MockClock,
    nursery: trio.Nursery,
    logs: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = CallCore._on_audio_delta
    victims: set[str] = set()

    def receiver_with_the_seed_bug(self: CallCore, ev: AudioDelta, now: float) -> object:
        if self.call_sid in victims:
            return self._cancelled_response_ids  # type: ignore[attr-defined]
        return original(self, ev, now)

    monkeypatch.setattr(CallCore, "_on_audio_delta", receiver_with_the_seed_bug)

    async def inject(rig: Rig, caller: SimCaller, session: SimSession, handle: CallHandle) -> None:
        # The greeting is still being generated: its next audio delta hits the bug.
        victims.add(handle.call_sid)

    await _failure_case(
        nursery, logs, inject, reason="internal_error AttributeError", within_s=1.0, rest_hangups=1
    )
    assert logs.tagged("CALL_ERROR")


async def test_upstream_close_1011_ends_call_when_reconnects_are_off(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    """With ``BRIDGE_RECONNECT_ATTEMPTS=0`` a lost upstream ends the call at once (the
    default heals it: ``tests/test_continuity.py``)."""

    async def inject(rig: Rig, caller: SimCaller, session: SimSession, handle: CallHandle) -> None:
        session.close(1011)

    await _failure_case(
        nursery,
        logs,
        inject,
        reason="openai_closed code=1011",
        within_s=1.0,
        rest_hangups=1,
        reconnect_attempts=0,
    )


async def test_upstream_stall_is_detected_and_ends_call_when_reconnects_are_off(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    async def inject(rig: Rig, caller: SimCaller, session: SimSession, handle: CallHandle) -> None:
        session.stall()

    # Detection takes up to one heartbeat interval plus its timeout (1 s + 1 s in tests);
    # the end then follows within 1 s.
    await _failure_case(
        nursery,
        logs,
        inject,
        reason="openai_stall",
        within_s=3.0,
        rest_hangups=1,
        upstream_stalled=True,
        reconnect_attempts=0,
    )


async def test_twilio_abrupt_close_closes_upstream(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    async def inject(rig: Rig, caller: SimCaller, session: SimSession, handle: CallHandle) -> None:
        caller.abort()

    await _failure_case(
        nursery, logs, inject, reason="twilio_disconnected", within_s=1.0, rest_hangups=1
    )


async def test_twilio_stop_closes_upstream_without_rest_hangup(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    async def inject(rig: Rig, caller: SimCaller, session: SimSession, handle: CallHandle) -> None:
        caller.hangup()

    # After `stop` Twilio has ended the stream (the caller hung up, or the application moved
    # the call on); a REST hang-up could cut a transfer, so none is sent.
    await _failure_case(nursery, logs, inject, reason="twilio_stop", within_s=1.0, rest_hangups=0)


async def test_upstream_malformed_json_is_counted_and_the_call_goes_on(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    async def inject(rig: Rig, caller: SimCaller, session: SimSession, handle: CallHandle) -> None:
        session.send_malformed()
        session.send_malformed(no_type=True)
        session.send_unknown_event()
        with trio.fail_after(10):
            await logs.wait_for("UPSTREAM_MALFORMED", 2, handle.call_sid)
            await logs.wait_for("UPSTREAM_UNKNOWN", 1, handle.call_sid)
        assert handle.statistics().upstream_malformed == 2
        # Still a working call: the model's next reply reaches the caller.
        await caller.wait_ai_turn_ended(1)
        session.next_reply_ms(800)
        assert await handle.send_note("Tell the caller about opening hours.", respond=True)
        await caller.wait_ai_turn_started(2)
        assert not handle.ended.is_set()
        assert handle.statistics().upstream_unknown == 1
        assert len(logs.tagged("UPSTREAM_MALFORMED", handle.call_sid)) == 2
        caller.hangup()

    await _failure_case(nursery, logs, inject, reason="twilio_stop", within_s=1.0, rest_hangups=0)


async def test_twilio_malformed_frames_are_counted_and_the_call_goes_on(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    async def inject(rig: Rig, caller: SimCaller, session: SimSession, handle: CallHandle) -> None:
        await caller.send_raw("{not json")
        await caller.send_raw(b"\x00\x01binary")
        await caller.send_raw(json.dumps({"event": "media", "media": {"payload": "%%%"}}))
        with trio.fail_after(5):
            await logs.wait_for("TWILIO_MALFORMED", 3, handle.call_sid)
        assert handle.statistics().twilio_malformed == 3
        appended = len(session.received)
        await trio.sleep(0.5)
        assert len(session.received) > appended  # caller audio still flows upstream
        caller.hangup()

    await _failure_case(nursery, logs, inject, reason="twilio_stop", within_s=1.0, rest_hangups=0)


async def test_upstream_handshake_failure_ends_call_with_fallback(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(30):
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        closed_port = listener.getsockname()[1]
        listener.close()  # nothing listens there now: connection refused
        rig = await start_rig(
            nursery,
            upstream_url=f"ws://127.0.0.1:{closed_port}/v1/realtime",
            reconnect_attempts=0,
        )
        run = await run_caller(nursery, rig.caller("listen:10"))
        handle = await rig.server.registry.wait_for_call(run.caller.options.call_sid)
        with trio.fail_after(2):
            await handle.ended.wait()
        close = await run.caller.wait_closed()
        await run.done.wait()
    assert handle.end is not None
    assert str(handle.end).startswith("openai_handshake_failed")
    assert (close.by, close.code) == ("bridge", 1011)  # Twilio now plays the TwiML fallback
    [hangup] = rig.rest.hangups_for(handle.call_sid)
    assert hangup.method == "POST"
    assert "<Hangup/>" in hangup.form["Twiml"][0]
    assert hangup.authorization is not None
    assert hangup.authorization.startswith("Basic ")
    assert call_tasks_alive(handle.call_sid) == []
    assert AUTH_TOKEN not in " ".join(message for message, _ in logs.records)


async def test_unsigned_stream_is_refused_before_any_upstream_session(
    autojump_clock: MockClock,
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(30):
        rig = await start_rig(nursery)
        for options in ({"auth_token": None}, {"auth_token": "wrong-token"}):
            caller = rig.caller("listen:5", **options)
            with pytest.raises(CallerConnectError) as refused:
                await caller.run()
            assert refused.value.status_code == 403
    assert rig.sim.sessions == []
    assert rig.server.registry.active() == []


async def test_stream_in_another_media_format_is_refused_with_the_reason(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(30):
        rig = await start_rig(nursery)
        url = f"wss://{rig.server.host}:{rig.server.port}/twilio/media"
        signature = compute_signature(AUTH_TOKEN, url)
        headers = [(b"x-twilio-signature", signature.encode())]
        async with connect(rig.server.media_url, headers) as ws:
            await ws.send_message(json.dumps(wire.connected()))
            start = wire.start(
                sequence=1,
                stream_sid="MZformat",
                call_sid="CAformat",
                account_sid="AC1",
                custom_parameters={},
            )
            start["start"]["mediaFormat"] = {
                "encoding": "audio/x-l16",
                "sampleRate": 16000,
                "channels": 1,
            }
            await ws.send_message(json.dumps(start))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
        handle = await rig.server.registry.wait_for_call("CAformat")
        await handle.ended.wait()
    assert closed.value.reason is not None
    assert closed.value.reason.code == 1011  # Twilio plays the TwiML fallback
    assert handle.end is not None
    assert handle.end.reason is EndReason.TWILIO_MEDIA_FORMAT
    assert "audio/x-l16 at 16000 Hz" in handle.end.detail
    assert rig.sim.sessions == []  # no upstream session was opened for audio it cannot carry
    assert len(rig.rest.hangups_for("CAformat")) == 1
    [line] = logs.tagged("CALL_END", "CAformat")
    assert "reason=twilio_media_format_unsupported" in line
