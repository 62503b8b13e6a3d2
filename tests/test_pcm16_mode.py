"""``OPENAI_AUDIO_FORMAT=pcm16``: PCM16 24 kHz upstream through soxr, μ-law toward Twilio."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from bridge.sim.script import AfterAiStarts, AfterReply, CallerScript, Utterance
from tests.harness import start_rig


async def test_pcm16_upstream_call_with_barge_in(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    script = CallerScript(
        utterances=(Utterance(1000, 9, AfterAiStarts(turn=1, delay_ms=1800)),),
        hangup=AfterReply(delay_ms=500),
    )
    with trio.fail_after(60):
        rig = await start_rig(nursery, openai_audio_format="pcm16")
        _caller, report, handle, session = await rig.complete_call(script)
    audio = session.session["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    # Caller audio reached the model as 20 ms PCM chunks (960 bytes) and its VAD fired.
    assert session.speech_started
    # The greeting, converted to μ-law, played at the caller and was cut by the barge-in.
    greeting, answer = report.ai_turns[:2]
    assert greeting.interrupted
    assert answer.heard_ms > 2500
    [truncation] = session.truncations
    assert truncation.accepted
    assert abs(truncation.audio_end_ms - report.heard_ms_by_item[truncation.item_id]) <= 40
    assert str(handle.end) == "twilio_stop"
    assert report.violation_count == 0
