"""Authentication through the server: the real SDK, plain HTTP/2 requests, and a broken chain."""

from __future__ import annotations

import contextlib
import ssl
import time
from typing import Any

import anyio
import httpx
import pytest
from aws_sdk_bedrock_runtime.models import ValidationException
from smithy_core.exceptions import CallError

from actors.sonic.event_writer import ChunkSigner
from actors.wire import SessionEnd, UsageEvent, encode_input_event
from gateway.emulator import (
    INVALID_MODEL_MESSAGE,
    EmulatorCredentials,
    EmulatorSettings,
    run_emulator,
)

pytestmark = pytest.mark.anyio

PATH = "/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream"
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}
FAST = EmulatorSettings(answer_ms=300, think_ms=20, end_of_turn_silence_ms=300, close_grace_s=2.0)


async def open_stream(client: Any) -> None:
    await client.open()
    await client.await_output()


async def receive_all(client: Any) -> None:
    with anyio.fail_after(10):
        while await client.receive() is not None:
            pass


async def refused_start(client: Any) -> CallError:
    """Start ``client``; return the error its request got (then close it quietly)."""
    try:
        with pytest.raises(CallError) as caught:
            await open_stream(client)
    finally:
        with contextlib.suppress(CallError):
            await client.close()
    return caught.value


@pytest.mark.parametrize(
    ("credentials", "error_type"),
    [
        (EmulatorCredentials("AKIDEXAMPLE", "another-secret"), "InvalidSignatureException"),
        (EmulatorCredentials("AKIDANOTHER", "dummy"), "UnrecognizedClientException"),
    ],
)
async def test_the_sdk_signing_with_other_keys_gets_403(
    sonic_client_class: Any, credentials: EmulatorCredentials, error_type: str
) -> None:
    async with run_emulator(EmulatorSettings(credentials=(credentials,))) as emu:
        client = sonic_client_class(emu.endpoint_uri, str(emu.ca_path))
        error = await refused_start(client)
        assert "status: 403" in error.message
        assert error_type in error.message
        assert emu.sessions == []
        assert emu.statistics()["rejected_requests"] == 1


async def test_the_sdk_signing_for_another_region_gets_403(sonic_client_class: Any) -> None:
    async with run_emulator(EmulatorSettings(region="eu-north-1")) as emu:
        error = await refused_start(sonic_client_class(emu.endpoint_uri, str(emu.ca_path)))
        assert "status: 403" in error.message
        assert "InvalidSignatureException" in error.message


async def test_an_unknown_model_id_gets_bedrocks_validation_exception(
    sonic_client_class: Any,
) -> None:
    async with run_emulator(FAST) as emu:
        client = sonic_client_class(
            emu.endpoint_uri, str(emu.ca_path), model_id="amazon.nova-3-sonic-v9:0"
        )
        try:
            with pytest.raises(ValidationException) as caught:
                await open_stream(client)
        finally:
            with contextlib.suppress(ValidationException):
                await client.close()
        assert caught.value.message == INVALID_MODEL_MESSAGE
        assert emu.sessions == []


async def test_the_model_may_be_named_by_its_arn(sonic_client_class: Any, pcm_helpers: Any) -> None:
    arn = "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-sonic-v1:0"
    async with run_emulator(FAST) as emu:
        client = sonic_client_class(emu.endpoint_uri, str(emu.ca_path), model_id=arn)
        try:
            await client.start()
            await client.finish()
            await client.drain()
        finally:
            await client.close()
        (session,) = emu.sessions
        assert session.model_id == arn
        assert session.end_reason == "closed"


async def test_a_request_without_authorization_is_refused() -> None:
    async with run_emulator(FAST) as emu:
        context = ssl.create_default_context(cafile=str(emu.ca_path))
        async with httpx.AsyncClient(verify=context, base_url=emu.endpoint_uri, http2=True) as http:
            response = await http.post(PATH, content=b"", headers=EVENTSTREAM)
        assert response.status_code == 403
        assert response.headers["x-amzn-errortype"] == (
            "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/"
        )
        assert response.json() == {"Message": "Authorization header is missing"}
        assert emu.sessions == []


async def test_a_signed_plain_request_is_served(sign_headers: Any) -> None:
    async with run_emulator(FAST) as emu:
        context = ssl.create_default_context(cafile=str(emu.ca_path))
        headers = sign_headers(
            emu.endpoint_uri + PATH,
            {**EVENTSTREAM, "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-EVENTS"},
        )
        async with httpx.AsyncClient(verify=context, base_url=emu.endpoint_uri, http2=True) as http:
            response = await http.post(PATH, content=b"", headers=headers)
        assert response.status_code == 200
        (session,) = emu.sessions
        assert session.end_reason == "input_ended"


async def test_signatures_unchecked_when_verification_is_off() -> None:
    async with run_emulator(EmulatorSettings(verify_signatures=False)) as emu:
        context = ssl.create_default_context(cafile=str(emu.ca_path))
        async with httpx.AsyncClient(verify=context, base_url=emu.endpoint_uri, http2=True) as http:
            response = await http.post(PATH, content=b"", headers=EVENTSTREAM)
        assert response.status_code == 200
        assert len(emu.sessions) == 1


async def test_a_broken_event_chain_ends_the_session_with_a_validation_exception(
    sonic_client_class: Any, pcm_helpers: Any
) -> None:
    async with run_emulator(FAST) as emu:
        client = sonic_client_class(emu.endpoint_uri, str(emu.ca_path))
        try:
            await client.start()
            await client.audio(
                pcm_helpers.speech(client.in_rate, 300) + pcm_helpers.silence(client.in_rate, 400)
            )
            await client.receive_until(lambda e: isinstance(e, UsageEvent))
            # One event signed over the wrong prior signature, written under the SDK's chain.
            signer = ChunkSigner(secret_access_key="dummy", region="us-east-1", service="bedrock")
            frame, _ = signer.sign_frames(
                [encode_input_event(SessionEnd())], time.time_ns() // 1000, b"0" * 64
            )
            await client.stream.input_stream._writer.write(frame)
            with pytest.raises(ValidationException) as caught:
                await receive_all(client)
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        assert "event signature" in caught.value.message
        (session,) = emu.sessions
        assert session.end_reason == "validationException"
        assert session.turns == 1
