"""The lean input path: byte-identical to the SDK's publisher and signer, and live against the emulator.

The differential tests drive the SDK's own ``AWSEventPublisher`` + ``AsyncEventSigner`` (with the
Bedrock client's JSON codec) into an in-memory writer, with the same keys, Region/service, prior
signature and clock as :class:`ChunkSigner`. The SDK signer reads ``datetime.datetime.now(UTC)``
from its module; it has no clock parameter, so the tests patch that module attribute while the
SDK signs (test-only).

The emulator does not verify signatures: the live test records every frame after the prelude and
checks the chain (our frames, then the SDK's own end frame) with the SDK signer's string-to-sign
and signature functions.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import types
from binascii import hexlify
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from unittest import mock

import aws_sdk_signers.signers
import pytest
import structlog
from aws_sdk_bedrock_runtime.config import _PROTOCOL_SETTINGS
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
)
from aws_sdk_signers import AsyncEventSigner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from smithy_aws_core.aio.protocols import RestJsonClientProtocol
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_event_stream.aio import AWSEventPublisher, SigningConfig
from smithy_aws_event_stream.events import Event, EventHeaderEncoder

from actors.sonic import (
    ChunkSigner,
    LeanInputWriter,
    PinnedIdentityResolver,
    PoolSettings,
    SdkInputWriter,
    SonicConnector,
    SonicSettings,
    StaticCredentials,
    open_input_writer,
)
from gateway.emulator import EmulatorCredentials, EmulatorSettings, run_emulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from actors.sonic import SonicStream

pytestmark = pytest.mark.anyio

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
DAY_US = 86_400 * 1_000_000
FIRST_DAY, LAST_DAY = 11_000, 47_000  # 2000-02 .. 2098-09
FLOAT_QUIRK_US = 2_193_105_018_515_000  # int(us / 1e6 * 1000) == us // 1000 - 1 here
KEYS = AWSCredentialsIdentity(access_key_id="AKID", secret_access_key="secret")


class MemoryWriter:
    """The SDK's AsyncWriter, in memory."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False

    async def write(self, data: bytes) -> None:
        self.chunks.append(bytes(data))

    async def close(self) -> None:
        self.closed = True


class FrozenClock(datetime.datetime):
    """``datetime.datetime`` whose ``now()`` is ``FrozenClock.us`` (epoch microseconds)."""

    us: ClassVar[int] = 0

    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
        return EPOCH + datetime.timedelta(microseconds=cls.us)


@contextlib.contextmanager
def sdk_clock() -> Iterator[type[FrozenClock]]:
    """Point the SDK signer's clock at :class:`FrozenClock` (its module-level ``datetime``)."""
    fake = types.SimpleNamespace(datetime=FrozenClock, UTC=datetime.UTC)
    with mock.patch.object(aws_sdk_signers.signers, "datetime", fake):
        yield FrozenClock


def chunk(data: bytes) -> Any:
    return InvokeModelWithBidirectionalStreamInputChunk(
        value=BidirectionalInputPayloadPart(bytes_=data)
    )


def sdk_publisher(
    identity: AWSCredentialsIdentity, region: str, service: str, prior: bytes
) -> tuple[AWSEventPublisher[Any], MemoryWriter]:
    """A publisher wired as the SDK wires it for Bedrock (codec, signer, pinned identity)."""
    writer = MemoryWriter()
    signing = SigningConfig(
        signer=AsyncEventSigner(initial_signature=prior, event_encoder_cls=EventHeaderEncoder),
        signing_properties={"region": region, "service": service},
        identity_resolver=PinnedIdentityResolver(identity),
        identity_properties={"access_key_id": None, "secret_access_key": None},
    )
    codec = RestJsonClientProtocol(_PROTOCOL_SETTINGS).payload_codec
    return AWSEventPublisher(
        payload_codec=codec, async_writer=writer, signing_config=signing
    ), writer


identities = st.builds(
    AWSCredentialsIdentity,
    access_key_id=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=20),
    secret_access_key=st.text(min_size=1, max_size=60),
    session_token=st.none() | st.text(min_size=1, max_size=300),
)
regions = st.sampled_from(["us-east-1", "eu-north-1", "ap-northeast-1"]) | st.text(
    min_size=1, max_size=20
)
services = st.just("bedrock") | st.text(min_size=1, max_size=12)
priors = st.binary(min_size=32, max_size=32).map(hexlify)
# Clock values: within seconds of a UTC midnight (day and second caches turn over), or anywhere.
near_midnight = st.builds(
    lambda day, offset: day * DAY_US + offset,
    st.integers(FIRST_DAY, LAST_DAY),
    st.integers(-3_000_000, 3_000_000),
)
clocks = near_midnight | st.integers(FIRST_DAY * DAY_US, LAST_DAY * DAY_US)
payloads = st.binary(max_size=4000)  # inner messages on both sides of 2,047 B hash updates
units = st.lists(st.tuples(st.lists(payloads, min_size=1, max_size=4), clocks), max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    identity=identities,
    region=regions,
    service=services,
    prior=priors,
    units=units,
    end_us=clocks,
)
@example(
    identity=AWSCredentialsIdentity(access_key_id="AKIDEXAMPLE", secret_access_key="dummy"),
    region="us-east-1",
    service="bedrock",
    prior=b"0" * 64,
    units=[([b'{"event":{}}'], FLOAT_QUIRK_US), ([b"", b"x" * 1000], 1_700_000_000_999_999)],
    end_us=FLOAT_QUIRK_US + DAY_US,
)
async def test_frames_are_byte_identical_to_the_sdk_publisher(
    identity: AWSCredentialsIdentity,
    region: str,
    service: str,
    prior: bytes,
    units: list[tuple[list[bytes], int]],
    end_us: int,
) -> None:
    publisher, writer = sdk_publisher(identity, region, service, prior)
    with sdk_clock() as clock:
        for events, now_us in units:
            clock.us = now_us
            for data in events:
                await publisher.send(chunk(data))
        clock.us = end_us
        await publisher.close()

    core = ChunkSigner(secret_access_key=identity.secret_access_key, region=region, service=service)
    ours: list[bytes] = []
    for events, now_us in units:
        frames, prior = core.sign_frames(events, now_us, prior)
        ours.append(frames)
    end, prior = core.end_frame(end_us, prior)
    assert b"".join(ours) == b"".join(writer.chunks[:-1])
    assert end == writer.chunks[-1]
    assert prior == publisher._signing_config.signer._prior_signature  # type: ignore[union-attr]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(identity=identities, prior=priors, units=units, end_us=clocks)
async def test_lean_writer_hands_the_chain_back_to_the_sdk_close(
    identity: AWSCredentialsIdentity,
    prior: bytes,
    units: list[tuple[list[bytes], int]],
    end_us: int,
) -> None:
    # Reference: the SDK publisher sends everything. Lean: our writer sends the events, then
    # the SDK's own close() signs the end frame on the chain we left in its signer.
    reference, expected = sdk_publisher(identity, "us-east-1", "bedrock", prior)
    publisher, written = sdk_publisher(identity, "us-east-1", "bedrock", prior)
    with sdk_clock() as clock:
        for events, now_us in units:
            clock.us = now_us
            for data in events:
                await reference.send(chunk(data))
        clock.us = end_us
        await reference.close()

        clock.us = end_us  # the take-over probe signs with the SDK signer once
        lean = await LeanInputWriter.take_over(publisher, clock=lambda: clock.us)
        for events, now_us in units:
            clock.us = now_us
            await lean.send(events)
        clock.us = end_us
        await publisher.close()

    assert b"".join(written.chunks) == b"".join(expected.chunks)
    assert len(written.chunks) == len(units) + 1  # one write per unit, then the end frame
    assert written.closed


async def test_a_closed_publisher_refuses_lean_sends() -> None:
    publisher, _ = sdk_publisher(KEYS, "r", "s", b"0" * 64)
    lean = await LeanInputWriter.take_over(publisher)
    await publisher.close()
    with pytest.raises(OSError, match="closed"):
        await lean.send([b"{}"])


async def test_a_failed_write_raises_oserror_and_keeps_the_chain() -> None:
    publisher, writer = sdk_publisher(KEYS, "r", "s", b"0" * 64)
    lean = await LeanInputWriter.take_over(publisher)
    signer: Any = publisher._signing_config.signer  # type: ignore[union-attr]
    before = signer._prior_signature

    async def broken(data: bytes) -> None:
        raise RuntimeError("transport gone")

    writer.write = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="Failed to write"):
        await lean.send([b"{}"])
    assert signer._prior_signature == before


class _DriftedSigner(AsyncEventSigner):
    """An SDK signer that signs differently (as a future SDK version might)."""

    async def _event_string_to_sign(self, **kwargs: Any) -> str:
        return "v2\n" + await super()._event_string_to_sign(**kwargs)


@pytest.mark.parametrize("case", ["no_internals", "unpinned", "drifted_signer", "forced"])
async def test_falls_back_to_the_sdk_publisher_and_says_why_once(case: str) -> None:
    identity = KEYS
    publisher: Any
    publisher, _ = sdk_publisher(identity, "us-east-1", "bedrock", b"0" * 64)
    if case == "no_internals":
        publisher = types.SimpleNamespace(send=publisher.send, closed=False)
    elif case == "unpinned":

        class Resolver:
            async def get_identity(self, *, properties: Any) -> AWSCredentialsIdentity:
                return identity

        publisher._signing_config.identity_resolver = Resolver()
    elif case == "drifted_signer":
        publisher._signing_config.signer = _DriftedSigner(
            initial_signature=b"0" * 64, event_encoder_cls=EventHeaderEncoder
        )
    duplex = types.SimpleNamespace(input_stream=publisher)
    with structlog.testing.capture_logs() as logs:
        first = await open_input_writer(duplex, lean=case != "forced")
        second = await open_input_writer(duplex, lean=case != "forced")
    assert isinstance(first, SdkInputWriter)
    assert isinstance(second, SdkInputWriter)
    assert not first.lean
    reasons = [e for e in logs if e["event"] == "sonic.lean_input_unavailable"]
    if case == "forced":
        assert reasons == []
    else:
        assert len(reasons) == 1  # once per reason and process, not per stream
        assert reasons[0]["log_level"] == "info"
    await first.send([b"{}"])  # the SDK publisher still works


# ---------------------------------------------------------------------------- live


class Tee:
    """Records what is written, then passes it on (the publisher's writer, in the live test)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.data = bytearray()

    async def write(self, data: bytes) -> None:
        self.data += data
        await self.inner.write(data)

    async def close(self) -> None:
        await self.inner.close()


async def verify_chain(data: bytes, prior: bytes, secret: str) -> tuple[int, bytes]:
    """Check every signed frame in ``data`` with the SDK signer's own functions; return (count, last)."""
    sdk = AsyncEventSigner(initial_signature=prior, event_encoder_cls=EventHeaderEncoder)
    properties = {"region": "us-east-1", "service": "bedrock"}
    source, count = io.BytesIO(data), 0
    while (event := Event.decode(source)) is not None:
        headers_bytes = data[source.tell() - event.prelude.total_length + 12 :][
            : event.prelude.headers_length
        ]
        date_header = headers_bytes[:15]  # ":date" is first: the bytes the signature covers
        assert date_header.startswith(b"\x05:date\x08")
        millis = int.from_bytes(date_header[7:], "big")
        stamp = (EPOCH + datetime.timedelta(milliseconds=millis)).strftime("%Y%m%dT%H%M%SZ")
        string_to_sign = await sdk._event_string_to_sign(
            timestamp=stamp,
            scope=sdk._scope({**properties, "date": stamp}),  # type: ignore[typeddict-item]
            encoded_headers=date_header,
            payload=event.message.payload,
            prior_signature=prior,
        )
        signature = await sdk._sign_event(
            timestamp=stamp,
            string_to_sign=string_to_sign,
            identity=AWSCredentialsIdentity(access_key_id="AKID", secret_access_key=secret),
            properties={**properties, "date": stamp},  # type: ignore[typeddict-item]
        )
        assert event.message.headers[":chunk-signature"] == signature
        prior, count = hexlify(signature), count + 1
    return count, prior


@pytest.mark.parametrize("lean", [True, False])
async def test_a_whole_session_over_the_lean_path_closes_cleanly(lean: bool) -> None:
    fast = EmulatorSettings(
        think_ms=30,
        answer_ms=300,
        end_of_turn_silence_ms=300.0,
        credentials=(EmulatorCredentials("AKIDEXAMPLE", "s3cret"),),
    )
    async with run_emulator(fast) as emu:
        settings = SonicSettings(
            endpoint_uri=emu.endpoint_uri, ca_bundle=Path(emu.ca_path), audio_batch_ms=20
        )
        credentials = StaticCredentials(secret_access_key="s3cret")
        async with SonicConnector(
            settings, credentials=credentials, pool=PoolSettings(size=0)
        ) as connector:
            stream: SonicStream = await connector.open_stream()
            if not lean:  # the SDK publisher, for contrast: same session, same result
                stream._input = SdkInputWriter(stream._duplex.input_stream)
            assert stream.statistics()["lean_input"] == int(lean)
            publisher = stream._duplex.input_stream
            signer = publisher._signing_config.signer
            tee, seed = Tee(publisher._writer), signer._prior_signature
            publisher._writer = tee
            if lean:
                stream._input._writer = tee  # type: ignore[attr-defined]
            await stream.send_unit(stream.protocol.open_audio())
            for _ in range(25):
                await stream.send_unit(stream.protocol.audio(bytes(640)))
            await stream.close()
            assert stream.failure is None
            assert signer._is_finalized
    record = emu.sessions[0]
    assert record.end_reason == "closed"
    assert record.input_events[:3] == ["sessionStart", "promptStart", "contentStart"]
    assert record.input_events[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert record.input_events.count("audioInput") == 25
    assert record.caller_pcm_bytes == 25 * 640
    count, last = await verify_chain(bytes(tee.data), seed, "s3cret")
    assert count == 1 + 25 + 3 + 1  # contentStart, audio, the close unit, the SDK's end frame
    assert last == signer._prior_signature
