"""Unit tests of the simulated Realtime upstream's sans-IO logic (no sockets, explicit times)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from bridge.audio import mulaw
from bridge.audio.synth import line_noise, speech_like_ulaw
from bridge.sim.upstream_audio import EnergyVad, decode, encode, reply_audio, threshold_to_dbfs
from bridge.sim.upstream_faults import Fault, FaultKind, parse_fault, parse_fault_plan
from bridge.sim.upstream_session import SessionSettings, UpstreamSession, decode_frame

Event = dict[str, Any]
BETA_FIELDS = (
    "input_audio_format",
    "output_audio_format",
    "modalities",
    "voice",
    "turn_detection",
    "input_audio_transcription",
    "temperature",
    "max_response_output_tokens",
    "input_audio_noise_reduction",
)
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")


def make(**settings: Any) -> UpstreamSession:
    session = UpstreamSession(SessionSettings(**settings))
    session.open()
    return session


def pcmu_session(
    *, turn_detection: Any = "default", transcription: bool = True, **settings: Any
) -> UpstreamSession:
    """A session configured like the bridge: μ-law both ways, server VAD, silence 500 ms."""
    s = make(**settings)
    audio_in: Event = {"format": {"type": "audio/pcmu"}}
    if transcription:
        audio_in["transcription"] = {"model": "gpt-4o-mini-transcribe"}
    if turn_detection == "default":
        audio_in["turn_detection"] = {"type": "server_vad", "silence_duration_ms": 500}
    else:
        audio_in["turn_detection"] = turn_detection
    out = s.handle(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": audio_in, "output": {"format": {"type": "audio/pcmu"}}},
            },
        },
        0.0,
    )
    assert [e["type"] for e in out] == ["session.updated"]
    return s


def error_of(events: list[Event]) -> Event:
    assert [e["type"] for e in events] == ["error"], events
    error: Event = events[0]["error"]
    return error


def append(s: UpstreamSession, audio: bytes, now: float, chunk: int = 160) -> list[Event]:
    """Append ``audio`` in 20 ms μ-law chunks, all at clock value ``now``."""
    out: list[Event] = []
    for i in range(0, len(audio), chunk):
        payload = base64.b64encode(audio[i : i + chunk]).decode()
        out += s.handle({"type": "input_audio_buffer.append", "audio": payload}, now)
    return out


def drain(s: UpstreamSession, until: float = 1e9) -> list[tuple[float, Event]]:
    """Poll at every deadline up to ``until``; returns (due time, event)."""
    out: list[tuple[float, Event]] = []
    while (deadline := s.next_deadline()) is not None and deadline <= until:
        out += [(deadline, e) for e in s.poll(deadline)]
    return out


def types(events: list[Event]) -> list[str]:
    return [e["type"] for e in events]


def speech(ms: int, seed: int = 3) -> bytes:
    return speech_like_ulaw(ms, seed=seed)


def noise(ms: int, level_dbfs: float = -45.0, seed: int = 1) -> bytes:
    return mulaw.encode_float(line_noise(ms, seed=seed, level_dbfs=level_dbfs))


# ---- session config ----------------------------------------------------------------------


def test_session_created_is_full_ga_default_with_pcm() -> None:
    s = UpstreamSession(SessionSettings(), model="gpt-realtime-mini", unix_time=1000)
    [created] = s.open()
    session = created["session"]
    assert created["type"] == "session.created"
    assert session["type"] == "realtime"
    assert session["object"] == "realtime.session"
    assert session["id"].startswith("sess_")
    assert session["model"] == "gpt-realtime-mini"
    assert session["expires_at"] == 4600
    assert session["output_modalities"] == ["audio"]
    pcm = {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["format"] == pcm
    assert session["audio"]["output"]["format"] == pcm
    assert session["audio"]["output"]["voice"] == "alloy"
    td = session["audio"]["input"]["turn_detection"]
    assert td["type"] == "server_vad"
    assert td["threshold"] == 0.5
    assert td["prefix_padding_ms"] == 300
    assert td["create_response"] is True
    assert td["interrupt_response"] is True


def test_update_without_type_is_refused_with_event_id() -> None:
    s = make()
    before = s.session
    error = error_of(
        s.handle(
            {
                "type": "session.update",
                "event_id": "cfg-1",
                "session": {"audio": {"output": {"voice": "marin"}}},
            },
            0.0,
        )
    )
    assert error["code"] == "missing_required_parameter"
    assert error["param"] == "session.type"
    assert error["message"] == "Missing required parameter: 'session.type'."
    assert error["event_id"] == "cfg-1"
    assert s.session == before


@pytest.mark.parametrize("field", BETA_FIELDS)
def test_beta_fields_are_unknown_parameters(field: str) -> None:
    s = make()
    error = error_of(
        s.handle(
            {"type": "session.update", "event_id": "b", "session": {"type": "realtime", field: 1}},
            0.0,
        )
    )
    assert error["code"] == "unknown_parameter"
    assert error["param"] == f"session.{field}"
    assert error["message"] == f"Unknown parameter: 'session.{field}'."
    assert error["event_id"] == "b"


@pytest.mark.parametrize("fmt", ["audio/pcmu", "audio/pcma"])
def test_rate_on_g711_format_is_unknown_parameter(fmt: str) -> None:
    s = make()
    update = {"type": "realtime", "audio": {"output": {"format": {"type": fmt, "rate": 8000}}}}
    error = error_of(s.handle({"type": "session.update", "session": update}, 0.0))
    assert error["code"] == "unknown_parameter"
    assert error["param"] == "session.audio.output.format.rate"


def test_invalid_format_and_voice_are_invalid_values_and_nothing_is_applied() -> None:
    s = make()
    bad_format = {"input": {"format": {"type": "g711_ulaw"}}}
    error = error_of(
        s.handle(
            {"type": "session.update", "session": {"type": "realtime", "audio": bad_format}}, 0
        )
    )
    assert (error["code"], error["param"]) == ("invalid_value", "session.audio.input.format.type")
    audio = {"input": {"format": {"type": "audio/pcmu"}}, "output": {"voice": "nova"}}
    error = error_of(
        s.handle({"type": "session.update", "session": {"type": "realtime", "audio": audio}}, 0)
    )
    assert (error["code"], error["param"]) == ("invalid_value", "session.audio.output.voice")
    assert s.session["audio"]["input"]["format"]["type"] == "audio/pcm"


@pytest.mark.parametrize("voice", VOICES)
def test_every_realtime_voice_is_accepted(voice: str) -> None:
    s = make()
    update = {"type": "realtime", "audio": {"output": {"voice": voice}}}
    [updated] = s.handle({"type": "session.update", "session": update}, 0.0)
    assert updated["session"]["audio"]["output"]["voice"] == voice


def test_update_merges_only_present_fields() -> None:
    s = pcmu_session()
    update = {
        "type": "realtime",
        "instructions": "Be brief.",
        "audio": {
            "input": {"turn_detection": {"threshold": 0.7}},
            "output": {"voice": "marin"},
        },
    }
    [updated] = s.handle({"type": "session.update", "session": update}, 0.0)
    session = updated["session"]
    assert updated["type"] == "session.updated"
    assert session["instructions"] == "Be brief."
    td = session["audio"]["input"]["turn_detection"]
    assert td["threshold"] == 0.7
    assert td["silence_duration_ms"] == 500
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["voice"] == "marin"
    assert session["id"] == s.session["id"]


# ---- input audio and VAD -----------------------------------------------------------------


def test_threshold_mapping() -> None:
    assert threshold_to_dbfs(0.0) == -60.0
    assert threshold_to_dbfs(0.5) == -35.0
    assert threshold_to_dbfs(1.0) == -10.0


def test_input_clock_counts_samples_per_format() -> None:
    s = pcmu_session(turn_detection=None)
    append(s, mulaw.silence(100), 0.0)
    assert s.audio_clock_ms == 100.0
    s = make()
    s.handle(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 481).decode()}, 0
    )
    assert s.audio_clock_ms == 10.0
    s.handle(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 47).decode()}, 0
    )
    assert s.audio_clock_ms == 11.0


def test_malformed_base64_is_invalid_value() -> None:
    s = make()
    error = error_of(
        s.handle({"type": "input_audio_buffer.append", "event_id": "a1", "audio": "@@@"}, 0.0)
    )
    assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", "audio", "a1")


def test_speech_turn_emits_vad_commit_and_response() -> None:
    s = pcmu_session()
    events = append(s, noise(1000, -50) + speech(2000) + noise(1000, -50), 5.0)
    assert types(events)[:6] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
    ]
    started, stopped, committed = events[0], events[1], events[2]
    # Speech starts at ~1000 ms; speech_started carries the 300 ms prefix padding.
    assert 700 <= started["audio_start_ms"] <= 780
    # Speech ends before 3000 ms; the stop comes after 500 ms of silence.
    assert 3200 <= stopped["audio_end_ms"] <= 3500
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert committed["previous_item_id"] is None
    user = s.conversation.items[0]
    assert (user.role, user.content_type, user.transcript) == (
        "user",
        "input_audio",
        "I'd like to check the status of my order.",
    )
    timed = drain(s, 5.2)
    assert (timed[0][0], timed[0][1]["type"]) == pytest.approx(
        (5.15, "conversation.item.input_audio_transcription.completed")
    )
    assert timed[0][1]["transcript"] == user.transcript
    record = next(iter(s.responses.values()))
    assert record.answering == user.transcript
    drain(s)
    assert record.status == "completed"
    assert record.transcripts[record.items[0]].startswith(f"You said: {user.transcript}")


def test_line_noise_does_not_trigger_vad() -> None:
    s = pcmu_session()
    assert append(s, noise(10_000, -45.0), 0.0) == []
    assert s.audio_clock_ms == 10_000.0
    assert s.conversation.items == []


def test_word_gaps_do_not_end_speech_and_short_clicks_do_not_start_it() -> None:
    vad = EnergyVad(threshold_dbfs=-35.0, onset_ms=150, silence_ms=500)
    samples = decode(speech(6000, seed=11), "audio/pcmu")
    changes = vad.feed(samples, 8000) + vad.feed(np.zeros(8000, dtype=np.float32), 8000)
    assert [type(c).__name__ for c in changes] == ["SpeechStart", "SpeechStop"]
    click = np.zeros(8000, dtype=np.float32)
    click[4000:4800] = 0.3
    assert vad.feed(click, 8000) == []


def test_turn_detection_null_disables_vad_and_manual_commit_works() -> None:
    s = pcmu_session(turn_detection=None, transcription=False)
    assert append(s, speech(2000), 0.0) == []
    [committed, added, done] = s.handle({"type": "input_audio_buffer.commit"}, 0.0)
    assert types([committed, added, done]) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert s.responses == {}
    append(s, mulaw.silence(40), 0.0)
    error = error_of(s.handle({"type": "input_audio_buffer.commit", "event_id": "c"}, 0.0))
    assert error["code"] == "input_audio_buffer_commit_empty"
    assert error["message"] == (
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
        "audio, but buffer only has 40.00ms of audio."
    )
    assert types(s.handle({"type": "input_audio_buffer.clear"}, 0.0)) == [
        "input_audio_buffer.cleared"
    ]


def test_pushed_transcript_comes_before_the_cycled_script() -> None:
    s = pcmu_session(caller_transcripts=("one", "two"), reply_ms=200)
    s.push_caller_transcript("pushed")
    transcripts = []
    for turn in range(4):
        append(s, speech(1500, seed=turn) + mulaw.silence(800), float(turn * 10))
        drain(s)
        transcripts.append(s.conversation.live()[-2].transcript)
    assert transcripts == ["pushed", "one", "two", "one"]


def test_barge_in_cancels_with_late_deltas() -> None:
    s = pcmu_session()
    s.handle({"type": "response.create", "response": {"instructions": "Greet"}}, 0.0)
    # 0.25 s first delta, then one every 25 ms: by 0.30 s three deltas (300 ms) were sent.
    early = [e for _, e in drain(s, 0.30)]
    assert types(early).count("response.output_audio.delta") == 3
    events = append(s, speech(1000), 0.31)
    assert types(events) == ["input_audio_buffer.speech_started"]
    rest = [e for _, e in drain(s) if e["type"] != "response.output_audio_transcript.delta"]
    assert types(rest) == [
        "response.output_audio.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = rest[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert rest[-3]["item"]["status"] == "incomplete"
    record = s.responses[done["id"]]
    assert (record.status, record.reason, record.late_deltas) == ("cancelled", "turn_detected", 2)
    assert record.audio_ms[record.items[0]] == 500
    assert record.cancelled_at == 0.31


def test_interrupt_and_create_flags() -> None:
    td = {"type": "server_vad", "interrupt_response": False, "create_response": False}
    s = pcmu_session(turn_detection=td)
    s.handle({"type": "response.create"}, 0.0)
    events = append(s, speech(1000) + mulaw.silence(600), 0.3)
    assert "input_audio_buffer.committed" in types(events)
    assert "response.done" not in types(events)
    drain(s)
    assert [r.status for r in s.responses.values()] == ["completed"]


# ---- responses -----------------------------------------------------------------------------


def test_response_event_order_pacing_and_audio() -> None:
    s = pcmu_session()
    opening = s.handle(
        {"type": "response.create", "response": {"instructions": "Greet", "metadata": {"k": "v"}}},
        1.0,
    )
    assert types(opening) == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    created = opening[0]["response"]
    assert created["status"] == "in_progress"
    assert created["metadata"] == {"k": "v"}
    assert created["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert opening[4]["part"]["type"] == "audio"
    timed = drain(s)
    deltas = [(t, e) for t, e in timed if e["type"] == "response.output_audio.delta"]
    assert len(deltas) == 30
    assert deltas[0][0] == pytest.approx(1.25)
    assert deltas[1][0] - deltas[0][0] == pytest.approx(0.025)
    audio = b"".join(base64.b64decode(e["delta"]) for _, e in deltas)
    assert len(audio) == 3000 * 8
    assert all(len(base64.b64decode(e["delta"])) == 800 for _, e in deltas)
    tail = types([e for _, e in timed[-6:]])
    assert tail == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    transcript = timed[-5][1]["transcript"]
    assert transcript.startswith("Hello! Thanks for calling")
    assert "".join(e["delta"] for _, e in timed if "transcript.delta" in e["type"]) == transcript
    done = timed[-1][1]["response"]
    assert (done["status"], done["metadata"]) == ("completed", {"k": "v"})
    assert done["usage"]["output_token_details"]["audio_tokens"] == 60


def test_two_items_per_response_and_reply_override() -> None:
    s = pcmu_session(items_per_response=2)
    s.next_reply_ms(400)
    s.handle({"type": "response.create"}, 0.0)
    timed = drain(s)
    kinds = types([e for _, e in timed])
    assert kinds.count("response.output_item.added") == 1
    assert kinds.count("response.output_item.done") == 2
    record = next(iter(s.responses.values()))
    assert list(record.audio_ms.values()) == [400, 400]
    assert record.transcripts[record.items[1]].startswith("And one more thing:")
    assert [e["output_index"] for _, e in timed if e["type"] == "response.output_item.done"] == [
        0,
        1,
    ]


def test_second_create_while_active_is_refused() -> None:
    s = pcmu_session()
    [created, *_] = s.handle({"type": "response.create"}, 0.0)
    rid = created["response"]["id"]
    error = error_of(s.handle({"type": "response.create", "event_id": "r2"}, 0.1))
    assert error["code"] == "conversation_already_has_active_response"
    assert error["message"] == (
        f"Conversation already has an active response in progress: {rid}. "
        "Wait until the response is finished before creating a new one."
    )
    assert error["event_id"] == "r2"


def test_cancel_paths() -> None:
    s = pcmu_session()
    error = error_of(s.handle({"type": "response.cancel"}, 0.0))
    assert error["code"] == "response_cancel_not_active"
    assert error["message"] == "Cancellation failed: no active response found"
    [created, *_] = s.handle({"type": "response.create"}, 0.0)
    rid = created["response"]["id"]
    # Before the first delta nothing is in flight: the response closes at once.
    out = s.handle({"type": "response.cancel", "response_id": rid}, 0.1)
    assert types(out)[-1] == "response.done"
    assert out[-1]["response"]["status_details"]["reason"] == "client_cancelled"
    assert s.responses[rid].audio_ms[s.responses[rid].items[0]] == 0
    assert s.next_deadline() is None
    assert (
        error_of(s.handle({"type": "response.cancel"}, 0.2))["code"] == "response_cancel_not_active"
    )


def test_out_of_band_response_stays_out_of_the_conversation() -> None:
    s = pcmu_session()
    opening = s.handle({"type": "response.create", "response": {"conversation": "none"}}, 0.0)
    assert "conversation.item.added" not in types(opening)
    assert opening[0]["response"]["conversation_id"] is None
    assert types(s.handle({"type": "response.create"}, 0.0))[0] == "response.created"
    drain(s)
    assert len(s.conversation.items) == 1


def test_pcm_output_is_48_bytes_per_ms_and_audio_is_deterministic() -> None:
    s = make(reply_ms=500)
    s.handle({"type": "response.create"}, 0.0)
    deltas = [e for _, e in drain(s) if e["type"] == "response.output_audio.delta"]
    assert sum(len(base64.b64decode(e["delta"])) for e in deltas) == 500 * 48
    assert reply_audio(500, 7, "audio/pcmu") == reply_audio(500, 7, "audio/pcmu")
    assert len(reply_audio(500, 7, "audio/pcma")) == 500 * 8


def test_alaw_round_trip() -> None:
    samples = np.linspace(-0.9, 0.9, 800).astype(np.float32)
    decoded = decode(encode(samples, "audio/pcma"), "audio/pcma")
    assert np.max(np.abs(decoded - samples)) < 0.03


# ---- conversation items ----------------------------------------------------------------------


def assistant_item(s: UpstreamSession, until: float) -> str:
    s.handle({"type": "response.create"}, 0.0)
    drain(s, until)
    return next(iter(s.responses.values())).items[0]


def truncate(s: UpstreamSession, item_id: str, end_ms: int) -> list[Event]:
    return s.handle(
        {
            "type": "conversation.item.truncate",
            "event_id": "t",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": end_ms,
        },
        9.0,
    )


def test_truncate_success_removes_the_transcript() -> None:
    s = pcmu_session()
    item_id = assistant_item(s, 100.0)
    [truncated] = truncate(s, item_id, 1500)
    assert truncated == {
        "type": "conversation.item.truncated",
        "event_id": truncated["event_id"],
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 1500,
    }
    [retrieved] = s.handle({"type": "conversation.item.retrieve", "item_id": item_id}, 9.0)
    assert retrieved["item"]["content"][0]["transcript"] == ""
    record = s.truncations[-1]
    assert (record.accepted, record.generated_ms, record.audio_end_ms) == (True, 3000, 1500)


def test_truncate_errors() -> None:
    s = pcmu_session()
    item_id = assistant_item(s, 0.3)  # 3 deltas: 300 ms generated so far
    error = error_of(truncate(s, item_id, 301))
    assert (error["code"], error["param"]) == ("invalid_value", "audio_end_ms")
    assert error["message"] == "Audio content of 300ms is already shorter than 301ms"
    error = error_of(truncate(s, item_id, -11))
    assert error["code"] == "integer_below_min_value"
    assert error["message"] == (
        "Invalid 'audio_end_ms': integer below minimum value. "
        "Expected a value >= 0, but got -11 instead."
    )
    assert error_of(truncate(s, item_id, 0))["param"] == "audio_end_ms"
    assert error_of(truncate(s, "item_nope", 10))["code"] == "item_not_found"
    assert [r.error_code for r in s.truncations] == [
        "invalid_value",
        "integer_below_min_value",
        "invalid_value",
        "item_not_found",
    ]
    assert not any(r.accepted for r in s.truncations)


@pytest.mark.parametrize("code", ["unsupported_content_type", None])
def test_truncate_without_model_audio(code: str | None) -> None:
    s = pcmu_session(truncate_no_audio_code=code)
    item_id = assistant_item(s, 0.1)  # created, no delta yet
    error = error_of(truncate(s, item_id, 10))
    assert error["message"] == "Only model output audio messages can be truncated"
    assert error["code"] == code
    s.handle(
        {
            "type": "conversation.item.create",
            "item": {
                "id": "item_user",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        },
        0.0,
    )
    assert error_of(truncate(s, "item_user", 10))["code"] == code


def test_item_create_delete_and_unknown_ids() -> None:
    s = make()
    text = [{"type": "input_text", "text": "The caller asks about billing."}]
    first = s.handle(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "system", "content": text},
        },
        0.0,
    )
    assert types(first) == ["conversation.item.added", "conversation.item.done"]
    assert first[0]["previous_item_id"] is None
    second = s.handle(
        {
            "type": "conversation.item.create",
            "previous_item_id": "root",
            "item": {"id": "item_r", "type": "message", "role": "user", "content": text},
        },
        0.0,
    )
    assert second[0]["item"]["id"] == "item_r"
    assert s.conversation.items[0].id == "item_r"
    assert types(s.handle({"type": "conversation.item.delete", "item_id": "item_r"}, 0.0)) == [
        "conversation.item.deleted"
    ]
    assert s.conversation.items[0].deleted
    error = error_of(s.handle({"type": "conversation.item.delete", "item_id": "item_r"}, 0.0))
    assert error["code"] == "item_not_found"


def test_unknown_missing_and_undecodable_events() -> None:
    s = make()
    error = error_of(s.handle({"type": "scooby.dooby.doo", "event_id": "x"}, 0.0))
    assert (error["code"], error["param"], error["event_id"]) == ("invalid_value", "type", "x")
    assert error["message"].startswith("Invalid value: 'scooby.dooby.doo'. Supported values are:")
    assert error_of(s.handle({"event_id": "y"}, 0.0))["code"] == "invalid_event"
    assert decode_frame("not json") is None
    assert decode_frame("[1, 2]") is None
    assert decode_frame('{"type": "x"}') == {"type": "x"}
    assert error_of(s.handle_undecodable())["code"] == "invalid_json"


# ---- faults --------------------------------------------------------------------------------


def test_parse_fault_forms() -> None:
    assert parse_fault("close1011@3000") == Fault(FaultKind.CLOSE, at_ms=3000, close_code=1011)
    assert parse_fault("close1001@5").reason().startswith("Your session hit the maximum")
    assert parse_fault("malformed@2000").kind is FaultKind.MALFORMED
    assert parse_fault("notype@2000").kind is FaultKind.NO_TYPE
    assert parse_fault("unknown@1000").kind is FaultKind.UNKNOWN_EVENT
    assert parse_fault("error:rate_limit_exceeded@1500").error_code == "rate_limit_exceeded"
    assert parse_fault("stall@2500+1000") == Fault(FaultKind.STALL, at_ms=2500, duration_ms=1000)
    assert parse_fault_plan("close@10, stall@5").faults[1].kind is FaultKind.STALL
    for bad in ("close", "boom@1", "stall1011@5", "close@5+3", "error:x@-1"):
        with pytest.raises(ValueError, match="invalid fault spec"):
            parse_fault(bad)
