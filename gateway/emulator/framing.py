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

Everything here is synchronous and allocation-light; no I/O, no clocks.
"""

from __future__ import annotations

import io
from typing import Final, Literal, final

from smithy_aws_event_stream.events import Event, EventMessage
from smithy_aws_event_stream.exceptions import EventError

from actors.errors import RemoteProtocolError

__all__ = [
    "EXCEPTION_KINDS",
    "MAX_FRAME_BYTES",
    "ExceptionKind",
    "FrameSplitter",
    "InnerChunk",
    "decode_outer_frame",
    "encode_event_frame",
    "encode_exception_frame",
]

# The SDK's limit: 16 MiB payload plus 128 KiB headers plus prelude and CRC.
MAX_FRAME_BYTES: Final = 16 * 1024 * 1024 + 128 * 1024 + 16
_PRELUDE: Final = 12

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
