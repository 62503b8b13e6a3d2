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

from bridge.core.call import CallCore, CallCounters
from bridge.core.playout import PlayoutLedger
from bridge.core.twilio import Start
from bridge.runtime.call import CallIO
from bridge.runtime.gate import GateStage
from bridge.runtime.metrics import Metrics
from bridge.runtime.registry import CallHandle, CallRegistry
from bridge.runtime.services import Services
from bridge.runtime.twilio_leg import TwilioLeg
from tests.core_driver import settings
from tests.harness import TEST_CONFIG


def _slots(cls: type) -> list[str]:
    return [s for klass in cls.__mro__ for s in getattr(klass, "__slots__", ())]


async def test_every_per_call_field_is_set_by_the_constructor() -> None:
    core = CallCore(settings(), stream_sid="MZ1", call_sid="CA1", now=0.0)

    async def never(*_: object) -> dict[str, object]:
        raise AssertionError("not used")

    services = Services(TEST_CONFIG, "ws://127.0.0.1:1", CallRegistry(), Metrics(), None)
    io = CallIO(services, TwilioLeg(never, never), Start("MZ1", "CA1", "AC1"))
    for obj in (core, io, io.gate, io.handle, io.twilio, io.codec):
        for name in _slots(type(obj)):
            getattr(obj, name)  # raises AttributeError if a field was never set
    for obj in (core.counters, core.ledger):
        for f in dataclasses.fields(obj):
            getattr(obj, f.name)
    await trio.lowlevel.checkpoint()


@pytest.mark.parametrize("cls", [CallCore, CallIO, GateStage, CallHandle, TwilioLeg])
def test_per_call_classes_cannot_grow_attributes(cls: type) -> None:
    assert "__dict__" not in dir(cls)
    assert _slots(cls)


def test_dataclass_state_has_slots() -> None:
    for cls in (CallCounters, PlayoutLedger):
        instance = cls() if cls is CallCounters else PlayoutLedger(160, 10)
        with pytest.raises(AttributeError):
            instance._cancelled_response_ids = set()  # type: ignore[attr-defined]
