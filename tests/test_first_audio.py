"""The first frame of a reply goes to Twilio from the task that received its delta.

Over real loopback sockets, with the TX writer replaced by one that never writes: every
frame the caller still receives was written by the OpenAI reader in the scheduling step
that received audio, as far as the pacer allowed at that moment. If the reader only rang
the writer's doorbell, the caller would hear nothing at all; the frames that fall due
after the model's last delta (the writer's share) are never heard.
"""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

import bridge.runtime.call
from bridge.runtime.call import CallIO
from tests.harness import start_rig


async def _writer_that_never_writes(io: CallIO) -> None:
    async for _ in io.doorbell_recv:
        pass


async def test_the_start_of_every_reply_reaches_twilio_without_the_tx_writer(
    autojump_clock: MockClock, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bridge.runtime.call, "_tx_writer", _writer_that_never_writes)
    with trio.fail_after(60):
        rig = await start_rig(nursery)
        completed = await rig.complete_call("talk")
    report = completed.report
    responses = [r for r in completed.session.responses.values() if r.status == "completed"]
    assert len(responses) >= 2  # the greeting and an answer
    # Each reply started at the caller; its tail waited for the (absent) writer.
    assert len(report.ai_turns) == len(responses)
    for turn, response in zip(report.ai_turns, responses, strict=True):
        assert 0 < turn.heard_ms < sum(response.audio_ms.values())
