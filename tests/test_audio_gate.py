"""The gate: silence instead of drops, the prefix hold, barge-in and the off switch."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from bridge.audio import mulaw, synth
from bridge.audio.analyzer import AnalyzerSettings, InboundAnalyzer
from bridge.audio.gate import Gate, silence_like

SETTINGS = AnalyzerSettings()


def _frame(tag: int, n_bytes: int = 160) -> bytes:
    """A recognisable non-silent frame (never equal to silence)."""
    return bytes([tag % 0x7F]) * n_bytes


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=400), st.booleans()),
        max_size=80,
    ),
    st.sampled_from([0.0, 20.0, 100.0, 250.0]),
    st.booleans(),
)
def test_every_frame_comes_out_once_in_order_as_itself_or_same_length_silence(
    pushes: list[tuple[int, bool]], prefix_ms: float, enabled: bool
) -> None:
    gate = Gate(prefix_ms=prefix_ms, enabled=enabled)
    frames = [_frame(i, n) for i, (n, _) in enumerate(pushes)]
    released: list[bytes] = []
    for frame, (_, open_now) in zip(frames, pushes, strict=True):
        out = gate.push(frame, open_now=open_now)
        if open_now or not enabled:
            assert out[-1] is frame  # no added latency once open
        assert gate.held_bytes <= prefix_ms * mulaw.BYTES_PER_MS
        released.extend(out)
    released.extend(gate.flush())
    assert len(released) == len(frames)
    for out, original in zip(released, frames, strict=True):
        assert out == original or out == silence_like(original)


def test_a_closed_gate_holds_the_prefix_then_ages_frames_out_as_silence() -> None:
    gate = Gate(prefix_ms=100.0)
    outs = [gate.push(_frame(i), open_now=False) for i in range(7)]
    assert outs[:5] == [()] * 5  # 5 x 20 ms fill the 100 ms hold
    assert outs[5] == (silence_like(_frame(0)),)
    assert outs[6] == (silence_like(_frame(1)),)


def test_opening_releases_the_hold_as_real_audio_at_once() -> None:
    gate = Gate(prefix_ms=100.0)
    for i in range(7):
        gate.push(_frame(i), open_now=False)
    assert gate.push(_frame(7), open_now=True) == tuple(_frame(i) for i in range(2, 8))
    assert gate.push(_frame(8), open_now=True) == (_frame(8),)


def test_disabled_gate_passes_everything_without_holding() -> None:
    gate = Gate(prefix_ms=100.0, enabled=False)
    assert gate.push(_frame(1), open_now=False) == (_frame(1),)
    assert gate.flush() == ()


def _line(noise_ms: int, speech_at_ms: int | None = None) -> bytes:
    samples = synth.line_noise(noise_ms, seed=11, level_dbfs=-50.0)
    if speech_at_ms is not None:
        speech = synth.speech_like(1000, seed=12)
        start = speech_at_ms * mulaw.BYTES_PER_MS
        samples[start : start + len(speech)] += speech
    return mulaw.encode_float(samples)


def _run(
    payload: bytes, settings: AnalyzerSettings, *, barge_in: bool = False
) -> list[tuple[bytes, bytes]]:
    """(original, released) per 20 ms frame."""
    analyzer = InboundAnalyzer(settings)
    originals = [payload[i : i + 160] for i in range(0, len(payload), 160)]
    released: list[bytes] = []
    for k, frame in enumerate(originals):
        released.extend(analyzer.process(frame, k * 20.0, barge_in_active=barge_in).release)
    released.extend(analyzer.flush())
    assert len(released) == len(originals)
    return list(zip(originals, released, strict=True))


def test_line_noise_goes_upstream_as_silence_of_the_same_length() -> None:
    pairs = _run(_line(3000), SETTINGS)
    assert all(out == silence_like(original) for original, out in pairs)


def test_the_first_syllable_reaches_the_model_with_its_prefix() -> None:
    pairs = _run(_line(3000, speech_at_ms=1500), SETTINGS)
    passed = [k for k, (original, out) in enumerate(pairs) if out == original]
    # Released from the prefix before the first candidate frame, not from the onset event.
    first_passed_ms = passed[0] * 20
    assert 1500 - SETTINGS.prefix_ms <= first_passed_ms <= 1500
    # Passed without holes through the utterance (word gaps are inside the hangover).
    assert passed == list(range(passed[0], passed[-1] + 1))
    assert passed[-1] * 20 >= 2400


def test_barge_in_passes_every_frame_untouched() -> None:
    pairs = _run(_line(2000), SETTINGS, barge_in=True)
    assert all(out == original for original, out in pairs)


def test_gate_switched_off_by_configuration() -> None:
    pairs = _run(_line(2000), dataclasses.replace(SETTINGS, gate_enabled=False))
    assert all(out == original for original, out in pairs)


def test_frames_of_any_length_and_empty_ones_keep_the_clock() -> None:
    payload = _line(2000, speech_at_ms=800)
    analyzer = InboundAnalyzer(SETTINGS)
    sizes = [100, 160, 1, 0, 333, 80, 240]
    originals: list[bytes] = []
    released: list[bytes] = []
    position = 0
    k = 0
    while position < len(payload):
        size = sizes[k % len(sizes)]
        frame = payload[position : position + size]
        originals.append(frame)
        result = analyzer.process(frame, position / 8, barge_in_active=False)
        released.extend(result.release)
        position += size
        k += 1
    released.extend(analyzer.flush())
    assert [len(r) for r in released] == [len(o) for o in originals]
    assert all(r in (o, silence_like(o)) for r, o in zip(released, originals, strict=True))
