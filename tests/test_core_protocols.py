"""Twilio and Realtime message parsing: documented shapes, bad input, fuzzing."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import realtime as rt
from bridge.core import twilio
from bridge.core.marks import MarkName, parse_mark_name
from bridge.core.signature import compute_signature, is_valid_signature
from bridge.core.twiml import connect_stream

TWILIO_DOC_MESSAGES = [
    '{"event":"connected","protocol":"Call","version":"1.0.0"}',
    '{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1",'
    '"callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw",'
    '"sampleRate":8000,"channels":1},"customParameters":{"FirstName":"Jane"}},"streamSid":"MZ1"}',
    '{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2",'
    '"timestamp":"5","payload":"no+JhoaJjpzS"},"streamSid":"MZ1"}',
    '{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}',
    '{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"my label"}}',
    '{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"AC1","callSid":"CA1"},"streamSid":"MZ1"}',
]


def test_twilio_documented_messages_parse() -> None:
    parsed = [twilio.parse_twilio_message(m) for m in TWILIO_DOC_MESSAGES]
    connected, start, media, dtmf, mark, stop = parsed
    assert connected == twilio.Connected()
    assert isinstance(start, twilio.Start)
    assert (start.stream_sid, start.call_sid, start.custom_parameters["FirstName"]) == (
        "MZ1",
        "CA1",
        "Jane",
    )
    assert (start.encoding, start.sample_rate, start.channels) == ("audio/x-mulaw", 8000, 1)
    assert start.unsupported_media_format() is None
    assert isinstance(media, twilio.Media)
    assert media.timestamp_ms == 5
    assert media.payload == base64.b64decode("no+JhoaJjpzS")
    assert dtmf == twilio.Dtmf("1")
    assert mark == twilio.Mark("my label")
    assert stop == twilio.Stop()


@pytest.mark.parametrize(
    ("media_format", "problem"),
    [
        ('{"encoding":"audio/x-l16","sampleRate":16000,"channels":1}', "audio/x-l16 at 16000 Hz"),
        ('{"encoding":"audio/x-mulaw","sampleRate":16000,"channels":1}', "at 16000 Hz"),
        ('{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":2}', "2 channel(s)"),
    ],
)
def test_twilio_start_in_another_media_format_is_refused_with_a_reason(
    media_format: str, problem: str
) -> None:
    start = twilio.parse_twilio_message(
        '{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1",'
        f'"mediaFormat":{media_format}}},"streamSid":"MZ1"}}'
    )
    assert isinstance(start, twilio.Start)
    reason = start.unsupported_media_format()
    assert reason is not None
    assert problem in reason
    assert "audio/x-mulaw at 8000 Hz mono" in reason


def test_twilio_start_with_a_bad_media_format_is_malformed() -> None:
    for media_format in ('"mulaw"', '{"sampleRate":"fast"}', '{"encoding":7}'):
        message = (
            '{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1",'
            f'"mediaFormat":{media_format}}},"streamSid":"MZ1"}}'
        )
        assert isinstance(twilio.parse_twilio_message(message), twilio.Malformed), media_format


def test_twilio_bad_input_is_malformed_not_an_exception() -> None:
    cases = [
        b"\x00binary",
        "not json",
        "[1,2]",
        '{"no":"event"}',
        '{"event":"media","media":{"payload":"!!!","timestamp":"1"}}',
        '{"event":"media","media":{"payload":"AAAA"}}',
        '{"event":"start","start":{"streamSid":"MZ\\"bad","callSid":"CA1"}}',
        '{"event":"mark","mark":{}}',
    ]
    for case in cases:
        assert isinstance(twilio.parse_twilio_message(case), twilio.Malformed), case
    assert twilio.parse_twilio_message('{"event":"future"}') == twilio.UnknownTwilioEvent("future")


def test_twilio_outbound_messages_are_exact_json() -> None:
    media = json.loads(twilio.media_message("MZ1", b"\xff\x7f"))
    assert media == {"event": "media", "streamSid": "MZ1", "media": {"payload": "/38="}}
    assert json.loads(twilio.mark_message("MZ1", 'a"b')) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": 'a"b'},
    }
    assert json.loads(twilio.clear_message("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


def test_realtime_events_parse() -> None:
    audio = base64.b64encode(b"\xff" * 160).decode()
    cases = {
        "response.output_audio.delta": (
            {"response_id": "r", "item_id": "i", "content_index": 0, "delta": audio},
            rt.AudioDelta("r", "i", 0, b"\xff" * 160),
        ),
        "input_audio_buffer.speech_started": (
            {"audio_start_ms": 120, "item_id": "u"},
            rt.SpeechStarted(120, "u"),
        ),
        "response.done": (
            {
                "response": {
                    "id": "r",
                    "status": "cancelled",
                    "status_details": {"type": "cancelled", "reason": "turn_detected"},
                }
            },
            rt.ResponseDone("r", "cancelled", "turn_detected"),
        ),
        "error": (
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "x",
                    "message": "m",
                    "event_id": "e",
                }
            },
            rt.ErrorEvent("x", "m", "invalid_request_error", None, "e"),
        ),
        "rate_limits.updated": ({"rate_limits": []}, rt.IgnoredEvent("rate_limits.updated")),
        "some.future.event": ({}, rt.UnknownEvent("some.future.event")),
    }
    for kind, (fields, expected) in cases.items():
        assert rt.parse_realtime_event(json.dumps({"type": kind, **fields})) == expected


def test_session_updated_reports_formats() -> None:
    event = rt.parse_realtime_event(
        json.dumps(
            {
                "type": "session.updated",
                "session": {
                    "audio": {
                        "input": {"format": {"type": "audio/pcmu"}},
                        "output": {"format": {"type": "audio/pcm", "rate": 24000}},
                    }
                },
            }
        )
    )
    assert event == rt.SessionUpdated("audio/pcmu", "audio/pcm", None, 24000)


def test_realtime_bad_input_is_malformed() -> None:
    for case in [
        "{",
        '"str"',
        '{"type": 5}',
        '{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"@@"}',
        '{"type":"input_audio_buffer.speech_started","audio_start_ms":"12","item_id":"u"}',
        '{"type":"response.created"}',
    ]:
        assert isinstance(rt.parse_realtime_event(case), rt.MalformedEvent), case


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_fuzz_twilio_parser_never_raises_on_garbage(data: str | bytes) -> None:
    twilio.parse_twilio_message(data)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["media", "mark", "start", "stop", "dtmf", "connected", "x"]),
    st.dictionaries(
        st.sampled_from(["media", "mark", "start", "stop", "dtmf", "streamSid"]), json_values
    ),
)
def test_fuzz_twilio_parser_never_raises_on_wrong_shapes(
    event: str, fields: dict[str, object]
) -> None:
    twilio.parse_twilio_message(json.dumps({"event": event, **fields}))


REALTIME_TYPES = [
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.created",
    "response.done",
    "response.output_item.added",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "conversation.item.truncated",
    "conversation.item.deleted",
    "conversation.item.input_audio_transcription.completed",
    "session.created",
    "session.updated",
    "error",
]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(REALTIME_TYPES),
    st.dictionaries(
        st.sampled_from(
            [
                "response",
                "response_id",
                "item_id",
                "delta",
                "audio_start_ms",
                "audio_end_ms",
                "item",
                "session",
                "error",
                "transcript",
                "content_index",
            ]
        ),
        json_values,
    ),
)
def test_fuzz_realtime_parser_never_raises(kind: str, fields: dict[str, object]) -> None:
    rt.parse_realtime_event(json.dumps({"type": kind, **fields}))


@given(
    st.integers(0, 10**6),
    st.integers(0, 10**9),
    st.from_regex(r"item_[A-Za-z0-9:]{1,20}", fullmatch=True),
)
def test_mark_names_round_trip(generation: int, seq: int, item_id: str) -> None:
    mark = MarkName(generation, seq, item_id)
    assert parse_mark_name(str(mark)) == mark


def test_foreign_mark_names_are_rejected() -> None:
    for name in ["responsePart", "g1:m2", "gx:m1:item", "g1:mx:item", "g1:m2:", ""]:
        assert parse_mark_name(name) is None


def test_twiml_connect_stream_has_fallback_after_connect() -> None:
    xml = connect_stream("wss://b.example/twilio/media", {"From": "+1<2>"}, "Sorry & bye")
    assert '<Stream url="wss://b.example/twilio/media">' in xml
    assert '<Parameter name="From" value="+1&lt;2&gt;"/>' in xml
    assert (
        xml.index("</Connect>") < xml.index("<Say>Sorry &amp; bye</Say>") < xml.index("<Hangup/>")
    )


def test_signature_doc_vector_and_ws_variants() -> None:
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675310",
        "Digits": "1234",
        "From": "+14158675310",
        "To": "+18005551212",
    }
    url = "https://example.com/myapp.php?foo=1&bar=2"
    assert compute_signature("12345", url, params) == "L/OH5YylLD5NRKLltdqwSvS0BnU="
    ws = "wss://bridge.example.com/twilio/media"
    for signed in (ws, ws + "/", "wss://bridge.example.com:443/twilio/media"):
        assert is_valid_signature("tok", ws, compute_signature("tok", signed))
    assert not is_valid_signature("tok", ws, compute_signature("other", ws))
