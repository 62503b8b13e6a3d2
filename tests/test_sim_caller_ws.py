"""The simulated caller against a tiny fake bridge over real loopback WebSockets.

Everything runs on ``autojump_clock``: the caller's 20 ms cadence and its mark echoes
are checked to the microsecond in virtual time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import trio
import trio.testing
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

from bridge.audio import mulaw
from bridge.audio.wavio import read_wav, write_wav
from bridge.core.signature import compute_signature
from bridge.sim.caller import CallerConnectError, CallerOptions, SimCaller, run_call_cli
from bridge.sim.report import CallerReport, EventKind
from bridge.sim.script import AfterAiEnds, AfterReply, At, CallerScript, Utterance

Message = dict[str, object]


class Peer:
    """The fake bridge's view of one connection: every message with its arrival time."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.messages: list[tuple[float, Message]] = []
        self.closed: CloseReason | None = None
        self.changed = trio.Event()

    async def read_all(self) -> None:
        try:
            while True:
                raw = await self.ws.get_message()
                assert isinstance(raw, str)
                self.messages.append((trio.current_time(), json.loads(raw)))
                self._notify()
        except ConnectionClosed as exc:
            self.closed = exc.reason
            self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await self.changed.wait()

    def events(self, name: str) -> list[tuple[float, Message]]:
        return [(t, m) for t, m in self.messages if m["event"] == name]

    def echoes(self) -> list[tuple[float, str]]:
        return [(t, _field(m, "mark", "name")) for t, m in self.events("mark")]

    @property
    def stream_sid(self) -> str:
        return str(self.events("start")[0][1]["streamSid"])

    async def send(self, message: Message) -> None:
        await self.ws.send_message(json.dumps(message))

    async def play(self, payload: bytes, mark: str | None = None) -> None:
        sid = self.stream_sid
        media = {"payload": base64.b64encode(payload).decode()}
        await self.send({"event": "media", "streamSid": sid, "media": media})
        if mark is not None:
            await self.send({"event": "mark", "streamSid": sid, "mark": {"name": mark}})


def _field(message: Message, *path: str) -> str:
    value: object = message
    for key in path:
        assert isinstance(value, dict)
        value = value[key]
    assert isinstance(value, str)
    return value


BridgeScript = Callable[[Peer], Awaitable[None]]


async def _serve(
    nursery: trio.Nursery, script: BridgeScript, peers: list[Peer], requests: list[WebSocketRequest]
) -> str:
    """Start a fake bridge; ``script`` runs once the caller's ``start`` arrived."""

    async def handler(request: WebSocketRequest) -> None:
        requests.append(request)
        ws = await request.accept()
        peer = Peer(ws)
        peers.append(peer)
        async with trio.open_nursery() as conn:
            conn.start_soon(peer.read_all)
            await peer.wait_for(lambda: bool(peer.events("start")) or peer.closed is not None)
            if peer.closed is None:
                await script(peer)

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    return f"ws://127.0.0.1:{server.port}/media"


async def _idle(peer: Peer) -> None:
    """A bridge that only listens."""


async def _place_call(caller: SimCaller, reports: list[CallerReport]) -> None:
    """Run the call in the background while the test drives it through the hooks."""
    reports.append(await caller.run())


def _audio(ms: int, byte: int = 0x22) -> bytes:
    return bytes([byte]) * (ms * 8)


async def test_frames_have_twilio_shapes_types_and_real_time_cadence(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peers: list[Peer] = []
    url = await _serve(nursery, _idle, peers, [])
    script = CallerScript(
        utterances=(Utterance(duration_ms=400, seed=4, trigger=At(ms=100)),), hangup=At(ms=1000)
    )
    options = CallerOptions(url=url, script=script, custom_parameters={"session": "s1"})
    with trio.fail_after(10):
        report = await SimCaller(options).run()
    (peer,) = peers
    kinds = [m["event"] for _, m in peer.messages]
    assert kinds == ["connected", "start"] + ["media"] * 50 + ["stop"]  # 50 x 20 ms = 1 s
    assert peer.messages[0][1] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    t_start, start = peer.messages[1]
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": options.account_sid,
            "streamSid": options.stream_sid,
            "callSid": options.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"session": "s1"},
        },
        "streamSid": options.stream_sid,
    }
    payloads = []
    for k, (t, media) in enumerate(peer.events("media")):
        assert media["sequenceNumber"] == str(k + 2)
        assert media["streamSid"] == options.stream_sid
        body = media["media"]
        assert isinstance(body, dict)
        assert set(body) == {"track", "chunk", "timestamp", "payload"}
        assert (body["track"], body["chunk"], body["timestamp"]) == (
            "inbound",
            str(k + 1),
            str(20 * k),
        )
        payloads.append(base64.b64decode(body["payload"]))
        assert t - t_start == pytest.approx(0.02 * (k + 1), abs=1e-6)  # no drift
    assert all(len(p) == 160 for p in payloads)
    spoken = [k for k, p in enumerate(payloads) if set(p) != {mulaw.SILENCE_BYTE}]
    assert spoken[0] == 5  # 100 ms in
    assert spoken[-1] <= 24  # over by 500 ms
    assert peer.messages[-1][1] == {
        "event": "stop",
        "sequenceNumber": "52",
        "streamSid": options.stream_sid,
        "stop": {"accountSid": options.account_sid, "callSid": options.call_sid},
    }
    assert report.media_sent == 50
    assert report.late_frames == 0
    assert report.close is not None
    assert (report.close.by, report.close.code) == ("caller", 1000)
    assert peer.closed is not None
    assert peer.closed.code == 1000
    speech = [
        e for e in report.timeline if e.kind in (EventKind.SPEECH_START, EventKind.SPEECH_END)
    ]
    assert [e.t_ms for e in speech] == pytest.approx([100.0, 500.0], abs=1e-3)


async def test_jitter_delays_frames_without_drifting(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peers: list[Peer] = []
    url = await _serve(nursery, _idle, peers, [])
    options = CallerOptions(
        url=url, script=CallerScript(hangup=At(ms=10_000)), jitter_ms=60.0, jitter_seed=3
    )
    with trio.fail_after(30):
        report = await SimCaller(options).run()
    (peer,) = peers
    t_start = peer.events("start")[0][0]
    lateness = [t - t_start - 0.02 * (k + 1) for k, (t, _) in enumerate(peer.events("media"))]
    assert report.media_sent == len(lateness) == 500
    # Each frame leaves at most 60 ms after its audio was captured, never before, and the
    # delays do not add up over the call.
    assert min(lateness) >= -1e-9
    assert max(lateness) <= 0.060 + 1e-6
    assert sum(1 for late in lateness if late > 0.005) > 100


async def test_marks_echo_when_played_and_clear_echoes_the_rest(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    sent_at: list[float] = []
    cleared_at: list[float] = []

    async def bridge(peer: Peer) -> None:
        sent_at.append(trio.current_time())
        for i in range(10):  # 1 s of audio in one burst, a mark after every 100 ms
            await peer.play(_audio(100), f"g0:m{i}:item_A")
        await trio.sleep(0.35)
        cleared_at.append(trio.current_time())
        await peer.send({"event": "clear", "streamSid": peer.stream_sid})
        await peer.wait_for(lambda: len(peer.echoes()) == 10)
        await trio.sleep(0.1)
        await peer.play(_audio(20), "g1:m10:item_B")
        await peer.wait_for(lambda: len(peer.echoes()) == 11)
        await peer.ws.aclose(code=1000, reason="bye")

    peers: list[Peer] = []
    url = await _serve(nursery, bridge, peers, [])
    caller = SimCaller(CallerOptions(url=url, script=CallerScript(hangup=At(60_000))))
    with trio.fail_after(10):
        report = await caller.run()
    (peer,) = peers
    echoes = peer.echoes()
    assert [name for _, name in echoes] == [f"g0:m{i}:item_A" for i in range(10)] + [
        "g1:m10:item_B"
    ]
    t0 = sent_at[0]
    played = [t - t0 for t, _ in echoes[:3]]
    assert played == pytest.approx([0.1, 0.2, 0.3], abs=1e-6)
    assert [t - cleared_at[0] for t, _ in echoes[3:10]] == pytest.approx([0.0] * 7, abs=1e-6)
    assert echoes[10][0] - (cleared_at[0] + 0.1) == pytest.approx(0.02, abs=1e-6)
    # Sequence numbers are shared with media and strictly increasing.
    seqs = [int(_field(m, "sequenceNumber")) for _, m in peer.messages[1:]]
    assert seqs == list(range(1, len(seqs) + 1))

    assert not peer.events("stop")  # the bridge hung up first
    assert report.close is not None
    assert (report.close.by, report.close.code, report.close.reason) == ("bridge", 1000, "bye")
    assert report.clears == 1
    assert report.marks_echoed == 11
    assert report.marks_echoed_by_clear == 7
    assert report.heard_ms_by_item == {
        "item_A": pytest.approx(350.0),
        "item_B": pytest.approx(20.0),
    }
    assert caller.playback.discarded_bytes == 650 * 8
    turn1 = report.ai_turns[0]
    assert turn1.interrupted
    assert turn1.heard_ms == pytest.approx(350.0)
    clear_line = next(e for e in report.timeline if e.kind is EventKind.CLEAR)
    assert clear_line.detail == "clear: 7 marks echoed, 650 ms unplayed dropped"


async def test_echoing_bridge_is_heard_20_ms_later_and_written_to_wav(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    async def bridge(peer: Peer) -> None:
        """Echo every inbound frame back as outbound media plus a mark; clear; close."""
        echoed = 0
        while echoed < 40:
            await peer.wait_for(lambda n=echoed: len(peer.events("media")) > n)
            _, media = peer.events("media")[echoed]
            await peer.play(
                base64.b64decode(_field(media, "media", "payload")), f"g0:m{echoed}:echo"
            )
            echoed += 1
        await peer.send({"event": "clear", "streamSid": peer.stream_sid})
        await peer.wait_for(lambda: len(peer.echoes()) == 40)
        await peer.ws.aclose()

    peers: list[Peer] = []
    url = await _serve(nursery, bridge, peers, [])
    wav = tmp_path / "out" / "heard.wav"
    script = CallerScript(
        utterances=(Utterance(duration_ms=600, seed=9, trigger=At(ms=60)),), hangup=At(60_000)
    )
    options = CallerOptions(url=url, script=script, wav_out=wav, wav_out_rate=16000)
    caller = SimCaller(options)
    reports: list[CallerReport] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            inner.start_soon(_place_call, caller, reports)
            turn = await caller.wait_ai_turn_started(1)
            clear = await caller.wait_clear(1)
            ended = await caller.wait_ai_turn_ended(1)
            close = await caller.wait_closed()
    (peer,) = peers
    (report,) = reports
    sent = [base64.b64decode(_field(m, "media", "payload")) for _, m in peer.events("media")]
    t_start = peer.events("start")[0][0]
    media_times = [t for t, _ in peer.events("media")]
    assert media_times[0] == pytest.approx(t_start + 0.02, abs=1e-6)
    assert turn.start == pytest.approx(media_times[0], abs=1e-6)
    # Each frame comes straight back and plays for 20 ms: its mark echoes as the next
    # frame leaves, so the line never runs dry.
    for i, (t, _) in enumerate(peer.echoes()[:39]):
        assert t == pytest.approx(media_times[i + 1], abs=1e-6)
    assert caller.playback.underruns == ()
    assert report.underrun_gaps == 0
    # The caller started speaking at 60 ms, over the echo; the clear came at 800 ms.
    assert report.ai_turns[0].caller_overlap_ms == pytest.approx(740.0, abs=1e-3)
    assert len(clear.echoes) <= 1
    assert ended.interrupted
    assert ended.end == pytest.approx(clear.at)
    assert close.by == "bridge"
    # What the caller heard is its own audio, played as soon as it came back.
    first = media_times[0]
    heard = caller.playback.heard_audio(first, first + 40 * 0.02)
    assert heard == b"".join(sent[:40])
    assert any(set(frame) != {mulaw.SILENCE_BYTE} for frame in sent[:40])
    samples, rate = read_wav(wav)
    assert rate == 16000
    assert len(samples) == pytest.approx(report.duration_ms / 1000 * rate, abs=2)


async def test_bad_frames_are_counted_and_dropped_not_fatal(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    async def bridge(peer: Peer) -> None:
        sid = peer.stream_sid
        await peer.ws.send_message(b"\x00binary")
        await peer.ws.send_message("{not json")
        await peer.send({"event": "mark", "streamSid": "MZwrong", "mark": {"name": "lost"}})
        await peer.send({"event": "clear", "streamSid": sid, "extra": True})
        await peer.send({"event": "mark", "streamSid": sid, "mark": {"name": "kept"}})

    peers: list[Peer] = []
    url = await _serve(nursery, bridge, peers, [])
    options = CallerOptions(url=url, script=CallerScript(hangup=At(ms=200)))
    with trio.fail_after(10):
        report = await SimCaller(options).run()
    (peer,) = peers
    assert [name for _, name in peer.echoes()] == ["kept"]
    assert report.violations == {31950: 1, 31951: 3}
    assert report.violation_count == 4
    assert [v.code for v in report.violation_samples] == [31950, 31951, 31951, 31951]
    assert "wrong streamSid" in report.violation_samples[2].detail
    warnings = [e.detail for e in report.timeline if e.kind is EventKind.VIOLATION]
    assert len(warnings) == 2  # once per warning code, as Twilio reports them
    assert report.clears == 0
    assert peer.events("stop")  # the call carried on to its scripted hang-up


async def test_abort_drops_tcp_without_stop_or_close_handshake(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peers: list[Peer] = []
    url = await _serve(nursery, _idle, peers, [])
    caller = SimCaller(CallerOptions(url=url, script=CallerScript(hangup=At(ms=60_000))))
    reports: list[CallerReport] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            inner.start_soon(_place_call, caller, reports)
            await caller.wait_stream_started()
            await trio.sleep(0.11)  # between frame ticks: 5 frames sent
            caller.abort()
        (peer,) = peers
        await peer.wait_for(lambda: peer.closed is not None)
    assert peer.closed is not None
    assert peer.closed.code == 1006  # abnormal closure: no close frame
    assert not peer.events("stop")
    (report,) = reports
    assert report.close is not None
    assert report.close.by == "abort"
    assert report.media_sent == 5


async def test_signed_upgrade_early_hangup_and_custom_parameters(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    peers: list[Peer] = []
    requests: list[WebSocketRequest] = []
    url = await _serve(nursery, _idle, peers, requests)
    public_url = "wss://bridge.example.com/twilio/media"
    options = CallerOptions(
        url=url,
        script=CallerScript(hangup=At(ms=60_000)),
        auth_token="secret-token",
        signature_url=public_url,
        custom_parameters={"session": "abc", "tenant": "acme"},
    )
    caller = SimCaller(options)
    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            inner.start_soon(caller.run)
            await caller.wait_stream_started()
            await trio.sleep(0.05)  # between frame ticks
            hung_up_at = trio.current_time()
            caller.hangup()
    (request,) = requests
    headers = dict(request.headers)
    assert headers[b"x-twilio-signature"].decode() == compute_signature(
        "secret-token", public_url, {}
    )
    (peer,) = peers
    assert _field(peer.events("start")[0][1], "start", "callSid") == options.call_sid
    start_body = peer.events("start")[0][1]["start"]
    assert isinstance(start_body, dict)
    assert start_body["customParameters"] == {"session": "abc", "tenant": "acme"}
    t_stop, _ = peer.events("stop")[0]
    assert t_stop == pytest.approx(hung_up_at, abs=1e-6)  # at once, not at the next frame


async def test_rejected_or_refused_connection_raises(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    async def reject(request: WebSocketRequest) -> None:
        await request.reject(403, body=b"bad signature")

    server = await nursery.start(serve_websocket, reject, "127.0.0.1", 0, None)
    script = CallerScript(hangup=At(ms=100))
    with trio.fail_after(10):
        with pytest.raises(CallerConnectError) as rejected:
            await SimCaller(
                CallerOptions(url=f"ws://127.0.0.1:{server.port}/m", script=script)
            ).run()
        assert rejected.value.status_code == 403
        with trio.socket.socket() as sock:  # a port nobody listens on
            await sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(CallerConnectError, match="cannot connect"):
            await SimCaller(CallerOptions(url=f"ws://127.0.0.1:{port}/m", script=script)).run()


async def test_script_answers_after_the_greeting_and_hangs_up_after_the_reply(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """A fake AI: 400 ms greeting, then a 300 ms reply once the caller has spoken."""
    reply_sent: list[float] = []

    def speaking_frames(peer: Peer) -> list[int]:
        return [
            k
            for k, (_, m) in enumerate(peer.events("media"))
            if set(base64.b64decode(_field(m, "media", "payload"))) != {mulaw.SILENCE_BYTE}
        ]

    async def bridge(peer: Peer) -> None:
        await peer.play(_audio(400), "g0:m0:greeting")
        await peer.wait_for(lambda: bool(speaking_frames(peer)))
        spoke = len(peer.events("media"))
        # Reply once 200 ms (10 frames) of silence followed the caller's speech.
        await peer.wait_for(lambda: len(peer.events("media")) >= spoke + 90)
        reply_sent.append(trio.current_time())
        await peer.play(_audio(300), "g0:m1:reply")

    peers: list[Peer] = []
    url = await _serve(nursery, bridge, peers, [])
    script = CallerScript(
        utterances=(Utterance(duration_ms=600, seed=2, trigger=AfterAiEnds(turn=1, delay_ms=400)),),
        hangup=AfterReply(delay_ms=500),
    )
    with trio.fail_after(20):
        report = await SimCaller(CallerOptions(url=url, script=script)).run()
    (peer,) = peers
    t_start = peer.events("start")[0][0]
    # Greeting: 0.0-0.4 s; its end is known 300 ms later; the caller speaks at 0.8 s.
    speech = next(e for e in report.timeline if e.kind is EventKind.SPEECH_START)
    assert speech.t_ms == pytest.approx(800.0, abs=1e-3)
    assert speaking_frames(peer)[0] >= 40  # frame 40 holds 800-820 ms
    t_stop, _ = peer.events("stop")[0]
    assert t_stop - reply_sent[0] == pytest.approx(0.3 + 0.5, abs=1e-6)
    assert [(t.index, t.interrupted) for t in report.ai_turns] == [(1, False), (2, False)]
    assert report.ai_turns[0].heard_ms == pytest.approx(400.0)
    assert report.heard_ms_by_item == {
        "greeting": pytest.approx(400.0),
        "reply": pytest.approx(300.0),
    }
    assert t_start == pytest.approx(0.0, abs=1e-6)


async def test_wav_input_and_line_noise_reach_the_bridge(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    rate = 44100
    t = np.arange(rate // 2) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    stereo_wav = tmp_path / "in.wav"
    write_wav(stereo_wav, tone, rate)
    peers: list[Peer] = []
    url = await _serve(nursery, _idle, peers, [])
    options = CallerOptions(
        url=url,
        script=CallerScript(hangup=At(ms=1000)),
        wav_in=stereo_wav,
        noise_dbfs=-60.0,
        max_duration_s=0.8,
    )
    with trio.fail_after(10):
        report = await SimCaller(options).run()
    (peer,) = peers
    audio = b"".join(
        base64.b64decode(_field(m, "media", "payload")) for _, m in peer.events("media")
    )
    samples = mulaw.decode_float(audio)
    voiced = samples[: 4000 - 200]
    spectrum = np.abs(np.fft.rfft(voiced * np.hanning(len(voiced))))
    assert np.fft.rfftfreq(len(voiced), 1 / 8000)[int(np.argmax(spectrum))] == pytest.approx(
        440.0, abs=3.0
    )
    tail = samples[4400:]  # after the file: only line noise, about -60 dBFS
    assert len(tail) > 0
    assert 20 * np.log10(np.sqrt(np.mean(tail**2))) == pytest.approx(-60.0, abs=3.0)
    # The caller gives up at its maximum duration (0.8 s), before the scripted hang-up.
    assert report.media_sent == 40
    assert any(e.kind is EventKind.MAX_DURATION for e in report.timeline)
    assert peer.events("stop")


async def test_cli_prints_the_timeline_and_the_wav_path(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def greet(peer: Peer) -> None:
        await peer.play(_audio(500), "g0:m0:hello")

    url = await _serve(nursery, greet, [], [])
    wav = tmp_path / "heard.wav"
    options = CallerOptions(url=url, script=CallerScript(hangup=At(ms=1000)), wav_out=wav)
    with trio.fail_after(10):
        report = await run_call_cli(options)
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(f"TWILIO connected to {url}")
    assert "  0.000s  AI     speaking (turn 1)" in out
    assert "  0.500s  AI     stops (turn 1, 0.50 s heard)" in out
    assert "  1.000s  CALLER hangs up (script): stop sent" in out
    assert out[-2].startswith("Summary: 1.0 s call, heard 0.50 s of AI audio in 1 turn(s)")
    assert out[-1] == f"What the caller heard: {wav} (8000 Hz)"
    assert report.heard_ms_by_item == {"hello": pytest.approx(500.0)}
