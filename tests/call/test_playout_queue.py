"""PlayoutQueue (PlaybackEgress's sans-I/O core): pacing, marks, heard accounting, clear."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.call.playback import (
    FRAME_BYTES,
    AssistantAudioEncoder,
    PlayoutOutput,
    PlayoutQueue,
    SendClear,
    SendMark,
    SendMedia,
    format_mark,
    parse_mark,
)
from actors.call.protocol import PlaybackFinished, PlaybackStarted


def ulaw(ms: int, byte: int = 0x55) -> bytes:
    return bytes([byte]) * (ms * 8)


def media(out: list[PlayoutOutput]) -> list[SendMedia]:
    return [o for o in out if isinstance(o, SendMedia)]


def marks(out: list[PlayoutOutput]) -> list[str]:
    return [o.name for o in out if isinstance(o, SendMark)]


def finished(out: list[PlayoutOutput]) -> list[PlaybackFinished]:
    return [o for o in out if isinstance(o, PlaybackFinished)]


def test_first_chunks_fill_the_lead_then_wait() -> None:
    q = PlayoutQueue(lead_ms=100, chunk_ms=40)
    q.enqueue(1, ulaw(400))
    out = q.poll(10.0)
    # 40 + 40 = 80 <= 100; a third chunk would make 120.
    assert [len(m.payload) for m in media(out)] == [320, 320]
    assert marks(out) == ["0:1", "0:2"]
    assert isinstance(out[2], PlaybackStarted)
    assert out[2].turn_id == 1
    assert out[2].at == 10.0
    assert q.lead_ms(10.0) == pytest.approx(80.0)
    # The next chunk fits once 20 ms have played.
    assert q.next_deadline(10.0) == pytest.approx(10.020)
    assert q.poll(10.019) == []
    assert len(media(q.poll(10.020))) == 1


def test_lead_never_exceeds_configured_lead_over_a_long_turn() -> None:
    q = PlayoutQueue(lead_ms=100, chunk_ms=40)
    q.enqueue(1, ulaw(3000))
    q.end_turn(1, 0.0)
    now = 0.0
    sent = 0
    while (deadline := q.next_deadline(now)) is not None:
        now = max(now, deadline)
        for m in media(q.poll(now)):
            sent += len(m.payload)
        assert q.lead_ms(now) <= 100.0 + 1e-6
    assert sent == 3000 * 8
    # Real time after the initial lead: the last 40 ms chunk goes out once lead <= 60 ms.
    assert now == pytest.approx(2.9, abs=0.001)


def test_tail_is_padded_to_a_frame_and_turn_finishes_on_last_echo() -> None:
    q = PlayoutQueue(lead_ms=100, chunk_ms=40)
    q.enqueue(1, ulaw(50))  # 40 ms chunk + 10 ms tail
    q.end_turn(1, 0.0)
    out = q.poll(0.0)
    assert [len(m.payload) for m in media(out)] == [320, FRAME_BYTES]
    assert media(out)[1].payload[80:] == b"\xff" * 80  # μ-law silence pad
    assert finished(q.mark_echoed("0:1", 0.04)) == []
    done = finished(q.mark_echoed("0:2", 0.06))
    assert len(done) == 1
    assert done[0].interrupted is False
    assert done[0].position_ms == done[0].total_ms == 50.0
    assert q.is_idle()


def test_small_model_chunks_go_out_at_once_into_an_empty_buffer() -> None:
    q = PlayoutQueue(lead_ms=100, chunk_ms=40)
    q.enqueue(1, ulaw(20))
    assert [len(m.payload) for m in media(q.poll(0.0))] == [FRAME_BYTES]


def test_lone_frames_wait_until_the_buffer_is_about_to_run_dry() -> None:
    q = PlayoutQueue(lead_ms=100, chunk_ms=40)
    q.enqueue(1, ulaw(60))
    assert [len(m.payload) for m in media(q.poll(0.0))] == [320]
    assert q.poll(0.01) == []  # 30 ms buffered, 20 ms local: wait for a full chunk
    assert q.next_deadline(0.01) == pytest.approx(0.02)
    assert [len(m.payload) for m in media(q.poll(0.02))] == [FRAME_BYTES]


def test_local_queue_is_bounded_and_overflow_is_counted() -> None:
    q = PlayoutQueue(lead_ms=100, chunk_ms=40, max_queued_ms=200)
    assert q.enqueue(1, ulaw(160))
    assert q.enqueue(1, ulaw(100))  # only 40 ms of it fits
    assert q.queued_ms == pytest.approx(200.0)
    assert q.stats.ms_dropped_overflow == pytest.approx(60.0)
    q.poll(0.0)  # sending frees room again
    assert q.enqueue(1, ulaw(40))
    assert q.stats.ms_dropped_overflow == pytest.approx(60.0)


def test_end_turn_after_all_echoes_finishes_immediately() -> None:
    q = PlayoutQueue()
    q.enqueue(3, ulaw(40))
    q.poll(0.0)
    q.mark_echoed("0:1", 0.05)
    done = finished(q.end_turn(3, 0.06))
    assert [(d.turn_id, d.interrupted, d.position_ms) for d in done] == [(3, False, 40.0)]


def test_clear_drops_queue_reports_heard_and_ignores_stale_marks_and_audio() -> None:
    q = PlayoutQueue(lead_ms=100, chunk_ms=40)
    q.enqueue(1, ulaw(1000))
    q.poll(0.0)  # marks 0:1, 0:2 sent
    q.mark_echoed("0:1", 0.045)  # 40 ms played
    out = q.clear(1, 1, 0.05)
    assert isinstance(out[0], SendClear)
    assert out[0].generation == 1
    done = finished(out)
    assert len(done) == 1
    assert done[0].interrupted is True
    # 40 ms echoed as played by 0.045, and the clock (anchored by that echo) adds 5 ms more.
    assert done[0].position_ms == pytest.approx(45.0)
    assert done[0].generation == 0
    assert q.queued_ms == 0.0
    assert q.stats.ms_dropped_by_clear == pytest.approx(1000 - 80)
    # Twilio echoes the pending mark after the clear: it was cleared, not heard.
    assert q.mark_echoed("0:2", 0.06) == []
    assert q.stats.marks_stale == 1
    # Late audio of the interrupted turn is dropped; nothing goes out.
    assert q.enqueue(1, ulaw(100)) is False
    assert q.poll(0.07) == []
    # A duplicate clear (same generation) does nothing.
    assert q.clear(1, 1, 0.08) == []
    # The next turn plays in the new generation.
    q.enqueue(2, ulaw(40))
    assert marks(q.poll(0.1)) == ["1:1"]


def test_clear_keeps_newer_turn_that_has_not_started() -> None:
    q = PlayoutQueue(lead_ms=100, chunk_ms=40)
    q.enqueue(1, ulaw(200))
    q.poll(0.0)
    q.enqueue(2, ulaw(40))
    q.end_turn(2, 0.0)
    out = q.clear(1, 1, 0.01)
    assert [d.turn_id for d in finished(out)] == [1]
    assert marks(q.poll(0.02)) == ["1:1"]


def test_echo_later_than_estimate_tightens_the_clock() -> None:
    q = PlayoutQueue(lead_ms=100, chunk_ms=40)
    q.enqueue(1, ulaw(1000))
    q.poll(0.0)  # 80 ms sent at t=0
    # Twilio started late: the first 40 ms chunk echoes at t=0.070 instead of 0.040.
    q.mark_echoed("0:1", 0.070)
    assert q.lead_ms(0.070) == pytest.approx(40.0)


def test_underrun_counted_when_model_is_slower_than_real_time() -> None:
    q = PlayoutQueue(lead_ms=100, chunk_ms=40)
    q.enqueue(1, ulaw(40))
    q.poll(0.0)
    q.enqueue(1, ulaw(40))
    q.poll(0.5)  # the buffer drained long ago
    assert q.stats.underruns == 1


def test_mark_names_round_trip() -> None:
    assert parse_mark(format_mark(3, 17)) == (3, 17)
    assert parse_mark("greeting") is None
    assert parse_mark("a:1") is None


def test_settings_validated() -> None:
    with pytest.raises(ValueError, match="multiple of 20"):
        PlayoutQueue(chunk_ms=30)
    with pytest.raises(ValueError, match="lead_ms"):
        PlayoutQueue(lead_ms=10)


def test_encoder_turns_24k_pcm_into_8k_ulaw_with_tail() -> None:
    enc = AssistantAudioEncoder(24000)
    pcm = b"\x00\x10" * 480  # 20 ms at 24 kHz
    body = enc.encode(pcm, 24000)
    tail = enc.end_turn()
    assert len(body) + len(tail) == 160


# A script of operations: enqueue audio, end the turn, echo the oldest pending mark, advance time,
# or barge in.
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("audio"), st.integers(1, 30)),
        st.tuples(st.just("end"), st.just(0)),
        st.tuples(st.just("echo"), st.integers(0, 3)),
        st.tuples(st.just("tick"), st.integers(1, 80)),
        st.tuples(st.just("clear"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(_ops, st.sampled_from([20, 40, 60]), st.sampled_from([40.0, 100.0, 250.0]))
def test_properties_heard_within_sent_no_stale_output_lead_bounded(
    ops: list[tuple[str, int]], chunk_ms: int, lead_ms: float
) -> None:
    q = PlayoutQueue(lead_ms=lead_ms, chunk_ms=chunk_ms)
    now = 0.0
    turn = 1
    sent_ms: dict[int, float] = {}
    sent_marks: list[str] = []
    cleared_turns: set[int] = set()
    reported: set[int] = set()

    def run(out: list[PlayoutOutput]) -> None:
        for o in out:
            if isinstance(o, SendMedia):
                assert o.turn_id not in cleared_turns
                assert len(o.payload) % FRAME_BYTES == 0
                sent_ms[o.turn_id] = sent_ms.get(o.turn_id, 0.0) + len(o.payload) / 8
            elif isinstance(o, SendMark):
                gen, _ = parse_mark(o.name) or (-1, -1)
                assert gen == q.generation
                sent_marks.append(o.name)
            elif isinstance(o, PlaybackFinished):
                assert o.turn_id not in reported
                reported.add(o.turn_id)
                assert 0.0 <= o.position_ms <= sent_ms.get(o.turn_id, 0.0)
                assert o.position_ms <= o.total_ms
                if not o.interrupted:
                    assert o.position_ms == o.total_ms

    for op, arg in ops:
        if op == "audio":
            q.enqueue(turn, ulaw(arg))
        elif op == "end":
            run(q.end_turn(turn, now))
            turn += 1
        elif op == "echo" and sent_marks:
            name = sent_marks.pop(min(arg, len(sent_marks) - 1))
            run(q.mark_echoed(name, now))
        elif op == "tick":
            now += arg / 1000.0
        elif op == "clear":
            cleared_turns.update(range(turn + 1))
            run(q.clear(q.generation + 1, turn, now))
            sent_marks.clear()
            turn += 1
        run(q.poll(now))
        lead = q.lead_ms(now)
        assert lead <= max(lead_ms, float(chunk_ms)) + 1e-6
        deadline = q.next_deadline(now)
        if deadline is not None and deadline <= now:
            raise AssertionError("poll left due work behind")


class _Twilio:
    """Twilio's side of one answer, as documented: audio plays in real time in arrival order;
    a mark echoes once everything before it has played; ``clear`` stops playback."""

    def __init__(self, forward_s: float, back_s: float) -> None:
        self.forward = forward_s
        self.back = back_s
        self.play_end = 0.0  # when the audio received so far finishes playing
        self.played_at: list[tuple[float, float]] = []  # (arrival, play start) per media
        self.echoes: list[tuple[float, str]] = []  # (arrival at the gateway, name)
        self.segments: list[tuple[float, float]] = []  # (play start, ms) of each media

    def deliver(self, out: list[PlayoutOutput], sent_at: float) -> None:
        arrive = sent_at + self.forward
        for o in out:
            if isinstance(o, SendMedia):
                start = max(arrive, self.play_end)
                ms = len(o.payload) / 8
                self.segments.append((start, ms))
                self.play_end = start + ms / 1000
            elif isinstance(o, SendMark):
                self.echoes.append((max(arrive, self.play_end) + self.back, o.name))

    def played_ms(self, t: float) -> float:
        return sum(min(ms, max(0.0, (t - start) * 1000)) for start, ms in self.segments)


def _heard_at_barge_in(
    chunk_ms: int, lead_ms: int, forward: float, back: float, at: float
) -> tuple[float, float]:
    """Play a 3 s answer and barge in at ``at``: (reported heard ms, truly played ms at ``at``)."""
    q = PlayoutQueue(lead_ms=lead_ms, chunk_ms=chunk_ms)
    twilio = _Twilio(forward, back)
    q.enqueue(1, ulaw(3000))
    q.end_turn(1, 0.0)
    now = 0.0
    while True:
        twilio.deliver(q.poll(now), now)
        deadline = q.next_deadline(now)
        pending = [t for t, _ in twilio.echoes]
        step = min([d for d in (deadline, *pending) if d is not None and d > now], default=at)
        if step >= at:
            break
        now = step
        while twilio.echoes and twilio.echoes[0][0] <= now:
            q.mark_echoed(twilio.echoes.pop(0)[1], now)
    done = finished(q.clear(1, 1, at))
    assert len(done) == 1
    return done[0].position_ms, twilio.played_ms(at)


@settings(max_examples=150, deadline=None)
@given(
    # Network delays the pacing cushion (lead - chunk) covers in both settings: 60 ms for 40/100.
    forward_ms=st.integers(min_value=0, max_value=25),
    back_ms=st.integers(min_value=0, max_value=25),
    at_ms=st.integers(min_value=1, max_value=2900),
)
def test_property_heard_at_barge_in_is_never_overstated_and_as_precise_as_40ms_marks(
    forward_ms: int, back_ms: int, at_ms: int
) -> None:
    forward, back, at = forward_ms / 1000, back_ms / 1000, at_ms / 1000
    heard, played = _heard_at_barge_in(100, 200, forward, back, at)
    baseline, _ = _heard_at_barge_in(40, 100, forward, back, at)
    assert heard <= played + 1e-6  # the history never claims audio the caller did not hear
    assert heard >= baseline - 1e-6  # 100 ms chunks lose nothing against a mark every 40 ms
    first_echo = (forward + back) * 1000 + 40
    if at_ms > first_echo + 1:
        # Anchored by an echo, the clock lags Twilio's playback by the way back only.
        assert heard >= played - back_ms - 1e-6
