"""Process metrics in the Prometheus text format, through ``prometheus-client``.

One :class:`Metrics` per bridge (its own ``CollectorRegistry``, so several bridges in one
test process never share a series). It is updated in one place, from call events, by the
call runner (:mod:`bridge.runtime.call`): a call started, a barge-in reacted, a REST hang-up
was tried, a call ended. Counts that grow per frame inside a call (malformed messages,
late audio dropped, caller audio filled in, ...) are never incremented next to the per-call
counter: at scrape time they are the totals of the calls that ended plus the live calls'
:meth:`bridge.core.call.CallCore.statistics`, so they stay monotonic and cost nothing on the
hot path. Durations are exposed in seconds, as Prometheus expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.core.ending import CallEnd
from bridge.core.stats import CallStatistics

# A `*_created` timestamp per counter doubles the series and tells nothing a restart-aware
# `rate()` does not already handle.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client

REACTION_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
"""Barge-in reaction buckets, s: the target is under 2 ms at p95."""

_SUMMED: tuple[tuple[str, str, str, float], ...] = (
    # (metric name without _total, help, CallStatistics field, scale to the metric's unit)
    (
        "bridge_late_audio_dropped_seconds",
        "Audio of cancelled responses that arrived late and was dropped, s.",
        "late_audio_ms_dropped",
        0.001,
    ),
    (
        "bridge_inbound_gap_filled_seconds",
        "Caller audio that never arrived, sent to the model as silence, s.",
        "inbound_gap_filled_ms",
        0.001,
    ),
    (
        "bridge_inbound_frames_dropped",
        "Caller frames dropped (oldest first) because the gate stage fell behind.",
        "frames_dropped_backlog",
        1.0,
    ),
    (
        "bridge_upstream_errors",
        "Realtime error events received (benign ones included).",
        "upstream_errors",
        1.0,
    ),
    (
        "bridge_tx_overflow_frames",
        "AI audio frames dropped because the local TX queue was full.",
        "tx_overflow_frames",
        1.0,
    ),
    ("bridge_tool_calls", "Function calls the model made.", "tool_calls", 1.0),
    (
        "bridge_tool_errors",
        "Function call outputs that report an error (timeout, HTTP status, cancelled, ...).",
        "tool_errors",
        1.0,
    ),
    (
        "bridge_tool_results_dropped",
        "Tool results that came back after their call was cancelled by a barge-in.",
        "tool_results_dropped",
        1.0,
    ),
    (
        "bridge_call_events_dropped",
        "Call events dropped (queue full, or delivery failed after its retries).",
        "events_dropped",
        1.0,
    ),
    ("bridge_upstream_losses", "Realtime sessions lost mid-call.", "upstream_losses", 1.0),
    (
        "bridge_upstream_restores",
        "Calls healed by a new Realtime session after a loss.",
        "upstream_restores",
        1.0,
    ),
    (
        "bridge_reconnect_attempts",
        "Realtime connections tried to heal a call.",
        "reconnect_attempts",
        1.0,
    ),
    (
        "bridge_sessions_recycled",
        "Realtime sessions replaced at a turn boundary before the service's cap.",
        "sessions_recycled",
        1.0,
    ),
    ("bridge_hold_phrases", "Times a caller heard the hold phrase.", "hold_phrases", 1.0),
    (
        "bridge_comfort_cues",
        "Soft cues a caller heard while a long upstream outage healed.",
        "comfort_cues",
        1.0,
    ),
    ("bridge_reply_nudges", "Late replies the model was asked for again.", "reply_nudges", 1.0),
    (
        "bridge_media_stalls",
        "Times Twilio stopped sending caller media for more than 2 s.",
        "media_stalls",
        1.0,
    ),
)

RECOVERY_BUCKETS_S = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Upstream recovery buckets, s: the target is 1.5 s at p95 after a close."""


class Metrics:
    """The bridge's metrics; see the module docstring for who updates what."""

    __slots__ = (
        "_barge_ins",
        "_calls_ended",
        "_calls_started",
        "_ended_totals",
        "_reaction",
        "_recovery",
        "_rest_hangups",
        "registry",
    )

    def __init__(
        self,
        live_statistics: Callable[[], Iterable[CallStatistics]],
        draining: Callable[[], bool],
    ) -> None:
        self.registry = CollectorRegistry()
        self._ended_totals: dict[str, int] = {}
        self._calls_started = Counter(
            "bridge_calls_started", "Calls whose Twilio stream started.", registry=self.registry
        )
        self._calls_ended = Counter(
            "bridge_calls_ended", "Calls ended, by reason.", ["reason"], registry=self.registry
        )
        self._barge_ins = Counter(
            "bridge_barge_ins",
            "Barge-ins, by trigger (server, local, confirmed).",
            ["trigger"],
            registry=self.registry,
        )
        self._reaction = Histogram(
            "bridge_barge_in_reaction_seconds",
            "Barge-in trigger received to Twilio clear written, s.",
            buckets=REACTION_BUCKETS_S,
            registry=self.registry,
        )
        self._recovery = Histogram(
            "bridge_upstream_recovery_seconds",
            "Realtime session lost to a new one confirmed, s.",
            buckets=RECOVERY_BUCKETS_S,
            registry=self.registry,
        )
        self._rest_hangups = Counter(
            "bridge_rest_hangups",
            "Twilio REST hang-ups tried, by outcome (ok, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(_CallTotals(self._ended_totals, live_statistics, draining))

    def call_started(self) -> None:
        self._calls_started.inc()

    def barge_in(self, trigger: str, reaction_s: float | None) -> None:
        """A barge-in ran; ``reaction_s`` is ``None`` when no ``clear`` was written."""
        self._barge_ins.labels(trigger=trigger).inc()
        if reaction_s is not None:
            self._reaction.observe(reaction_s)

    def upstream_restored(self, gap_s: float) -> None:
        self._recovery.observe(gap_s)

    def rest_hangup(self, ok: bool) -> None:
        self._rest_hangups.labels(outcome="ok" if ok else "failed").inc()

    def call_ended(self, end: CallEnd, statistics: CallStatistics) -> None:
        """Called once per call, when it is no longer among the live calls."""
        self._calls_ended.labels(reason=end.reason.value).inc()
        for name, count in statistics.as_dict().items():
            self._ended_totals[name] = self._ended_totals.get(name, 0) + count

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CallTotals(Collector):
    """Gauges of the process, and counters summed over ended and live calls."""

    def __init__(
        self,
        ended_totals: dict[str, int],
        live_statistics: Callable[[], Iterable[CallStatistics]],
        draining: Callable[[], bool],
    ) -> None:
        self._ended = ended_totals
        self._live = live_statistics
        self._draining = draining

    def collect(self) -> Iterator[Metric]:
        live = [s.as_dict() for s in self._live()]

        def total(field: str) -> int:
            return self._ended.get(field, 0) + sum(s[field] for s in live)

        yield GaugeMetricFamily("bridge_calls_active", "Calls in progress.", value=len(live))
        yield GaugeMetricFamily(
            "bridge_draining",
            "1 while shutting down (new calls refused).",
            value=int(self._draining()),
        )
        for name, help_text, field, scale in _SUMMED:
            yield CounterMetricFamily(name, help_text, value=total(field) * scale)
        malformed = CounterMetricFamily(
            "bridge_malformed_messages",
            "Messages that could not be used, by source (twilio, upstream); the call went on.",
            labels=["source"],
        )
        malformed.add_metric(["twilio"], total("twilio_malformed"))
        malformed.add_metric(["upstream"], total("upstream_malformed"))
        yield malformed
