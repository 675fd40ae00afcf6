"""AWS event-stream framing for the emulator: a sans-I/O frame splitter and the Bedrock envelopes.

Theory of operation. The request body of ``InvokeModelWithBidirectionalStream`` is a byte stream of
AWS event-stream frames. Each frame starts with its 4-byte big-endian *total* length (prelude
included), so splitting needs nothing but that prefix: :class:`FrameSplitter` buffers whatever bytes
arrive (HTTP/2 DATA frames cut anywhere) and yields whole frames. Decoding and encoding a frame is the
SDK's own codec (``smithy_aws_event_stream.events``), so the emulator speaks exactly what the SDK
speaks; CRC failures surface as :class:`~actors.errors.RemoteProtocolError`.

Frames are nested on the way in: an *outer* signed frame (``:date``, ``:chunk-signature``) whose
payload is the *inner* frame (``:message-type=event``, ``:event-type=chunk``) whose payload is
``{"bytes":"<base64 Nova JSON>"}``. An outer frame with an empty payload marks the end of input.
:class:`RequestFrame` carries what the signature check needs (``:date``, ``:chunk-signature`` and
the signed bytes, the outer payload); :mod:`gateway.emulator.auth` checks it. On the way out frames
are unsigned: event frames carrying ``{"bytes": ...}`` and exception frames carrying
``{"message": ...}``.

Request frames are decoded on a fast path (:func:`decode_outer_frame`): the prelude and message
CRC32s are checked with ``zlib``, header blocks laid out exactly as the SDKs send them are
compared as bytes and others walked by a minimal parser, and only frames that do not pass (bad length or CRC, missing signature, wrong types) go through the SDK's codec,
which raises the precise error. The SDK's codec costs 25 us per 20 ms ``audioInput`` frame (two
nested messages, headers parsed in Python through ``BytesIO``), the fast path 7 us (one core of
the 2-core development VM); ``tests/emulator/test_emulator_framing.py`` checks both paths give the
same result on valid, generated and corrupted frames.

Everything here is synchronous and allocation-light; no I/O, no clocks.
"""

from __future__ import annotations

import datetime
import io
import struct
import zlib
from typing import Final, Literal, final

import msgspec
from smithy_aws_event_stream.events import Event, EventMessage
from smithy_aws_event_stream.exceptions import EventError

from actors.errors import RemoteProtocolError
from actors.wire import AudioInput

__all__ = [
    "EXCEPTION_KINDS",
    "MAX_FRAME_BYTES",
    "ExceptionKind",
    "FrameSplitter",
    "RequestFrame",
    "decode_audio_input",
    "decode_outer_frame",
    "decode_outer_frame_slow",
    "encode_event_frame",
    "encode_exception_frame",
]

# The SDK's limit: 16 MiB payload plus 128 KiB headers plus prelude and CRC.
MAX_FRAME_BYTES: Final = 16 * 1024 * 1024 + 128 * 1024 + 16
_PRELUDE: Final = 12
_PRELUDE_STRUCT: Final = struct.Struct(">III")
# Fixed value sizes by header type (event-stream spec); 6 (bytes) and 7 (string) carry a length.
_FIXED_SIZES: Final = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_SIGNATURE: Final = b":chunk-signature"
_DATE: Final = b":date"
_INNER_WANTED: Final = {b":message-type": b"event", b":event-type": b"chunk"}
_STRING: Final = 7
_BYTES: Final = 6
_TIMESTAMP: Final = 8
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_ONE_MS: Final = datetime.timedelta(milliseconds=1)
# The header blocks the SDKs send (name length, name, type, value): the outer frame's :date
# (8-byte epoch ms) then :chunk-signature (2-byte length 32, the signature); the inner frame's
# three strings. Anything else goes through the general header walk.
_SDK_DATE: Final = b"\x05:date\x08"
_SDK_SIGNATURE: Final = b"\x10:chunk-signature\x06\x00\x20"
_SDK_DATE_AT: Final = len(_SDK_DATE)
_SDK_SIGNATURE_AT: Final = _SDK_DATE_AT + 8
_SDK_SIGNATURE_END: Final = _SDK_SIGNATURE_AT + len(_SDK_SIGNATURE)
_SDK_OUTER_LEN: Final = _SDK_SIGNATURE_END + 32
_SDK_INNER: Final = (
    b"\x0d:message-type\x07\x00\x05event"
    b"\x0b:event-type\x07\x00\x05chunk"
    b"\x0d:content-type\x07\x00\x10application/json"
)

type ExceptionKind = Literal[
    "validationException",
    "modelTimeoutException",
    "throttlingException",
    "internalServerException",
    "modelStreamErrorException",
    "serviceUnavailableException",
]
EXCEPTION_KINDS: Final[tuple[ExceptionKind, ...]] = (
    "validationException",
    "modelTimeoutException",
    "throttlingException",
    "internalServerException",
    "modelStreamErrorException",
    "serviceUnavailableException",
)

_EVENT_HEADERS: Final = {
    ":message-type": "event",
    ":event-type": "chunk",
    ":content-type": "application/json",
}


@final
class FrameSplitter:
    """Cut a byte stream into whole event-stream frames (sans-I/O).

    Feed it bytes as they arrive with :meth:`feed`; each call returns the frames completed so far,
    in order. :meth:`buffered` tells how many bytes wait for the rest of their frame; a stream that
    ends with bytes buffered was truncated.
    """

    def __init__(self, *, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data`` and return every frame it completes.

        Raises:
            RemoteProtocolError: a length prefix is smaller than a frame can be or above the limit.
        """
        if not self._buffer and len(data) >= _PRELUDE + 4:
            # Usual case: one HTTP/2 DATA frame carries exactly one event frame.
            total = int.from_bytes(data[:4], "big")
            if total == len(data) and total <= self._max:
                return [data]
        self._buffer += data
        frames: list[bytes] = []
        buf = self._buffer
        start = 0
        while len(buf) - start >= 4:
            total = int.from_bytes(buf[start : start + 4], "big")
            if total < _PRELUDE + 4 or total > self._max:
                raise RemoteProtocolError(f"bad event-stream frame length {total}", field="prelude")
            if len(buf) - start < total:
                break
            frames.append(bytes(buf[start : start + total]))
            start += total
        if start:
            del buf[:start]
        return frames

    def buffered(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)


def _decode(frame: bytes) -> EventMessage:
    try:
        event = Event.decode(io.BytesIO(frame))
    except EventError as exc:
        raise RemoteProtocolError(f"invalid event bytes: {exc}", field="frame") from exc
    if event is None:
        raise RemoteProtocolError("empty event-stream frame", field="frame")
    return event.message


@final
class RequestFrame:
    """What one outer request frame carried.

    Attributes:
        payload: the inner chunk's ``{"bytes":...}`` JSON; None for the empty end-of-input frame.
        signed: the outer frame's payload, the bytes its signature covers (the inner message).
        date_ms: the ``:date`` header (epoch milliseconds); None unless it is a timestamp.
        signature: the ``:chunk-signature`` header; None unless it is a bytes value.
    """

    __slots__ = ("date_ms", "payload", "signature", "signed")

    def __init__(
        self,
        payload: bytes | None,
        *,
        signed: bytes = b"",
        date_ms: int | None = None,
        signature: bytes | None = None,
    ) -> None:
        self.payload = payload
        self.signed = signed
        self.date_ms = date_ms
        self.signature = signature


def decode_outer_frame(frame: bytes) -> RequestFrame:
    """Unwrap one signed request frame down to the inner chunk's JSON payload.

    The outer frame must carry ``:chunk-signature`` and the inner one must be an event of type
    ``chunk``; whether the signature is right is :mod:`gateway.emulator.auth`'s to check.

    Raises:
        RemoteProtocolError: bad CRC, missing signature, wrong message or event type.
    """
    fast = _fast_outer(frame)
    if fast is not None:
        return fast
    return decode_outer_frame_slow(frame)


def decode_outer_frame_slow(frame: bytes) -> RequestFrame:
    """:func:`decode_outer_frame` through the SDK's codec (the reference; precise errors)."""
    outer = _decode(frame)
    if ":chunk-signature" not in outer.headers:
        raise RemoteProtocolError("request frame is not signed", field=":chunk-signature")
    date = outer.headers.get(":date")
    signature = outer.headers.get(":chunk-signature")
    signed = RequestFrame(
        None,
        signed=outer.payload,
        # The codec gives a datetime from a float of seconds: round back to the milliseconds.
        date_ms=round((date - _EPOCH) / _ONE_MS) if isinstance(date, datetime.datetime) else None,
        signature=signature if isinstance(signature, bytes) else None,
    )
    if not outer.payload:
        return signed
    inner = _decode(outer.payload)
    headers = inner.headers
    if headers.get(":message-type") != "event":
        raise RemoteProtocolError(
            f"unexpected message type {headers.get(':message-type')!r}", field=":message-type"
        )
    if headers.get(":event-type") != "chunk":
        raise RemoteProtocolError(
            f"unexpected event type {headers.get(':event-type')!r}", field=":event-type"
        )
    signed.payload = inner.payload
    return signed


def _fast_outer(frame: bytes) -> RequestFrame | None:
    # None: not a frame the fast path vouches for; the slow path decides (and names the error).
    parts = _split_message(frame)
    if parts is None:
        return None
    headers, payload = parts
    if (
        len(headers) == _SDK_OUTER_LEN
        and headers.startswith(_SDK_DATE)
        and headers[_SDK_SIGNATURE_AT:_SDK_SIGNATURE_END] == _SDK_SIGNATURE
    ):
        # The layout every SDK sends (:date, then a 32-byte :chunk-signature): no header walk.
        date_ms: int | None = int.from_bytes(headers[_SDK_DATE_AT:_SDK_SIGNATURE_AT], signed=True)
        signature: bytes | None = headers[_SDK_SIGNATURE_END:]
    else:
        values = _walk_headers(headers)
        if values is None or _SIGNATURE not in values:
            return None
        date_kind, date_value = values.get(_DATE, (0, None))
        signature_kind, signature = values[_SIGNATURE]
        date_ms = None
        if date_kind == _TIMESTAMP and date_value is not None:
            date_ms = int.from_bytes(date_value, "big", signed=True)
        if signature_kind != _BYTES:
            signature = None
    result = RequestFrame(None, signed=payload, date_ms=date_ms, signature=signature)
    if not payload:
        return result
    inner = _split_message(payload)
    if inner is None:
        return None
    inner_headers, inner_payload = inner
    if inner_headers != _SDK_INNER:
        inner_values = _walk_headers(inner_headers)
        if inner_values is None:
            return None
        for name, wanted in _INNER_WANTED.items():
            if inner_values.get(name) != (_STRING, wanted):
                return None
    result.payload = inner_payload
    return result


def _split_message(message: bytes) -> tuple[bytes, bytes] | None:
    """``(header block, payload)`` of one whole message whose lengths and CRCs check out."""
    size = len(message)
    if size < _PRELUDE + 4:
        return None
    total, headers_length, prelude_crc = _PRELUDE_STRUCT.unpack_from(message)
    if total != size or _PRELUDE + headers_length + 4 > size:
        return None
    if zlib.crc32(message[:8]) != prelude_crc:
        return None
    if zlib.crc32(memoryview(message)[:-4]) != int.from_bytes(message[-4:], "big"):
        return None
    end = _PRELUDE + headers_length
    return message[_PRELUDE:end], message[end:-4]


def _walk_headers(block: bytes) -> dict[bytes, tuple[int, bytes | None]] | None:
    """Header names to ``(type, raw value)``: the value bytes of string (7), bytes (6) and
    timestamp (8) headers, None for other types. None if the block is malformed."""
    out: dict[bytes, tuple[int, bytes | None]] = {}
    size = len(block)
    i = 0
    while i < size:
        name_end = i + 1 + block[i]
        if name_end >= size:
            return None
        name = block[i + 1 : name_end]
        kind = block[name_end]
        i = name_end + 1
        value: bytes | None = None
        if kind in (_BYTES, _STRING):
            if i + 2 > size:
                return None
            length = int.from_bytes(block[i : i + 2], "big")
            value = block[i + 2 : i + 2 + length]
            i += 2 + length
        else:
            fixed = _FIXED_SIZES.get(kind)
            if fixed is None:
                return None
            if kind == _TIMESTAMP:
                value = block[i : i + fixed]
            i += fixed
        if i > size or name in out:
            return None
        out[name] = (kind, value)
    return out


class _AudioOnlyEvent(
    msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel", forbid_unknown_fields=True
):
    audio_input: AudioInput


class _AudioOnlyEnvelope(
    msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel", forbid_unknown_fields=True
):
    event: _AudioOnlyEvent


_AUDIO_ONLY: Final = msgspec.json.Decoder(_AudioOnlyEnvelope)


def decode_audio_input(event_json: bytes) -> AudioInput | None:
    """The ``audioInput`` body of a Nova input event that is exactly one, else None.

    The fast path for the event that makes up nearly all of the input: one typed decode of the
    same :class:`~actors.wire.AudioInput` struct (same field rules), no dispatch over the other
    event kinds. None means "not simply an audioInput": decode it with
    :func:`actors.wire.decode_input_event`, which accepts or rejects it with the precise error.
    """
    try:
        return _AUDIO_ONLY.decode(event_json).event.audio_input
    except msgspec.DecodeError:  # ValidationError included
        return None


def encode_event_frame(chunk_payload: bytes) -> bytes:
    """Frame one ``{"bytes":"<b64>"}`` payload as an unsigned response event."""
    return EventMessage(headers=_EVENT_HEADERS, payload=chunk_payload).encode()


def encode_exception_frame(kind: ExceptionKind, payload: bytes) -> bytes:
    """Frame one ``{"message":...}`` payload as a modelled exception of ``kind``."""
    headers = {
        ":message-type": "exception",
        ":exception-type": kind,
        ":content-type": "application/json",
    }
    return EventMessage(headers=headers, payload=payload).encode()
