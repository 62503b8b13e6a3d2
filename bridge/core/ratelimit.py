"""Rate limits, sans-IO: a token bucket, and a log throttle built on it.

Both take the time as an argument (Trio seconds in the runtime, any float in tests), so the
same limit is exact under a virtual clock.

* :class:`TokenBucket`: ``burst`` requests at once, then ``rate_per_s`` per second. The
  notes API uses one per call (:data:`bridge.core.control.NOTES_PER_S`).
* :class:`LogThrottle`: a flood of the same warning (a peer sending malformed frames by
  the thousand) must not become a flood of log lines. Per tag, the first
  :data:`LOG_BURST` records pass, then one every :data:`LOG_INTERVAL_S`; the next record
  that passes says how many were held back (``; N more suppressed``). The counters in
  ``CALL_END`` and ``/metrics`` still count every one.
"""

from __future__ import annotations

from dataclasses import replace

from bridge.core.actions import Log

LOG_BURST = 5
LOG_INTERVAL_S = 10.0


class TokenBucket:
    __slots__ = ("_tokens", "_updated_at", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._updated_at = now

    def _refill(self, now: float) -> None:
        # A clock that goes backwards (it should not) refills nothing rather than draining.
        elapsed = max(0.0, now - self._updated_at)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
        self._updated_at = max(self._updated_at, now)

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def retry_after_s(self, now: float) -> float:
        """Seconds until :meth:`take` can succeed (0 if it can now)."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self.rate_per_s)


class LogThrottle:
    """Per-tag throttle of one call's (or one connection's) repeated warnings."""

    __slots__ = ("_buckets", "_suppressed")

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        """One per tag; tags are constants of the code, so this stays small."""
        self._suppressed: dict[str, int] = {}

    def admit(self, log: Log, now: float) -> tuple[Log, ...]:
        """``(log,)`` (saying how many were suppressed before it, if any) or ``()``."""
        bucket = self._buckets.get(log.tag)
        if bucket is None:
            bucket = self._buckets[log.tag] = TokenBucket(1.0 / LOG_INTERVAL_S, LOG_BURST, now)
        if not bucket.take(now):
            self._suppressed[log.tag] = self._suppressed.get(log.tag, 0) + 1
            return ()
        suppressed = self._suppressed.pop(log.tag, 0)
        if suppressed == 0:
            return (log,)
        return (replace(log, message=f"{log.message}; {suppressed} more suppressed"),)
