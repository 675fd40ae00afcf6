"""TwilioStreamValidator: connected → start → (media|dtmf|mark)* → stop, identity and counters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.wire import (
    DtmfPayload,
    MarkPayload,
    MediaFormat,
    MediaPayload,
    StartMetadata,
    StopMetadata,
    TwilioConnected,
    TwilioDtmf,
    TwilioInbound,
    TwilioMark,
    TwilioMedia,
    TwilioMessageError,
    TwilioStart,
    TwilioStop,
    TwilioStreamValidator,
)

SID = "MZ1"


def connected() -> TwilioConnected:
    return TwilioConnected(protocol="Call", version="1.0.0")


def start(seq: int = 1, sid: str = SID, inner_sid: str = SID) -> TwilioStart:
    return TwilioStart(
        sequence_number=seq,
        stream_sid=sid,
        start=StartMetadata(
            account_sid="AC1",
            stream_sid=inner_sid,
            call_sid="CA1",
            tracks=["inbound"],
            media_format=MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
        ),
    )


def media(seq: int, chunk: int, sid: str = SID, track: str = "inbound") -> TwilioMedia:
    return TwilioMedia(
        sequence_number=seq,
        stream_sid=sid,
        media=MediaPayload(track=track, chunk=chunk, timestamp=20 * chunk, payload=b"\xff" * 160),
    )


def dtmf(seq: int) -> TwilioDtmf:
    return TwilioDtmf(
        sequence_number=seq, stream_sid=SID, dtmf=DtmfPayload(track="inbound_track", digit="5")
    )


def mark(seq: int) -> TwilioMark:
    return TwilioMark(sequence_number=seq, stream_sid=SID, mark=MarkPayload(name="g1:1"))


def stop(seq: int, sid: str = SID) -> TwilioStop:
    return TwilioStop(
        sequence_number=seq, stream_sid=sid, stop=StopMetadata(account_sid="AC1", call_sid="CA1")
    )


def streaming() -> TwilioStreamValidator:
    validator = TwilioStreamValidator()
    validator.feed(connected())
    validator.feed(start())
    return validator


def test_a_whole_call_passes_and_is_counted() -> None:
    validator = TwilioStreamValidator()
    frames: list[TwilioInbound] = [
        connected(),
        start(),
        media(2, 1),
        media(3, 2),
        dtmf(4),
        mark(5),
        media(6, 3),
        stop(7),
    ]
    for msg in frames:
        validator.feed(msg)
    stats = validator.statistics()
    assert stats.phase == "stopped"
    assert stats.stream_sid == SID
    assert (stats.frames, stats.media_frames, stats.dtmf_frames, stats.mark_frames) == (8, 3, 1, 1)
    assert (stats.sequence_gaps, stats.chunk_gaps, stats.missing_chunks) == (0, 0, 0)
    assert stats.last_sequence_number == 7


@pytest.mark.parametrize(
    ("history", "bad"),
    [
        pytest.param([], start(), id="start-before-connected"),
        pytest.param([], media(2, 1), id="media-before-connected"),
        pytest.param([connected()], connected(), id="connected-twice"),
        pytest.param([connected()], media(2, 1), id="media-before-start"),
        pytest.param([connected()], stop(2), id="stop-before-start"),
        pytest.param([connected(), start()], start(2), id="start-twice"),
        pytest.param([connected(), start(), stop(2)], media(3, 1), id="media-after-stop"),
        pytest.param([connected(), start(), stop(2)], stop(3), id="stop-twice"),
        pytest.param([connected(), start(), stop(2)], connected(), id="connected-after-stop"),
    ],
)
def test_frames_in_the_wrong_phase_are_rejected(
    history: list[TwilioInbound], bad: TwilioInbound
) -> None:
    validator = TwilioStreamValidator()
    for msg in history:
        validator.feed(msg)
    with pytest.raises(TwilioMessageError) as info:
        validator.feed(bad)
    assert info.value.field == "event"


def test_a_frame_for_another_stream_is_rejected() -> None:
    validator = streaming()
    with pytest.raises(TwilioMessageError) as info:
        validator.feed(media(2, 1, sid="MZ-other"))
    assert info.value.field == "streamSid"
    with pytest.raises(TwilioMessageError):
        validator.feed(stop(2, sid="MZ-other"))


def test_a_start_that_contradicts_itself_is_rejected() -> None:
    validator = TwilioStreamValidator()
    validator.feed(connected())
    with pytest.raises(TwilioMessageError) as info:
        validator.feed(start(inner_sid="MZ-other"))
    assert info.value.field == "start.streamSid"


@pytest.mark.parametrize("seq", [1, 0], ids=["duplicate", "backwards"])
def test_a_sequence_number_that_does_not_increase_is_rejected(seq: int) -> None:
    validator = streaming()
    with pytest.raises(TwilioMessageError) as info:
        validator.feed(media(seq, 1))
    assert info.value.field == "sequenceNumber"


def test_a_media_chunk_that_does_not_increase_is_rejected() -> None:
    validator = streaming()
    validator.feed(media(2, 5))
    with pytest.raises(TwilioMessageError) as info:
        validator.feed(media(3, 5))
    assert info.value.field == "media.chunk"


def test_a_rejected_frame_leaves_the_state_unchanged() -> None:
    validator = streaming()
    validator.feed(media(2, 1))
    before = validator.statistics()
    with pytest.raises(TwilioMessageError):
        validator.feed(media(3, 1))  # good sequence number, bad chunk
    assert validator.statistics() == before
    validator.feed(media(3, 2))  # the stream goes on
    assert validator.statistics().media_frames == 2


def test_gaps_are_counted_not_rejected() -> None:
    validator = streaming()
    validator.feed(media(2, 1))
    validator.feed(media(5, 4))  # two frames lost: chunks 2 and 3, sequence numbers 3 and 4
    validator.feed(media(6, 5))
    validator.feed(media(8, 9))  # one more gap: chunks 6..8
    assert validator.chunk_gaps == 2
    assert validator.missing_chunks == 5
    assert validator.sequence_gaps == 2
    assert validator.phase == "streaming"


def test_chunks_are_counted_per_track() -> None:
    validator = streaming()
    validator.feed(media(2, 1, track="inbound"))
    validator.feed(media(3, 1, track="outbound"))
    validator.feed(media(4, 2, track="inbound"))
    assert validator.chunk_gaps == 0


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3)), max_size=50))
def test_any_increasing_stream_passes_and_counts_its_gaps(steps: list[tuple[int, int]]) -> None:
    validator = streaming()
    seq, chunk = 1, 0
    expected_missing = 0
    for index, (seq_step, chunk_step) in enumerate(steps):
        seq += seq_step
        chunk += chunk_step
        if index > 0:  # the first chunk has nothing before it to miss
            expected_missing += chunk_step - 1
        validator.feed(media(seq, chunk))
    validator.feed(stop(seq + 1))
    assert validator.missing_chunks == expected_missing
    assert validator.statistics().media_frames == len(steps)
