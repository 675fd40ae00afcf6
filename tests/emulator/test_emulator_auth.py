"""The emulator's SigV4 checks (sans-I/O) against the signers clients use, and its rejections.

Differential: requests signed by botocore's ``SigV4Auth`` and by ``aws_sdk_signers`` (the Python
SDK's signer) must pass; event chains signed by the SDK's ``AsyncEventSigner`` and by the gateway's
own ``ChunkSigner`` must pass frame by frame; any change to a signed part must fail.
"""

from __future__ import annotations

import datetime
import time
import urllib.parse
from typing import Any, Final

import msgspec
import pytest
from aws_sdk_signers import (
    URI,
    AsyncEventSigner,
    AsyncSigV4Signer,
    AWSCredentialIdentity,
    AWSRequest,
    Field,
    Fields,
    SigV4SigningProperties,
)
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest as BotocoreRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st
from smithy_aws_event_stream.events import EventHeaderEncoder, EventMessage

from actors.sonic.credentials import StaticCredentials
from actors.sonic.event_writer import ChunkSigner
from gateway.emulator.auth import (
    TEST_CREDENTIALS,
    ChunkVerifier,
    EmulatorCredentials,
    ErrorResponse,
    RequestAuthenticator,
    canonical_uri,
)
from gateway.emulator.framing import decode_outer_frame

AUTHORITY: Final = "127.0.0.1:4443"
PATH: Final = "/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream"
STREAMING: Final = "STREAMING-AWS4-HMAC-SHA256-EVENTS"
BASE_HEADERS: Final = {
    "content-type": "application/vnd.amazon.eventstream",
    "x-amz-content-sha256": STREAMING,
}
AUTHENTICATOR: Final = RequestAuthenticator([TEST_CREDENTIALS], region="us-east-1")


def botocore_sign(
    *,
    path: str = PATH,
    query: str = "",
    headers: dict[str, str] | None = None,
    key: str = "AKIDEXAMPLE",
    secret: str = "dummy",
    token: str | None = None,
    region: str = "us-east-1",
    service: str = "bedrock",
) -> dict[bytes, bytes]:
    """The request headers (lower-case bytes) botocore's SigV4 signer produces."""
    url = f"https://{AUTHORITY}{path}" + (f"?{query}" if query else "")
    request = BotocoreRequest(
        method="POST", url=url, data=b"", headers={**BASE_HEADERS, **(headers or {})}
    )
    SigV4Auth(Credentials(key, secret, token), service, region).add_auth(request)
    return {k.lower().encode(): v.encode() for k, v in request.headers.items()}


def check(
    headers: dict[bytes, bytes],
    *,
    path: str = PATH,
    query: str = "",
    now_s: float | None = None,
    authenticator: RequestAuthenticator = AUTHENTICATOR,
) -> ChunkVerifier | ErrorResponse:
    return authenticator.check(
        method="POST",
        raw_path=path,
        query=query,
        headers=headers,
        authority=AUTHORITY,
        now_s=time.time() if now_s is None else now_s,
    )


def rejected(result: ChunkVerifier | ErrorResponse) -> ErrorResponse:
    assert isinstance(result, ErrorResponse), "the request was accepted"
    return result


# ------------------------------------------------------------------ request signatures


def test_botocore_signed_request_passes() -> None:
    assert isinstance(check(botocore_sign()), ChunkVerifier)


SEGMENT = st.text(
    st.characters(codec="utf-8", exclude_characters="/", exclude_categories=("Cs",)), min_size=1
).filter(lambda s: s not in (".", ".."))
QUERY = st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=8)), max_size=3)
HEADER_NAME = st.from_regex(r"x-test-[a-z0-9-]{1,12}", fullmatch=True)
HEADER_VALUE = st.from_regex(r"[ -~]{0,20}", fullmatch=True).map(lambda v: "v" + v)


@settings(max_examples=60, deadline=None)
@given(
    segments=st.lists(SEGMENT, min_size=1, max_size=4),
    query=QUERY,
    extra=st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=3),
)
def test_any_botocore_signed_path_query_and_headers_pass(
    segments: list[str], query: list[tuple[str, str]], extra: dict[str, str]
) -> None:
    path = "/" + "/".join(urllib.parse.quote(s, safe="") for s in segments)
    raw_query = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    headers = botocore_sign(path=path, query=raw_query, headers=extra)
    assert isinstance(check(headers, path=path, query=raw_query), ChunkVerifier)


async def sdk_sign(*, token: str | None = None) -> tuple[dict[bytes, bytes], bytes]:
    """Headers signed by the Python SDK's signer, and the signature that seeds the chain."""
    request = AWSRequest(
        destination=URI(host="127.0.0.1", port=4443, path=PATH),
        method="POST",
        body=None,
        fields=Fields([Field(name=k, values=[v]) for k, v in BASE_HEADERS.items()]),
    )
    identity = AWSCredentialIdentity(
        access_key_id="AKIDEXAMPLE", secret_access_key="dummy", session_token=token
    )
    signed = await AsyncSigV4Signer().sign(
        request=request,
        identity=identity,
        properties=SigV4SigningProperties(region="us-east-1", service="bedrock"),
    )
    headers = {f.name.lower().encode(): f.as_string().encode() for f in signed.fields}
    seed = headers[b"authorization"].rsplit(b"Signature=", 1)[1]
    return headers, seed


@pytest.mark.anyio
async def test_python_sdk_signed_request_passes() -> None:
    headers, _ = await sdk_sign()
    assert isinstance(check(headers), ChunkVerifier)


@pytest.mark.anyio
async def test_session_token_must_match() -> None:
    headers, _ = await sdk_sign(token="session-token")
    assert rejected(check(headers)).error_type == "UnrecognizedClientException"
    with_token = RequestAuthenticator(
        [EmulatorCredentials("AKIDEXAMPLE", "dummy", "session-token")], region="us-east-1"
    )
    assert isinstance(check(headers, authenticator=with_token), ChunkVerifier)
    plain, _ = await sdk_sign()
    assert rejected(check(plain, authenticator=with_token)).status == 403


def test_the_default_keys_are_the_gateways_test_keys() -> None:
    identity = StaticCredentials().load()
    assert (identity.access_key_id, identity.secret_access_key) == (
        TEST_CREDENTIALS.access_key_id,
        TEST_CREDENTIALS.secret_access_key,
    )


def test_canonical_uri_encodes_the_sent_path_again() -> None:
    assert (
        canonical_uri(PATH)
        == "/model/amazon.nova-2-sonic-v1%253A0/invoke-with-bidirectional-stream"
    )
    assert canonical_uri("/a/./b/../c//d/") == "/a/c/d/"
    assert canonical_uri("") == "/"


# ------------------------------------------------------------------ rejections


def test_no_authorization_header_is_access_denied() -> None:
    headers = botocore_sign()
    del headers[b"authorization"]
    error = rejected(check(headers))
    assert (error.status, error.error_type) == (403, "AccessDeniedException")
    assert msgspec.json.decode(error.body()) == {"Message": "Authorization header is missing"}
    assert error.error_type_header().startswith(b"AccessDeniedException:http://")


def test_a_wrong_secret_is_an_invalid_signature_with_the_canonical_request() -> None:
    error = rejected(check(botocore_sign(secret="not-the-secret")))
    assert (error.status, error.error_type) == (403, "InvalidSignatureException")
    message = msgspec.json.decode(error.body())["message"]
    assert message.startswith("The request signature we calculated does not match")
    assert "/model/amazon.nova-2-sonic-v1%253A0/invoke-with-bidirectional-stream" in message
    assert "AWS4-HMAC-SHA256\n" in message


@pytest.mark.parametrize(
    ("change", "header", "value"),
    [
        ("a signed header", b"content-type", b"application/json"),
        ("the payload hash", b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD"),
        ("the date", b"x-amz-date", None),
    ],
)
def test_changing_a_signed_part_breaks_the_signature(
    change: str, header: bytes, value: bytes | None
) -> None:
    headers = botocore_sign()
    if value is None:  # one second later, same day
        stamp = datetime.datetime.strptime(headers[header].decode(), "%Y%m%dT%H%M%SZ")
        later = stamp + datetime.timedelta(seconds=1 if stamp.second < 59 else -1)
        value = later.strftime("%Y%m%dT%H%M%SZ").encode()
    headers[header] = value
    assert rejected(check(headers)).error_type == "InvalidSignatureException", change


def test_another_path_or_query_breaks_the_signature() -> None:
    headers = botocore_sign()
    other = PATH.replace("nova-2", "nova")
    assert rejected(check(headers, path=other)).error_type == "InvalidSignatureException"
    assert rejected(check(headers, query="a=1")).error_type == "InvalidSignatureException"


def test_an_unknown_key_id_is_an_unrecognized_client() -> None:
    error = rejected(check(botocore_sign(key="AKIDUNKNOWN")))
    assert (error.status, error.error_type) == (403, "UnrecognizedClientException")
    assert error.message == "The security token included in the request is invalid."


def test_scope_must_name_the_region_and_bedrock() -> None:
    error = rejected(check(botocore_sign(region="eu-north-1")))
    assert (error.status, error.error_type) == (403, "InvalidSignatureException")
    assert "eu-north-1" in error.message
    error = rejected(check(botocore_sign(service="s3")))
    assert "bedrock" in error.message


def test_a_signature_more_than_five_minutes_off_is_expired_or_not_yet_current() -> None:
    headers = botocore_sign()
    now = time.time()
    assert isinstance(check(headers, now_s=now + 290), ChunkVerifier)
    late = rejected(check(headers, now_s=now + 400))
    assert (late.status, late.error_type) == (403, "InvalidSignatureException")
    assert late.message.startswith("Signature expired: ")
    assert late.message.endswith(" - 5 min.)")
    early = rejected(check(headers, now_s=now - 400))
    assert early.message.startswith("Signature not yet current: ")


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer some-api-key",
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request",
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE, SignedHeaders=host, Signature=00",
    ],
)
def test_a_malformed_authorization_is_an_incomplete_signature(authorization: bytes) -> None:
    headers = botocore_sign()
    headers[b"authorization"] = authorization
    error = rejected(check(headers))
    assert (error.status, error.error_type) == (400, "IncompleteSignatureException")


def test_host_must_be_signed() -> None:
    headers = botocore_sign()
    headers[b"authorization"] = headers[b"authorization"].replace(b"host;", b"")
    assert "'Host' or ':authority'" in rejected(check(headers)).message


# ------------------------------------------------------------------ event signature chains

EVENTS: Final = [
    b'{"event":{"sessionStart":{}}}',
    b'{"event":{"audioInput":"' + b"A" * 3000 + b'"}}',
]


async def sdk_event_frames(seed: bytes, payloads: list[bytes]) -> list[bytes]:
    """Frames signed by the Python SDK's event signer, ending with the empty end frame."""
    signer = AsyncEventSigner(initial_signature=seed, event_encoder_cls=EventHeaderEncoder)
    identity = AWSCredentialIdentity(access_key_id="AKIDEXAMPLE", secret_access_key="dummy")
    properties = SigV4SigningProperties(region="us-east-1", service="bedrock")
    frames = []
    for payload in payloads:
        inner = EventMessage(
            headers={":message-type": "event", ":event-type": "chunk"}, payload=payload
        )
        signed = await signer.sign(event=inner, identity=identity, properties=properties)
        frames.append(signed.encode())
    end = await signer.sign_empty(event=EventMessage(), identity=identity, properties=properties)
    frames.append(end.encode())
    return frames


@pytest.mark.anyio
async def test_the_python_sdk_event_chain_passes_and_any_change_fails() -> None:
    headers, seed = await sdk_sign()
    frames = await sdk_event_frames(seed, EVENTS)

    def verify(sequence: list[bytes]) -> list[str | None]:
        verifier = check(headers)
        assert isinstance(verifier, ChunkVerifier)
        return [verifier.check(decode_outer_frame(f), time.time()) for f in sequence]

    assert verify(frames) == [None, None, None]
    # Out of order, one left out, or signed over another request: the chain breaks there.
    assert verify([frames[1], frames[0]])[0] is not None
    assert verify([frames[0], frames[2]])[1] is not None
    other_seed = (b"0" * 64, b"f" * 64)
    for seed_bytes in other_seed:
        assert verify((await sdk_event_frames(seed_bytes, EVENTS))[:1]) != [None]


@pytest.mark.anyio
async def test_a_tampered_payload_or_date_fails() -> None:
    headers, seed = await sdk_sign()
    (frame, _end) = await sdk_event_frames(seed, EVENTS[:1])
    decoded = decode_outer_frame(frame)
    for change in ("signed", "date_ms", "signature"):
        verifier = check(headers)
        assert isinstance(verifier, ChunkVerifier)
        tampered = decode_outer_frame(frame)
        if change == "signed":
            tampered.signed = decoded.signed[:-1] + b"\x00"
        elif change == "date_ms":
            assert decoded.date_ms is not None
            tampered.date_ms = decoded.date_ms + 1
        else:
            tampered.signature = None
        assert verifier.check(tampered, time.time()) is not None, change


@pytest.mark.anyio
async def test_an_event_dated_more_than_five_minutes_off_fails() -> None:
    headers, seed = await sdk_sign()
    (frame, _end) = await sdk_event_frames(seed, EVENTS[:1])
    verifier = check(headers)
    assert isinstance(verifier, ChunkVerifier)
    error = verifier.check(decode_outer_frame(frame), time.time() + 600)
    assert error is not None
    assert error.startswith("Signature expired: ")


@pytest.mark.anyio
async def test_the_gateways_chunk_signer_chain_passes() -> None:
    headers, seed = await sdk_sign()
    verifier = check(headers)
    assert isinstance(verifier, ChunkVerifier)
    signer = ChunkSigner(secret_access_key="dummy", region="us-east-1", service="bedrock")
    now_us = time.time_ns() // 1000
    data, prior = signer.sign_frames(EVENTS, now_us, seed)
    end, _ = signer.end_frame(now_us + 20_000, prior)
    frames: list[Any] = []
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        frames.append(data[offset : offset + size])
        offset += size
    results = [verifier.check(decode_outer_frame(f), time.time()) for f in [*frames, end]]
    assert results == [None, None, None]
    assert verifier.frames == 3
