"""Bedrock event-stream payload parts that carry Nova Sonic events (``{"bytes": "<base64 JSON>"}``).

Each Nova JSON event travels base64-encoded inside an inner ``chunk`` frame whose payload is
``{"bytes": "<base64>"}``; service errors travel as ``exception`` frames with ``{"message": "..."}``.
The SDK does this on the client side; the emulator uses these helpers on the server side. msgspec
does the JSON and the base64 in one pass. No I/O: framing (event-stream headers, lengths) is elsewhere.
"""

from __future__ import annotations

from typing import Final

import msgspec

from actors.wire.nova_sonic._common import DECODE_ERRORS, ENCODER, event_error

__all__ = [
    "ChunkPayload",
    "ExceptionPayload",
    "decode_chunk_payload",
    "decode_exception_payload",
    "encode_chunk_payload",
    "encode_exception_payload",
]


class ChunkPayload(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Payload of an event-stream ``chunk`` frame: ``{"bytes": "<base64 of one Nova JSON event>"}``."""

    bytes_: bytes = msgspec.field(name="bytes")


class ExceptionPayload(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Payload of an event-stream ``exception`` frame: ``{"message": "..."}``."""

    message: str


_CHUNK_DECODER: Final = msgspec.json.Decoder(ChunkPayload)
_EXCEPTION_DECODER: Final = msgspec.json.Decoder(ExceptionPayload)


def encode_chunk_payload(event_json: bytes) -> bytes:
    """Wrap one Nova JSON event as a chunk frame payload."""
    return ENCODER.encode(ChunkPayload(bytes_=event_json))


def decode_chunk_payload(data: bytes | str) -> bytes:
    """Unwrap a chunk frame payload into the Nova JSON event bytes.

    Raises:
        SonicEventError: not JSON, no ``bytes`` member, or ``bytes`` is not base64.
    """
    try:
        return _CHUNK_DECODER.decode(data).bytes_
    except DECODE_ERRORS as exc:
        raise event_error(exc, "chunk payload") from exc


def encode_exception_payload(message: str) -> bytes:
    """Build an exception frame payload (the emulator's error injection)."""
    return ENCODER.encode(ExceptionPayload(message=message))


def decode_exception_payload(data: bytes | str) -> str:
    """Return the ``message`` of an exception frame payload.

    Raises:
        SonicEventError: not JSON or no string ``message``.
    """
    try:
        return _EXCEPTION_DECODER.decode(data).message
    except DECODE_ERRORS as exc:
        raise event_error(exc, "exception payload") from exc
