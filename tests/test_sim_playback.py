"""Sans-IO tests of the model of Twilio's outbound playback (8 bytes per ms)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.audio.mulaw import SILENCE_BYTE
from bridge.sim.playback import TwilioPlayback


def _audio(ms: int, byte: int = 0x10) -> bytes:
    return bytes([byte]) * (ms * 8)


def test_media_plays_in_real_time_from_arrival() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(100), 1.0)
    pb.advance(1.04)
    assert pb.played_bytes == 320
    assert pb.buffered_bytes == 480
    pb.push_media(_audio(100), 1.05)  # queued behind the first chunk
    pb.advance(1.15)
    assert pb.played_bytes == 1200
    assert [s.start for s in pb.segments()] == pytest.approx([1.0, 1.1])


def test_mark_echoed_when_playback_reaches_it() -> None:
    pb = TwilioPlayback()
    assert pb.push_media(_audio(20), 0.0) == []
    assert pb.push_mark("a", 0.0) == []
    assert pb.push_media(_audio(20), 0.0) == []
    assert pb.push_mark("b", 0.0) == []
    assert pb.next_deadline() == pytest.approx(0.02)
    assert pb.advance(0.019) == []
    assert pb.advance(0.02) == ["a"]
    assert pb.next_deadline() == pytest.approx(0.04)
    assert pb.advance(1.0) == ["b"]
    assert pb.next_deadline() is None
    assert pb.marks_echoed == 2


def test_marks_reached_on_the_way_are_returned_by_any_call_in_order() -> None:
    pb = TwilioPlayback()
    for name in ("a", "b", "c"):
        pb.push_media(_audio(10), 0.0)
        pb.push_mark(name, 0.0)
    # The next push at 25 ms first plays up to then: marks a and b are due.
    assert pb.push_media(_audio(10), 0.025) == ["a", "b"]
    assert pb.advance(0.03) == ["c"]


def test_mark_echoed_at_once_when_nothing_is_buffered() -> None:
    pb = TwilioPlayback()
    assert pb.push_mark("first", 0.0) == ["first"]
    pb.push_media(_audio(20), 1.0)
    assert pb.push_mark("x", 1.0) == []
    assert pb.push_mark("y", 1.5) == ["x", "y"]  # buffer drained at 1.02


def test_clear_echoes_every_pending_mark_and_reports_unplayed_bytes() -> None:
    pb = TwilioPlayback()
    for name in ("m1", "m2", "m3"):
        pb.push_media(_audio(40), 0.0)
        pb.push_mark(name, 0.0)
    result = pb.clear(0.05)  # m1 reached at 40 ms; 10 ms of chunk 2 played
    assert result.played_marks == ("m1",)
    assert result.cleared_marks == ("m2", "m3")
    assert result.echoes == ("m1", "m2", "m3")
    assert result.discarded_bytes == (120 - 50) * 8
    assert result.discarded_ms == pytest.approx(70.0)
    assert pb.played_bytes == 50 * 8
    assert pb.buffered_bytes == 0
    assert pb.next_deadline() is None
    # After the clear new audio plays at once.
    pb.push_media(_audio(20), 0.06)
    assert pb.push_mark("after", 0.06) == []
    assert pb.advance(0.08) == ["after"]


def test_clear_with_empty_buffer_discards_nothing() -> None:
    pb = TwilioPlayback()
    result = pb.clear(1.0)
    assert result.echoes == ()
    assert result.discarded_bytes == 0


def test_time_must_not_go_backwards() -> None:
    pb = TwilioPlayback()
    pb.advance(2.0)
    with pytest.raises(ValueError, match="backwards"):
        pb.advance(1.0)


def test_audio_read_late_plays_from_its_arrival_and_the_clock_stays() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(20), 0.0)
    pb.advance(0.030)  # the next frame arrived at 0.020, but was read after this tick
    pb.push_media(_audio(20), 0.020)
    assert [s.start for s in pb.segments()] == pytest.approx([0.0, 0.020])
    assert pb.now == pytest.approx(0.030)
    pb.push_mark("g0:m1:item_A", 0.021)
    pb.advance(0.050)
    assert pb.underruns == ()  # no gap where the audio was in Twilio's buffer all along
    pb.advance(1.0)
    (turn,) = pb.turns
    assert turn.start == pytest.approx(0.0)
    late = TwilioPlayback()
    late.advance(5.0)
    late.push_media(_audio(20), 4.9)  # a reply's first frame, read 100 ms late
    assert late.turns[0].start == pytest.approx(4.9)


def test_marks_and_clears_read_late_take_the_playback_clock() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(100), 0.0)
    pb.advance(0.060)
    result = pb.clear(0.040)  # arrived at 40 ms, read at 60 ms: 60 ms were heard
    assert result.at == pytest.approx(0.060)
    assert result.discarded_bytes == 40 * 8
    assert pb.push_mark("g0:m2:item_B", 0.050) == ["g0:m2:item_B"]
    assert pb.now == pytest.approx(0.060)


def test_audio_is_attributed_to_the_item_named_by_the_next_mark() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(20), 0.0)
    pb.push_media(_audio(20), 0.0)
    pb.push_mark("g0:m1:item_A", 0.0)
    pb.push_media(_audio(30), 0.0)
    pb.push_mark("g0:m2:item_B", 0.0)
    pb.push_media(_audio(10), 0.0)
    pb.push_mark("not-a-bridge-mark", 0.0)
    pb.advance(1.0)
    assert [s.item_id for s in pb.segments()] == ["item_A", "item_A", "item_B", None]
    assert pb.heard_ms("item_A") == pytest.approx(40.0)
    assert pb.heard_ms("item_B") == pytest.approx(30.0)
    assert pb.played_between(0.0, 1.0, item_ids={"item_B"}) == pytest.approx(30.0)
    assert pb.played_between(0.03, 0.05) == pytest.approx(20.0)


def test_audio_after_the_last_mark_belongs_to_that_marks_item_until_the_next_mark() -> None:
    """The bridge marks every item's first frame and then only every 200 ms: audio after
    the latest mark is its item's, provisionally, and for good when a clear cuts it."""
    pb = TwilioPlayback()
    pb.push_media(_audio(40), 0.0)
    pb.push_mark("g0:m0:item_A", 0.0)
    pb.push_media(_audio(40), 0.0)  # no mark after it yet
    pb.advance(0.07)
    assert pb.heard_ms("item_A") == pytest.approx(70.0)
    pb.clear(0.07)
    pb.push_media(_audio(40), 0.1)  # the first frame after the clear, before its mark
    pb.advance(0.12)
    assert pb.heard_ms("item_A") == pytest.approx(70.0)  # not the next item's audio
    pb.push_mark("g1:m1:item_B", 0.12)
    pb.advance(0.2)
    assert pb.heard_ms("item_B") == pytest.approx(40.0)


def test_heard_ms_counts_only_what_played_before_a_clear() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(500), 0.0)
    pb.push_mark("g1:m1:item_A", 0.0)
    pb.clear(0.2)
    assert pb.heard_ms("item_A") == pytest.approx(200.0)


def test_underrun_inside_one_item_is_a_gap() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(20), 0.0)
    pb.push_mark("g0:m1:item_A", 0.0)
    pb.push_media(_audio(20), 0.05)  # drained at 0.02: a 30 ms gap
    pb.push_mark("g0:m2:item_A", 0.05)
    pb.push_media(_audio(20), 0.0705)  # 0.5 ms late: within the 1 ms tolerance
    pb.push_mark("g0:m3:item_A", 0.0705)
    pb.push_media(_audio(20), 0.2)  # a new item after a pause is not an underrun
    pb.push_mark("g0:m4:item_B", 0.2)
    assert [(u.item_id, round(u.gap_ms, 3)) for u in pb.underruns] == [("item_A", 30.0)]
    assert pb.underrun_summary() == {"item_A": (1, pytest.approx(30.0))}


def test_no_underrun_across_a_clear() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(20), 0.0)
    pb.push_mark("g0:m1:item_A", 0.0)
    pb.clear(0.01)
    pb.push_media(_audio(20), 0.1)
    pb.push_mark("g0:m2:item_A", 0.1)
    assert pb.underruns == ()


def test_ai_turns_start_on_idle_line_and_end_after_300_ms_quiet() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(100), 1.0)
    pb.push_media(_audio(100), 1.25)  # 150 ms pause: same turn
    pb.advance(1.6)  # drained at 1.35, quiet 250 ms
    assert pb.turns[0].end is None
    pb.advance(1.65)
    assert pb.turns[0].end == pytest.approx(1.35)
    pb.push_media(_audio(100), 2.0)
    turns = pb.turns
    assert [(t.index, t.start) for t in turns] == [(1, 1.0), (2, 2.0)]
    pb.clear(2.05)
    assert pb.turns[1].end == pytest.approx(2.05)
    assert pb.turns[1].interrupted


def test_clear_after_drain_ends_turn_at_drain_time() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(100), 0.0)
    pb.clear(0.2)
    assert pb.turns[0].end == pytest.approx(0.1)
    assert not pb.turns[0].interrupted


def test_heard_audio_is_aligned_to_call_time_with_silence() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(10, byte=0x01), 0.5)
    pb.push_media(_audio(10, byte=0x02), 0.7)
    pb.advance(1.0)
    heard = pb.heard_audio(0.0, 1.0)
    assert len(heard) == 8000
    assert set(heard[:4000]) == {SILENCE_BYTE}
    assert heard[4000:4080] == _audio(10, byte=0x01)
    assert set(heard[4080:5600]) == {SILENCE_BYTE}
    assert heard[5600:5680] == _audio(10, byte=0x02)
    # A window starting inside a segment keeps only its tail.
    assert pb.heard_audio(0.505, 0.51) == _audio(5, byte=0x01)


def test_heard_audio_includes_the_chunk_playing_now() -> None:
    pb = TwilioPlayback()
    pb.push_media(_audio(100, byte=0x03), 0.0)
    pb.advance(0.03)
    assert pb.heard_audio(0.0, 0.05) == _audio(30, byte=0x03) + bytes([SILENCE_BYTE]) * 160


_ops = st.lists(
    st.tuples(
        st.sampled_from(["media", "mark", "clear", "advance"]),
        st.integers(min_value=0, max_value=60),  # ms since the previous operation
        st.integers(min_value=1, max_value=400),  # bytes of media
    ),
    max_size=60,
)


@given(_ops)
def test_bytes_are_conserved_and_every_mark_is_echoed_once(ops: list[tuple[str, int, int]]) -> None:
    pb = TwilioPlayback()
    now = 0.0
    sent: list[str] = []
    echoed: list[str] = []
    for i, (op, step_ms, size) in enumerate(ops):
        now += step_ms / 1000
        if op == "media":
            echoed += pb.push_media(b"\x11" * size, now)
        elif op == "mark":
            sent.append(f"g0:m{i}:item")
            echoed += pb.push_mark(sent[-1], now)
        elif op == "clear":
            echoed += pb.clear(now).echoes
        else:
            echoed += pb.advance(now)
        assert pb.played_bytes + pb.discarded_bytes + pb.buffered_bytes == pb.pushed_bytes
        assert pb.buffered_bytes >= 0
    echoed += pb.advance(now + 100.0)
    assert echoed == sent  # in order, each exactly once
    assert pb.buffered_bytes == 0
    assert pb.played_bytes == sum(len(s.payload) for s in pb.segments())
