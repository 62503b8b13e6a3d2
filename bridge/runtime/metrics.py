"""Process-wide counters and the barge-in reaction histogram, in Prometheus text format."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

REACTION_BUCKETS_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0)


@dataclass(slots=True)
class Metrics:
    calls_started: int = 0
    calls_ended: Counter[str] = field(default_factory=Counter)
    barge_ins: Counter[str] = field(default_factory=Counter)
    reaction_counts: list[int] = field(default_factory=lambda: [0] * len(REACTION_BUCKETS_MS))
    reaction_sum_ms: float = 0.0
    reaction_total: int = 0
    late_audio_dropped_ms: int = 0
    inbound_gap_filled_ms: int = 0
    inbound_frames_dropped: int = 0
    upstream_errors: int = 0
    malformed_messages: int = 0
    rest_hangups: Counter[str] = field(default_factory=Counter)

    def observe_reaction(self, ms: float) -> None:
        """Barge-in reaction: trigger received → Twilio ``clear`` written, in ms."""
        self.reaction_total += 1
        self.reaction_sum_ms += ms
        for i, bound in enumerate(REACTION_BUCKETS_MS):
            if ms <= bound:
                self.reaction_counts[i] += 1

    def render(self, active_calls: int, draining: bool) -> str:
        lines = [
            "# TYPE bridge_calls_active gauge",
            f"bridge_calls_active {active_calls}",
            "# TYPE bridge_draining gauge",
            f"bridge_draining {int(draining)}",
            "# TYPE bridge_calls_started_total counter",
            f"bridge_calls_started_total {self.calls_started}",
            "# TYPE bridge_calls_ended_total counter",
        ]
        lines += [
            f'bridge_calls_ended_total{{reason="{r}"}} {n}'
            for r, n in sorted(self.calls_ended.items())
        ]
        lines.append("# TYPE bridge_barge_ins_total counter")
        lines += [
            f'bridge_barge_ins_total{{trigger="{t}"}} {n}'
            for t, n in sorted(self.barge_ins.items())
        ]
        lines.append("# TYPE bridge_barge_in_reaction_ms histogram")
        lines += [
            f'bridge_barge_in_reaction_ms_bucket{{le="{b:g}"}} {c}'
            for b, c in zip(REACTION_BUCKETS_MS, self.reaction_counts, strict=True)
        ]
        lines += [
            f'bridge_barge_in_reaction_ms_bucket{{le="+Inf"}} {self.reaction_total}',
            f"bridge_barge_in_reaction_ms_sum {self.reaction_sum_ms:.3f}",
            f"bridge_barge_in_reaction_ms_count {self.reaction_total}",
            "# TYPE bridge_late_audio_dropped_ms_total counter",
            f"bridge_late_audio_dropped_ms_total {self.late_audio_dropped_ms}",
            "# TYPE bridge_inbound_gap_filled_ms_total counter",
            f"bridge_inbound_gap_filled_ms_total {self.inbound_gap_filled_ms}",
            "# TYPE bridge_inbound_frames_dropped_total counter",
            f"bridge_inbound_frames_dropped_total {self.inbound_frames_dropped}",
            "# TYPE bridge_upstream_errors_total counter",
            f"bridge_upstream_errors_total {self.upstream_errors}",
            "# TYPE bridge_malformed_messages_total counter",
            f"bridge_malformed_messages_total {self.malformed_messages}",
            "# TYPE bridge_rest_hangups_total counter",
        ]
        lines += [
            f'bridge_rest_hangups_total{{outcome="{o}"}} {n}'
            for o, n in sorted(self.rest_hangups.items())
        ]
        return "\n".join(lines) + "\n"
