"""SigV4 signing math for AWS event streams: one implementation for signing and for verifying.

Sans-I/O: bytes in, bytes out, no clock (callers pass times). Used by the Sonic client's lean
input path (:class:`actors.sonic.event_writer.ChunkSigner` frames and signs each input event) and by
the emulator (``gateway/emulator/auth.py`` verifies the request signature and each event's
signature chain).

The SigV4 pieces (AWS's "Signature Version 4 signing process"; the event-stream part as
``aws_sdk_signers.AsyncEventSigner`` computes it):

* signing key: HMAC-SHA256 chained over ``"AWS4" + secret``, ``YYYYMMDD``, region, service,
  ``aws4_request`` (:func:`signing_key`);
* event signature: HMAC-SHA256 with that key over ``AWS4-HMAC-SHA256-PAYLOAD\\n<YYYYMMDDTHHMMSSZ>\\n
  <YYYYMMDD>/<region>/<service>/aws4_request\\n<prior signature, hex>\\n<SHA-256 hex of the encoded
  :date header>\\n<SHA-256 hex of the payload>``, where the timestamp is the event's ``:date`` (epoch
  milliseconds, the second it falls in) and the first prior signature is the request's own.

:class:`EventSigningKey` computes event signatures at about one SHA-256 of the payload plus one
HMAC per event: the key's HMAC pads are SHA-256 states prepared once per UTC day, the
string-to-sign prefix once per second.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import struct
from binascii import hexlify
from typing import Final, final

__all__ = [
    "EMPTY_SHA256_HEX",
    "EVENT_DATE_HEADER",
    "EventSigningKey",
    "encode_date_header",
    "sha256_hex",
    "signing_key",
    "sigv4_timestamp",
]

_SHA256: Final = hashlib.sha256
# A fresh hashlib.sha256() looks the digest up by name in OpenSSL (EVP_MD_fetch, behind a lock):
# under load that lookup was 6 % of the gateway's event-loop thread. Copying a ready context skips
# it, so per-event hashing starts from this empty one.
_SHA256_EMPTY: Final = hashlib.sha256()
# hashlib releases the GIL while hashing 2,048 bytes or more per update(); with awscrt's thread
# waiting for the GIL, each release hands it over and costs two thread switches, which showed as
# most of the signing time under load. Updates below that size keep the GIL (an event is a few KB).
_GIL_KEEPING_UPDATE: Final = 2047
_HMAC: Final = hmac.digest
_MILLIS: Final = struct.Struct(">q").pack
_STS_HEAD: Final = b"AWS4-HMAC-SHA256-PAYLOAD\n"
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

EVENT_DATE_HEADER: Final = b"\x05:date\x08"
"""The encoded ``:date`` header up to its value: name length, name, type 8 (timestamp)."""
EMPTY_SHA256_HEX: Final = hexlify(hashlib.sha256(b"").digest())


def sha256_hex(data: bytes) -> bytes:
    """The SHA-256 of ``data`` as lowercase hex (ASCII bytes)."""
    h = _SHA256_EMPTY.copy()
    if len(data) <= _GIL_KEEPING_UPDATE:
        h.update(data)
    else:
        view = memoryview(data)
        for start in range(0, len(data), _GIL_KEEPING_UPDATE):
            h.update(view[start : start + _GIL_KEEPING_UPDATE])
    return hexlify(h.digest())


def sigv4_timestamp(epoch_s: int) -> str:
    """``YYYYMMDDTHHMMSSZ`` (UTC) of a whole epoch second."""
    return (_EPOCH + datetime.timedelta(seconds=epoch_s)).strftime("%Y%m%dT%H%M%SZ")


def signing_key(secret_access_key: str, day: str, region: str, service: str) -> bytes:
    """The SigV4 signing key of one day (``YYYYMMDD``), region and service."""
    key = _HMAC(b"AWS4" + secret_access_key.encode(), day.encode(), "sha256")
    key = _HMAC(key, region.encode(), "sha256")
    key = _HMAC(key, service.encode(), "sha256")
    return _HMAC(key, b"aws4_request", "sha256")


def encode_date_header(date_ms: int) -> bytes:
    """The encoded ``:date`` event header carrying ``date_ms`` (epoch milliseconds)."""
    return EVENT_DATE_HEADER + _MILLIS(date_ms)


@final
class EventSigningKey:
    """Event-stream signatures for one secret, region and service (see the module docstring).

    Keeps the day's key pads and the second's string-to-sign prefix; not thread-safe.
    """

    __slots__ = (
        "_day",
        "_inner_pad",
        "_outer_pad",
        "_prefix",
        "_region",
        "_second",
        "_secret",
        "_service",
    )

    def __init__(self, *, secret_access_key: str, region: str, service: str) -> None:
        self._secret = secret_access_key
        self._region = region
        self._service = service
        self._day = ""
        # HMAC-SHA256 with the day's signing key, as SHA-256 states after the padded key (RFC 2104):
        # a copy and an update per event instead of keying OpenSSL's HMAC again (~1 us vs ~3 us).
        self._inner_pad = _SHA256()
        self._outer_pad = _SHA256()
        self._second = -1
        self._prefix = b""  # "AWS4-HMAC-SHA256-PAYLOAD\n<timestamp>\n<scope>\n"

    def date_parts(self, date_ms: int) -> tuple[bytes, bytes, bytes]:
        """``(string-to-sign prefix, encoded :date header, its SHA-256 hex)`` for ``date_ms``."""
        second = date_ms // 1000
        if second != self._second:
            stamp = sigv4_timestamp(second)
            day = stamp[:8]
            if day != self._day:
                key = signing_key(self._secret, day, self._region, self._service)
                key = key.ljust(64, b"\0")  # 64: the SHA-256 block size
                self._inner_pad = _SHA256(bytes(b ^ 0x36 for b in key))
                self._outer_pad = _SHA256(bytes(b ^ 0x5C for b in key))
                self._day = day
            scope = f"{day}/{self._region}/{self._service}/aws4_request"
            self._prefix = b"".join((_STS_HEAD, stamp.encode(), b"\n", scope.encode(), b"\n"))
            self._second = second
        date_header = encode_date_header(date_ms)
        return self._prefix, date_header, sha256_hex(date_header)

    def sign(self, prefix: bytes, date_hash: bytes, prior: bytes, payload_hash: bytes) -> bytes:
        """The 32-byte signature of one event.

        Args:
            prefix: from :meth:`date_parts` (must be its latest call: the key pads are that day's).
            date_hash: SHA-256 hex of the encoded ``:date`` header (from :meth:`date_parts`).
            prior: the chain's prior signature, lowercase hex.
            payload_hash: SHA-256 hex of the event's payload (the encoded inner message).
        """
        string_to_sign = b"".join((prefix, prior, b"\n", date_hash, b"\n", payload_hash))
        inner = self._inner_pad.copy()
        inner.update(string_to_sign)
        outer = self._outer_pad.copy()
        outer.update(inner.digest())
        return outer.digest()
