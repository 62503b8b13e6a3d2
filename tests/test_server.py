"""The one-port server: webhook, health, readiness, metrics, notes API, shutdown."""

from __future__ import annotations

import gc
import io
import json
import xml.etree.ElementTree as ET

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio.testing import MockClock

from bridge.config import Secret
from bridge.core.call import CallCore
from bridge.core.ending import CallEnd, EndReason
from bridge.core.signature import compute_signature
from bridge.core.stats import CallCounters, CallStatistics
from bridge.logs import configure_logging, log_tagged
from bridge.runtime.metrics import Metrics
from bridge.runtime.registry import CallHandle
from bridge.sim.caller import SimCaller
from bridge.sim.caller_options import CallerConnectError
from bridge.sim.upstream import SimUpstreamOptions
from tests.conftest import LogCapture
from tests.harness import AUTH_TOKEN, CONTROL_AUTH, Rig, start_rig

WEBHOOK_FORM = {"CallSid": "CA123", "From": "+15550001111", "To": "+15550002222"}


def client(rig: Rig) -> httpx.AsyncClient:
    """Carries the control API's bearer token (the routes that need none ignore it)."""
    return httpx.AsyncClient(base_url=rig.server.base_url, timeout=5.0, headers=CONTROL_AUTH)


async def test_voice_webhook_returns_connect_stream_with_fallback(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    with trio.fail_after(20):
        rig = await start_rig(nursery, public_url="https://bridge.example.com")
        url = "https://bridge.example.com/twilio/voice"
        signature = compute_signature(AUTH_TOKEN, url, WEBHOOK_FORM)
        async with client(rig) as http:
            good = await http.post(
                "/twilio/voice", data=WEBHOOK_FORM, headers={"X-Twilio-Signature": signature}
            )
            forged = await http.post(
                "/twilio/voice", data=WEBHOOK_FORM, headers={"X-Twilio-Signature": "AAAA"}
            )
    assert good.status_code == 200
    assert good.headers["content-type"] == "text/xml"
    root = ET.fromstring(good.text)
    connect, say, hangup = list(root)
    assert (connect.tag, say.tag, hangup.tag) == ("Connect", "Say", "Hangup")
    stream = connect.find("Stream")
    assert stream is not None
    assert stream.get("url") == "wss://bridge.example.com/twilio/media"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params == {"From": "+15550001111", "To": "+15550002222", "CallSid": "CA123"}
    assert forged.status_code == 403


async def test_health_readiness_metrics_and_404(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    with trio.fail_after(30):
        rig = await start_rig(nursery)
        caller = rig.caller("talk")
        await caller.run()
        async with client(rig) as http:
            health = await http.get("/healthz")
            ready = await http.get("/readyz")
            missing = await http.get("/nope")
            await rig.server.registry.wait_for_call(caller.options.call_sid)
            handle = rig.server.registry.get(caller.options.call_sid)
            assert handle is not None
            await handle.ended.wait()
            metrics = (await http.get("/metrics")).text
            rig.server.services.draining = True
            draining = await http.get("/readyz")
    assert (health.status_code, ready.status_code, missing.status_code) == (200, 200, 404)
    assert draining.status_code == 503
    assert "bridge_calls_active 0" in metrics
    assert 'bridge_calls_ended_total{reason="twilio_stop"} 1' in metrics
    assert "bridge_calls_started_total 1" in metrics
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    assert all(f.documentation for f in families.values())  # every metric has its # HELP
    assert families["bridge_barge_in_reaction_seconds"].type == "histogram"
    assert "bridge_late_audio_dropped_seconds" in families
    assert not [name for name in families if name.endswith("_ms")]  # seconds, not ms


def test_metrics_sum_ended_and_live_calls_and_escape_labels() -> None:
    live: list[CallStatistics] = []
    metrics = Metrics(lambda: live, lambda: False)
    ended = CallCounters(late_audio_ms_dropped=1500).snapshot()
    metrics.call_ended(CallEnd(EndReason.TWILIO_STOP), ended)
    live.append(CallCounters(late_audio_ms_dropped=500, twilio_malformed=2).snapshot())
    metrics.barge_in('odd"trigger\\', reaction_s=0.0015)
    text = metrics.render().decode()
    assert "bridge_late_audio_dropped_seconds_total 2.0" in text  # 1.5 s ended + 0.5 s live
    assert 'bridge_malformed_messages_total{source="twilio"} 2.0' in text
    assert "bridge_calls_active 1.0" in text
    assert 'bridge_barge_ins_total{trigger="odd\\"trigger\\\\"} 1.0' in text
    assert 'bridge_barge_in_reaction_seconds_bucket{le="0.002"} 1.0' in text


async def test_draining_server_refuses_new_streams(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    with trio.fail_after(20):
        rig = await start_rig(nursery)
        rig.server.services.draining = True
        with pytest.raises(CallerConnectError):
            await rig.caller("listen:2").run()
    assert rig.sim.sessions == []


async def test_notes_api_reaches_the_model(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    with trio.fail_after(30):
        rig = await start_rig(nursery)
        caller = rig.caller("listen:6")
        async with trio.open_nursery() as calls:
            calls.start_soon(caller.run)
            await caller.wait_ai_turn_ended(1)
            sid = caller.options.call_sid
            async with client(rig) as http:
                listed = (await http.get("/calls")).json()
                epoch = listed[0]["epoch"]
                accepted = await http.post(
                    f"/calls/{sid}/notes",
                    json={"text": "The caller is a VIP.", "respond": True, "epoch": epoch},
                )
                bad = await http.post(f"/calls/{sid}/notes", content=b"{not json")
                unknown = await http.post("/calls/CAnope/notes", json={"text": "x"})
            await caller.wait_ai_turn_started(2)
    assert [c["call_sid"] for c in listed] == [sid]
    assert (accepted.status_code, bad.status_code, unknown.status_code) == (202, 400, 404)
    session = rig.sim.sessions[0]
    notes = [e for _, e in session.received if e.get("type") == "conversation.item.create"]
    assert notes[0]["item"]["content"][0]["text"] == "The caller is a VIP."
    assert notes[0]["item"]["role"] == "system"
    assert [e["type"] for _, e in session.received].count("response.create") == 2


async def _shut_down_during_a_call(nursery: trio.Nursery) -> tuple[Rig, SimCaller, CallHandle]:
    """A bridge with one call whose AI is speaking, then ``shutdown()`` (what SIGTERM calls)."""
    rig = await start_rig(nursery)
    caller = rig.caller("listen:60")
    nursery.start_soon(caller.run)
    await caller.wait_ai_turn_started(1)
    handle = await rig.server.registry.wait_for_call(caller.options.call_sid)
    rig.server.shutdown()
    return rig, caller, handle


async def test_shutdown_ends_open_calls_cleanly(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(60):
        rig, caller, handle = await _shut_down_during_a_call(nursery)
        await handle.ended.wait()
        close = await caller.wait_closed()
    assert str(handle.end) == "server_shutdown"
    assert close.by == "bridge"
    assert len(rig.rest.hangups_for(handle.call_sid)) == 1
    assert logs.tagged("CALL_END", handle.call_sid)


async def test_openai_key_is_sent_and_never_logged(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    key = "sk-test-never-log-me"
    with trio.fail_after(30):
        rig = await start_rig(
            nursery,
            sim_options=SimUpstreamOptions(require_api_key=key),
            openai_api_key=Secret(key),
        )
        report = await rig.caller("talk").run()
    assert len(report.ai_turns) >= 2  # the key was accepted: the call worked
    text = " ".join(message + json.dumps(extra, default=str) for message, extra in logs.records)
    assert key not in text
    assert AUTH_TOKEN not in text


def test_json_logs_carry_tag_fields_and_call_ids() -> None:
    sink = io.StringIO()
    configure_logging(fmt="json", level="INFO", sink=sink)
    try:
        from loguru import logger

        with logger.contextualize(call_sid="CA1", stream_sid="MZ1"):
            log_tagged("INFO", "BARGE_IN", "trigger=server", {"clear_ms": 0.4})
            logger.debug("per-frame noise stays out at INFO")
    finally:
        configure_logging(fmt="text", level="DEBUG")
    [line] = sink.getvalue().splitlines()
    record = json.loads(line)["record"]
    assert record["message"] == "BARGE_IN trigger=server"
    assert record["extra"]["tag"] == "BARGE_IN"
    assert record["extra"]["clear_ms"] == 0.4
    assert record["extra"]["call_sid"] == "CA1"
    assert record["extra"]["stream_sid"] == "MZ1"


async def test_readyz_answers_503_during_the_drain_while_the_port_stays_open(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    """After shutdown() (what SIGTERM calls), calls still open keep the port: a load
    balancer reads 503 from /readyz instead of a refused connection."""
    with trio.fail_after(60):
        rig, _caller, handle = await _shut_down_during_a_call(nursery)
        async with client(rig) as http:
            ready = await http.get("/readyz")
            health = await http.get("/healthz")
        with pytest.raises(CallerConnectError, match="503"):
            await rig.caller("listen:2").run()
        assert not handle.ended.is_set()  # all of that during the drain
        await handle.ended.wait()
    assert (ready.status_code, ready.text) == (503, "draining\n")
    assert health.status_code == 200


async def test_every_route_answers_wrong_methods_and_paths_in_one_line(
    autojump_clock: MockClock, nursery: trio.Nursery, logs: LogCapture
) -> None:
    with trio.fail_after(20):
        rig = await start_rig(nursery)
        async with client(rig) as http:
            head = await http.head("/healthz")
            post_health = await http.post("/healthz")
            get_voice = await http.get("/twilio/voice")
            put_calls = await http.put("/calls")
            get_notes = await http.get("/calls/CA1/notes")
            plain_media = await http.get("/twilio/media")
            nowhere = await http.get("/calls/CA1/notes/extra")
            bad_host = await http.post("/twilio/voice", headers={"host": "bad host:1"})
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "3")
    assert (post_health.status_code, post_health.headers["allow"]) == (405, "GET, HEAD")
    assert (get_voice.status_code, get_voice.headers["allow"]) == (405, "POST")
    assert (put_calls.status_code, get_notes.status_code) == (405, 405)
    assert (plain_media.status_code, plain_media.text) == (426, "the media stream is a WebSocket\n")
    assert nowhere.status_code == 404
    assert (bad_host.status_code, bad_host.text) == (400, "bad Host header\n")
    assert logs.errors == []


async def test_an_ended_call_lets_its_core_go_and_keeps_its_final_counters(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    """The registry remembers recently ended calls (256): each must cost little."""
    with trio.fail_after(30):
        rig = await start_rig(nursery)
        caller = rig.caller("listen:3")
        nursery.start_soon(caller.run)
        handle = await rig.server.registry.wait_for_call(caller.options.call_sid)
        live_epoch = handle.barge_in_epoch
        await handle.ended.wait()
        await caller.wait_closed()
    gc.collect()
    cores = [o for o in gc.get_objects() if isinstance(o, CallCore)]
    assert [core for core in cores if core.call_sid == handle.call_sid] == []
    assert rig.server.registry.get(handle.call_sid) is handle
    assert handle.barge_in_epoch == live_epoch
    assert handle.statistics().frames_in > 100
