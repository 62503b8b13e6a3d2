"""Token buckets and the throttle of repeated warnings (sans-IO, explicit time)."""

from __future__ import annotations

import pytest

from bridge.core.actions import Log
from bridge.core.ratelimit import LOG_BURST, LOG_INTERVAL_S, LogThrottle, TokenBucket


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
