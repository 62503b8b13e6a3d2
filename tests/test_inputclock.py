"""The caller clock ↔ upstream input-audio clock mapping."""

from __future__ import annotations

from bridge.core.inputclock import InputClock


def test_continuous_frames_map_with_one_offset() -> None:
    clock = InputClock()
    for k in range(50):
        clock.on_appended(1000 + 20 * k, 20)  # the first second before the session was ready
    assert clock.appended_ms == 1000
    assert clock.to_twilio_ms(0) == 1000
    assert clock.to_twilio_ms(730) == 1730


def test_a_gap_in_appended_frames_starts_a_new_segment() -> None:
    clock = InputClock()
    clock.on_appended(0, 20)
    clock.on_appended(20, 20)
    clock.on_appended(500, 20)  # frames 40..480 ms never reached the model (dropped)
    assert clock.to_twilio_ms(10) == 10
    assert clock.to_twilio_ms(40) == 500
    assert clock.to_twilio_ms(50) == 510


def test_unknown_positions_are_none() -> None:
    assert InputClock().to_twilio_ms(0) is None
