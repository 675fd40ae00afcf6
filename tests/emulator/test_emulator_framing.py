"""Sans-I/O event-stream framing: splitting at any byte boundary, nested request frames, output frames."""

from __future__ import annotations

import datetime
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smithy_aws_event_stream.events import Event, EventMessage

from actors.errors import RemoteProtocolError
from actors.sonic.event_writer import ChunkSigner
from actors.wire import AudioInput, decode_input_event
from gateway.emulator.framing import (
    FrameSplitter,
    decode_audio_input,
    decode_outer_frame,
    decode_outer_frame_slow,
    encode_event_frame,
    encode_exception_frame,
)


def signed(inner: bytes) -> bytes:
    return EventMessage(
        headers={":date": 0, ":chunk-signature": b"\x00" * 32}, payload=inner
    ).encode()


def inner_chunk(payload: bytes) -> bytes:
    return EventMessage(
        headers={
            ":message-type": "event",
            ":event-type": "chunk",
            ":content-type": "application/json",
        },
        payload=payload,
    ).encode()


FRAMES = [
    signed(inner_chunk(b'{"bytes":"e30="}')),
    signed(b""),
    encode_event_frame(b'{"bytes":""}'),
]


def test_whole_frames_come_out_in_order() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(b"".join(FRAMES)) == FRAMES
    assert splitter.buffered() == 0


def test_byte_by_byte_feeding_yields_each_frame_once() -> None:
    splitter = FrameSplitter()
    out: list[bytes] = []
    for byte in b"".join(FRAMES):
        out.extend(splitter.feed(bytes([byte])))
    assert out == FRAMES


@settings(max_examples=50)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_split_points_give_the_same_frames(cuts: list[int]) -> None:
    data = b"".join(FRAMES)
    points = sorted({min(c, len(data)) for c in cuts})
    splitter = FrameSplitter()
    out: list[bytes] = []
    start = 0
    for point in [*points, len(data)]:
        out.extend(splitter.feed(data[start:point]))
        start = point
    assert out == FRAMES


def test_truncated_stream_keeps_bytes_buffered() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(FRAMES[0][:-3]) == []
    assert splitter.buffered() == len(FRAMES[0]) - 3


def test_impossible_length_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        FrameSplitter().feed(b"\x00\x00\x00\x05rest")
    with pytest.raises(RemoteProtocolError):
        FrameSplitter(max_frame_bytes=100).feed((1000).to_bytes(4, "big") + b"\x00" * 20)


def test_outer_frame_unwraps_to_the_inner_payload() -> None:
    assert decode_outer_frame(FRAMES[0]).payload == b'{"bytes":"e30="}'
    assert decode_outer_frame(FRAMES[1]).payload is None


def test_outer_frame_gives_what_its_signature_covers() -> None:
    inner = inner_chunk(b'{"bytes":"e30="}')
    date = datetime.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=datetime.UTC)
    frame = EventMessage(
        headers={":date": date, ":chunk-signature": b"\x01" * 32}, payload=inner
    ).encode()
    for decode in (decode_outer_frame, decode_outer_frame_slow):
        out = decode(frame)
        assert out.signed == inner
        assert out.date_ms == int(date.timestamp() * 1000)
        assert out.signature == b"\x01" * 32
    end = decode_outer_frame(FRAMES[1])
    assert (end.signed, end.date_ms, end.signature) == (b"", None, b"\x00" * 32)


def test_unsigned_or_corrupt_request_frames_are_rejected() -> None:
    with pytest.raises(RemoteProtocolError, match="not signed"):
        decode_outer_frame(inner_chunk(b"{}"))
    corrupt = bytearray(FRAMES[0])
    corrupt[-6] ^= 0xFF
    with pytest.raises(RemoteProtocolError, match="invalid event bytes"):
        decode_outer_frame(bytes(corrupt))
    wrong = signed(
        EventMessage(headers={":message-type": "event", ":event-type": "other"}).encode()
    )
    with pytest.raises(RemoteProtocolError, match="event type"):
        decode_outer_frame(wrong)


def test_output_frames_carry_the_bedrock_headers() -> None:
    event = Event.decode(io.BytesIO(encode_event_frame(b'{"bytes":"e30="}')))
    assert event is not None
    assert event.message.headers == {
        ":message-type": "event",
        ":event-type": "chunk",
        ":content-type": "application/json",
    }
    error = Event.decode(
        io.BytesIO(encode_exception_frame("throttlingException", b'{"message":"x"}'))
    )
    assert error is not None
    assert error.message.headers[":message-type"] == "exception"
    assert error.message.headers[":exception-type"] == "throttlingException"
    assert error.message.payload == b'{"message":"x"}'


# The fast path of decode_outer_frame against the SDK's codec (decode_outer_frame_slow).


def both(frame: bytes) -> tuple[object, object]:
    """Each path's result: the inner payload and what the signature check reads, or the error."""
    results: list[object] = []
    for decode in (decode_outer_frame, decode_outer_frame_slow):
        try:
            out = decode(frame)
            results.append(("ok", out.payload, out.signed, out.date_ms, out.signature))
        except RemoteProtocolError:
            results.append("error")
    return results[0], results[1]


HEADER_VALUES = st.one_of(
    st.booleans(),
    st.binary(max_size=40),
    st.text(max_size=20),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.uuids(),
    st.datetimes(timezones=st.just(datetime.UTC), min_value=datetime.datetime(2000, 1, 1)),
)
NAMES = st.sampled_from([":date", ":chunk-signature", ":message-type", ":event-type", "x-other"])


@settings(max_examples=200)
@given(
    outer=st.dictionaries(NAMES, HEADER_VALUES, max_size=4),
    inner=st.dictionaries(
        NAMES | st.sampled_from([":content-type"]),
        HEADER_VALUES | st.sampled_from(["event", "chunk", "exception", "application/json"]),
        max_size=4,
    ),
    payload=st.binary(max_size=60),
    empty=st.booleans(),
)
def test_fast_path_agrees_with_the_sdk_codec(
    outer: dict[str, object], inner: dict[str, object], payload: bytes, empty: bool
) -> None:
    inner_frame = b"" if empty else EventMessage(headers=inner, payload=payload).encode()  # type: ignore[arg-type]
    frame = EventMessage(headers=outer, payload=inner_frame).encode()  # type: ignore[arg-type]
    fast, slow = both(frame)
    assert fast == slow


@settings(max_examples=300)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_fast_path_agrees_on_corrupted_frames(position: int, bit: int) -> None:
    frame = bytearray(signed(inner_chunk(b'{"bytes":"e30="}')))
    frame[position % len(frame)] ^= 1 << bit
    fast, slow = both(bytes(frame))
    assert fast == slow


def sdk_layout_frame() -> bytes:
    """A frame laid out as the SDKs send it (:date, then :chunk-signature; the inner headers)."""
    signer = ChunkSigner(secret_access_key="dummy", region="us-east-1", service="bedrock")
    frame, _ = signer.sign_frames([b'{"event":{}}'], 1_767_225_600_123_456, b"0" * 64)
    return frame


@settings(max_examples=300)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_fast_path_agrees_on_corrupted_sdk_layout_frames(position: int, bit: int) -> None:
    frame = bytearray(sdk_layout_frame())
    frame[position % len(frame)] ^= 1 << bit
    fast, slow = both(bytes(frame))
    assert fast == slow


def test_fast_path_agrees_on_the_sdk_frames() -> None:
    layout = sdk_layout_frame()
    fast, slow = both(layout)
    assert fast == slow
    assert decode_outer_frame(layout).date_ms == 1_767_225_600_123
    valid = signed(inner_chunk(b'{"bytes":"e30="}'))
    for frame in (valid, FRAMES[1], valid[:-1], valid + b"\x00", inner_chunk(b"{}")):
        fast, slow = both(frame)
        assert fast == slow


AUDIO_JSON = [
    b'{"event":{"audioInput":{"promptName":"p","contentName":"a","content":"AAA="}}}',
    b'{"event":{"audioInput":{"contentName":"a","content":"","promptName":"p"}}}',
    b' { "event" : { "audioInput" : { "promptName":"p","contentName":"a","content":"AAA=" } } } ',
    b'{"event":{"audioInput":{"promptName":"p","contentName":"a","content":"AAA=","x":1}}}',
    b'{"event":{"audioInput":{"promptName":"p","contentName":"a","content":"not base64!"}}}',
    b'{"event":{"audioInput":{"promptName":"p","content":"AAA="}}}',
    b'{"event":{"audioInput":{"promptName":"p","contentName":"a","content":"AAA="},"textInput":null}}',
    b'{"event":{"audioInput":{"promptName":"p","contentName":"a","content":"AAA="},'
    b'"textInput":{"promptName":"p","contentName":"t","content":"hi"}}}',
    b'{"event":{"audioInput":null}}',
    b'{"event":{},"other":1}',
    b'{"event":{"promptEnd":{"promptName":"p"}}}',
    b'{"event":{"sessionEnd":{}}}',
    b"not json",
]


@pytest.mark.parametrize("data", AUDIO_JSON)
def test_audio_fast_path_agrees_with_the_full_decoder(data: bytes) -> None:
    fast = decode_audio_input(data)
    try:
        full = decode_input_event(data)
    except RemoteProtocolError:
        assert fast is None
        return
    assert fast is None or fast == full
    assert (fast is not None) == (isinstance(full, AudioInput) and b"null" not in data)
