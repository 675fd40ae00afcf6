"""Twilio Media Streams frames: documented examples round-trip, malformed frames name the field."""

from __future__ import annotations

import base64
import contextlib
import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.errors import RemoteProtocolError
from actors.wire import (
    DtmfPayload,
    MarkPayload,
    MediaFormat,
    MediaPayload,
    OutboundMediaPayload,
    StartMetadata,
    StopMetadata,
    TwilioConnected,
    TwilioDtmf,
    TwilioInbound,
    TwilioMark,
    TwilioMedia,
    TwilioMessageError,
    TwilioOutboundClear,
    TwilioOutboundMark,
    TwilioOutboundMedia,
    TwilioStart,
    TwilioStop,
    decode_twilio_inbound,
    decode_twilio_outbound,
    encode_twilio_clear,
    encode_twilio_inbound,
    encode_twilio_mark,
    encode_twilio_media,
    encode_twilio_outbound,
)

# The message examples of Twilio's Media Streams documentation, except that the elided
# "fn5+fn5+…" payload is cut to valid base64.
CONNECTED = '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'
START = """{"event": "start", "sequenceNumber": "1", "streamSid": "MZ…",
 "start": {"accountSid": "AC…", "streamSid": "MZ…", "callSid": "CA…",
           "tracks": ["inbound"],
           "customParameters": {"tenant": "acme", "callToken": "opaque-per-call-token"},
           "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}"""
MEDIA = """{"event": "media", "sequenceNumber": "3", "streamSid": "MZ…",
 "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "fn5+fn5+"}}"""
DTMF = '{"event": "dtmf", "sequenceNumber": "5", "streamSid": "MZ…", "dtmf": {"track": "inbound_track", "digit": "1"}}'
MARK = '{"event": "mark", "sequenceNumber": "6", "streamSid": "MZ…", "mark": {"name": "g3:17"}}'
STOP = '{"event": "stop", "sequenceNumber": "9", "streamSid": "MZ…", "stop": {"accountSid": "AC…", "callSid": "CA…"}}'

# Outbound messages as Twilio's Media Streams documentation shows them.
OUT_MEDIA = '{"event": "media", "streamSid": "MZ…", "media": {"payload": "fn5+"}}'
OUT_MARK = '{"event": "mark",  "streamSid": "MZ…", "mark": {"name": "g3:17"}}'
OUT_CLEAR = '{"event": "clear", "streamSid": "MZ…"}'

INBOUND_EXAMPLES = [CONNECTED, START, MEDIA, DTMF, MARK, STOP]


def _media_frame(**media: object) -> bytes:
    body = {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": "fn5+"} | media
    frame = {"event": "media", "sequenceNumber": "3", "streamSid": "MZ1", "media": body}
    return json.dumps(frame).encode()


# ----------------------------------------------------------------------------- documented examples


def test_connected_example_decodes() -> None:
    assert decode_twilio_inbound(CONNECTED) == TwilioConnected(protocol="Call", version="1.0.0")


def test_start_example_decodes_with_integer_sequence_number() -> None:
    assert decode_twilio_inbound(START) == TwilioStart(
        sequence_number=1,
        stream_sid="MZ…",
        start=StartMetadata(
            account_sid="AC…",
            stream_sid="MZ…",
            call_sid="CA…",
            tracks=["inbound"],
            custom_parameters={"tenant": "acme", "callToken": "opaque-per-call-token"},
            media_format=MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
        ),
    )


def test_media_example_turns_strings_into_ints_and_payload_into_bytes() -> None:
    msg = decode_twilio_inbound(MEDIA.encode())
    assert msg == TwilioMedia(
        sequence_number=3,
        stream_sid="MZ…",
        media=MediaPayload(track="inbound", chunk=1, timestamp=5, payload=b"~~~~~~"),
    )
    assert isinstance(msg, TwilioMedia)
    assert msg.media.payload == base64.b64decode("fn5+fn5+")


def test_dtmf_mark_stop_examples_decode() -> None:
    assert decode_twilio_inbound(DTMF) == TwilioDtmf(
        sequence_number=5, stream_sid="MZ…", dtmf=DtmfPayload(track="inbound_track", digit="1")
    )
    assert decode_twilio_inbound(MARK) == TwilioMark(
        sequence_number=6, stream_sid="MZ…", mark=MarkPayload(name="g3:17")
    )
    assert decode_twilio_inbound(STOP) == TwilioStop(
        sequence_number=9, stream_sid="MZ…", stop=StopMetadata(account_sid="AC…", call_sid="CA…")
    )


@pytest.mark.parametrize("example", INBOUND_EXAMPLES)
def test_inbound_example_round_trips_through_the_peer_encoder(example: str) -> None:
    msg = decode_twilio_inbound(example)
    encoded = encode_twilio_inbound(msg)
    assert decode_twilio_inbound(encoded) == msg
    # The peer side speaks like Twilio: the JSON is the documented one, key for key, value for value.
    assert json.loads(encoded) == json.loads(example)


def test_peer_encoder_sends_counters_as_strings_and_format_numbers_as_numbers() -> None:
    media = json.loads(encode_twilio_inbound(decode_twilio_inbound(MEDIA)))
    assert media["sequenceNumber"] == "3"
    assert (media["media"]["chunk"], media["media"]["timestamp"]) == ("1", "5")
    start = json.loads(encode_twilio_inbound(decode_twilio_inbound(START)))
    assert start["sequenceNumber"] == "1"
    assert start["start"]["mediaFormat"]["sampleRate"] == 8000


def test_numbers_already_sent_as_numbers_are_accepted() -> None:
    frame = _media_frame(chunk=7, timestamp=140)
    msg = decode_twilio_inbound(frame)
    assert isinstance(msg, TwilioMedia)
    assert (msg.media.chunk, msg.media.timestamp) == (7, 140)


def test_unknown_extra_fields_are_ignored() -> None:
    frame = json.loads(START)
    frame["newTopLevel"] = {"x": 1}
    frame["start"]["newNested"] = [1, 2]
    msg = decode_twilio_inbound(json.dumps(frame))
    assert msg == decode_twilio_inbound(START)


def test_start_without_custom_parameters_gets_an_empty_dict() -> None:
    frame = json.loads(START)
    del frame["start"]["customParameters"]
    msg = decode_twilio_inbound(json.dumps(frame))
    assert isinstance(msg, TwilioStart)
    assert msg.start.custom_parameters == {}


def test_outbound_examples_decode_and_round_trip() -> None:
    media = decode_twilio_outbound(OUT_MEDIA)
    assert media == TwilioOutboundMedia(
        stream_sid="MZ…", media=OutboundMediaPayload(payload=b"~~~")
    )
    assert decode_twilio_outbound(OUT_MARK) == TwilioOutboundMark(
        stream_sid="MZ…", mark=MarkPayload(name="g3:17")
    )
    assert decode_twilio_outbound(OUT_CLEAR) == TwilioOutboundClear(stream_sid="MZ…")
    for example in (OUT_MEDIA, OUT_MARK, OUT_CLEAR):
        msg = decode_twilio_outbound(example)
        assert json.loads(encode_twilio_outbound(msg)) == json.loads(example)


def test_fast_helpers_equal_the_generic_encoder() -> None:
    payload = bytes(range(160))
    assert encode_twilio_media("MZ1", payload) == encode_twilio_outbound(
        TwilioOutboundMedia(stream_sid="MZ1", media=OutboundMediaPayload(payload=payload))
    )
    assert encode_twilio_mark("MZ1", "g1:2") == encode_twilio_outbound(
        TwilioOutboundMark(stream_sid="MZ1", mark=MarkPayload(name="g1:2"))
    )
    assert encode_twilio_clear("MZ1") == encode_twilio_outbound(
        TwilioOutboundClear(stream_sid="MZ1")
    )


def test_outbound_media_is_the_documented_shape() -> None:
    assert json.loads(encode_twilio_media("MZ1", b"\xff\x7f")) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": base64.b64encode(b"\xff\x7f").decode()},
    }
    assert json.loads(encode_twilio_clear("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


# ----------------------------------------------------------------------------- malformed frames


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        pytest.param(
            _media_frame(payload="!!not base64!!"), "media.payload", id="payload-not-base64"
        ),
        pytest.param(_media_frame(chunk="abc"), "media.chunk", id="chunk-abc"),
        pytest.param(_media_frame(timestamp=[1]), "media.timestamp", id="timestamp-list"),
        pytest.param(_media_frame(track=3), "media.track", id="track-int"),
        pytest.param(_media_frame(chunk="-1"), "media.chunk", id="chunk-negative"),
        pytest.param(
            b'{"event": "media", "sequenceNumber": "abc", "streamSid": "MZ1", "media": {}}',
            "sequenceNumber",
            id="sequence-number-abc",
        ),
        pytest.param(
            b'{"event": "media", "sequenceNumber": "3", "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": ""}}',
            "streamSid",
            id="missing-stream-sid",
        ),
        pytest.param(
            b'{"event": "media", "sequenceNumber": "3", "streamSid": "MZ1"}',
            "media",
            id="missing-media",
        ),
        pytest.param(
            b'{"event": "media", "sequenceNumber": "3", "streamSid": "MZ1", "media": {"track": "inbound", "chunk": "1", "timestamp": "5"}}',
            "media.payload",
            id="missing-payload",
        ),
        pytest.param(b'{"event": "hangup", "streamSid": "MZ1"}', "event", id="unknown-event"),
        pytest.param(b'{"streamSid": "MZ1"}', "event", id="no-event"),
        pytest.param(b'{"event": 7}', "event", id="event-not-a-string"),
        pytest.param(
            b'{"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {"accountSid": "AC", "streamSid": "MZ1", "callSid": "CA", "tracks": ["inbound"], "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": "fast", "channels": 1}}}',
            "start.mediaFormat.sampleRate",
            id="sample-rate-not-a-number",
        ),
        pytest.param(
            b'{"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {"accountSid": "AC", "streamSid": "MZ1", "callSid": "CA", "tracks": "inbound", "mediaFormat": {"encoding": "e", "sampleRate": 8000, "channels": 1}}}',
            "start.tracks",
            id="tracks-not-a-list",
        ),
        pytest.param(
            b'{"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {"accountSid": "AC", "streamSid": "MZ1", "callSid": "CA", "tracks": [], "customParameters": {"a": 1}, "mediaFormat": {"encoding": "e", "sampleRate": 8000, "channels": 1}}}',
            "start.customParameters[...]",  # msgspec does not name dict keys
            id="custom-parameter-not-a-string",
        ),
        pytest.param(
            b'{"event": "dtmf", "sequenceNumber": "5", "streamSid": "MZ1", "dtmf": {"track": "inbound_track"}}',
            "dtmf.digit",
            id="dtmf-without-digit",
        ),
    ],
)
def test_malformed_inbound_frame_names_the_field(frame: bytes, field: str) -> None:
    with pytest.raises(TwilioMessageError) as info:
        decode_twilio_inbound(frame)
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize(
    "frame",
    [b"", b"not json", b'{"event": "media"', b"[1, 2]", b"null", "\ud800", b"\xff\xfe"],
)
def test_input_that_is_not_a_json_object_raises_the_project_error(frame: bytes | str) -> None:
    with pytest.raises(TwilioMessageError):
        decode_twilio_inbound(frame)


def test_absurd_nesting_raises_the_project_error_not_recursion_error() -> None:
    deep = b'{"event": "connected", "protocol": "Call", "version": "1", "x": ' + b"[" * 100_000
    with pytest.raises(TwilioMessageError):
        decode_twilio_inbound(deep + b"]" * 100_000 + b"}")


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        pytest.param(b'{"event": "clear"}', "streamSid", id="clear-without-stream-sid"),
        pytest.param(b'{"event": "clear", "streamSid": "MZ", "x": 1}', "x", id="extra-field"),
        pytest.param(
            b'{"event": "media", "streamSid": "MZ", "media": {"payload": "%%"}}',
            "media.payload",
            id="bad-base64",
        ),
        pytest.param(b'{"event": "stop", "streamSid": "MZ"}', "event", id="inbound-only-event"),
        pytest.param(
            b'{"event": "mark", "streamSid": "MZ", "mark": {}}', "mark.name", id="mark-without-name"
        ),
    ],
)
def test_malformed_outbound_frame_names_the_field(frame: bytes, field: str) -> None:
    with pytest.raises(TwilioMessageError) as info:
        decode_twilio_outbound(frame)
    assert info.value.field == field


# ----------------------------------------------------------------------------- properties

counters = st.integers(min_value=0, max_value=2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=1024), seq=counters, chunk=counters, timestamp=counters)
def test_media_round_trips_for_any_payload_and_counters(
    payload: bytes, seq: int, chunk: int, timestamp: int
) -> None:
    msg = TwilioMedia(
        sequence_number=seq,
        stream_sid="MZ0123",
        media=MediaPayload(track="inbound", chunk=chunk, timestamp=timestamp, payload=payload),
    )
    assert decode_twilio_inbound(encode_twilio_inbound(msg)) == msg


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=1024), stream_sid=st.text(max_size=40))
def test_outbound_media_round_trips_for_any_payload(payload: bytes, stream_sid: str) -> None:
    msg = decode_twilio_outbound(encode_twilio_media(stream_sid, payload))
    assert msg == TwilioOutboundMedia(
        stream_sid=stream_sid, media=OutboundMediaPayload(payload=payload)
    )


def _json_values() -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    )


def _almost_twilio_frames() -> st.SearchStrategy[bytes]:
    """Frames that look like Twilio's, with any key replaced or dropped: exercises the validators."""
    frames = [json.loads(example) for example in INBOUND_EXAMPLES]

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        frame = dict(draw(st.sampled_from(frames)))
        key = draw(st.sampled_from(sorted(frame)))
        if draw(st.booleans()):
            frame[key] = draw(_json_values())
        else:
            del frame[key]
        return msgspec.json.encode(frame)

    return mutate()


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | _almost_twilio_frames()
)
def test_decode_raises_only_the_project_error(data: bytes) -> None:
    try:
        msg = decode_twilio_inbound(data)
    except TwilioMessageError:
        return
    assert isinstance(msg, TwilioInbound)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_decode_of_arbitrary_text_raises_only_the_project_error(text: str) -> None:
    for decode in (decode_twilio_inbound, decode_twilio_outbound):
        with contextlib.suppress(TwilioMessageError):
            decode(text)
