"""The property that makes the seed bug impossible (configuration: ``test_config.py``).

The seed incident: per-call state on a handler object, one attribute read in 14 places and
set in none, an ``AttributeError`` in the audio receiver, and a silent call. Here every
per-call object declares its fields in ``__slots__``/dataclass fields, sets every one in
its constructor, and cannot grow new ones.
"""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing

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
from bridge.runtime.websocket import WebSocket, server_protocol
from tests.harness import TEST_CONFIG


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
    stream, _peer = trio.testing.memory_stream_pair()
    ws = WebSocket(stream, server_protocol(1024))
    services = Services(TEST_CONFIG, "ws://127.0.0.1:1", None)
    io = CallIO(services, TwilioLeg(ws), Start("MZ1", "CA1"))
    reached = {type(obj) for obj in _walk_bridge_objects(io, set())}
    # The walk really went through the whole call: core, its state machine, gate, ledger.
    assert {CallIO, CallCore, ConversationState, GateStage, PlayoutLedger, CallCounters} <= reached
    await trio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    "cls", [CallCore, CallIO, GateStage, ConversationState, CallHandle, TwilioLeg, WebSocket]
)
def test_per_call_classes_cannot_grow_attributes(cls: type) -> None:
    assert "__dict__" not in dir(cls)
    assert _slots(cls)


def test_dataclass_state_has_slots() -> None:
    for cls in (CallCounters, PlayoutLedger):
        instance = cls() if cls is CallCounters else PlayoutLedger(160, 10)
        with pytest.raises(AttributeError):
            instance._cancelled_response_ids = set()  # type: ignore[attr-defined]
