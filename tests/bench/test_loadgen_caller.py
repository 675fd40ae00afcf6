"""The load generator's caller model on a fake clock: playback, marks, clear, underruns, and the
conversation (greeting, utterance, answer, pause)."""

from __future__ import annotations

import pytest
from loadgen_core import Caller, CallResult, Listener, Phase, TurnResult

FRAME = 0.020


def test_marks_echo_when_their_audio_has_played() -> None:
    listener = Listener()
    listener.media(320, now=10.0)  # 40 ms
    assert listener.mark(b"0:1", now=10.0) == []
    listener.media(160, now=10.01)
    assert listener.mark(b"0:2", now=10.01) == []
    assert listener.due(10.039) == []
    assert listener.due(10.04) == [b"0:1"]
    assert listener.due(10.059) == []
    assert listener.due(10.06) == [b"0:2"]
    assert listener.idle_for(10.16) == pytest.approx(0.1)


def test_mark_on_an_idle_line_echoes_at_once() -> None:
    listener = Listener()
    assert listener.mark(b"barrier", now=3.0) == [b"barrier"]
    listener.media(160, now=4.0)
    assert listener.mark(b"late", now=4.5) == [b"late"]


def test_clear_drops_audio_and_echoes_every_pending_mark() -> None:
    listener = Listener()
    listener.media(8000, now=0.0)  # 1 s
    listener.mark(b"0:1", now=0.0)
    listener.media(8000, now=0.0)
    listener.mark(b"0:2", now=0.0)
    assert listener.clear(now=0.5) == [b"0:1", b"0:2"]
    assert listener.idle_for(0.5) == 0.0
    assert listener.idle_for(0.6) == pytest.approx(0.1)
    assert listener.due(5.0) == []
    assert (listener.clears, listener.cleared_marks) == (1, 2)


def test_a_gap_within_an_answer_is_an_underrun_and_playback_resumes_on_arrival() -> None:
    listener = Listener(underrun_gap_s=0.040)
    assert listener.media(320, now=0.0) == (True, 0.0)  # plays until 0.04
    assert listener.media(320, now=0.075) == (False, 0.0)  # dry for 35 ms: not an underrun
    started, gap = listener.media(320, now=0.2)  # dry since 0.115: 85 ms
    assert not started
    assert gap == pytest.approx(0.085)
    assert listener.play_end == pytest.approx(0.24)


def test_audio_after_the_caller_spoke_again_is_a_new_answer() -> None:
    listener = Listener()
    listener.media(160, now=0.0)
    listener.end_answer()
    assert listener.media(160, now=5.0) == (True, 0.0)


def run(
    caller: Caller, start: float, end: float, on_tick: dict[int, int] | None = None
) -> list[int]:
    """Tick the caller every 20 ms from ``start`` to ``end``; the gateway sends ``on_tick[i]``
    bytes of audio at tick ``i`` (before the caller's frame)."""
    frames = []
    steps = round((end - start) / FRAME)
    for i in range(steps):
        now = start + i * FRAME
        if on_tick and i in on_tick:
            caller.on_media(on_tick[i], now)
        frames.append(caller.next_frame(now))
    return frames


def make_caller(**kwargs: float) -> Caller:
    return Caller(CallResult(call_sid="CA1", connect_at=0.0), speech_frames=5, **kwargs)


def test_conversation_greeting_utterance_answer_pause_utterance() -> None:
    caller = make_caller(answer_end_idle_s=0.1, pause_s=0.2, answer_timeout_s=5.0)
    caller.started(0.0)
    result = caller.result
    # Greeting: 100 ms of audio arriving at t=0.04 in 40 ms chunks.
    greeting = {2: 320, 3: 320, 4: 160}
    frames = run(caller, 0.0, 0.2, greeting)
    assert frames == [-1] * 10
    assert result.greeting_first_media == pytest.approx(0.04)
    assert caller.phase is Phase.GREETING
    # The greeting played until 0.14; 100 ms of quiet later (0.24) the caller speaks, 5 frames.
    frames = run(caller, 0.2, 0.4)
    assert frames == [-1, -1, 0, 1, 2, 3, 4, -1, -1, -1]
    assert result.greeting_end == pytest.approx(0.14)
    assert result.turns == [TurnResult(speech_end=pytest.approx(0.32))]  # type: ignore[arg-type]
    assert caller.phase is Phase.WAITING
    # The answer: 60 ms of audio arriving at 0.9.
    frames = run(caller, 0.4, 1.4, {25: 480})
    turn = result.turns[0]
    assert turn.first_media == pytest.approx(0.9)
    assert turn.answer_end == pytest.approx(0.96)
    # Quiet from 0.96; answer over at 1.06; 200 ms pause; speaks again at 1.26 until 1.34.
    assert frames.index(0) == round((1.26 - 0.4) / FRAME)
    assert len(result.turns) == 2
    assert result.turns[1].speech_end == pytest.approx(1.34)
    assert caller.phase is Phase.WAITING
    assert result.underruns == []
    assert result.unexpected_answers == 0


def test_no_greeting_and_no_answer_time_out() -> None:
    caller = make_caller(answer_timeout_s=1.0, pause_s=0.5, greeting_timeout_s=0.5)
    caller.started(0.0)
    frames = run(caller, 0.0, 3.0)
    first = frames.index(0)
    assert first == 25  # greeting timeout at 0.5 s
    # Utterance ends at 0.58; no answer by 1.58; 0.5 s pause; speaks again at 2.08.
    second = frames.index(0, first + 5)
    assert second == round(2.08 / FRAME)
    assert [t.first_media for t in caller.result.turns] == [None, None]


def test_underruns_and_unexpected_audio_are_recorded() -> None:
    caller = make_caller(answer_end_idle_s=0.3, pause_s=0.2)
    caller.started(0.0)
    run(caller, 0.0, 0.1, {0: 160})  # greeting: 20 ms
    run(caller, 0.1, 0.46)  # speaks from 0.32 (greeting over at 0.32) .. 0.40
    assert caller.phase is Phase.WAITING
    # Answer: 40 ms at 0.5, then the next 40 ms only at 0.7: dry from 0.54, a 160 ms gap.
    caller.on_media(320, 0.5)
    caller.on_media(320, 0.7, generator_late=0.002)
    (underrun,) = caller.result.underruns
    assert (underrun.at, underrun.gap, underrun.generator_late) == pytest.approx((0.7, 0.16, 0.002))
    # Played until 0.74, over at 1.04, 200 ms pause: the caller speaks from 1.24.
    frames = run(caller, 0.7, 1.26)
    assert frames[-1] == 0
    assert caller.phase is Phase.SPEAKING
    caller.on_media(160, 1.26)  # audio while the caller talks: not an answer to anything
    assert caller.result.unexpected_answers == 1
    assert len(caller.result.underruns) == 1
