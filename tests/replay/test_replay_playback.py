"""The sans-I/O playback buffer: real-time play, mark echoes, clear, heard accounting."""

from __future__ import annotations

import pytest

from gateway.replay.playback import AnswerEnded, AnswerStarted, MarkDone, PlaybackBuffer


def marks(events: list[object]) -> list[tuple[str, bool]]:
    return [(e.name, e.cleared) for e in events if isinstance(e, MarkDone)]


def test_audio_plays_in_real_time_and_marks_echo_after_their_audio() -> None:
    buf = PlaybackBuffer()
    events = buf.enqueue_audio(800, now=10.0)  # 100 ms
    assert events == [AnswerStarted(index=0, at=10.0)]
    assert buf.enqueue_mark("0:1", now=10.0) == []
    buf.enqueue_audio(800, now=10.0)
    buf.enqueue_mark("0:2", now=10.0)
    assert marks(buf.advance(10.05)) == []
    assert buf.heard_bytes == 400
    done = buf.advance(10.1)
    assert marks(done) == [("0:1", False)]
    assert done[0].at == pytest.approx(10.1)  # type: ignore[union-attr]
    assert buf.pending_marks == ["0:2"]
    assert marks(buf.advance(10.25)) == [("0:2", False)]
    assert buf.heard_bytes == 1600
    assert not buf.busy


def test_mark_on_idle_line_echoes_at_once() -> None:
    buf = PlaybackBuffer()
    assert marks(buf.enqueue_mark("barrier", now=3.0)) == [("barrier", False)]


def test_playback_resumes_from_arrival_after_an_underrun() -> None:
    buf = PlaybackBuffer(answer_gap_s=0.3)
    buf.enqueue_audio(160, now=0.0)  # 20 ms
    buf.advance(0.1)
    assert not buf.busy
    events = buf.enqueue_audio(160, now=0.2)  # same answer: within the gap
    assert not any(isinstance(e, AnswerStarted) for e in events)
    buf.advance(0.21)
    assert buf.heard_bytes == 160 + 80


def test_answer_ends_after_the_gap_at_the_time_its_last_byte_played() -> None:
    buf = PlaybackBuffer(answer_gap_s=0.3)
    buf.enqueue_audio(1600, now=1.0)  # 200 ms
    assert buf.advance(1.2) == []
    assert buf.next_wakeup() == pytest.approx(1.5)
    events = buf.advance(1.5)
    assert events == [
        AnswerEnded(index=0, at=pytest.approx(1.2), heard_bytes=1600, interrupted=False)
    ]
    assert buf.next_wakeup() is None
    assert buf.enqueue_audio(160, now=2.0)[0] == AnswerStarted(index=1, at=2.0)


def test_clear_drops_audio_and_echoes_every_pending_mark() -> None:
    buf = PlaybackBuffer()
    for seq in range(5):
        buf.enqueue_audio(800, now=0.0)
        buf.enqueue_mark(f"0:{seq}", now=0.0)
    assert marks(buf.advance(0.15)) == [("0:0", False)]
    events = buf.clear(0.15)
    assert marks(events) == [("0:1", True), ("0:2", True), ("0:3", True), ("0:4", True)]
    ended = [e for e in events if isinstance(e, AnswerEnded)]
    assert ended == [AnswerEnded(index=0, at=0.15, heard_bytes=1200, interrupted=True)]
    assert buf.heard_bytes == 1200
    assert buf.cleared_bytes == 4000 - 1200
    assert buf.queued_bytes == 0
    # Nothing plays after the clear; later audio is a new answer.
    assert buf.advance(1.0) == []
    assert buf.heard_bytes == 1200
    answer = buf.answers()[0]
    assert (answer.received_bytes, answer.heard_bytes, answer.cleared_bytes) == (4000, 1200, 2800)
    assert answer.interrupted


def test_heard_accounting_does_not_depend_on_call_frequency() -> None:
    coarse, fine = PlaybackBuffer(), PlaybackBuffer()
    for buf in (coarse, fine):
        buf.enqueue_audio(4000, now=0.0)
    coarse.advance(0.333)
    for step in range(1, 334):
        fine.advance(step / 1000)
    assert coarse.heard_bytes == fine.heard_bytes == 2664
    assert fine.ms(fine.heard_bytes) == pytest.approx(333)
