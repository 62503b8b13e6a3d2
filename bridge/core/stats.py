"""Counters of one call, and the immutable snapshot the outside world reads.

Only the core writes :class:`CallCounters` (each count is incremented where the event it
counts is decided); everyone else reads :class:`CallStatistics`, a frozen copy taken by
:meth:`bridge.core.call.CallCore.statistics`, the way Trio's ``statistics()`` methods work.
Durations are ms of audio (8 bytes per ms of μ-law).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(slots=True)
class CallCounters:
    frames_in: int = 0
    frames_dropped_backlog: int = 0
    frames_gated: int = 0
    frames_upstream: int = 0
    caller_audio_dropped_ms: int = 0
    inbound_gaps: int = 0
    inbound_gap_filled_ms: int = 0
    twilio_malformed: int = 0
    upstream_malformed: int = 0
    upstream_unknown: int = 0
    upstream_errors: int = 0
    audio_deltas: int = 0
    audio_ms_received: int = 0
    audio_dropped_unconfirmed_ms: int = 0
    frames_out: int = 0
    audio_ms_sent: int = 0
    tx_overflow_frames: int = 0
    marks_played: int = 0
    marks_cleared: int = 0
    marks_unknown: int = 0
    responses: int = 0
    responses_cancelled: int = 0
    barge_ins: int = 0
    local_barge_ins: int = 0
    false_alarms_resumed: int = 0
    tx_flushed_frames: int = 0
    tx_flushed_ms: int = 0
    late_deltas_dropped: int = 0
    late_audio_ms_dropped: int = 0
    late_transcripts_dropped: int = 0
    truncations: int = 0
    deletions: int = 0
    notes_sent: int = 0
    notes_silent: int = 0
    notes_discarded: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tool_calls_cancelled: int = 0
    tool_results_dropped: int = 0
    tool_outputs_silent: int = 0
    tool_fillers: int = 0
    events_emitted: int = 0
    events_dropped: int = 0
    upstream_losses: int = 0
    upstream_restores: int = 0
    reconnect_attempts: int = 0
    sessions_recycled: int = 0
    hold_phrases: int = 0
    comfort_cues: int = 0
    reply_nudges: int = 0
    media_stalls: int = 0

    def snapshot(self) -> CallStatistics:
        return CallStatistics(**dataclasses.asdict(self))


@dataclass(frozen=True, slots=True)
class CallStatistics:
    """A call's counters at one moment (see :class:`CallCounters` for the fields)."""

    frames_in: int
    frames_dropped_backlog: int
    """Caller frames dropped, oldest first, because the gate stage fell a second behind."""
    frames_gated: int
    frames_upstream: int
    caller_audio_dropped_ms: int
    """Caller audio dropped (oldest first) while no session was ready for longer than the
    bridge keeps it."""
    inbound_gaps: int
    inbound_gap_filled_ms: int
    twilio_malformed: int
    upstream_malformed: int
    upstream_unknown: int
    upstream_errors: int
    audio_deltas: int
    audio_ms_received: int
    audio_dropped_unconfirmed_ms: int
    frames_out: int
    audio_ms_sent: int
    tx_overflow_frames: int
    marks_played: int
    marks_cleared: int
    marks_unknown: int
    responses: int
    responses_cancelled: int
    barge_ins: int
    local_barge_ins: int
    false_alarms_resumed: int
    tx_flushed_frames: int
    tx_flushed_ms: int
    late_deltas_dropped: int
    late_audio_ms_dropped: int
    late_transcripts_dropped: int
    truncations: int
    deletions: int
    notes_sent: int
    notes_silent: int
    notes_discarded: int
    tool_calls: int
    """Function calls the model made (each got exactly one ``function_call_output``)."""
    tool_errors: int
    """Outputs that report an error: timeout, HTTP status, invalid JSON, unreachable, bad
    arguments, unknown tool, cut off before it ran, cancelled by a barge-in."""
    tool_calls_cancelled: int
    """Calls still running at a barge-in and cancelled (``on_barge_in = "cancel"``)."""
    tool_results_dropped: int
    """Results that came back after their call was cancelled."""
    tool_outputs_silent: int
    """Batches of outputs delivered without a response: a barge-in came after the calls."""
    tool_fillers: int
    events_emitted: int
    events_dropped: int
    """Call events dropped: the queue was full, or delivery failed after its retries."""
    upstream_losses: int
    upstream_restores: int
    reconnect_attempts: int
    """Upstream connections tried after the first (successful or not)."""
    sessions_recycled: int
    hold_phrases: int
    """Times the caller heard the hold phrase (while healing, or a reply was late)."""
    comfort_cues: int
    """Soft cues played while a long outage healed, after its hold phrase."""
    reply_nudges: int
    media_stalls: int
    """Times Twilio stopped sending caller media for more than 2 s."""

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
