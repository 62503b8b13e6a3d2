"""The gate adds nothing on the turn path (bridge/audio/gate.py, "the turn-end window").

On the core driver with a virtual clock: caller frames go in one by one, 20 ms apart, and
each append the core emits is matched to the frames it carries. A frame's delay is the time
from its own step to the step whose append carried it.
"""

from __future__ import annotations

import numpy as np

from bridge.audio import mulaw, synth
from bridge.core.actions import SendUpstream
from bridge.core.call import APPEND_BATCH_MS
from bridge.core.gate import TURN_END_MARGIN_MS
from bridge.core.realtime_client import InputAudioAppend
from bridge.core.twilio import Media
from tests.core_driver import Driver

FRAME_MS = 20
NOISE_DBFS = -50.0
SILENCE_MS = 500  # the session's silence_duration_ms (the bridge's explicit default)


def caller_stream(quiet_before_ms: int, speech_ms: int, quiet_after_ms: int) -> tuple[bytes, float]:
    """Line noise, an utterance over it, line noise: μ-law at 8 bytes per ms, and where the
    utterance really ends, ms (its last syllable ends before ``speech_ms``)."""
    total = quiet_before_ms + speech_ms + quiet_after_ms
    audio = synth.line_noise(total, seed=3, level_dbfs=NOISE_DBFS).astype(np.float64)
    speech = synth.speech_like(speech_ms, seed=4)
    start = quiet_before_ms * 8
    audio[start : start + speech_ms * 8] += speech
    voiced = np.nonzero(np.abs(speech) > 1e-3)[0]
    end_ms = quiet_before_ms + (int(voiced[-1]) / 8 if voiced.size else 0.0)
    return mulaw.encode_float(np.clip(audio, -1.0, 0.999).astype(np.float32)), end_ms


def feed(driver: Driver, stream: bytes) -> list[tuple[int, int, bool]]:
    """(frame index, ms it waited in the gate, went up as itself) for every frame, in order."""
    frames = [stream[i : i + FRAME_MS * 8] for i in range(0, len(stream), FRAME_MS * 8)]
    out: list[tuple[int, int, bool]] = []
    next_index = 0
    for step, frame in enumerate(frames):
        actions = driver.core.on_caller_frames([Media(frame, step * FRAME_MS)], driver.now)
        driver.now += FRAME_MS / 1000.0
        appended = b"".join(
            a.event.audio
            for a in actions
            if isinstance(a, SendUpstream) and isinstance(a.event, InputAudioAppend)
        )
        for k in range(len(appended) // (FRAME_MS * 8)):
            chunk = appended[k * FRAME_MS * 8 : (k + 1) * FRAME_MS * 8]
            original = frames[next_index]
            out.append((next_index, (step - next_index) * FRAME_MS, chunk == original))
            next_index += 1
    return out


def test_no_frame_waits_from_speech_to_the_end_of_the_servers_turn_window() -> None:
    driver = Driver.ready()
    stream, speech_end = caller_stream(1000, 1200, 2000)
    released = feed(driver, stream)
    assert [index for index, _, _ in released] == list(range(len(released)))  # clock rule
    by_ms = {index * FRAME_MS: (delay, itself) for index, delay, itself in released}
    # During the utterance and in the quiet the server times to end the turn (its silence
    # duration, with room for where it places the end of speech), every frame goes up at
    # once and as itself.
    for ms in range(1000 + 100, int(speech_end) + SILENCE_MS + 200, FRAME_MS):
        assert by_ms[ms] == (0, True), ms
    # Long after the caller stopped, line noise reaches the model as silence (held first).
    window_end = int(speech_end) + SILENCE_MS + TURN_END_MARGIN_MS
    first_late = (window_end + 100) // FRAME_MS * FRAME_MS
    late = [by_ms[ms] for ms in range(first_late, 4000, FRAME_MS) if ms in by_ms]
    assert late
    assert all(not itself for _, itself in late)
    # The prefix hold, then silence goes up in batches (no turn is timing): no more.
    assert max(delay for delay, _ in late) <= 100 + APPEND_BATCH_MS


def test_an_onset_after_a_long_silence_releases_the_hold_at_once() -> None:
    driver = Driver.ready()
    stream, _ = caller_stream(1500, 600, 0)
    released = feed(driver, stream)
    by_ms = {index * FRAME_MS: (delay, itself) for index, delay, itself in released}
    # Before the caller speaks, line noise goes up as silence, 100 ms late (the hold) and in
    # batches of APPEND_BATCH_MS.
    early = [by_ms[ms] for ms in range(200, 1380, FRAME_MS)]
    assert all(not itself and 100 <= delay < 100 + APPEND_BATCH_MS for delay, itself in early)
    # The frame where the voice was heard went up in its own step, and the hold before it
    # as real audio (the first syllable's attack reaches the model); nothing waits after.
    heard_at = next(ms for ms in range(1500, 2100, FRAME_MS) if by_ms[ms][0] == 0)
    assert heard_at - 1500 <= 60
    assert all(by_ms[ms][1] for ms in range(heard_at - 100, heard_at, FRAME_MS))
    assert all(by_ms[ms] == (0, True) for ms in range(heard_at, 2080, FRAME_MS))


def test_the_hold_goes_up_when_the_stream_ends() -> None:
    driver = Driver.ready()
    stream, _ = caller_stream(2000, 0, 0)
    released = feed(driver, stream)
    last = driver.core.on_caller_stream_end([], driver.now)
    assert last is not None
    assert isinstance(last.event, InputAudioAppend)
    assert len(last.event.audio) == 100 * 8  # the prefix hold, as silence
    assert (len(released) * FRAME_MS + 100) * 8 == len(stream)  # every frame, once


def test_silence_of_a_closed_gate_goes_up_in_batches_and_speech_goes_at_once() -> None:
    driver = Driver.ready()
    stream, _ = caller_stream(3000, 600, 0)
    frames = [stream[i : i + FRAME_MS * 8] for i in range(0, len(stream), FRAME_MS * 8)]
    appends_at: list[int] = []
    for step, frame in enumerate(frames):
        actions = driver.core.on_caller_frames([Media(frame, step * FRAME_MS)], driver.now)
        driver.now += FRAME_MS / 1000.0
        if any(isinstance(a, SendUpstream) for a in actions):
            appends_at.append(step * FRAME_MS)
    quiet = [ms for ms in appends_at if ms < 2800]
    assert len(quiet) <= 2800 // APPEND_BATCH_MS + 1  # one append per batch, not per frame
    # Speech starts at 3000 ms and is heard within 60 ms: from then on, an append per frame.
    assert [ms for ms in appends_at if ms >= 3060] == list(range(3060, 3600, FRAME_MS))
