"""The reconnect budget: how often a call may try to open a new upstream, and when.

At most ``attempts`` connections are tried within any ``window_s`` (a sliding window, so a
session that keeps failing right after it opens spends the budget as surely as refused
handshakes do). Within one outage the first retry goes at once (a dropped connection is
usually there again), the next ones after a backoff that doubles from
:data:`FIRST_BACKOFF_S`, each with ±:data:`JITTER` so that calls that lost the same server
at the same moment do not come back in step. Times are Trio seconds.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

FIRST_BACKOFF_S = 0.4
JITTER = 0.25


@dataclass(slots=True)
class ReconnectBudget:
    attempts: int
    window_s: float
    rng: random.Random
    _tried_at: deque[float] = field(default_factory=deque)
    _in_outage: int = 0
    """Attempts made since the last session became ready."""

    def try_now(self, now: float) -> bool:
        """Whether another connection may be tried at ``now``; counts it if so."""
        while self._tried_at and now - self._tried_at[0] > self.window_s:
            self._tried_at.popleft()
        if len(self._tried_at) >= self.attempts:
            return False
        self._tried_at.append(now)
        self._in_outage += 1
        return True

    def backoff_s(self) -> float:
        """How long to wait before the next attempt of this outage."""
        if self._in_outage == 0:
            return 0.0
        base = FIRST_BACKOFF_S * 2.0 ** (self._in_outage - 1)
        return base * self.rng.uniform(1.0 - JITTER, 1.0 + JITTER)

    def healed(self) -> None:
        """A session became ready: the next outage starts its backoff from the beginning."""
        self._in_outage = 0
