"""Sans-IO barge-in and playout decisions of the call core (no sockets, no Trio)."""

from __future__ import annotations

import json

import pytest

from bridge.core.actions import SendUpstream, WakeTx
from bridge.core.call import CallCore, TxIdle, TxSend, TxWait
from bridge.core.marks import parse_mark_name
from bridge.core.playout import MARK_INTERVAL_MS
from bridge.core.realtime_client import encode
from tests.core_driver import CLIENT_CANCELS, Driver, settings


def upstream_events(driver: Driver, kind: str) -> list[dict[str, object]]:
    return [
        json.loads(encode(a.event))
        for a in driver.actions
        if isinstance(a, SendUpstream) and kind == a.event.TYPE
    ]


def test_session_update_is_ga_pcmu_with_explicit_vad() -> None:
    core = CallCore(settings(), stream_sid="MZ1", call_sid="CA1", now=0.0)
    [action] = core.on_upstream_open(0.0)
    assert isinstance(action, SendUpstream)
    session = json.loads(encode(action.event))["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    vad = session["audio"]["input"]["turn_detection"]
    assert vad["type"] == "server_vad"
    assert {"threshold", "prefix_padding_ms", "silence_duration_ms"} <= vad.keys()
    assert "input_audio_format" not in session


def test_audio_is_not_forwarded_before_session_confirms_pcmu() -> None:
    core = CallCore(settings(), stream_sid="MZ1", call_sid="CA1", now=0.0)
    core.on_upstream_open(0.0)
    driver = Driver(core, now=0.0)
    driver.audio("resp_1", "item_1", 100)
    assert isinstance(core.tx_poll(0.0), TxIdle)
    assert core.statistics().audio_dropped_unconfirmed_ms == 100


def test_session_format_mismatch_ends_the_call() -> None:
    core = CallCore(settings(), stream_sid="MZ1", call_sid="CA1", now=0.0)
    driver = Driver(core, now=0.0)
    driver.record(core.on_upstream_open(0.0))
    driver.event(
        {
            "type": "session.updated",
            "session": {"audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}}}},
        }
    )
    [end] = driver.ended()
    assert str(end.end).startswith("session_format_mismatch")


def test_rejected_session_update_is_fatal_with_reason() -> None:
    core = CallCore(settings(), stream_sid="MZ1", call_sid="CA1", now=0.0)
    driver = Driver(core, now=0.0)
    [update] = driver.record(core.on_upstream_open(0.0))
    assert isinstance(update, SendUpstream)
    driver.event(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": "unknown_parameter",
                "message": "Unknown parameter: 'session.input_audio_format'.",
                "param": "session.input_audio_format",
                "event_id": json.loads(encode(update.event))["event_id"],
            },
        }
    )
    [end] = driver.ended()
    assert "session_update_rejected" in str(end.end)
    assert "unknown_parameter" in str(end.end)


@pytest.mark.parametrize(
    "code",
    [
        "response_cancel_not_active",
        "conversation_already_has_active_response",
        "input_audio_buffer_commit_empty",
    ],
)
def test_benign_errors_do_not_end_the_call(code: str) -> None:
    driver = Driver.ready()
    driver.event({"type": "error", "error": {"type": "invalid_request_error", "code": code}})
    assert driver.ended() == []
    assert driver.logs("UPSTREAM_BENIGN")


def test_greeting_requests_a_response_when_ready() -> None:
    driver = Driver.ready(greeting="Say hello.")
    [create] = upstream_events(driver, "response.create")
    assert create["response"]["instructions"] == "Say hello."  # type: ignore[index]


def test_pacing_keeps_at_most_lead_ms_unplayed_at_twilio() -> None:
    driver = Driver.ready(lead_ms=100, frame_ms=20)
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 2000)
    assert driver.pump_tx() == 5  # 100 ms lead = 5 frames of 20 ms
    decision = driver.core.tx_poll(driver.now)
    assert isinstance(decision, TxWait)
    assert decision.until == pytest.approx(driver.now + 0.02)
    driver.play(500)
    assert len(driver.sent_frames) == 5 + 25
    assert driver.core.ledger.queued_ms() == 2000 - 30 * 20


def test_marks_name_generation_sequence_and_item() -> None:
    driver = Driver.ready(frame_ms=20)
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_abc", 3 * MARK_INTERVAL_MS)
    driver.play(3 * MARK_INTERVAL_MS)
    names = [parse_mark_name(n) for n in driver.mark_names()]
    assert [(m.generation, m.seq, m.item_id) for m in names if m] == [
        (0, 0, "item_abc"),
        (0, 1, "item_abc"),
        (0, 2, "item_abc"),
    ]


def test_speech_started_with_nothing_playing_does_nothing() -> None:
    driver = Driver.ready()
    before = list(driver.actions)
    driver.speech_started()
    assert driver.barge_ins() == []
    assert driver.upstream_types(driver.actions[len(before) :]) == []
    assert not driver.core.barge_in_active
    assert driver.twilio_out == []


def test_barge_in_before_the_first_delta_cancels_and_drops_late_audio() -> None:
    driver = Driver.ready(session=CLIENT_CANCELS)
    driver.response_created("resp_1")
    driver.item_added("resp_1", "item_1")
    driver.speech_started()
    [plan] = driver.barge_ins()
    assert plan.clear is not None  # never skipped, even with nothing sent
    assert [e.TYPE for e in plan.upstream] == ["response.cancel", "conversation.item.delete"]
    assert plan.upstream[0].response_id == "resp_1"
    assert plan.truncations == ()
    # In-flight deltas of the cancelled response still arrive: dropped and counted.
    driver.audio("resp_1", "item_1", 200)
    assert driver.pump_tx() == 0
    assert driver.core.statistics().late_deltas_dropped == 1
    assert driver.core.statistics().late_audio_ms_dropped == 200


def test_the_server_cancels_its_own_response_when_interrupt_response_is_on() -> None:
    driver = Driver.ready()  # interrupt_response: true, the GA default the bridge sends
    driver.response_created("resp_1")
    driver.item_added("resp_1", "item_1")
    driver.audio("resp_1", "item_1", 400)
    driver.play(200)
    driver.speech_started()
    [plan] = driver.barge_ins()
    # No response.cancel (it would only draw response_cancel_not_active), but the response
    # is cancelled here all the same: its late audio is dropped.
    assert [e.TYPE for e in plan.upstream] == ["conversation.item.truncate"]
    assert plan.cancelled_response_ids == ("resp_1",)
    driver.audio("resp_1", "item_1", 100)
    assert driver.core.statistics().late_deltas_dropped == 1
    assert driver.core.statistics().responses_cancelled == 1


def test_barge_in_while_twilio_still_plays_a_finished_response() -> None:
    driver = Driver.ready(lead_ms=100)
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 3000)
    driver.audio_done("resp_1", "item_1")
    driver.response_done("resp_1")
    assert driver.core.active_response_id is None
    driver.play(1230)
    driver.speech_started()
    [plan] = driver.barge_ins()
    assert plan.clear is not None
    # Nothing active upstream: no cancel; the item is truncated at what was heard.
    assert [e.TYPE for e in plan.upstream] == ["conversation.item.truncate"]
    [trunc] = plan.truncations
    assert trunc.item_id == "item_1"
    assert abs(trunc.audio_end_ms - 1230) <= 20
    # Everything received is accounted for: heard, dropped at Twilio, or flushed locally.
    accounted = trunc.audio_end_ms + plan.unplayed_at_twilio_ms + plan.flushed_ms
    assert abs(accounted - 3000) <= 2
    assert plan.unplayed_at_twilio_ms <= 100
    assert driver.core.barge_in_active


def test_truncation_never_exceeds_audio_received() -> None:
    driver = Driver.ready()
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 200)
    driver.play(1000)  # everything played; the model is still generating
    driver.speech_started()
    [plan] = driver.barge_ins()
    [trunc] = plan.truncations
    assert trunc.audio_end_ms == 200 == trunc.received_ms


def test_barge_in_during_multi_item_response() -> None:
    driver = Driver.ready(session=CLIENT_CANCELS)
    driver.response_created("resp_1")
    driver.item_added("resp_1", "item_a")
    driver.audio("resp_1", "item_a", 400)
    driver.audio_done("resp_1", "item_a")
    driver.item_added("resp_1", "item_b")
    driver.audio("resp_1", "item_b", 2000)
    driver.item_added("resp_1", "item_c")
    driver.play(700)  # all of item_a, 300 ms of item_b
    driver.speech_started()
    [plan] = driver.barge_ins()
    types = [e.TYPE for e in plan.upstream]
    assert types[0] == "response.cancel"
    # item_a was heard in full (nothing to do), item_b in part, item_c not at all.
    [trunc] = plan.truncations
    assert trunc.item_id == "item_b"
    assert abs(trunc.audio_end_ms - 300) <= 20
    assert plan.deleted_item_ids == ("item_c",)
    assert types.count("conversation.item.truncate") == 1


def test_marks_returned_by_clear_are_not_counted_as_played() -> None:
    driver = Driver.ready(lead_ms=100)
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 2000)
    driver.play(300)
    while not (pending := [str(s.mark) for s in driver.core.ledger.in_flight if s.mark]):
        driver.play(10)  # until a marked frame is still in flight at Twilio
    played_ms = (driver.now - 100.0) * 1000.0
    driver.speech_started()
    [trunc] = driver.barge_ins()[0].truncations
    # Twilio echoes every pending mark after the clear; none of them may count as played.
    for name in pending:
        driver.echo_mark(name)
    assert driver.core.statistics().marks_cleared == len(pending)
    # A new response plays under the new generation.
    driver.speech_stopped()
    driver.response_created("resp_2")
    driver.audio("resp_2", "item_2", 200)
    driver.audio_done("resp_2", "item_2")
    driver.play(200)
    assert parse_mark_name(driver.mark_names()[-1]).generation == 1  # type: ignore[union-attr]
    assert trunc.audio_end_ms <= played_ms + 1


def test_late_deltas_after_response_done_are_dropped() -> None:
    driver = Driver.ready()
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 1000)
    driver.play(200)
    driver.speech_started()
    driver.response_done("resp_1", status="cancelled")
    driver.audio("resp_1", "item_1", 100)
    driver.event(
        {
            "type": "response.output_audio_transcript.delta",
            "response_id": "resp_1",
            "item_id": "item_1",
            "delta": "stale words",
        }
    )
    assert driver.pump_tx() == 0
    assert driver.core.statistics().late_deltas_dropped == 1
    assert driver.core.statistics().late_transcripts_dropped == 1


def test_two_barge_ins_in_a_row() -> None:
    driver = Driver.ready()
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 1000)
    driver.play(300)
    driver.speech_started()
    driver.speech_stopped()
    driver.response_done("resp_1", status="cancelled")
    driver.response_created("resp_2")
    driver.audio("resp_2", "item_2", 1000)
    driver.play(500)
    driver.speech_started()
    first, second = driver.barge_ins()
    assert first.cancelled_response_ids[0] == "resp_1"
    assert second.cancelled_response_ids[0] == "resp_2"
    assert abs(second.truncations[0].audio_end_ms - 500) <= 20
    assert driver.core.barge_in_epoch == 2
    # The second response's own marks run under generation 1, then the clear bumps to 2.
    assert driver.core.ledger.generation == 2


def test_second_speech_started_without_stop_does_not_barge_in_again() -> None:
    driver = Driver.ready()
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 1000)
    driver.play(300)
    driver.speech_started()
    driver.speech_started()
    assert len(driver.barge_ins()) == 1


def test_barge_in_gates_off_until_speech_stopped() -> None:
    driver = Driver.ready()
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 500)
    driver.play(100)
    driver.speech_started()
    assert driver.core.barge_in_active
    driver.speech_stopped()
    assert not driver.core.barge_in_active
    assert driver.logs("BARGE_IN_END")


def test_response_requested_before_barge_in_is_cancelled_when_it_appears() -> None:
    driver = Driver.ready(greeting="Hello.")
    [create] = upstream_events(driver, "response.create")
    driver.response_created("resp_0", {"bridge_request": str(create["event_id"])})
    driver.audio("resp_0", "item_0", 500)
    driver.play(100)
    driver.response_done("resp_0")
    driver.record(
        driver.core.submit_note(
            "Ask for the city", respond=True, awaits_confirmation=False, epoch=0
        )
    )
    [note_create] = upstream_events(driver, "response.create")[1:]
    assert note_create["event_id"] != create["event_id"]
    driver.speech_started()  # caller cuts in before the note's response exists
    actions = driver.event(
        {
            "type": "response.created",
            "response": {
                "id": "resp_stale",
                "metadata": {"bridge_request": note_create["event_id"]},
            },
        }
    )
    assert [a.event.TYPE for a in actions if isinstance(a, SendUpstream)] == ["response.cancel"]
    assert driver.core.is_cancelled("resp_stale")
    assert driver.core.active_response_id is None


def test_response_create_waits_for_response_done() -> None:
    driver = Driver.ready()
    driver.response_created("resp_1")
    actions = driver.record(
        driver.core.submit_note("New info", respond=True, awaits_confirmation=False, epoch=None)
    )
    assert driver.upstream_types(actions) == ["conversation.item.create"]
    assert driver.logs("NOTE_DEFERRED")
    done = driver.response_done("resp_1")
    assert driver.upstream_types(done) == ["response.create"]


def test_note_produced_before_barge_in_is_sent_silently() -> None:
    driver = Driver.ready()
    epoch = driver.core.barge_in_epoch
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 500)
    driver.play(100)
    driver.speech_started()
    driver.speech_stopped()
    driver.response_done("resp_1", status="cancelled")
    actions = driver.record(
        driver.core.submit_note(
            "Old clarification", respond=True, awaits_confirmation=False, epoch=epoch
        )
    )
    assert driver.upstream_types(actions) == ["conversation.item.create"]
    assert driver.logs("NOTE_SILENT")


def test_note_during_active_barge_in_is_silent() -> None:
    driver = Driver.ready()
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 500)
    driver.play(100)
    driver.speech_started()
    actions = driver.record(
        driver.core.submit_note("x", respond=True, awaits_confirmation=False, epoch=None)
    )
    assert driver.upstream_types(actions) == ["conversation.item.create"]


@pytest.mark.parametrize("answer", ["No.", "nope", "לא", "  NO!  "])
def test_negation_discards_notes_awaiting_confirmation(answer: str) -> None:
    driver = Driver.ready()
    held = driver.record(
        driver.core.submit_note(
            "Confirm Haifa?", respond=True, awaits_confirmation=True, epoch=None
        )
    )
    assert driver.upstream_types(held) == []
    actions = driver.event(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_u",
            "content_index": 0,
            "transcript": answer,
        }
    )
    assert driver.upstream_types(actions) == []
    assert driver.core.statistics().notes_discarded == 1


def test_confirmation_releases_held_notes() -> None:
    driver = Driver.ready()
    driver.core.submit_note(
        "Caller confirmed.", respond=False, awaits_confirmation=True, epoch=None
    )
    actions = driver.event(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_u",
            "content_index": 0,
            "transcript": "Yes, Haifa.",
        }
    )
    assert driver.upstream_types(actions) == ["conversation.item.create"]


def test_local_onset_holds_audio_and_resumes_if_server_does_not_confirm() -> None:
    driver = Driver.ready(fast_barge_in="duck", confirm_window_ms=700, lead_ms=100)
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 3000)
    driver.play(1000)
    sent_before = driver.core.statistics().audio_ms_sent
    [plan] = driver.record(driver.core.on_local_onset(driver.now))
    assert plan.held
    assert plan.clear is not None
    assert plan.upstream == ()
    assert isinstance(driver.core.tx_poll(driver.now), TxIdle)
    driver.now += 0.5
    assert driver.core.on_timer(driver.now) == []
    driver.now += 0.25
    resumed = driver.record(driver.core.on_timer(driver.now))
    assert any(isinstance(a, WakeTx) for a in resumed)
    assert driver.logs("BARGE_IN_RESUMED")
    first = driver.core.tx_poll(driver.now)
    assert isinstance(first, TxSend)
    # Resumes where playout stopped (the heard position), not from the start of a frame.
    assert abs(first.frame.item_offset / 8 - 1000) <= 20
    assert driver.core.statistics().audio_ms_sent > sent_before
    assert not driver.core.barge_in_active
    assert upstream_events(driver, "conversation.item.truncate") == []


def test_local_onset_confirmed_by_server_completes_the_barge_in() -> None:
    driver = Driver.ready(fast_barge_in="duck", session=CLIENT_CANCELS)
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 3000)
    driver.play(800)
    driver.record(driver.core.on_local_onset(driver.now))
    driver.now += 0.2
    driver.speech_started()
    local, confirmed = driver.barge_ins()
    assert local.trigger == "local"
    assert confirmed.trigger == "confirmed"
    assert confirmed.clear is None  # already cleared by the local path
    assert next(e.TYPE for e in confirmed.upstream) == "response.cancel"
    [trunc] = confirmed.truncations
    assert abs(trunc.audio_end_ms - 800) <= 20  # nothing was played during the hold
    assert confirmed.flushed_ms == 3000 - trunc.audio_end_ms


def test_local_onset_does_nothing_when_off_or_ai_silent() -> None:
    off = Driver.ready(fast_barge_in="off")
    off.response_created("resp_1")
    off.audio("resp_1", "item_1", 500)
    assert off.core.on_local_onset(off.now) == []
    silent = Driver.ready(fast_barge_in="duck")
    assert silent.core.on_local_onset(silent.now) == []


def test_tx_queue_overflow_drops_oldest_and_counts() -> None:
    driver = Driver.ready(max_queued_ms=1000, frame_ms=20)
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 1500)
    assert driver.core.statistics().tx_overflow_frames == 25
    assert driver.core.ledger.queued_ms() == 1000
    first = driver.core.ledger.queue[0]
    assert first is not None
    assert first.item_offset == 500 * 8


def test_twilio_messages_carry_the_stream_sid() -> None:
    driver = Driver.ready()
    driver.response_created("resp_1")
    driver.audio("resp_1", "item_1", 40)
    driver.pump_tx()
    driver.speech_started()
    for text in driver.twilio_out:
        assert json.loads(text)["streamSid"] == "MZ1"
