"""Twilio-side message shapes and the checks Twilio applies to bridge frames."""

from __future__ import annotations

import base64
import json

import pytest

from bridge.sim import wire

SID = "MZ" + "0" * 32


def test_builders_type_fields_like_twilio() -> None:
    media = wire.media(sequence=3, stream_sid=SID, chunk=2, timestamp_ms=20, payload=b"\xff" * 160)
    assert media == {
        "event": "media",
        "sequenceNumber": "3",
        "media": {
            "track": "inbound",
            "chunk": "2",
            "timestamp": "20",
            "payload": base64.b64encode(b"\xff" * 160).decode(),
        },
        "streamSid": SID,
    }
    start = wire.start(
        sequence=1, stream_sid=SID, call_sid="CA1", account_sid="AC1", custom_parameters={"a": "b"}
    )
    assert start["sequenceNumber"] == "1"
    assert start["start"] == {
        "accountSid": "AC1",
        "streamSid": SID,
        "callSid": "CA1",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"a": "b"},
    }
    assert json.loads(wire.encode(wire.connected())) == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }
    assert wire.new_sid("CA").startswith("CA")
    assert len(wire.new_sid("CA")) == 34


def test_valid_bridge_messages_parse() -> None:
    payload = base64.b64encode(b"\x01\x02").decode()
    media = json.dumps({"event": "media", "streamSid": SID, "media": {"payload": payload}})
    assert wire.parse_bridge_message(media, SID) == wire.MediaIn(b"\x01\x02")
    mark = json.dumps({"event": "mark", "streamSid": SID, "mark": {"name": "g0:m1:i"}})
    assert wire.parse_bridge_message(mark, SID) == wire.MarkIn("g0:m1:i")
    clear = json.dumps({"event": "clear", "streamSid": SID})
    assert wire.parse_bridge_message(clear, SID) == wire.ClearIn()


@pytest.mark.parametrize(
    ("frame", "code", "fragment"),
    [
        (b'{"event":"clear"}', 31950, "binary"),
        ("{nope", 31951, "invalid JSON"),
        ("[1]", 31951, "not a JSON object"),
        (json.dumps({"event": "dance", "streamSid": SID}), 31951, "unknown event"),
        (json.dumps({"event": "clear", "streamSid": "MZother"}), 31951, "wrong streamSid"),
        (json.dumps({"event": "clear"}), 31951, "missing ['streamSid']"),
        (json.dumps({"event": "clear", "streamSid": SID, "x": 1}), 31951, "unexpected ['x']"),
        (json.dumps({"event": "mark", "streamSid": SID}), 31951, "missing ['mark']"),
        (json.dumps({"event": "mark", "streamSid": SID, "mark": {}}), 31951, "mark: expected"),
        (
            json.dumps({"event": "media", "streamSid": SID, "media": {"payload": "!!"}}),
            31951,
            "not base64",
        ),
        (
            json.dumps({"event": "media", "streamSid": SID, "media": {"payload": 5}}),
            31951,
            "media: expected",
        ),
    ],
)
def test_bad_frames_are_violations(frame: str | bytes, code: int, fragment: str) -> None:
    result = wire.parse_bridge_message(frame, SID)
    assert isinstance(result, wire.Violation)
    assert result.code == code
    assert fragment in result.detail
