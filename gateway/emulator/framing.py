"""AWS event-stream framing for the emulator: a sans-I/O frame splitter and the Bedrock envelopes.

Theory of operation. The request body of ``InvokeModelWithBidirectionalStream`` is a byte stream of
AWS event-stream frames. Each frame starts with its 4-byte big-endian *total* length (prelude
included), so splitting needs nothing but that prefix: :class:`FrameSplitter` buffers whatever bytes
arrive (HTTP/2 DATA frames cut anywhere) and yields whole frames. Decoding and encoding a frame is the
SDK's own codec (``smithy_aws_event_stream.events``), so the emulator speaks exactly what the SDK
speaks; CRC failures surface as :class:`~actors.errors.RemoteProtocolError`.

Frames are nested on the way in (reference §8): an *outer* signed frame (``:date``,
``:chunk-signature``) whose payload is the *inner* frame (``:message-type=event``,
``:event-type=chunk``) whose payload is ``{"bytes":"<base64 Nova JSON>"}``. An outer frame with an
empty payload marks the end of input. On the way out frames are unsigned: event frames carrying
``{"bytes": ...}`` and exception frames carrying ``{"message": ...}``.

Request frames are decoded on a fast path (:func:`decode_outer_frame`): the prelude and message
CRC32s are checked with ``zlib``, the few headers are walked by a minimal parser, and only frames
that do not pass (bad length or CRC, missing signature, wrong types) go through the SDK's codec,
which raises the precise error. The SDK's codec costs 25 us per 20 ms ``audioInput`` frame (two
nested messages, headers parsed in Python through ``BytesIO``), the fast path 7 us (one core of
the 2-core development VM); ``tests/emulator/test_emulator_framing.py`` checks both paths give the
same result on valid, generated and corrupted frames.

Everything here is synchronous and allocation-light; no I/O, no clocks.
"""

from __future__ import annotations

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
    "InnerChunk",
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
_INNER_WANTED: Final = {b":message-type": b"event", b":event-type": b"chunk"}

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
class InnerChunk:
    """What one outer request frame carried: ``payload`` is the inner ``{"bytes":...}`` JSON.

    ``payload`` is None for the empty end-of-input frame.
    """

    __slots__ = ("payload",)

    def __init__(self, payload: bytes | None) -> None:
        self.payload = payload


def decode_outer_frame(frame: bytes) -> InnerChunk:
    """Unwrap one signed request frame down to the inner chunk's JSON payload.

    Signatures are not checked (the emulator accepts any credentials), but the outer frame must be
    signed and the inner one must be an event of type ``chunk``.

    Raises:
        RemoteProtocolError: bad CRC, missing signature, wrong message or event type.
    """
    fast = _fast_outer(frame)
    if fast is not None:
        return fast
    return decode_outer_frame_slow(frame)


def decode_outer_frame_slow(frame: bytes) -> InnerChunk:
    """:func:`decode_outer_frame` through the SDK's codec (the reference; precise errors)."""
    outer = _decode(frame)
    if ":chunk-signature" not in outer.headers:
        raise RemoteProtocolError("request frame is not signed", field=":chunk-signature")
    if not outer.payload:
        return InnerChunk(None)
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
    return InnerChunk(inner.payload)


def _fast_outer(frame: bytes) -> InnerChunk | None:
    # None: not a frame the fast path vouches for; the slow path decides (and names the error).
    parts = _split_message(frame)
    if parts is None:
        return None
    headers, payload = parts
    names = _walk_headers(headers)
    if names is None or _SIGNATURE not in names:
        return None
    if not payload:
        return InnerChunk(None)
    inner = _split_message(payload)
    if inner is None:
        return None
    inner_headers, inner_payload = inner
    values = _walk_headers(inner_headers)
    if values is None:
        return None
    for name, wanted in _INNER_WANTED.items():
        if values.get(name) != wanted:
            return None
    return InnerChunk(inner_payload)


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


def _walk_headers(block: bytes) -> dict[bytes, bytes | None] | None:
    """Header names to string values (None for other types); None if the block is malformed."""
    out: dict[bytes, bytes | None] = {}
    size = len(block)
    i = 0
    while i < size:
        name_end = i + 1 + block[i]
        if name_end >= size:
            return None
        name = block[i + 1 : name_end]
        kind = block[name_end]
        i = name_end + 1
        if kind in (6, 7):
            if i + 2 > size:
                return None
            length = int.from_bytes(block[i : i + 2], "big")
            value = block[i + 2 : i + 2 + length] if kind == 7 else None
            i += 2 + length
        else:
            fixed = _FIXED_SIZES.get(kind)
            if fixed is None:
                return None
            value = None
            i += fixed
        if i > size or name in out:
            return None
        out[name] = value
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
