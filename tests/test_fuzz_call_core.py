"""Stateful fuzzing of the call core and the playout ledger (hypothesis).

Random interleavings of model events, Twilio mark echoes, clock steps, local onsets and
notes. Invariants checked after every step:

* nothing raises;
* no frame of a cancelled response is handed to the TX writer after its barge-in;
* an item's heard position never exceeds the audio received for it;
* every truncation is at 1..received ms, never 0, never beyond what was received;
* marks from older generations are never counted as played.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bridge.core.actions import BargeIn
from tests.core_driver import Driver


class CallCoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.driver = Driver.ready(fast_barge_in="duck", lead_ms=60)
        self.response_seq = 0
        self.response: str | None = None
        self.items: list[str] = []
        self.cancelled_at: dict[str, int] = {}
        """response id → number of frames sent when it was cancelled."""
        self.returned_marks: list[str] = []

    @property
    def core(self):  # type: ignore[no-untyped-def]
        return self.driver.core

    @rule()
    def response_created(self) -> None:
        self.response_seq += 1
        self.response = f"resp_{self.response_seq}"
        self.items = []
        self.driver.response_created(self.response)

    @rule(ms=st.integers(1, 400), new_item=st.booleans())
    def audio(self, ms: int, new_item: bool) -> None:
        if self.response is None:
            return
        if new_item or not self.items:
            self.items.append(f"item_{self.response_seq}_{len(self.items)}")
            self.driver.item_added(self.response, self.items[-1])
        self.driver.audio(self.response, self.items[-1], ms)

    @rule()
    def audio_done(self) -> None:
        if self.response is not None and self.items:
            self.driver.audio_done(self.response, self.items[-1])

    @rule(status=st.sampled_from(["completed", "cancelled"]))
    def response_done(self, status: str) -> None:
        if self.response is not None:
            self.driver.response_done(self.response, status)

    @rule(ms=st.integers(1, 300))
    def play(self, ms: int) -> None:
        self.driver.play(ms)

    @rule()
    def speech_started(self) -> None:
        before = len(self.driver.barge_ins())
        pending = [str(s.mark) for s in self.core.ledger.in_flight]
        self.driver.speech_started()
        plans = self.driver.barge_ins()[before:]
        for plan in plans:
            for response_id in plan.cancelled_response_ids:
                self.cancelled_at.setdefault(response_id, len(self.driver.sent_frames))
            if plan.clear is not None:
                self.returned_marks.extend(pending)

    @rule()
    def speech_stopped(self) -> None:
        self.driver.speech_stopped()

    @rule()
    def local_onset(self) -> None:
        pending = [str(s.mark) for s in self.core.ledger.in_flight]
        actions = self.driver.record(self.core.on_local_onset(self.driver.now))
        if any(isinstance(a, BargeIn) and a.clear for a in actions):
            self.returned_marks.extend(pending)

    @rule(ms=st.integers(0, 1000))
    def timer(self, ms: int) -> None:
        self.driver.now += ms / 1000.0
        self.driver.record(self.core.on_timer(self.driver.now))

    @rule()
    def echo_returned_marks(self) -> None:
        played = self.core.statistics().marks_played
        for name in self.returned_marks:
            self.driver.echo_mark(name)
        self.returned_marks.clear()
        assert self.core.statistics().marks_played == played

    @rule(respond=st.booleans(), confirm=st.booleans())
    def note(self, respond: bool, confirm: bool) -> None:
        self.driver.record(
            self.core.submit_note("n", respond=respond, awaits_confirmation=confirm, epoch=None)
        )

    @invariant()
    def no_cancelled_audio_is_sent_after_its_barge_in(self) -> None:
        for index, decision in enumerate(self.driver.sent_frames):
            cancelled_at = self.cancelled_at.get(decision.frame.response_id)
            assert cancelled_at is None or index < cancelled_at

    @invariant()
    def heard_never_exceeds_received(self) -> None:
        for item in self.core.ledger.items.values():
            assert self.core.ledger.heard_bytes(item.item_id, self.driver.now) >= 0
            assert (
                self.core.ledger.heard_bytes(item.item_id, self.driver.now) <= item.received_bytes
            )

    @invariant()
    def truncations_are_valid(self) -> None:
        for plan in self.driver.barge_ins():
            for trunc in plan.truncations:
                assert 1 <= trunc.audio_end_ms <= trunc.received_ms


CallCoreMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestCallCoreFuzz = CallCoreMachine.TestCase
