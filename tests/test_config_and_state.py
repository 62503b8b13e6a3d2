"""Configuration, and the property that makes the seed bug impossible.

The seed incident: per-call state on a handler object, one attribute read in 14 places and
set in none, an ``AttributeError`` in the audio receiver, and a silent call. Here every
per-call object declares its fields in ``__slots__``/dataclass fields, sets every one in
its constructor, and cannot grow new ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from bridge.config import SETTINGS, ConfigError, Secret, load_config
from bridge.core.call import CallCore
from bridge.core.gate import GateStage
from bridge.core.playout import PlayoutLedger
from bridge.core.state import ConversationState
from bridge.core.stats import CallCounters
from bridge.core.twilio import Start
from bridge.runtime.call import CallIO
from bridge.runtime.registry import CallHandle
from bridge.runtime.services import Services
from bridge.runtime.twilio_leg import TwilioLeg
from tests.harness import TEST_CONFIG


def test_defaults_use_the_embedded_upstream() -> None:
    config = load_config({})
    assert config.uses_embedded_upstream
    assert config.realtime_url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert config.realtime_model == "gpt-realtime"
    assert not config.twilio_rest_enabled


def test_environment_is_parsed_and_secrets_stay_hidden() -> None:
    config = load_config(
        {
            "BRIDGE_PORT": "9090",
            "BRIDGE_PUBLIC_URL": "https://bridge.example.com/",
            "OPENAI_API_KEY": "sk-secret",
            "OPENAI_REALTIME_URL": "ws://127.0.0.1:9000/v1/realtime?model=gpt-realtime-mini",
            "OPENAI_VOICE": "cedar",
            "TWILIO_ACCOUNT_SID": "AC1",
            "TWILIO_AUTH_TOKEN": "tok-secret",
            "BRIDGE_AUDIO_GATE": "off",
            "BRIDGE_FAST_BARGE_IN": "duck",
            "BRIDGE_NEGATIONS": "no, nein ,non",
            "BRIDGE_GREETING": "",
        }
    )
    assert config.port == 9090
    assert config.media_stream_url(None) == "wss://bridge.example.com/twilio/media"
    assert config.realtime_model == "gpt-realtime-mini"
    assert config.openai_voice == "cedar"
    assert config.twilio_rest_enabled
    assert config.audio_gate is False
    assert config.fast_barge_in == "duck"
    assert config.negations == ("no", "nein", "non")
    assert config.greeting == ""
    assert config.openai_api_key == Secret("sk-secret")
    assert "sk-secret" not in repr(config)
    assert "tok-secret" not in repr(config)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BRIDGE_PORT", "http"),
        ("BRIDGE_PORT", "-1"),
        ("OPENAI_VOICE", "nova"),
        ("OPENAI_AUDIO_FORMAT", "g711_ulaw"),
        ("BRIDGE_AUDIO_GATE", "maybe"),
        ("BRIDGE_FAST_BARGE_IN", "fast"),
        ("BRIDGE_TX_FRAME_MS", "0"),
    ],
)
def test_bad_settings_are_named_in_the_error(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})


def _slots(cls: type) -> list[str]:
    return [s for klass in cls.__mro__ for s in getattr(klass, "__slots__", ())]


def _walk_bridge_objects(obj: object, seen: set[int]) -> list[object]:
    """``obj`` and every bridge object reachable through its slots and dataclass fields."""
    if id(obj) in seen or not type(obj).__module__.startswith("bridge."):
        return []
    seen.add(id(obj))
    found = [obj]
    names = _slots(type(obj))
    if dataclasses.is_dataclass(obj):
        names += [f.name for f in dataclasses.fields(obj)]
    for name in names:
        found += _walk_bridge_objects(getattr(obj, name), seen)  # AttributeError: never set
    return found


async def test_every_per_call_field_is_set_by_the_constructor() -> None:
    async def never(*_: object) -> dict[str, object]:
        raise AssertionError("not used")

    services = Services(TEST_CONFIG, "ws://127.0.0.1:1", None)
    io = CallIO(services, TwilioLeg(never, never), Start("MZ1", "CA1"))
    reached = {type(obj) for obj in _walk_bridge_objects(io, set())}
    # The walk really went through the whole call: core, its state machine, gate, ledger.
    assert {CallIO, CallCore, ConversationState, GateStage, PlayoutLedger, CallCounters} <= reached
    await trio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    "cls", [CallCore, CallIO, GateStage, ConversationState, CallHandle, TwilioLeg]
)
def test_per_call_classes_cannot_grow_attributes(cls: type) -> None:
    assert "__dict__" not in dir(cls)
    assert _slots(cls)


def test_dataclass_state_has_slots() -> None:
    for cls in (CallCounters, PlayoutLedger):
        instance = cls() if cls is CallCounters else PlayoutLedger(160, 10)
        with pytest.raises(AttributeError):
            instance._cancelled_response_ids = set()  # type: ignore[attr-defined]


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = {
        line.split("|")[1].strip().strip("`")
        for line in readme.splitlines()
        if line.startswith("| `")
    }
    assert {setting.env for setting in SETTINGS} <= table
