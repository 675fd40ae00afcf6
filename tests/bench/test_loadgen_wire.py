"""The load generator's wire: client frames match ``websockets``, Twilio messages decode as the
gateway decodes them, server frames and gateway messages parse."""

from __future__ import annotations

import base64

import pytest
from loadgen_core import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    CallMessages,
    FrameReader,
    GatewayMessage,
    WireError,
    client_frame,
    encode_b64_frames,
    mask,
    parse_gateway_message,
)
from websockets import frames as ws_frames
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from actors.wire import (
    TwilioConnected,
    TwilioMark,
    TwilioMedia,
    TwilioStart,
    TwilioStop,
    TwilioStreamValidator,
    decode_twilio_inbound,
    encode_twilio_clear,
    encode_twilio_mark,
    encode_twilio_media,
)

KEY = b"\x8a\x17\x00\xfe"


def websockets_client_frame(
    monkeypatch: pytest.MonkeyPatch, opcode: Opcode, payload: bytes, key: bytes
) -> bytes:
    """What ``websockets`` sends for ``payload`` when its random masking key is ``key``."""
    monkeypatch.setattr(ws_frames.secrets, "token_bytes", lambda n: key[:n])
    return Frame(opcode, payload).serialize(mask=True)


def parse_as_server(data: bytes) -> list[Frame]:
    """Parse client frames as a ``websockets`` server does (unmasking, checks)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out: list[Frame] = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=True)
        try:
            next(parser)
        except StopIteration as done:
            out.append(done.value)
        else:
            raise AssertionError("incomplete frame")
    return out


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 127, 390, 65535, 65536, 70001])
@pytest.mark.parametrize("key", [KEY, b"\x00\x00\x00\x00", b"\xff\xff\xff\xff"])
def test_client_frame_is_what_websockets_sends(
    monkeypatch: pytest.MonkeyPatch, size: int, key: bytes
) -> None:
    payload = bytes((i * 7 + 3) % 256 for i in range(size))
    ours = client_frame(OP_TEXT, payload, key)
    assert ours == websockets_client_frame(monkeypatch, Opcode.TEXT, payload, key)


def test_control_frames_are_what_websockets_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    close = Close(1000, "").serialize()
    assert client_frame(OP_CLOSE, close, KEY) == websockets_client_frame(
        monkeypatch, Opcode.CLOSE, close, KEY
    )
    assert client_frame(OP_PONG, b"hi", KEY) == websockets_client_frame(
        monkeypatch, Opcode.PONG, b"hi", KEY
    )


def test_mask_is_its_own_inverse() -> None:
    data = bytes(range(256)) * 3
    assert mask(mask(data, KEY), KEY) == data
    assert mask(b"", KEY) == b""


def test_call_messages_decode_as_the_gateway_decodes_them() -> None:
    speech = encode_b64_frames(bytes(range(200)))  # two frames, the last padded
    assert [len(base64.b64decode(f)) for f in speech] == [160, 160]
    messages = CallMessages(
        call_sid="CA" + "1" * 32,
        stream_sid="MZ" + "2" * 32,
        account_sid="AC" + "3" * 32,
        custom_parameters={"callSid": "CA" + "1" * 32, "from": "+15550100"},
        key=KEY,
    )
    stream = b"".join(
        [
            messages.connected(),
            messages.start(),
            messages.media(speech[0]),
            messages.mark(b"0:1"),
            messages.media(speech[1]),
            messages.stop(),
            messages.close(1000),
        ]
    )
    frames = parse_as_server(stream)
    assert [f.opcode for f in frames] == [Opcode.TEXT] * 6 + [Opcode.CLOSE]
    assert Close.parse(frames[-1].data).code == 1000
    decoded = [decode_twilio_inbound(bytes(f.data)) for f in frames[:-1]]
    validator = TwilioStreamValidator()
    for msg in decoded:
        validator.feed(msg)
    assert validator.statistics().sequence_gaps == 0
    connected, start, media1, mark, media2, stop = decoded
    assert isinstance(connected, TwilioConnected)
    assert isinstance(start, TwilioStart)
    assert start.sequence_number == 1
    assert start.start.call_sid == "CA" + "1" * 32
    assert start.start.custom_parameters == {"callSid": "CA" + "1" * 32, "from": "+15550100"}
    fmt = start.start.media_format
    assert (fmt.encoding, fmt.sample_rate, fmt.channels) == ("audio/x-mulaw", 8000, 1)
    assert isinstance(media1, TwilioMedia)
    assert isinstance(media2, TwilioMedia)
    assert (media1.sequence_number, media1.media.chunk, media1.media.timestamp) == (2, 1, 0)
    assert (media2.sequence_number, media2.media.chunk, media2.media.timestamp) == (4, 2, 20)
    assert media1.media.payload == bytes(range(160))
    assert media2.media.payload == bytes(range(160, 200)) + b"\xff" * 120
    assert isinstance(mark, TwilioMark)
    assert (mark.sequence_number, mark.mark.name) == (3, "0:1")
    assert isinstance(stop, TwilioStop)
    assert stop.sequence_number == 5
    assert stop.stop.call_sid == "CA" + "1" * 32
    assert messages.frames_sent == 2


def server_frame(opcode: Opcode, payload: bytes, *, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=False)


def test_frame_reader_cuts_messages_from_any_split() -> None:
    big = b"x" * 70000
    stream = b"".join(
        [
            server_frame(Opcode.TEXT, b'{"event":"clear"}'),
            server_frame(Opcode.TEXT, b"frag", fin=False),
            server_frame(Opcode.PING, b"p"),  # control frames may come between fragments
            server_frame(Opcode.CONT, b"mented", fin=True),
            server_frame(Opcode.TEXT, big),
            server_frame(Opcode.TEXT, b"y" * 300),
            server_frame(Opcode.CLOSE, Close(1000, "").serialize()),
        ]
    )
    expected = [
        (OP_TEXT, b'{"event":"clear"}'),
        (OP_PING, b"p"),
        (OP_TEXT, b"fragmented"),
        (OP_TEXT, big),
        (OP_TEXT, b"y" * 300),
        (OP_CLOSE, b"\x03\xe8"),
    ]
    for step in (1, 2, 3, 7, 1000, len(stream)):
        reader = FrameReader()
        got: list[tuple[int, bytes]] = []
        for i in range(0, len(stream), step):
            got.extend(reader.feed(stream[i : i + step]))
        assert got == expected, step


def test_frame_reader_rejects_a_masked_server_frame() -> None:
    with pytest.raises(WireError, match="masked"):
        FrameReader().feed(client_frame(OP_TEXT, b"hello", KEY))


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 159, 160, 161, 320, 4000])
def test_media_length_without_base64_decoding(size: int) -> None:
    data = encode_twilio_media("MZ" + "2" * 32, bytes(size))
    assert parse_gateway_message(data) == (GatewayMessage.MEDIA, size, b"")


def test_mark_clear_and_unknown_messages() -> None:
    stream_sid = "MZ" + "2" * 32
    assert parse_gateway_message(encode_twilio_mark(stream_sid, "3:17")) == (
        GatewayMessage.MARK,
        0,
        b"3:17",
    )
    assert parse_gateway_message(encode_twilio_clear(stream_sid)) == (GatewayMessage.CLEAR, 0, b"")
    assert parse_gateway_message(b'{"event":"dtmf","x":1}') == (GatewayMessage.OTHER, 0, b"")
    with pytest.raises(WireError):
        parse_gateway_message(b"not json")
    with pytest.raises(WireError):
        parse_gateway_message(b'{"event":"media"}')
