"""The conversation state machine (bridge/core/state.py): its tables and its rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.state import (
    ConversationState,
    Created,
    Duck,
    Floor,
    SessionEvent,
    SessionPhase,
    StateError,
)


def ready_state() -> ConversationState:
    state = ConversationState()
    state.session(SessionEvent.OPENED)
    state.session(SessionEvent.CONFIRMED)
    return state


def test_session_goes_ready_then_lost_then_is_replaced() -> None:
    state = ConversationState()
    assert state.phase is SessionPhase.CONNECTING
    assert state.session(SessionEvent.OPENED) is SessionPhase.CONFIGURING
    assert state.session(SessionEvent.CONFIRMED) is SessionPhase.READY
    assert state.session(SessionEvent.LOST) is SessionPhase.LOST
    assert not state.may_create_response
    assert state.session(SessionEvent.REPLACED) is SessionPhase.CONNECTING
    assert state.session(SessionEvent.OPENED) is SessionPhase.CONFIGURING


@pytest.mark.parametrize(
    ("events", "bad"),
    [
        ((), SessionEvent.CONFIRMED),  # confirmed before any socket
        ((SessionEvent.OPENED,), SessionEvent.OPENED),  # opened twice
        ((SessionEvent.OPENED,), SessionEvent.REPLACED),  # nothing to replace yet
        ((SessionEvent.CLOSED,), SessionEvent.OPENED),  # nothing leaves CLOSED
        ((SessionEvent.CLOSED,), SessionEvent.CLOSED),
    ],
)
def test_impossible_session_transitions_raise(
    events: tuple[SessionEvent, ...], bad: SessionEvent
) -> None:
    state = ConversationState()
    for event in events:
        state.session(event)
    with pytest.raises(StateError, match=bad.name):
        state.session(bad)


def test_a_response_may_start_only_when_ready_idle_and_the_ai_has_the_floor() -> None:
    state = ConversationState()
    assert not state.may_create_response  # not ready
    state = ready_state()
    assert state.may_create_response
    state.request("r1")
    assert not state.may_create_response  # a request in flight
    with pytest.raises(StateError):
        state.request("r2")
    assert state.created("resp_1", "r1", now=1.0) is Created.ACTIVE
    assert not state.may_create_response  # a response active
    assert state.done("resp_other") is None
    active = state.done("resp_1")
    assert active is not None
    assert active.response_id == "resp_1"
    assert state.may_create_response


def test_a_barge_in_makes_every_request_in_flight_stale() -> None:
    state = ready_state()
    state.request("r1")
    state.defer()
    epoch = state.barge_in_epoch
    assert state.cut() is None
    assert state.floor is Floor.CALLER
    assert state.barge_in_epoch == epoch + 1
    assert not state.take_deferred()  # the deferred wish died with the barge-in
    assert state.created("resp_stale", "r1", now=2.0) is Created.STALE
    assert state.active is None
    assert state.caller_stopped()
    assert state.floor is Floor.AI_MAY_SPEAK
    assert not state.caller_stopped()  # nothing to give back twice
    assert state.may_create_response


def test_duck_holds_audio_until_resumed_or_cut() -> None:
    state = ready_state()
    duck = Duck(started_at=5.0, held=())
    state.duck(duck)
    assert state.floor is Floor.HELD
    assert state.duck_state is duck
    assert not state.may_create_response
    with pytest.raises(StateError):
        state.duck(duck)  # one local barge-in at a time
    assert state.resume() is duck
    assert state.duck_state is None
    state.duck(duck)
    assert state.cut() is duck  # the server confirmed: the held audio is the cut's to drop
    assert state.duck_state is None
    assert state.floor is Floor.CALLER
    with pytest.raises(StateError):
        state.resume()


def test_a_collided_request_is_asked_again_once_the_slot_is_free() -> None:
    state = ready_state()
    state.request("r1")
    state.request_failed("r1", collided=True)
    assert state.created("resp_server", None, now=1.0) is Created.ACTIVE
    assert not state.take_deferred()  # the server's own response is active
    state.done("resp_server")
    assert state.take_deferred()
    assert not state.take_deferred()


FLOOR_STEPS = st.lists(st.sampled_from(["duck", "resume", "cut", "stopped"]), max_size=30)


@given(FLOOR_STEPS)
def test_held_audio_exists_exactly_while_the_floor_is_held(steps: list[str]) -> None:
    state = ready_state()
    for step in steps:
        try:
            match step:
                case "duck":
                    state.duck(Duck(started_at=0.0, held=()))
                case "resume":
                    state.resume()
                case "cut":
                    state.cut()
                case "stopped":
                    state.caller_stopped()
        except StateError:
            pass  # refused transitions leave the state as it was
        assert (state.duck_state is not None) is (state.floor is Floor.HELD)
        assert state.may_create_response is (state.floor is Floor.AI_MAY_SPEAK)
