"""The bounded set of cancelled responses whose late audio must be dropped.

Deltas already in flight when a response is cancelled keep arriving after the cancel, and
even after its ``response.done`` (the Realtime API documents neither how many nor for how
long). Every later audio or transcript delta of a cancelled response is dropped, whenever
it arrives, so membership is by ``response_id`` and never by time window. The set is
capped in size and age so a long call cannot grow it without bound: an entry older than
``max_age_s`` (long after any in-flight delta could still arrive) or beyond ``max_size``
entries (oldest first) is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(slots=True)
class CancelledResponses:
    max_size: int = 64
    max_age_s: float = 300.0
    _added_at: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def add(self, response_id: str, now: float) -> None:
        self._added_at.pop(response_id, None)
        self._added_at[response_id] = now
        self._expire(now)

    def __contains__(self, response_id: object) -> bool:
        return response_id in self._added_at

    def __len__(self) -> int:
        return len(self._added_at)

    def expire(self, now: float) -> None:
        """Forget entries older than ``max_age_s``; called on every ``add`` and periodically."""
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._added_at:
            oldest_id, added_at = next(iter(self._added_at.items()))
            if len(self._added_at) > self.max_size or now - added_at > self.max_age_s:
                del self._added_at[oldest_id]
            else:
                break
