"""Token buckets and the throttle of repeated warnings (sans-IO, explicit time), and the
call core's warnings that a peer can repeat once per event."""

from __future__ import annotations

import pytest

from bridge.core import realtime as rt
from bridge.core.actions import DropUpstream, Log
from bridge.core.call import GARBAGE_RUN_LIMIT
from bridge.core.ending import EndReason
from bridge.core.ratelimit import LOG_BURST, LOG_INTERVAL_S, LogThrottle, TokenBucket
from tests.core_driver import Driver


def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=5.0, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.retry_after_s(0.0) == pytest.approx(0.2)
    assert not bucket.take(0.19)
    assert bucket.take(0.2)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]  # capped at burst


def test_a_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)
    assert bucket.take(11.0)


def test_a_bucket_refuses_a_rate_or_burst_that_allows_nothing() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBucket(rate_per_s=0.0, burst=1, now=0.0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate_per_s=1.0, burst=0, now=0.0)


def test_a_flood_of_one_warning_is_a_few_lines_that_count_the_rest() -> None:
    throttle = LogThrottle()
    warning = Log("WARNING", "TWILIO_MALFORMED", "not JSON")
    passed = [log for _ in range(100) for log in throttle.admit(warning, 0.0)]
    assert passed == [warning] * LOG_BURST
    [later] = throttle.admit(warning, LOG_INTERVAL_S)
    assert later.message == f"not JSON; {100 - LOG_BURST} more suppressed"
    assert throttle.admit(warning, LOG_INTERVAL_S) == ()
    [quiet_again] = throttle.admit(warning, 2 * LOG_INTERVAL_S)
    assert quiet_again.message == "not JSON; 1 more suppressed"


def test_each_tag_has_its_own_budget() -> None:
    throttle = LogThrottle()
    for _ in range(LOG_BURST):
        assert throttle.admit(Log("WARNING", "A", "a"), 0.0)
    assert throttle.admit(Log("WARNING", "A", "a"), 0.0) == ()
    assert throttle.admit(Log("WARNING", "B", "b"), 0.0) == (Log("WARNING", "B", "b"),)


# -- the call core's warnings a peer can repeat per event -----------------------------------


def _warnings(driver: Driver, tag: str) -> list[str]:
    return [a.message for a in driver.actions if isinstance(a, Log) and a.tag == tag]


def test_a_garbage_run_is_a_few_warnings_and_still_drops_the_session() -> None:
    driver = Driver.ready()
    for _ in range(GARBAGE_RUN_LIMIT):
        driver.record(driver.core.on_realtime_event(rt.parse_realtime_event("{not"), driver.now))
    assert len(_warnings(driver, "UPSTREAM_MALFORMED")) == LOG_BURST
    [drop] = [a for a in driver.actions if isinstance(a, DropUpstream)]
    assert drop.end.reason is EndReason.OPENAI_GARBAGE
    assert driver.core.statistics().upstream_malformed == GARBAGE_RUN_LIMIT


def test_tx_overflow_on_every_delta_is_a_few_warnings() -> None:
    driver = Driver.ready(max_queued_ms=100, frame_ms=20)
    driver.response_created("resp_1")
    for _ in range(50):
        driver.audio("resp_1", "item_1", 100)
    assert len(_warnings(driver, "TX_OVERFLOW")) == LOG_BURST
    driver.now += LOG_INTERVAL_S
    driver.audio("resp_1", "item_1", 100)
    assert _warnings(driver, "TX_OVERFLOW")[-1].endswith(f"; {49 - LOG_BURST} more suppressed")
    assert driver.core.statistics().tx_overflow_frames == 50 * 5
