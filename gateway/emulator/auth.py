"""Bedrock's authentication as the emulator checks it: the request's SigV4 signature, then each
input event's signature chain. Sans-I/O: headers, frames and the time go in, a verdict comes out.

Theory of operation. :class:`RequestAuthenticator` checks the head of ``InvokeModelWithBidirectional
Stream`` as SigV4 defines it: the ``Authorization`` header (``AWS4-HMAC-SHA256 Credential=<key id>/
<YYYYMMDD>/<region>/<service>/aws4_request, SignedHeaders=..., Signature=...``), the access key id
among the configured credentials (and the session token, if they have one), the credential scope
(the configured region, service ``bedrock``, the day of ``x-amz-date``), ``x-amz-date`` within five
minutes of now, and the signature recomputed over the canonical request (method, the path
URI-encoded once more, the sorted query, the signed headers with ``host`` taken from HTTP/2's
``:authority``, or ``:authority`` itself as the JavaScript SDK signs it, and ``x-amz-content-sha256``, which the SDKs set to
``STREAMING-AWS4-HMAC-SHA256-EVENTS`` for an event stream). A request that passes gets a
:class:`ChunkVerifier` seeded with its signature: every input frame's ``:chunk-signature`` must be
the HMAC of the previous signature, its ``:date`` and the frame's payload
(:mod:`actors.wire.sigv4`, the math the Sonic client signs with), and its ``:date`` within five
minutes of now too.

Rejections (:class:`ErrorResponse`, also the server's other errors) carry Bedrock's error shape: the status, the ``x-amzn-ErrorType``
value (the error name, then ``:`` and the service namespace, as AWS's frontend sends it) and a JSON
body with the message. Public reports of real responses give these:

* no ``Authorization`` header: 403 ``AccessDeniedException``, ``{"Message":"Authorization header
  is missing"}`` (its full response is in karthink/gptel issue 1397);
* a wrong signature: 403 ``InvalidSignatureException``, "The request signature we calculated does
  not match the signature you provided. ..." followed by the canonical request and string to sign
  the service computed (BerriAI/litellm issue 14763);
* an unknown access key id: 403 ``UnrecognizedClientException``, "The security token included in
  the request is invalid." (Arize-ai/openinference issue 2358);
* a request time too far off: 403 ``InvalidSignatureException``, "Signature expired: <time> is now
  earlier than <limit> (<now> - 5 min.)" (awslabs/amazon-transcribe-streaming-sdk issue 19).

A malformed ``Authorization`` header is ``IncompleteSignatureException``, HTTP 400 as the Amazon
Bedrock user guide's "Troubleshooting Amazon Bedrock API Error Codes" lists it; the wording of
that message and of the scope errors is the emulator's own. An event whose signature fails cannot
get an HTTP status (the response started already): the session ends with a ``validationException``
event, as Transcribe streaming ends its stream with an in-stream BadRequestException.
"""

from __future__ import annotations

import datetime
import hmac
import re
import urllib.parse
from binascii import hexlify
from typing import TYPE_CHECKING, Final, final

import attrs
import msgspec

from actors.wire.sigv4 import EMPTY_SHA256_HEX, EventSigningKey, sha256_hex, signing_key

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from gateway.emulator.framing import RequestFrame

__all__ = [
    "CODE_NAMESPACE",
    "TEST_CREDENTIALS",
    "ChunkVerifier",
    "EmulatorCredentials",
    "ErrorResponse",
    "RequestAuthenticator",
    "canonical_query",
    "canonical_uri",
    "sigv4_date",
]

CODE_NAMESPACE: Final = "http://internal.amazon.com/coral/com.amazon.coral.service/"
"""What follows the error name in ``x-amzn-ErrorType`` (SDKs cut it at the colon)."""
SERVICE: Final = "bedrock"
MAX_SKEW_S: Final = 300
_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_MISMATCH: Final = (
    "The request signature we calculated does not match the signature you provided. Check your"
    " AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_BAD_TOKEN: Final = "The security token included in the request is invalid."
_PARAMETER: Final = re.compile(r"\s*([A-Za-z]+)=([^,]*)")


@final
@attrs.frozen
class EmulatorCredentials:
    """A key pair (and session token) the emulator accepts requests signed with."""

    access_key_id: str
    secret_access_key: str = attrs.field(repr=False)
    session_token: str | None = attrs.field(default=None, repr=False)


TEST_CREDENTIALS: Final = EmulatorCredentials(
    access_key_id="AKIDEXAMPLE", secret_access_key="dummy"
)
"""The keys the gateway signs with against the emulator (``actors.sonic.StaticCredentials``'s
defaults) and the tests use."""


@final
@attrs.frozen
class ErrorResponse:
    """An error answer to a request: status, error type and message, in Bedrock's shape."""

    status: int
    error_type: str
    message: str
    message_key: str = "message"
    """``Message`` for the missing header (as the service spells it there), else ``message``."""

    def error_type_header(self) -> bytes:
        """The ``x-amzn-ErrorType`` value."""
        return f"{self.error_type}:{CODE_NAMESPACE}".encode()

    def body(self) -> bytes:
        """The JSON body."""
        return msgspec.json.encode({self.message_key: self.message})


def sigv4_date(epoch_s: float) -> str:
    """``YYYYMMDDTHHMMSSZ`` (UTC) of an epoch time."""
    return datetime.datetime.fromtimestamp(int(epoch_s), datetime.UTC).strftime(_DATE_FORMAT)


def _parse_date(value: str) -> float | None:
    try:
        parsed = datetime.datetime.strptime(value, _DATE_FORMAT).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    return parsed.timestamp()


def _skew_error(stamp: str, signed_s: float, now_s: float) -> str | None:
    """The service's message for a signing time more than five minutes off, else None."""
    if signed_s < now_s - MAX_SKEW_S:
        return (
            f"Signature expired: {stamp} is now earlier than {sigv4_date(now_s - MAX_SKEW_S)}"
            f" ({sigv4_date(now_s)} - 5 min.)"
        )
    if signed_s > now_s + MAX_SKEW_S:
        return (
            f"Signature not yet current: {stamp} is still later than"
            f" {sigv4_date(now_s + MAX_SKEW_S)} ({sigv4_date(now_s)} + 5 min.)"
        )
    return None


def _incomplete(message: str) -> ErrorResponse:
    return ErrorResponse(400, "IncompleteSignatureException", message)


def _invalid(message: str) -> ErrorResponse:
    return ErrorResponse(403, "InvalidSignatureException", message)


def canonical_uri(raw_path: str) -> str:
    """SigV4's canonical path of a non-S3 request: dot segments and empty segments removed (RFC
    3986 section 5.2.4), then URI-encoded (the path as sent is encoded once more: ``%3A`` becomes
    ``%253A``)."""
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    path = "/" + "/".join(segments)
    if segments and raw_path.endswith("/"):
        path += "/"
    return urllib.parse.quote(path, safe="/")


def canonical_query(query: str) -> str:
    """SigV4's canonical query string: each name and value URI-encoded, sorted."""
    if not query:
        return ""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    encoded = sorted(
        (urllib.parse.quote(k, safe=""), urllib.parse.quote(v, safe="")) for k, v in pairs
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


@final
class ChunkVerifier:
    """One stream's event signature chain (sans-I/O); :meth:`check` each frame in order."""

    __slots__ = ("_key", "_prior", "frames")

    def __init__(self, key: EventSigningKey, seed: bytes) -> None:
        self._key = key
        self._prior = seed
        self.frames = 0
        """Frames verified so far."""

    def check(self, frame: RequestFrame, now_s: float) -> str | None:
        """Verify ``frame`` and advance the chain; the failure's message, or None if it is good."""
        if frame.date_ms is None or frame.signature is None or len(frame.signature) != 32:
            return "The event is missing a valid :date or :chunk-signature header."
        prefix, _header, date_hash = self._key.date_parts(frame.date_ms)
        payload_hash = sha256_hex(frame.signed) if frame.signed else EMPTY_SHA256_HEX
        expected = self._key.sign(prefix, date_hash, self._prior, payload_hash)
        if not hmac.compare_digest(expected, frame.signature):
            return (
                f"The event signature we calculated does not match the signature you provided"
                f" (event {self.frames + 1} of the stream). Check your AWS Secret Access Key and"
                " signing method: each event is signed over the previous signature, starting"
                " from the request's."
            )
        skew = _skew_error(sigv4_date(frame.date_ms / 1000), frame.date_ms / 1000, now_s)
        if skew is not None:
            return skew
        self._prior = hexlify(expected)
        self.frames += 1
        return None


@final
class RequestAuthenticator:
    """Checks a request head against the configured credentials (see the module docstring).

    Args:
        credentials: the key pairs accepted.
        region: the region requests must be scoped to.
    """

    def __init__(self, credentials: Sequence[EmulatorCredentials], *, region: str) -> None:
        self._credentials = {c.access_key_id: c for c in credentials}
        self._region = region

    def check(
        self,
        *,
        method: str,
        raw_path: str,
        query: str,
        headers: Mapping[bytes, bytes],
        authority: str,
        now_s: float,
    ) -> ChunkVerifier | ErrorResponse:
        """Verify a request's SigV4 signature at ``now_s`` (epoch seconds).

        Returns:
            The stream's chunk verifier (seeded with the request's signature), or the rejection.
        """
        authorization = headers.get(b"authorization")
        if authorization is None:
            return ErrorResponse(
                403, "AccessDeniedException", "Authorization header is missing", "Message"
            )
        text = authorization.decode("latin-1")
        algorithm, _, rest = text.strip().partition(" ")
        if algorithm != _ALGORITHM:
            return _incomplete(
                f"Authorization header requires the {_ALGORITHM} algorithm."
                f" Authorization={text[:64]}"
            )
        parameters = dict(_PARAMETER.findall(rest))
        missing = [p for p in ("Credential", "SignedHeaders", "Signature") if p not in parameters]
        date_value = headers.get(b"x-amz-date")
        if missing or date_value is None:
            reasons = [f"Authorization header requires '{p}' parameter." for p in missing]
            if date_value is None:
                reasons.append(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a"
                    " 'Date' header."
                )
            return _incomplete(" ".join(reasons) + f" Authorization={text[:64]}")
        scope = parameters["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return _incomplete(f"Credential scope is malformed: {parameters['Credential']}")
        key_id, day, region, service, _ = scope
        credentials = self._credentials.get(key_id)
        if credentials is None:
            return ErrorResponse(403, "UnrecognizedClientException", _BAD_TOKEN)
        token = headers.get(b"x-amz-security-token")
        expected_token = credentials.session_token
        if (token is None) != (expected_token is None) or (
            token is not None
            and expected_token is not None
            and not hmac.compare_digest(token, expected_token.encode())
        ):
            return ErrorResponse(403, "UnrecognizedClientException", _BAD_TOKEN)
        if region != self._region:
            return _invalid(f"Credential should be scoped to a valid region, not '{region}'.")
        if service != SERVICE:
            return _invalid(f"Credential should be scoped to correct service: '{SERVICE}'.")
        stamp = date_value.decode("latin-1")
        signed_s = _parse_date(stamp)
        if signed_s is None:
            return _incomplete(f"X-Amz-Date must be in the ISO8601 format {_DATE_FORMAT}: {stamp}")
        if stamp[:8] != day:
            return _invalid(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date"
                f" from HTTP: '{day}' != '{stamp[:8]}', from '{stamp}'."
            )
        skew = _skew_error(stamp, signed_s, now_s)
        if skew is not None:
            return _invalid(skew)
        signed_headers = parameters["SignedHeaders"].split(";")
        if "host" not in signed_headers and ":authority" not in signed_headers:
            return _invalid(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )
        canonical = self.canonical_request(
            method=method,
            raw_path=raw_path,
            query=query,
            headers=headers,
            authority=authority,
            signed_headers=signed_headers,
        )
        credential_scope = f"{day}/{region}/{service}/aws4_request"
        string_to_sign = (
            f"{_ALGORITHM}\n{stamp}\n{credential_scope}\n{sha256_hex(canonical.encode()).decode()}"
        )
        key = signing_key(credentials.secret_access_key, day, region, service)
        signature = hmac.digest(key, string_to_sign.encode(), "sha256").hex()
        if not hmac.compare_digest(signature, parameters["Signature"].strip()):
            return _invalid(
                f"{_MISMATCH}\n\nThe Canonical String for this request should have been\n"
                f"'{canonical}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
            )
        event_key = EventSigningKey(
            secret_access_key=credentials.secret_access_key, region=region, service=service
        )
        return ChunkVerifier(event_key, signature.encode())

    @staticmethod
    def canonical_request(
        *,
        method: str,
        raw_path: str,
        query: str,
        headers: Mapping[bytes, bytes],
        authority: str,
        signed_headers: Sequence[str],
    ) -> str:
        """SigV4's canonical request of a request head (``host`` is HTTP/2's ``:authority``,
        which the AWS SDK for JavaScript signs under its own name)."""
        lines = []
        for name in signed_headers:
            if name == ":authority":
                value = authority
            elif name == "host":
                value = headers.get(b"host", authority.encode()).decode("latin-1")
            else:
                value = headers.get(name.encode(), b"").decode("latin-1")
            lines.append(f"{name}:{' '.join(value.split())}\n")
        payload_hash = headers.get(b"x-amz-content-sha256", EMPTY_SHA256_HEX).decode("latin-1")
        return (
            f"{method.upper()}\n{canonical_uri(raw_path)}\n{canonical_query(query)}\n"
            f"{''.join(lines)}\n{';'.join(signed_headers)}\n{payload_hash}"
        )
