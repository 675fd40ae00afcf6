"""Twilio Media Streams frames as msgspec Structs: decode, encode, no I/O.

Theory of operation (Twilio's Media Streams WebSocket messages):

* Every frame is one JSON text message tagged on ``event``. Inbound frames (Twilio → us) decode into
  the closed union :data:`TwilioInbound` through ONE module-level typed decoder built with
  ``strict=False``: Twilio sends ``sequenceNumber``, ``media.chunk`` and ``media.timestamp`` as JSON
  strings (``"3"``) and msgspec turns them into ``int`` in the same pass, while ``media.payload`` (a
  ``bytes`` field) is base64-decoded in that pass too (about 1 µs per 20 ms frame, docs/performance.md §2).
* Strictness: Twilio may add fields, so unknown fields are ignored; an unknown ``event`` is not a
  message we understand, so it is an error. Every failure (not JSON, unknown event, missing or
  wrongly typed field, bad base64, negative number, a ``media.payload`` over
  :data:`MAX_MEDIA_PAYLOAD_BYTES`) raises :class:`TwilioMessageError` naming the
  field (``"media.payload"``); decoders never return None.
* Outbound frames (us → Twilio) are :data:`TwilioOutbound`; the ``encode_twilio_*`` helpers are the
  hot path (one Struct, one reusable encoder; no dict, no ``json.dumps``). Outbound structs decode
  strictly (unknown fields rejected): Twilio answers an extra field with error 31951, and the
  simulated peer should catch it first.
* Peer side: the simulated Twilio peer encodes inbound frames the way Twilio does, numbers as
  strings, through private peer-side Structs (:func:`encode_twilio_inbound`), and decodes our
  outbound frames (:func:`decode_twilio_outbound`).
* Message ORDER is checked by :class:`TwilioStreamValidator` (module ``twilio_stream``); this
  module checks shape only.
"""

from __future__ import annotations

from typing import Annotated, Final, assert_never

import msgspec

from actors.errors import RemoteProtocolError
from actors.wire._paths import DECODE_ERRORS, describe

__all__ = [
    "MAX_MEDIA_PAYLOAD_BYTES",
    "DtmfPayload",
    "MarkPayload",
    "MediaFormat",
    "MediaPayload",
    "OutboundMediaPayload",
    "StartMetadata",
    "StopMetadata",
    "TwilioConnected",
    "TwilioDtmf",
    "TwilioInbound",
    "TwilioMark",
    "TwilioMedia",
    "TwilioMessageError",
    "TwilioOutbound",
    "TwilioOutboundClear",
    "TwilioOutboundMark",
    "TwilioOutboundMedia",
    "TwilioStart",
    "TwilioStop",
    "decode_twilio_inbound",
    "decode_twilio_outbound",
    "encode_twilio_clear",
    "encode_twilio_inbound",
    "encode_twilio_mark",
    "encode_twilio_media",
    "encode_twilio_outbound",
]


class TwilioMessageError(RemoteProtocolError):
    """A Twilio Media Streams frame is malformed or out of order; ``field`` names the culprit."""


# Counters Twilio numbers from 1; negative values are malformed, not merely odd.
Counter = Annotated[int, msgspec.Meta(ge=0)]

MAX_MEDIA_PAYLOAD_BYTES: Final = 1600
"""Largest decoded ``media.payload`` accepted (200 ms of 8 kHz μ-law). Twilio sends 160 bytes per
20 ms frame; ten frames' worth leaves room for any batching while keeping what one frame can pin
in a mailbox small (a 64 KiB WebSocket message could otherwise carry ~47 KB of audio)."""


class _Part(msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel"):
    """Nested object of a frame: camelCase keys, unknown keys ignored."""


class _Inbound(
    msgspec.Struct, frozen=True, kw_only=True, gc=False, rename="camel", tag_field="event"
):
    """Inbound frame: tagged on ``event``, camelCase keys, unknown keys ignored."""


class _Outbound(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    gc=False,
    rename="camel",
    tag_field="event",
    forbid_unknown_fields=True,
):
    """Outbound frame: tagged on ``event``, camelCase keys, unknown keys rejected."""


# --------------------------------------------------------------------------------------------------
# Inbound (Twilio → us).


class MediaFormat(_Part, frozen=True, kw_only=True):
    """``start.mediaFormat``: always ``audio/x-mulaw``, 8000 Hz, 1 channel on Twilio."""

    encoding: str
    sample_rate: int
    channels: int


class StartMetadata(_Part, frozen=True, kw_only=True):
    """``start.start``: the call's identity, tracks, ``<Parameter>`` values and audio format."""

    account_sid: str
    stream_sid: str
    call_sid: str
    tracks: list[str]
    custom_parameters: dict[str, str] = msgspec.field(default_factory=dict)
    media_format: MediaFormat


class MediaPayload(_Part, frozen=True, kw_only=True):
    """``media.media``: one chunk of caller audio; ``payload`` is raw μ-law (base64 on the wire)."""

    track: str
    chunk: Counter
    timestamp: Counter
    payload: Annotated[bytes, msgspec.Meta(max_length=MAX_MEDIA_PAYLOAD_BYTES)]


class DtmfPayload(_Part, frozen=True, kw_only=True):
    """``dtmf.dtmf``: one keypad digit (PII: log under a ``pii`` key)."""

    track: str
    digit: str


class MarkPayload(_Part, frozen=True, kw_only=True):
    """``mark.mark``: a mark's name, inbound (the echo) and outbound (the request)."""

    name: str


class StopMetadata(_Part, frozen=True, kw_only=True):
    """``stop.stop``: which call's stream ended."""

    account_sid: str
    call_sid: str


class TwilioConnected(_Inbound, frozen=True, kw_only=True, tag="connected"):
    """First frame, once: the WebSocket is connected."""

    protocol: str
    version: str


class TwilioStart(_Inbound, frozen=True, kw_only=True, tag="start"):
    """Second frame, once: stream metadata."""

    sequence_number: Counter
    stream_sid: str
    start: StartMetadata


class TwilioMedia(_Inbound, frozen=True, kw_only=True, tag="media"):
    """Caller audio."""

    sequence_number: Counter
    stream_sid: str
    media: MediaPayload


class TwilioDtmf(_Inbound, frozen=True, kw_only=True, tag="dtmf"):
    """A keypad digit (bidirectional streams only)."""

    sequence_number: Counter
    stream_sid: str
    dtmf: DtmfPayload


class TwilioMark(_Inbound, frozen=True, kw_only=True, tag="mark"):
    """Echo of a mark we sent: its audio was played OR cleared."""

    sequence_number: Counter
    stream_sid: str
    mark: MarkPayload


class TwilioStop(_Inbound, frozen=True, kw_only=True, tag="stop"):
    """The stream or call ended; nothing follows."""

    sequence_number: Counter
    stream_sid: str
    stop: StopMetadata


TwilioInbound = TwilioConnected | TwilioStart | TwilioMedia | TwilioDtmf | TwilioMark | TwilioStop

# One typed decoder, reused: strict=False turns "3" into 3 for the int fields.
_INBOUND_DECODER: Final[msgspec.json.Decoder[TwilioInbound]] = msgspec.json.Decoder(
    TwilioInbound, strict=False
)
_ENCODER: Final = msgspec.json.Encoder()


def _message_error(exc: Exception, what: str) -> TwilioMessageError:
    problem, field = describe(exc)
    # Bytes that do not decode (not JSON, bad base64, bad text) are an invalid payload; valid
    # JSON that is not a Twilio frame (unknown event, missing or mistyped field) breaks the protocol.
    undecodable = not isinstance(exc, msgspec.ValidationError) or problem.startswith(
        "Invalid base64"
    )
    return TwilioMessageError(
        f"malformed {what}: {problem}",
        field=field,
        kind="invalid_payload" if undecodable else None,
    )


def decode_twilio_inbound(data: bytes | str) -> TwilioInbound:
    """Decode one frame from Twilio (numbers as strings become ints; payload becomes bytes).

    Raises:
        TwilioMessageError: not JSON, unknown ``event``, missing or wrongly typed field, bad
            base64; ``field`` names the path (``"media.payload"``, ``"sequenceNumber"``);
            ``kind`` is ``"invalid_payload"`` for bytes that do not decode (not JSON, bad base64)
            and ``"protocol_error"`` otherwise.
    """
    try:
        return _INBOUND_DECODER.decode(data)
    except DECODE_ERRORS as exc:
        raise _message_error(exc, "Twilio frame") from exc


# --------------------------------------------------------------------------------------------------
# Outbound (us → Twilio).


class OutboundMediaPayload(_Part, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``media.media`` outbound: raw μ-law bytes of any length (base64 on the wire)."""

    payload: bytes


class TwilioOutboundMedia(_Outbound, frozen=True, kw_only=True, tag="media"):
    """Queue audio for playback to the caller."""

    stream_sid: str
    media: OutboundMediaPayload


class TwilioOutboundMark(_Outbound, frozen=True, kw_only=True, tag="mark"):
    """Ask Twilio to echo ``mark.name`` once the audio queued before it has played (or is cleared)."""

    stream_sid: str
    mark: MarkPayload


class TwilioOutboundClear(_Outbound, frozen=True, kw_only=True, tag="clear"):
    """Drop all queued audio; Twilio echoes every pending mark."""

    stream_sid: str


TwilioOutbound = TwilioOutboundMedia | TwilioOutboundMark | TwilioOutboundClear

_OUTBOUND_DECODER: Final[msgspec.json.Decoder[TwilioOutbound]] = msgspec.json.Decoder(
    TwilioOutbound
)


def encode_twilio_outbound(msg: TwilioOutbound) -> bytes:
    """Encode one frame for Twilio."""
    return _ENCODER.encode(msg)


def encode_twilio_media(stream_sid: str, payload: bytes) -> bytes:
    """Encode a ``media`` frame from raw μ-law bytes (hot path: JSON + base64 in one pass)."""
    return _ENCODER.encode(
        TwilioOutboundMedia(stream_sid=stream_sid, media=OutboundMediaPayload(payload=payload))
    )


def encode_twilio_mark(stream_sid: str, name: str) -> bytes:
    """Encode a ``mark`` frame."""
    return _ENCODER.encode(TwilioOutboundMark(stream_sid=stream_sid, mark=MarkPayload(name=name)))


def encode_twilio_clear(stream_sid: str) -> bytes:
    """Encode a ``clear`` frame."""
    return _ENCODER.encode(TwilioOutboundClear(stream_sid=stream_sid))


def decode_twilio_outbound(data: bytes | str) -> TwilioOutbound:
    """Decode one of our frames as Twilio would (the simulated peer's side).

    Raises:
        TwilioMessageError: not JSON, unknown ``event``, missing, extra or wrongly typed field, bad
            base64; ``field`` names the path.
    """
    try:
        return _OUTBOUND_DECODER.decode(data)
    except DECODE_ERRORS as exc:
        raise _message_error(exc, "outbound frame") from exc


# --------------------------------------------------------------------------------------------------
# Peer side: inbound frames encoded as Twilio sends them, counters as JSON strings.


class _PeerMediaPayload(_Part, frozen=True, kw_only=True):
    track: str
    chunk: str
    timestamp: str
    payload: bytes


class _PeerStart(_Inbound, frozen=True, kw_only=True, tag="start"):
    sequence_number: str
    stream_sid: str
    start: StartMetadata


class _PeerMedia(_Inbound, frozen=True, kw_only=True, tag="media"):
    sequence_number: str
    stream_sid: str
    media: _PeerMediaPayload


class _PeerDtmf(_Inbound, frozen=True, kw_only=True, tag="dtmf"):
    sequence_number: str
    stream_sid: str
    dtmf: DtmfPayload


class _PeerMark(_Inbound, frozen=True, kw_only=True, tag="mark"):
    sequence_number: str
    stream_sid: str
    mark: MarkPayload


class _PeerStop(_Inbound, frozen=True, kw_only=True, tag="stop"):
    sequence_number: str
    stream_sid: str
    stop: StopMetadata


def encode_twilio_inbound(msg: TwilioInbound) -> bytes:
    """Encode an inbound frame exactly as Twilio does (the simulated peer's side).

    ``sequenceNumber``, ``media.chunk`` and ``media.timestamp`` go out as JSON strings; everything
    else as in :data:`TwilioInbound`.
    """
    match msg:
        case TwilioConnected():
            return _ENCODER.encode(msg)
        case TwilioStart():
            peer: msgspec.Struct = _PeerStart(
                sequence_number=str(msg.sequence_number), stream_sid=msg.stream_sid, start=msg.start
            )
        case TwilioMedia(media=media):
            peer = _PeerMedia(
                sequence_number=str(msg.sequence_number),
                stream_sid=msg.stream_sid,
                media=_PeerMediaPayload(
                    track=media.track,
                    chunk=str(media.chunk),
                    timestamp=str(media.timestamp),
                    payload=media.payload,
                ),
            )
        case TwilioDtmf():
            peer = _PeerDtmf(
                sequence_number=str(msg.sequence_number), stream_sid=msg.stream_sid, dtmf=msg.dtmf
            )
        case TwilioMark():
            peer = _PeerMark(
                sequence_number=str(msg.sequence_number), stream_sid=msg.stream_sid, mark=msg.mark
            )
        case TwilioStop():
            peer = _PeerStop(
                sequence_number=str(msg.sequence_number), stream_sid=msg.stream_sid, stop=msg.stop
            )
        case _:
            assert_never(msg)
    return _ENCODER.encode(peer)
