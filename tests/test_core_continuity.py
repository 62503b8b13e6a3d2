"""The call core's continuity rules, without sockets: watchdogs, loss, replay, restore.

Each test drives :class:`bridge.core.call.CallCore` through :class:`tests.core_driver.Driver`
(a fake clock and a model of Twilio's playback) and checks the actions it returns.
"""

from __future__ import annotations

import random

from bridge.audio.synth import speech_like_ulaw
from bridge.core import realtime as rt
from bridge.core import twilio
from bridge.core.actions import BargeIn, DropUpstream, SendUpstream
from bridge.core.call import GARBAGE_RUN_LIMIT, CallCore
from bridge.core.ending import CallEnd, EndReason
from bridge.core.realtime_client import InputAudioAppend, ItemDelete, ReplayMessage, ResponseCreate
from bridge.core.reconnect import FIRST_BACKOFF_S, JITTER, ReconnectBudget
from bridge.core.watchdogs import ReplyDue, ReplyWatch
from tests.core_driver import Driver, settings

HOLD = b"\x7f" * 8 * 400
"""A 400 ms hold phrase (μ-law, 8 bytes/ms)."""
LOST = CallEnd(EndReason.OPENAI_CLOSED, "1011")


def drive_timers(driver: Driver, until: float) -> None:
    """Advance ``driver.now`` to ``until`` (s), firing every core timer when it is due."""
    for _ in range(1000):
        deadline = driver.core.next_deadline()
        if deadline is None or deadline > until:
            driver.now = until
            return
        driver.now = max(driver.now, deadline)
        driver.record(driver.core.on_timer(driver.now))
    raise AssertionError(f"a timer stays due at {driver.now}")


def reopen(driver: Driver) -> list[SendUpstream]:
    """A new session opens and confirms pcmu; the client events the core sent to it."""
    return [a for a in driver.open_session() if isinstance(a, SendUpstream)]


def speak(driver: Driver, response_id: str, item_id: str, text: str, ms: int) -> None:
    """The model starts reply ``response_id``: its item, transcript and ``ms`` of audio."""
    driver.response_created(response_id)
    driver.item_added(response_id, item_id)
    driver.event(
        {
            "type": "response.output_audio_transcript.delta",
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "delta": text,
        }
    )
    driver.audio(response_id, item_id, ms)


def caller_turn(driver: Driver, item_id: str, text: str) -> None:
    driver.event(
        {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2000, "item_id": item_id}
    )
    driver.event(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id,
            "content_index": 0,
            "transcript": text,
        }
    )


# -- the reply watch ------------------------------------------------------------------------


def test_a_late_reply_gets_one_nudge_then_the_hold_phrase_once() -> None:
    driver = Driver.ready(reply_timeout_ms=3000, hold_audio=HOLD)
    caller_turn(driver, "item_u1", "What time is it?")
    turn_end = driver.now
    drive_timers(driver, turn_end + 2.9)
    assert driver.logs("REPLY_NUDGE") == []
    drive_timers(driver, turn_end + 3.0)
    [nudge] = driver.logs("REPLY_NUDGE")
    assert driver.upstream_types()[-1] == "response.create"
    drive_timers(driver, turn_end + 30.0)
    assert len(driver.logs("REPLY_NUDGE")) == 1
    [hold] = driver.logs("HOLD_PHRASE")
    assert "late" in hold.message
    assert driver.core.statistics().hold_phrases == 1
    # The hold phrase is the bridge's own audio: it plays, and is never truncated upstream.
    driver.play(500)
    assert len(driver.sent_frames) > 0
    assert nudge is not hold


def test_reply_audio_settles_what_is_owed() -> None:
    driver = Driver.ready(reply_timeout_ms=3000, hold_audio=HOLD)
    caller_turn(driver, "item_u1", "Hi")
    driver.now += 1.0
    speak(driver, "resp_1", "item_a1", "Hello.", 500)
    drive_timers(driver, driver.now + 20.0)
    assert driver.logs("REPLY_NUDGE") == []
    assert driver.logs("HOLD_PHRASE") == []


def test_a_tool_call_settles_the_reply_watch() -> None:
    driver = Driver.ready(reply_timeout_ms=3000, hold_audio=HOLD)
    caller_turn(driver, "item_u1", "Book it")
    driver.response_created("resp_1")
    driver.event(
        {
            "type": "response.output_item.added",
            "response_id": "resp_1",
            "item": {"id": "item_fc", "type": "function_call", "name": "book"},
        }
    )
    drive_timers(driver, driver.now + 4.0)
    assert driver.logs("REPLY_NUDGE") == []


def test_the_reply_watch_deadlines() -> None:
    watch = ReplyWatch(timeout_s=3.0, hold_after_s=2.0)
    assert watch.deadline() is None
    watch.owe(10.0)
    assert watch.deadline() == 13.0
    assert watch.due(12.9) is None
    assert watch.due(13.0) is ReplyDue.NUDGE
    assert watch.deadline() == 15.0
    assert watch.due(15.0) is ReplyDue.HOLD_PHRASE
    assert watch.deadline() is None
    watch.owe(20.0)  # a new turn starts the watch afresh
    assert watch.due(23.0) is ReplyDue.NUDGE


# -- the response watch ---------------------------------------------------------------------


def test_a_response_that_stops_streaming_drops_the_upstream() -> None:
    driver = Driver.ready()
    speak(driver, "resp_1", "item_a1", "Let me", 200)
    started = driver.now
    drive_timers(driver, started + 4.9)
    assert [a for a in driver.actions if isinstance(a, DropUpstream)] == []
    drive_timers(driver, started + 5.0)
    [drop] = [a for a in driver.actions if isinstance(a, DropUpstream)]
    assert drop.end.reason is EndReason.OPENAI_RESPONSE_STALL
    assert driver.ended() == []  # the call heals; only the session goes


def test_a_streaming_response_is_not_a_stall() -> None:
    driver = Driver.ready()
    speak(driver, "resp_1", "item_a1", "One", 200)
    for _ in range(10):
        driver.now += 1.0
        driver.audio("resp_1", "item_a1", 100)
        driver.record(driver.core.on_timer(driver.now))
    driver.response_done("resp_1")
    drive_timers(driver, driver.now + 60.0)
    assert [a for a in driver.actions if isinstance(a, DropUpstream)] == []


CUE = b"\x7e" * 8 * 180
"""A 180 ms soft cue (μ-law)."""


def test_a_reply_whose_audio_stops_mid_item_gets_one_soft_cue_after_the_comfort_delay() -> None:
    # The upstream stalls mid-reply: the heartbeat finds it up to 1.5 s later, but Twilio's
    # buffer runs dry at once; the caller must not sit in that silence.
    driver = Driver.ready(comfort_after_ms=700, comfort_cue=CUE)
    speak(driver, "resp_1", "item_a1", "Your order", 400)
    driver.play(400)
    quiet_from = driver.now
    for _ in range(7):  # 0.7 s of silence at the caller, and a bit
        driver.play(100)
        drive_timers(driver, driver.now)
    assert driver.logs("REPLY_STARVED") == []
    driver.play(20)
    drive_timers(driver, quiet_from + 0.72)
    [starved] = driver.logs("REPLY_STARVED")
    assert "mid-item" in starved.message
    driver.play(2000)
    drive_timers(driver, driver.now + 3.0)
    assert driver.core.statistics().comfort_cues == 1  # once per quiet spell
    heard = [f.frame.item_id for f in driver.sent_frames]
    assert heard[-1].startswith("local_cue_")
    # The reply goes on: its audio follows the cue, and a new quiet spell gets a new cue.
    driver.audio("resp_1", "item_a1", 200)
    driver.play(300)
    assert [f.frame.item_id for f in driver.sent_frames][-1] == "item_a1"
    driver.play(800)
    drive_timers(driver, driver.now)
    assert driver.core.statistics().comfort_cues == 2


def test_no_cue_once_the_items_audio_is_done_or_the_reply_is_over() -> None:
    # The model finished speaking and now writes a function call (or its response.done is on
    # its way): the line is quiet by design.
    driver = Driver.ready(comfort_after_ms=700, comfort_cue=CUE)
    speak(driver, "resp_1", "item_a1", "Let me check.", 400)
    driver.audio_done("resp_1", "item_a1")
    driver.play(3000)
    drive_timers(driver, driver.now + 5.0)
    speak(driver, "resp_2", "item_a2", "Done.", 300)
    driver.response_done("resp_2")
    driver.play(3000)
    drive_timers(driver, driver.now + 5.0)
    assert driver.logs("REPLY_STARVED") == []
    assert driver.core.statistics().comfort_cues == 0


def test_a_loss_found_after_the_cue_waits_a_cue_interval_before_the_hold_phrase() -> None:
    driver = Driver.ready(comfort_after_ms=700, comfort_cue=CUE, hold_audio=HOLD)
    speak(driver, "resp_1", "item_a1", "Your order", 400)
    driver.play(400)
    cue_at = None
    for _ in range(11):  # the cue at 0.7 s of quiet; the heartbeat finds the loss at 1.1 s
        driver.play(100)
        drive_timers(driver, driver.now)
        if cue_at is None and driver.core.statistics().comfort_cues:
            cue_at = driver.now
    assert cue_at is not None
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    cue_end = cue_at + len(CUE) / 8000
    drive_timers(driver, cue_end + 1.19)
    assert driver.logs("HOLD_PHRASE") == []  # not at once: the cue broke the silence
    drive_timers(driver, cue_end + 1.21)
    assert len(driver.logs("HOLD_PHRASE")) == 1


def _first_session_opens_while_a_local_barge_in_holds_the_hold_phrase() -> Driver:
    """No session came up yet (refused handshakes), the hold phrase plays, the caller seems
    to cut into it (local onset: held), and then the first session is confirmed."""
    driver = Driver(
        CallCore(
            settings(greeting="Greet the caller.", hold_audio=HOLD, comfort_after_ms=700),
            stream_sid="MZ1",
            call_sid="CA1",
            now=100.0,
        )
    )
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    drive_timers(driver, driver.now + 0.7)
    driver.play(100)
    driver.record(driver.core.on_local_onset(driver.now))
    assert driver.core.statistics().hold_phrases == 1
    driver.open_session()  # once raised StateError: the greeting was asked for while held
    return driver


def test_a_first_session_during_a_held_barge_in_greets_once_it_proves_a_false_alarm() -> None:
    driver = _first_session_opens_while_a_local_barge_in_holds_the_hold_phrase()
    assert "response.create" not in driver.upstream_types()
    drive_timers(driver, driver.now + 1.0)  # no confirmation from the server: resumed
    assert driver.logs("BARGE_IN_RESUMED")
    assert driver.upstream_types().count("response.create") == 1


def test_a_first_session_during_a_confirmed_barge_in_leaves_the_turn_to_the_caller() -> None:
    driver = _first_session_opens_while_a_local_barge_in_holds_the_hold_phrase()
    driver.speech_started()
    drive_timers(driver, driver.now + 1.0)
    assert "response.create" not in driver.upstream_types()
    assert driver.ended() == []


# -- the media watch ------------------------------------------------------------------------


def _frame(driver: Driver, ts_ms: int) -> None:
    media = twilio.Media(timestamp_ms=ts_ms, payload=b"\xff" * 160)
    driver.record(driver.core.on_twilio_event(media, driver.now))


def test_caller_media_that_stops_is_logged_then_ends_the_call() -> None:
    driver = Driver.ready(media_timeout_s=10.0)
    _frame(driver, 0)
    stopped = driver.now
    drive_timers(driver, stopped + 1.9)
    assert driver.logs("TWILIO_MEDIA_STALL") == []
    drive_timers(driver, stopped + 2.0)
    assert len(driver.logs("TWILIO_MEDIA_STALL")) == 1
    assert driver.core.statistics().media_stalls == 1
    drive_timers(driver, stopped + 11.0)
    [end] = driver.ended()
    assert end.end.reason is EndReason.TWILIO_MEDIA_TIMEOUT


def test_caller_media_that_resumes_is_logged_and_the_call_goes_on() -> None:
    driver = Driver.ready(media_timeout_s=10.0)
    _frame(driver, 0)
    drive_timers(driver, driver.now + 3.5)
    _frame(driver, 20)
    [resumed] = driver.logs("TWILIO_MEDIA_RESUMED")
    assert "3.5 s" in resumed.message
    drive_timers(driver, driver.now + 1.0)
    assert driver.ended() == []


# -- loss, replay, restore ------------------------------------------------------------------


def test_the_replay_is_the_conversation_as_the_caller_heard_it() -> None:
    driver = Driver.ready()
    caller_turn(driver, "item_u1", "Where is my order?")
    text = "Your order left the warehouse this morning and arrives on Friday."
    speak(driver, "resp_1", "item_a1", text, 2000)
    driver.play(1000)  # half of it heard
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    assert driver.logs("UPSTREAM_LOST")
    sent = reopen(driver)
    replays = [a.event for a in sent if isinstance(a.event, ReplayMessage)]
    assert (replays[0].role, replays[0].text) == ("user", "Where is my order?")
    role, heard = replays[1].role, replays[1].text
    assert role == "assistant"
    assert 0 < len(heard) < len(text)
    assert text.startswith(heard)
    # It was cut mid-reply: one response asks the model to say so and go on.
    creates = [a.event for a in sent if isinstance(a.event, ResponseCreate)]
    [resume] = creates
    assert resume.instructions is not None
    assert heard in resume.instructions
    [restored] = driver.logs("UPSTREAM_RESTORED")
    assert restored.fields["record"]["replayed_items"] == 2
    assert restored.fields["record"]["resumed_reply"] is True


def test_the_caller_speaking_at_restore_is_heard_first_and_waited_for() -> None:
    driver = Driver.ready()
    speak(driver, "resp_1", "item_a1", "Your order", 1000)
    driver.play(300)
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    # The caller talks through the gap: the audio waits for the next session.
    speech = speech_like_ulaw(600, seed=3)
    frames = [
        twilio.Media(payload=speech[i : i + 160], timestamp_ms=10_000 + i // 8)
        for i in range(0, len(speech), 160)
    ]
    for frame in frames:
        driver.now += 0.02
        driver.record(driver.core.on_caller_frames([frame], driver.now))
    assert driver.upstream_types()[-1] != "input_audio_buffer.append"
    sent = reopen(driver)
    appends = [a.event for a in sent if isinstance(a.event, InputAudioAppend)]
    assert sum(len(a.audio) for a in appends) >= len(speech) // 2
    assert [a for a in sent if isinstance(a.event, ResponseCreate)] == []
    [restored] = driver.logs("UPSTREAM_RESTORED")
    assert restored.fields["record"]["resumed_reply"] is False


def test_audio_received_before_the_loss_still_plays_and_the_hold_phrase_follows() -> None:
    driver = Driver.ready(comfort_after_ms=700, hold_audio=HOLD)
    speak(driver, "resp_1", "item_a1", "Your order", 1000)
    driver.play(200)
    lost_at = driver.now
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    # Nothing of the received second is dropped: it plays out while the upstream heals.
    for _ in range(14):
        driver.play(100)
        drive_timers(driver, driver.now)
    assert driver.core.statistics().audio_ms_sent >= 1000
    # The caller's line goes quiet 0.8 s after the loss; the hold phrase 0.7 s after that.
    assert driver.logs("HOLD_PHRASE") == []
    drive_timers(driver, lost_at + 1.51)
    assert len(driver.logs("HOLD_PHRASE")) == 1
    drive_timers(driver, lost_at + 30.0)
    assert len(driver.logs("HOLD_PHRASE")) == 1  # once per outage


def test_the_hold_phrase_waits_the_comfort_delay_after_the_line_went_quiet() -> None:
    driver = Driver.ready(comfort_after_ms=700, hold_audio=HOLD)
    caller_turn(driver, "item_u1", "Hello?")
    driver.now += 0.5
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    lost_at = driver.now
    # The caller's turn ended 0.5 s before the loss: 0.2 s more of silence is the delay.
    drive_timers(driver, lost_at + 0.19)
    assert driver.logs("HOLD_PHRASE") == []
    drive_timers(driver, lost_at + 0.21)
    assert len(driver.logs("HOLD_PHRASE")) == 1
    # The owed reply is requested as soon as the new session is ready.
    sent = reopen(driver)
    assert [a.event.TYPE for a in sent][-1] == "response.create"


def _healed_before_the_resumed_reply_spoke(**changes: object) -> tuple[Driver, float]:
    """A reply cut mid-word; its audio has played out, the next session is ready at once
    and asked to resume, and none of the resumed reply's audio has come yet."""
    driver = Driver.ready(comfort_after_ms=700, hold_audio=HOLD, **changes)
    speak(driver, "resp_1", "item_a1", "Your order", 300)
    driver.play(300)
    quiet_at = driver.now
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    sent = reopen(driver)
    assert [a.event.TYPE for a in sent][-1] == "response.create"
    [restored] = driver.logs("UPSTREAM_RESTORED")
    assert restored.fields["record"]["resumed_reply"] is True
    return driver, quiet_at


def test_a_resumed_reply_that_does_not_start_gets_the_outages_comfort_on_time() -> None:
    driver, quiet_at = _healed_before_the_resumed_reply_spoke()
    # The new session stalls before its first delta; only its heartbeat could tell, later.
    drive_timers(driver, quiet_at + 0.69)
    assert driver.logs("HOLD_PHRASE") == []
    drive_timers(driver, quiet_at + 0.71)
    assert len(driver.logs("HOLD_PHRASE")) == 1


def test_a_resumed_reply_that_speaks_in_time_needs_no_comfort() -> None:
    driver, quiet_at = _healed_before_the_resumed_reply_spoke()
    driver.now = quiet_at + 0.3
    speak(driver, "resp_2", "item_a2", "Sorry, I was cut off.", 1000)
    assert driver.core.next_deadline() is None or driver.core.next_deadline() > quiet_at + 1.5
    for _ in range(10):
        driver.play(100)
        drive_timers(driver, driver.now)
    assert driver.logs("HOLD_PHRASE") == []
    assert driver.core.statistics().comfort_cues == 0


def test_a_caller_who_speaks_before_the_resumed_reply_ends_its_comfort() -> None:
    driver, quiet_at = _healed_before_the_resumed_reply_spoke()
    driver.now = quiet_at + 0.3
    driver.speech_started()
    drive_timers(driver, quiet_at + 1.0)
    assert driver.logs("HOLD_PHRASE") == []


def test_lost_again_before_the_resumed_reply_spoke_the_phrase_is_not_played_twice() -> None:
    cue = b"\x7e" * 8 * 180
    driver, quiet_at = _healed_before_the_resumed_reply_spoke(comfort_cue=cue)
    drive_timers(driver, quiet_at + 0.71)
    assert len(driver.logs("HOLD_PHRASE")) == 1
    driver.play(400)
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    for _ in range(20):
        drive_timers(driver, driver.now)
        driver.play(100)
    stats = driver.core.statistics()
    assert stats.hold_phrases == 1
    assert stats.comfort_cues >= 1


def test_no_audio_reaches_the_caller_from_the_lost_session() -> None:
    driver = Driver.ready()
    speak(driver, "resp_1", "item_a1", "One", 200)
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    frames = driver.core.statistics().audio_ms_received
    driver.audio("resp_1", "item_a1", 400)  # a delta read after the loss was decided
    assert driver.core.statistics().audio_ms_received == frames


def test_each_session_starts_its_own_input_clock() -> None:
    driver = Driver.ready()
    for ts in range(0, 2000, 20):
        _frame(driver, ts)
        driver.now += 0.02
    before = driver.core._input_clock
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    reopen(driver)
    assert driver.core._input_clock is not before


def test_a_second_loss_while_healing_is_one_outage() -> None:
    driver = Driver.ready()
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    assert driver.record(driver.core.on_upstream_lost(driver.now, LOST)) == []
    assert driver.core.statistics().upstream_losses == 1


def test_a_recycle_at_a_turn_boundary_replays_without_a_resume() -> None:
    driver = Driver.ready()
    caller_turn(driver, "item_u1", "Thanks")
    speak(driver, "resp_1", "item_a1", "You are welcome.", 600)
    driver.audio_done("resp_1", "item_a1")
    driver.response_done("resp_1")
    driver.play(1000)
    assert driver.core.at_turn_boundary
    sent = reopen(driver)  # a standby session takes over while the old one is READY
    assert sent[0].event.TYPE == "session.update"
    replays = [(a.event.role, a.event.text) for a in sent if isinstance(a.event, ReplayMessage)]
    assert replays == [("user", "Thanks"), ("assistant", "You are welcome.")]
    assert [a for a in sent if isinstance(a.event, ResponseCreate)] == []
    assert len(driver.logs("SESSION_RECYCLED")) == 1


def test_an_unhealable_end_is_not_a_loss() -> None:
    driver = Driver.ready()
    driver.event(
        {
            "type": "error",
            "error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "x"},
        }
    )
    assert [a for a in driver.actions if isinstance(a, DropUpstream)] == []
    assert all(not e.end.reason.upstream_can_heal for e in driver.ended())


# -- the reconnect budget -------------------------------------------------------------------


def test_the_budget_allows_attempts_within_a_sliding_window() -> None:
    budget = ReconnectBudget(attempts=3, window_s=10.0, rng=random.Random(1))
    assert [budget.try_now(t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert budget.try_now(10.5) is True  # the first attempt left the window


def test_the_backoff_starts_at_once_then_doubles_with_jitter() -> None:
    budget = ReconnectBudget(attempts=5, window_s=10.0, rng=random.Random(7))
    assert budget.backoff_s() == 0.0
    budget.try_now(0.0)
    first = budget.backoff_s()
    budget.try_now(0.5)
    second = budget.backoff_s()
    low, high = 1.0 - JITTER, 1.0 + JITTER
    assert FIRST_BACKOFF_S * low <= first <= FIRST_BACKOFF_S * high
    assert 2 * FIRST_BACKOFF_S * low <= second <= 2 * FIRST_BACKOFF_S * high
    budget.healed()
    assert budget.backoff_s() == 0.0


def test_a_session_that_sends_only_garbage_is_given_up() -> None:
    driver = Driver.ready()
    for _ in range(GARBAGE_RUN_LIMIT - 1):
        driver.record(driver.core.on_realtime_event(rt.parse_realtime_event("{not json"), 1.0))
    assert [a for a in driver.actions if isinstance(a, DropUpstream)] == []
    driver.record(driver.core.on_realtime_event(rt.parse_realtime_event("{not json"), 1.0))
    [drop] = [a for a in driver.actions if isinstance(a, DropUpstream)]
    assert drop.end.reason is EndReason.OPENAI_GARBAGE
    assert drop.end.reason.upstream_can_heal


def test_garbage_between_good_events_is_only_counted() -> None:
    driver = Driver.ready()
    for _ in range(3 * GARBAGE_RUN_LIMIT):
        driver.record(driver.core.on_realtime_event(rt.parse_realtime_event("{not json"), 1.0))
        driver.event({"type": "rate_limits.updated", "rate_limits": []})
    assert [a for a in driver.actions if isinstance(a, DropUpstream)] == []
    assert driver.core.statistics().upstream_malformed == 3 * GARBAGE_RUN_LIMIT


def test_a_long_outage_gets_the_hold_phrase_once_then_soft_cues() -> None:
    cue = b"\x7e" * 8 * 180
    driver = Driver.ready(comfort_after_ms=700, hold_audio=HOLD, comfort_cue=cue)
    lost_at = driver.now
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    for _ in range(60):  # 6 s of healing
        drive_timers(driver, driver.now)
        driver.play(100)
    stats = driver.core.statistics()
    assert stats.hold_phrases == 1
    # 0.7 s quiet, 0.4 s phrase, then a 0.18 s cue after every 1.2 s of quiet.
    assert stats.comfort_cues == int((6.0 - 0.7 - 0.4) // (1.2 + 0.18))
    heard = [f.frame.item_id for f in driver.sent_frames]
    assert heard[0].startswith("local_hold_")
    assert all(item.startswith(("local_hold_", "local_cue_")) for item in heard)
    # Healed: no more cues.
    reopen(driver)
    drive_timers(driver, lost_at + 20.0)
    assert driver.core.statistics().comfort_cues == stats.comfort_cues


def test_a_replayed_reply_cut_while_it_still_plays_is_replaced_by_what_was_heard() -> None:
    driver = Driver.ready()
    caller_turn(driver, "item_u1", "Where is my order?")
    text = "Your order left the warehouse this morning and arrives on Friday."
    speak(driver, "resp_1", "item_a1", text, 4000)
    driver.audio_done("resp_1", "item_a1")
    driver.play(500)
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    sent = reopen(driver)
    [given] = [
        a.event for a in sent if isinstance(a.event, ReplayMessage) and a.event.role == "assistant"
    ]
    assert given.text == text  # all its audio was received: all of it will play
    driver.play(1500)
    # The caller cuts in while the old session's audio still plays (2 s of 4 s heard).
    barge = driver.speech_started()
    events = [e for b in barge if isinstance(b, BargeIn) for e in b.upstream]
    delete, replace_with = events
    assert isinstance(delete, ItemDelete)
    assert delete.item_id == given.item_id
    assert isinstance(replace_with, ReplayMessage)
    assert 0 < len(replace_with.text) < len(text) // 2 + 8
    assert text.startswith(replace_with.text)
    user_item = next(
        a.event for a in sent if isinstance(a.event, ReplayMessage) and a.event.role == "user"
    )
    assert replace_with.previous_item_id == user_item.item_id
    assert replace_with.item_id != given.item_id


def test_a_hold_phrase_that_started_ends_before_the_model_speaks_again() -> None:
    driver = Driver.ready(comfort_after_ms=700, hold_audio=HOLD)
    driver.record(driver.core.on_upstream_lost(driver.now, LOST))
    drive_timers(driver, driver.now + 0.7)
    driver.play(100)  # the hold phrase starts
    reopen(driver)
    speak(driver, "resp_2", "item_a2", "As I was saying", 500)
    driver.play(2000)
    heard = [f.frame.item_id for f in driver.sent_frames]
    hold = [i for i in heard if i.startswith("local_hold_")]
    assert sum(len(f.frame.payload) for f in driver.sent_frames if f.frame.item_id in hold) == len(
        HOLD
    )
    assert heard.index("item_a2") > max(k for k, i in enumerate(heard) if i in hold)


def test_a_hold_phrase_not_started_is_dropped_when_the_model_speaks() -> None:
    driver = Driver.ready(reply_timeout_ms=3000, hold_audio=HOLD)
    caller_turn(driver, "item_u1", "Hello?")
    drive_timers(driver, driver.now + 4.5)  # the nudge, then the hold phrase is queued
    assert driver.logs("HOLD_PHRASE")
    speak(driver, "resp_1", "item_a1", "Hello!", 500)  # before any of it was sent
    driver.play(1000)
    assert [
        f.frame.item_id for f in driver.sent_frames if f.frame.item_id.startswith("local_")
    ] == []


def test_a_session_expired_error_heals_like_the_caps_close() -> None:
    driver = Driver.ready()
    driver.event(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": "session_expired",
                "message": "Your session hit the maximum duration of 60 minutes.",
            },
        }
    )
    [drop] = [a for a in driver.actions if isinstance(a, DropUpstream)]
    assert drop.end.reason.upstream_can_heal
    assert driver.ended() == []
