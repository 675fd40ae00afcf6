"""The lean input path of a Sonic stream: our own event-stream framing and SigV4 chunk signing.

Why: the SDK's publisher spends its CPU per event on shape serialisation, an
:class:`~smithy_aws_event_stream.events.EventMessage` per layer, four HMACs to re-derive the
signing key, date formatting and an asyncio lock. :class:`ChunkSigner` produces the SAME bytes
with one SHA-256 of the payload and one HMAC (from SHA-256 states keyed once per day) per event,
plus one SHA-256 of the date header per unit: ~10 µs per 20 ms ``audioInput`` event instead of
~0.2 ms for the SDK publisher's send (figures: ``scripts/bench_sonic.py --input-only``; proof of
identity: ``tests/sonic/test_event_writer.py`` drives the SDK's own publisher and signer with the
same keys and clock).

What goes on the wire per input event (the SDK's ``AWSEventPublisher.send`` of
``InvokeModelWithBidirectionalStreamInputChunk(value=BidirectionalInputPayloadPart(bytes_=data))``
through ``aws_sdk_signers.AsyncEventSigner``):

* the inner message: string headers ``:message-type=event``, ``:event-type=chunk``,
  ``:content-type=application/json`` (in that order), payload ``{"bytes":"<base64 of data>"}``;
* the outer message: headers ``:date`` (timestamp, epoch milliseconds) and ``:chunk-signature``
  (32 raw bytes), payload the whole inner message;
* the signature: HMAC-SHA256 with the SigV4 signing key over the string to sign
  ``AWS4-HMAC-SHA256-PAYLOAD\\n<YYYYMMDDTHHMMSSZ>\\n<date>/<region>/<service>/aws4_request\\n
  <prior signature hex>\\n<sha256 hex of the encoded :date header>\\n<sha256 hex of the payload>``.
  Each event's signature (hex) is the prior signature of the next; the first prior is the
  request's own signature.

The shell, :class:`LeanInputWriter`, takes over from the SDK's publisher once the stream is open:
the SDK keeps the credentials, the request signature, the HTTP/2 stream, receiving, and the close
(its signed empty end frame). The chain has ONE home, the SDK signer's prior signature: we read it,
sign a unit, write it, and store the unit's last signature back, so the SDK's own ``close()``
continues the chain. Before taking over, it checks the SDK still looks like the version this was
written against, and proves it on a probe event: the SDK serialiser's inner message and a fresh SDK
signer's outer frame must equal ours byte for byte (~0.2 ms of CPU, once per stream). Otherwise
:func:`open_input_writer` returns :class:`SdkInputWriter` (the SDK publisher, per event) and logs
why, once per reason.
"""

from __future__ import annotations

import contextlib
import datetime
import struct
import time
from binascii import b2a_base64, hexlify
from typing import TYPE_CHECKING, Any, Final, Protocol, final
from zlib import crc32  # unsigned in Python 3, as the event-stream CRCs are

import structlog
from aws_sdk_bedrock_runtime.models import (  # type: ignore[import-untyped]  # no py.typed in 0.12
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
)
from smithy_aws_event_stream.events import EventHeaderEncoder

from actors.sonic.credentials import PinnedIdentityResolver
from actors.wire.sigv4 import EMPTY_SHA256_HEX, EVENT_DATE_HEADER, EventSigningKey, sha256_hex

if TYPE_CHECKING:
    from collections.abc import Callable

    from smithy_aws_core.identity import AWSCredentialsIdentity

__all__ = [
    "ChunkSigner",
    "InputWriter",
    "LeanInputWriter",
    "SdkInputWriter",
    "close_input",
    "discard_input",
    "open_input_writer",
]

_log = structlog.get_logger("actors.sonic.event_writer")

_PRELUDE: Final = struct.Struct(">II").pack  # total length, headers length
_CRC: Final = struct.Struct(">I").pack

# Header wire format: name length (1 byte), name, type (7 = string, 8 = timestamp, 6 = bytes),
# then a 2-byte length and the value, or 8 bytes of epoch milliseconds for a timestamp.
_INNER_HEADERS: Final = (
    b"\x0d:message-type\x07\x00\x05event"
    b"\x0b:event-type\x07\x00\x05chunk"
    b"\x0d:content-type\x07\x00\x10application/json"
)
_SIGNATURE_HEADER: Final = b"\x10:chunk-signature\x06\x00\x20"  # + the 32-byte signature
_OUTER_HEADERS_LEN: Final = len(EVENT_DATE_HEADER) + 8 + len(_SIGNATURE_HEADER) + 32
_INNER_LEN: Final = 16 + len(_INNER_HEADERS)  # prelude (12) + message CRC (4) + headers
_PAYLOAD_HEAD: Final = b'{"bytes":"'
_PAYLOAD_TAIL: Final = b'"}'
_PAYLOAD_LEN: Final = len(_PAYLOAD_HEAD) + len(_PAYLOAD_TAIL)
_MAX_PAYLOAD: Final = 16 * 1024**2  # the event-stream limit the SDK enforces
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_ONE_US: Final = datetime.timedelta(microseconds=1)


def _wall_clock_us() -> int:
    """Wall-clock time in epoch microseconds: SigV4 signs real time (the SDK reads it per event)."""
    return time.time_ns() // 1000


def _chunk_event(data: bytes) -> Any:
    """The SDK shape of one input event (for the SDK publisher)."""
    return InvokeModelWithBidirectionalStreamInputChunk(
        value=BidirectionalInputPayloadPart(bytes_=data)
    )


# ---------------------------------------------------------------------------- sans-I/O core


@final
class ChunkSigner:
    """Frames and signs input events exactly as the SDK's publisher and event signer do. No I/O.

    The signing math is :class:`actors.wire.sigv4.EventSigningKey` (shared with the emulator's
    verifier): the signing key is cached per UTC day, the timestamp text per second.

    Args:
        secret_access_key: the stream's (pinned) secret key.
        region: the signing Region (the SDK's ``signing_properties["region"]``).
        service: the signing service name (``"bedrock"``).
    """

    __slots__ = ("_key",)

    def __init__(self, *, secret_access_key: str, region: str, service: str) -> None:
        self._key = EventSigningKey(
            secret_access_key=secret_access_key, region=region, service=service
        )

    def inner_message(self, data: bytes) -> bytes:
        """The unsigned event message carrying ``data`` (the SDK serialiser's output, encoded)."""
        payload_len = _PAYLOAD_LEN + (len(data) + 2) // 3 * 4
        prelude = _PRELUDE(_INNER_LEN + payload_len, len(_INNER_HEADERS))
        message = b"".join(
            (
                prelude,
                _CRC(crc32(prelude)),
                _INNER_HEADERS,
                _PAYLOAD_HEAD,
                b2a_base64(data, newline=False),
                _PAYLOAD_TAIL,
            )
        )
        return message + _CRC(crc32(message))

    def sign_frames(self, events: list[bytes], now_us: int, prior: bytes) -> tuple[bytes, bytes]:
        """Frame and sign ``events`` in order, all dated ``now_us``; return (wire bytes, last signature).

        Args:
            events: event JSON documents (what the SDK shape's ``bytes_`` would hold).
            now_us: the signing time, epoch microseconds (the SDK reads ``datetime.now(UTC)``).
            prior: the chain's prior signature, lowercase hex as ASCII bytes.

        Returns:
            The concatenated outer frames, and the hex signature of the last one (the next prior).
        """
        prefix, date_header, date_hash = self._date_parts(now_us)
        frames: list[bytes] = []
        for data in events:
            inner = self.inner_message(data)
            if len(inner) > _MAX_PAYLOAD:
                raise ValueError(f"event of {len(data)} bytes exceeds the event-stream limit")
            frame, prior = self._sign(prefix, date_header, date_hash, prior, inner)
            frames.append(frame)
        return b"".join(frames), prior

    def end_frame(self, now_us: int, prior: bytes) -> tuple[bytes, bytes]:
        """The signed empty frame that ends the input (the SDK's ``close()``); and its signature."""
        prefix, date_header, date_hash = self._date_parts(now_us)
        return self._sign(prefix, date_header, date_hash, prior, b"", EMPTY_SHA256_HEX)

    def _date_parts(self, now_us: int) -> tuple[bytes, bytes, bytes]:
        # The SDK encodes the header from datetime.timestamp() (a float) times 1000, truncated;
        # the timestamp it signs is that datetime's second, which is the header's second too.
        return self._key.date_parts(int(now_us / 1_000_000 * 1000))

    def _sign(
        self,
        prefix: bytes,
        date_header: bytes,
        date_hash: bytes,
        prior: bytes,
        payload: bytes,
        payload_hash: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        if payload_hash is None:
            payload_hash = sha256_hex(payload)
        signature = self._key.sign(prefix, date_hash, prior, payload_hash)
        prelude = _PRELUDE(16 + _OUTER_HEADERS_LEN + len(payload), _OUTER_HEADERS_LEN)
        frame = b"".join(
            (prelude, _CRC(crc32(prelude)), date_header, _SIGNATURE_HEADER, signature, payload)
        )
        return frame + _CRC(crc32(frame)), hexlify(signature)


# ---------------------------------------------------------------------------- async shells


class InputWriter(Protocol):
    """The send side of one open stream: writes a unit of events with nothing in between."""

    @property
    def lean(self) -> bool:
        """True for :class:`LeanInputWriter`, False for the SDK publisher."""
        ...

    async def send(self, events: list[bytes]) -> None:
        """Send ``events`` in order; blocks (asynchronously) while the write buffer is full.

        Raises:
            OSError: the stream's input is closed or the write failed (as the SDK publisher does).
        """
        ...


@final
class SdkInputWriter:
    """The SDK publisher, one ``send`` per event: the fallback when the SDK is not as expected."""

    lean: Final = False

    def __init__(self, publisher: Any) -> None:
        self._publisher = publisher

    async def send(self, events: list[bytes]) -> None:
        """Send each event through ``AWSEventPublisher.send``."""
        for data in events:
            await self._publisher.send(_chunk_event(data))


class _Unsupported(Exception):
    """The SDK is not shaped as this module expects; the message says what differs."""


@final
class LeanInputWriter:
    """Writes frames from :class:`ChunkSigner` into the SDK publisher's writer (see module doc).

    Build with :meth:`take_over`. The caller is the single writer of the stream: one ``send`` at a
    time (the SDK's ``close()`` only after the last ``send`` returned).
    """

    lean: Final = True

    def __init__(
        self, publisher: Any, signer: Any, core: ChunkSigner, clock: Callable[[], int]
    ) -> None:
        self._publisher = publisher
        self._writer = publisher._writer
        self._signer = signer  # the SDK's AsyncEventSigner: home of the chain's prior signature
        self._core = core
        self._clock = clock

    @classmethod
    async def take_over(
        cls, publisher: Any, *, clock: Callable[[], int] = _wall_clock_us
    ) -> LeanInputWriter:
        """Check the SDK publisher and prove our framing and signing on a probe event.

        Raises:
            _Unsupported: the SDK differs from what this module was written against.
        """
        config = getattr(publisher, "_signing_config", None)
        writer = getattr(publisher, "_writer", None)
        serializer = getattr(publisher, "_serializer", None)
        signer = getattr(config, "signer", None)
        if config is None or writer is None or serializer is None or signer is None:
            raise _Unsupported("publisher has no _signing_config/_writer/_serializer")
        if getattr(publisher, "closed", True):
            raise _Unsupported("publisher is closed")
        prior = getattr(signer, "_prior_signature", None)
        if not isinstance(prior, bytes) or getattr(signer, "_is_finalized", True):
            raise _Unsupported(f"event signer {type(signer).__name__} has no open chain")
        resolver = config.identity_resolver
        if not isinstance(resolver, PinnedIdentityResolver):
            raise _Unsupported("credentials are not pinned to the stream")
        properties = dict(config.signing_properties)
        if "date" in properties or not {"region", "service"} <= properties.keys():
            raise _Unsupported(f"unexpected signing properties {sorted(properties)}")
        identity = await resolver.get_identity(properties=config.identity_properties)
        core = ChunkSigner(
            secret_access_key=identity.secret_access_key,
            region=properties["region"],
            service=properties["service"],
        )
        await _prove(core, serializer, type(signer), identity, config.signing_properties)
        return cls(publisher, signer, core, clock)

    async def send(self, events: list[bytes]) -> None:
        """Sign ``events`` as one unit and write it as ONE chunk; then advance the SDK's chain.

        The chain advances only once the writer took the bytes: a write cancelled while the buffer
        is full leaves the prior signature where the peer's view of the chain is.
        """
        if self._publisher.closed:
            raise OSError("Attempted to write to closed stream.")
        signer = self._signer
        data, signature = self._core.sign_frames(events, self._clock(), signer._prior_signature)
        try:
            await self._writer.write(data)
        except Exception as exc:
            raise OSError("Failed to write to stream.") from exc
        signer._prior_signature = signature


async def _prove(
    core: ChunkSigner,
    serializer: Any,
    signer_type: type[Any],
    identity: AWSCredentialsIdentity,
    properties: Any,
) -> None:
    """Compare ``core`` with the SDK's serialiser and a fresh SDK signer on one probe event."""
    probe = b'{"probe":"\x00\xff~?>"}'
    try:
        _chunk_event(probe).serialize(serializer)
        message = serializer.get_result()
        inner = message.encode()
        seed = b"0" * 64
        sdk_signer = signer_type(initial_signature=seed, event_encoder_cls=EventHeaderEncoder)
        signed = await sdk_signer.sign(event=message, identity=identity, properties=properties)
        now_us = (signed.headers[":date"] - _EPOCH) // _ONE_US
        expected = signed.encode()
        expected_prior = sdk_signer._prior_signature
    except Exception as exc:
        raise _Unsupported(f"SDK probe failed: {exc!r}") from exc
    if inner != core.inner_message(probe):
        raise _Unsupported("the SDK serialises the input chunk differently")
    if (expected, expected_prior) != core.sign_frames([probe], now_us, seed):
        raise _Unsupported("the SDK signs event frames differently")


_fallback_reasons: set[str] = set()  # logged once per process and reason


async def open_input_writer(
    duplex: Any, *, lean: bool = True, clock: Callable[[], int] = _wall_clock_us
) -> InputWriter:
    """The input writer of a just-opened stream: lean if the SDK allows it, else the SDK publisher.

    Args:
        duplex: the SDK's ``DuplexEventStream``.
        lean: False forces the SDK publisher (benchmarks compare the two).
        clock: epoch microseconds for signing (tests inject a fixed clock).
    """
    publisher = duplex.input_stream
    if not lean:
        return SdkInputWriter(publisher)
    try:
        return await LeanInputWriter.take_over(publisher, clock=clock)
    except _Unsupported as why:
        reason = str(why)
        if reason not in _fallback_reasons:
            _fallback_reasons.add(reason)
            _log.info("sonic.lean_input_unavailable", reason=reason)
        return SdkInputWriter(publisher)


async def close_input(publisher: Any) -> None:
    """End a stream's input in order: the SDK's signed empty frame, then END_STREAM once the
    frames buffered in the SDK's pipe have gone out. Blocks while they drain (the caller bounds it).
    """
    await publisher.close()


async def discard_input(publisher: Any) -> None:
    """End a stream's input at once: no end frame, and what the SDK's pipe still buffers is dropped.

    For a stream whose HTTP/2 stream is gone (reset, connection lost) or out of time: nothing reads
    the pipe any more, so an orderly close would wait for it to drain forever. Closing the pipe
    ends awscrt's request-body task. Idempotent; where the SDK has no such pipe it falls back to
    :func:`close_input`.
    """
    writer = getattr(publisher, "_writer", None)
    close = getattr(writer, "close", None)
    if close is None:
        await close_input(publisher)
        return
    await close(flush=False)
    with contextlib.suppress(Exception):
        # Marks the publisher closed (later sends raise OSError); its end frame fails at once on
        # the closed pipe.
        await publisher.close()
